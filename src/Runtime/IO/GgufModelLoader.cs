using System.Text;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;

namespace Kernels.Runtime.IO;

/// <summary>
/// Loads a GGUF "llama" model: F32/F16/BF16 and quantized (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K-Q6_K)
/// tensors are used in place, norms copied to float.
/// GGUF stores Q/K in the interleaved RoPE layout (llama.cpp's converter undoes HF's permutation),
/// which is the runtime's layout, so no permutation is needed. The embedded SentencePiece
/// vocabulary is read when present.
/// </summary>
public static unsafe class GgufModelLoader
{
    public static LlamaModel Load(string path, IProgress<float>? progress = null, CancellationToken cancellationToken = default,
        WeightMemory memory = WeightMemory.HugePages)
    {
        var gguf = GgufFile.Open(path, memory);
        try
        {
            string arch = gguf.Get<string>("general.architecture") ?? throw new ModelFormatException(path, "metadata general.architecture is missing");
            if (arch != "llama")
            {
                throw new ModelFormatException(path, $"architecture '{arch}' is not supported (only 'llama')");
            }
            var config = ReadConfig(gguf);

            var embedding = Matrix(gguf, "token_embd.weight", config.VocabSize, config.Dim);
            WeightMatrix classifier = gguf.FindTensor("output.weight") is null ? embedding : Matrix(gguf, "output.weight", config.VocabSize, config.Dim);
            var layers = new List<LlamaLayer>();
            for (int l = 0; l < config.Layers; l++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                string p = $"blk.{l}.";
                var q = Matrix(gguf, p + "attn_q.weight", -1, config.Dim);
                var k = Matrix(gguf, p + "attn_k.weight", -1, config.Dim);
                int heads = q.Rows / config.HeadDim, kvHeads = k.Rows / config.HeadDim;
                if (q.Rows % config.HeadDim != 0 || k.Rows % config.HeadDim != 0 || heads == 0 || kvHeads == 0)
                {
                    throw new ModelFormatException(path, $"tensor {p}attn_q/attn_k: rows {q.Rows}/{k.Rows} are not whole heads of {config.HeadDim}");
                }
                layers.Add(new LlamaLayer
                {
                    AttentionNorm = Vector(gguf, p + "attn_norm.weight", config.Dim),
                    Query = q,
                    Key = k,
                    Value = Matrix(gguf, p + "attn_v.weight", k.Rows, config.Dim),
                    Output = Matrix(gguf, p + "attn_output.weight", config.Dim, q.Rows),
                    FfnNorm = Vector(gguf, p + "ffn_norm.weight", config.Dim),
                    Gate = Matrix(gguf, p + "ffn_gate.weight", config.HiddenDim, config.Dim),
                    Down = Matrix(gguf, p + "ffn_down.weight", config.Dim, config.HiddenDim),
                    Up = Matrix(gguf, p + "ffn_up.weight", config.HiddenDim, config.Dim),
                    Heads = heads,
                    KvHeads = kvHeads,
                    SharesKvWith = SharedKv(gguf, l),
                });
                progress?.Report((l + 1f) / Math.Max(1, config.Layers));
            }
            var model = new LlamaModel(config, embedding, layers, Vector(gguf, "output_norm.weight", config.Dim), classifier, path);
            model.Own(gguf);
            model.Vocabulary = ReadVocabulary(gguf);
            foreach (var (key, value) in gguf.Metadata)
            {
                if (value is not Array)
                {
                    model.Metadata[key] = Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "";
                }
            }
            model.Metadata["format"] = $"GGUF v{gguf.Version}";
            progress?.Report(1f);
            return model;
        }
        catch
        {
            gguf.Dispose();
            throw;
        }
    }

    public static LlamaConfig ReadConfig(GgufFile gguf)
    {
        int dim = (int)gguf.GetRequiredInt("llama.embedding_length");
        int heads = MaxHeads(gguf, "llama.attention.head_count", true);
        int kvHeads = gguf.Metadata.ContainsKey("llama.attention.head_count_kv") ? MaxHeads(gguf, "llama.attention.head_count_kv", false) : heads;
        var embd = gguf.FindTensor("token_embd.weight") ?? throw new ModelFormatException(gguf.Path, "tensor token_embd.weight is missing");
        int vocab = (int)(gguf.Metadata.ContainsKey("llama.vocab_size") ? gguf.Get<long>("llama.vocab_size") : embd.Dims[^1]);
        int headDim = gguf.Metadata.ContainsKey("llama.attention.key_length") ? (int)gguf.Get<long>("llama.attention.key_length") : heads > 0 ? dim / heads : 0;
        return LlamaConfig.Create(
            dim,
            (int)gguf.GetRequiredInt("llama.feed_forward_length"),
            (int)gguf.GetRequiredInt("llama.block_count"),
            heads,
            kvHeads,
            vocab,
            (int)(gguf.Metadata.ContainsKey("llama.context_length") ? gguf.Get<long>("llama.context_length") : 2048),
            gguf.Metadata.ContainsKey("llama.attention.layer_norm_rms_epsilon") ? gguf.Get<float>("llama.attention.layer_norm_rms_epsilon") : 1e-5f,
            gguf.Metadata.ContainsKey("llama.rope.freq_base") ? gguf.Get<float>("llama.rope.freq_base") : 10000f,
            headDim).Validated(gguf.Path);
    }

    /// <summary>Head counts may be per-layer arrays (written after head pruning); the config keeps the maximum.</summary>
    private static int MaxHeads(GgufFile gguf, string key, bool required)
    {
        if (!gguf.Metadata.TryGetValue(key, out object? v))
        {
            return required ? throw new ModelFormatException(gguf.Path, $"required metadata key {key} is missing") : 0;
        }
        return v switch
        {
            int[] a => a.Max(),
            object[] o => o.Max(x => Convert.ToInt32(x, System.Globalization.CultureInfo.InvariantCulture)),
            _ => Convert.ToInt32(v, System.Globalization.CultureInfo.InvariantCulture),
        };
    }

    private static int SharedKv(GgufFile gguf, int layer) =>
        gguf.Metadata.TryGetValue("kernels.kv_share_source", out object? v) && v is int[] a && layer < a.Length ? a[layer] : -1;

    private static WeightMatrix Matrix(GgufFile gguf, string name, int rows, int cols)
    {
        if (CompactNm.TryLoad(gguf, name, rows, cols) is { } compact)
        {
            return compact;
        }
        var t = gguf.FindTensor(name) ?? throw new ModelFormatException(gguf.Path, $"tensor {name} is missing");
        if (t.Dims.Length != 2 || t.Dims[0] != cols || rows >= 0 && t.Dims[1] != rows)
        {
            throw new ModelFormatException(gguf.Path, $"tensor {name}: shape {t.Shape}, expected [{(rows >= 0 ? rows : "*")}, {cols}]");
        }
        byte* data = gguf.TensorData(t); // checks the type, whole blocks and the byte range
        if (t.Quantization is { } q)
        {
            return new QuantizedMatrix(name, (int)t.Dims[1], cols, q, data, gguf.File);
        }
        return new DenseMatrix(name, (int)t.Dims[1], cols, FloatType(gguf, t), data, gguf.File);
    }

    private static ElementType FloatType(GgufFile gguf, GgufTensorInfo t) => t.Type switch
    {
        GgmlType.F32 => ElementType.F32,
        GgmlType.F16 => ElementType.F16,
        GgmlType.BF16 => ElementType.BF16,
        _ => throw new ModelFormatException(gguf.Path, $"tensor {t.Name}: element type {t.Type} is not supported"),
    };

    private static float[] Vector(GgufFile gguf, string name, int length)
    {
        var t = gguf.FindTensor(name) ?? throw new ModelFormatException(gguf.Path, $"tensor {name} is missing");
        if (t.ElementCount != length)
        {
            throw new ModelFormatException(gguf.Path, $"tensor {name}: {t.ElementCount} elements, expected {length}");
        }
        byte* data = gguf.TensorData(t);
        var result = new float[length];
        if (t.Quantization is { } q)
        {
            fixed (float* r = result)
            {
                Dequantization.Row(q, data, r, length);
            }
            return result;
        }
        var type = FloatType(gguf, t);
        for (int i = 0; i < length; i++)
        {
            result[i] = type.ReadAsSingle(data, i);
        }
        return result;
    }

    /// <summary>The embedded SentencePiece vocabulary (tokenizer.ggml.model = llama), or null when absent.</summary>
    public static Vocabulary? ReadVocabulary(GgufFile gguf)
    {
        if (gguf.Get<string>("tokenizer.ggml.model") is not { } kind)
        {
            return null;
        }
        if (kind != "llama")
        {
            throw new ModelFormatException(gguf.Path, $"tokenizer.ggml.model '{kind}' is not supported (only SentencePiece 'llama')");
        }
        if (gguf.Metadata.GetValueOrDefault("tokenizer.ggml.tokens") is not string[] tokens)
        {
            throw new ModelFormatException(gguf.Path, "tokenizer.ggml.tokens is missing or not a string array");
        }
        float[] scores = gguf.Metadata.GetValueOrDefault("tokenizer.ggml.scores") as float[] ?? new float[tokens.Length];
        int[]? types = gguf.Metadata.GetValueOrDefault("tokenizer.ggml.token_type") as int[];
        if (scores.Length != tokens.Length || types is not null && types.Length != tokens.Length)
        {
            throw new ModelFormatException(gguf.Path, "tokenizer arrays have different lengths");
        }
        var pieces = tokens.Select(t => Encoding.UTF8.GetBytes(t.Replace('\u2581', ' '))).ToArray();
        var kinds = types?.Select(t => Enum.IsDefined(typeof(TokenKind), t) ? (TokenKind)t : TokenKind.Normal).ToArray();
        int Id(string key, int fallback) => gguf.Metadata.ContainsKey(key) ? (int)gguf.Get<long>(key) : fallback;
        return new Vocabulary(pieces, scores, kinds, Id("tokenizer.ggml.bos_token_id", 1), Id("tokenizer.ggml.eos_token_id", 2), Id("tokenizer.ggml.unknown_token_id", 0), gguf.Path);
    }
}
