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
        var owned = new List<IDisposable>(); // matrices this loader converts (Qwen2's permuted Q/K)
        try
        {
            var config = ReadConfig(gguf);
            string a = config.Architecture;

            var embedding = Matrix(gguf, "token_embd.weight", config.VocabSize, config.Dim);
            WeightMatrix classifier = gguf.FindTensor("output.weight") is null ? embedding : Matrix(gguf, "output.weight", config.VocabSize, config.Dim);
            var layers = new List<LlamaLayer>();
            for (int l = 0; l < config.Layers; l++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                string p = $"blk.{l}.";
                int heads = HeadsOf(gguf, $"{a}.attention.head_count", l, config.Heads);
                int kvHeads = HeadsOf(gguf, $"{a}.attention.head_count_kv", l, heads);
                if (heads % kvHeads != 0)
                {
                    throw new ModelFormatException(path, $"layer {l}: {heads} heads ({a}.attention.head_count) are not a multiple of {kvHeads} kv heads (head_count_kv)");
                }
                var q = Matrix(gguf, p + "attn_q.weight", heads * config.HeadDim, config.Dim);
                var k = Matrix(gguf, p + "attn_k.weight", kvHeads * config.HeadDim, config.Dim);
                float[]? Bias(string name, int length) => gguf.FindTensor(p + name) is null ? null : Vector(gguf, p + name, length);
                float[]? qb = Bias("attn_q.bias", q.Rows), kb = Bias("attn_k.bias", k.Rows);
                if (a == "qwen2")
                {
                    // llama.cpp keeps Qwen2's Q/K rows as HF wrote them and rotates halves (NEOX);
                    // this runtime rotates interleaved pairs, so rows and biases are permuted once here.
                    owned.Add(q = RopeLayout.Permuted(q, config.HeadDim));
                    owned.Add(k = RopeLayout.Permuted(k, config.HeadDim));
                    qb = qb is null ? null : RopeLayout.HalfSplitToInterleaved(qb, config.HeadDim);
                    kb = kb is null ? null : RopeLayout.HalfSplitToInterleaved(kb, config.HeadDim);
                }
                layers.Add(new LlamaLayer
                {
                    QueryBias = qb,
                    KeyBias = kb,
                    ValueBias = Bias("attn_v.bias", k.Rows),
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
                    SharesKvWith = SharedKv(gguf, l, config.Layers),
                });
                progress?.Report((l + 1f) / Math.Max(1, config.Layers));
            }
            var finalNorm = Vector(gguf, "output_norm.weight", config.Dim);
            if (gguf.UnusedTensors.Select(t => t.Name).ToList() is { Count: > 0 } unused)
            {
                // As llama.cpp ("wrong number of tensors"): a tensor left over means the metadata
                // describes a different model than the table holds (e.g. fewer layers).
                throw new ModelFormatException(path, $"{unused.Count} tensors are not part of the {config.Layers}-layer model the metadata describes: {string.Join(", ", unused.Take(5))}{(unused.Count > 5 ? ", ..." : "")}");
            }
            var model = new LlamaModel(config, embedding, layers, finalNorm, classifier, path);
            model.Own(gguf);
            owned.ForEach(model.Own);
            model.Vocabulary = ReadVocabulary(gguf);
            model.ByteLevelVocabulary = ReadByteLevelVocabulary(gguf);
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
            owned.ForEach(o => o.Dispose());
            gguf.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The hyper-parameters, each checked for its GGUF type (integers stay integers, no string is
    /// parsed) and a sane range, as llama.cpp's model loader does, before anything is sized by them.
    /// </summary>
    public static LlamaConfig ReadConfig(GgufFile gguf)
    {
        string a = Architecture(gguf);
        int layers = (int)gguf.GetRequiredInt($"{a}.block_count", 1, MaxLayers);
        int dim = (int)gguf.GetRequiredInt($"{a}.embedding_length", 1, 1 << 20);
        int heads = MaxHeads(gguf, $"{a}.attention.head_count", layers, dim) ?? throw new ModelFormatException(gguf.Path, $"required metadata key {a}.attention.head_count is missing");
        int kvHeads = MaxHeads(gguf, $"{a}.attention.head_count_kv", layers, dim) ?? heads;
        var embd = gguf.FindTensor("token_embd.weight") ?? throw new ModelFormatException(gguf.Path, "tensor token_embd.weight is missing");
        int vocab = (int)gguf.GetInt($"{a}.vocab_size", embd.Dims[^1], 1, MaxVocab);
        if (dim % heads != 0 && !gguf.Metadata.ContainsKey($"{a}.attention.key_length"))
        {
            throw new ModelFormatException(gguf.Path, $"metadata {a}.embedding_length {dim} is not divisible by {a}.attention.head_count {heads} (and no {a}.attention.key_length)");
        }
        int headDim = (int)gguf.GetInt($"{a}.attention.key_length", dim / heads, 2, 1 << 14);
        int valueDim = (int)gguf.GetInt($"{a}.attention.value_length", headDim, 1, 1 << 14);
        if (valueDim != headDim)
        {
            throw new ModelFormatException(gguf.Path, $"metadata {a}.attention.value_length {valueDim} differs from key_length {headDim} (not supported)");
        }
        int rotated = (int)gguf.GetInt($"{a}.rope.dimension_count", headDim, 0, 1 << 14);
        if (rotated != headDim)
        {
            throw new ModelFormatException(gguf.Path, $"metadata {a}.rope.dimension_count {rotated} differs from the head size {headDim} (llama rotates whole heads)");
        }
        return LlamaConfig.Create(
            dim,
            (int)gguf.GetRequiredInt($"{a}.feed_forward_length", 1, 1 << 22),
            layers,
            heads,
            kvHeads,
            vocab,
            (int)gguf.GetInt($"{a}.context_length", 2048, 1, MaxContext),
            gguf.GetFloat($"{a}.attention.layer_norm_rms_epsilon", 1e-5f, MinEpsilon, MaxEpsilon),
            gguf.GetFloat($"{a}.rope.freq_base", 10000f, MinRopeBase, MaxRopeBase),
            headDim).Validated(gguf.Path) with
        {
            RopeScaling = ReadRopeScaling(gguf, a, headDim),
            Architecture = a,
            SlidingWindow = gguf.Metadata.ContainsKey($"{a}.attention.sliding_window") ? (int)gguf.GetInt($"{a}.attention.sliding_window", 0, 1, MaxContext) : null,
        };
    }

    /// <summary>general.architecture, one this project runs: "llama" (Llama 1-3, Mistral, SmolLM) or "qwen2".</summary>
    public static string Architecture(GgufFile gguf)
    {
        string arch = gguf.Get<string>("general.architecture") ?? throw new ModelFormatException(gguf.Path, "metadata general.architecture is missing");
        return arch is "llama" or "qwen2" ? arch : throw new ModelFormatException(gguf.Path, $"architecture '{arch}' is not supported (llama, qwen2)");
    }

    /// <summary>
    /// RoPE scaling as llama.cpp stores it: Llama 3.1's as the rope_freqs tensor (one divisor per
    /// frequency, what its converter writes), linear as llama.rope.scaling.type = linear with
    /// .factor; also type = llama3 with its four numbers as keys. Other types (yarn, longrope) are
    /// refused by name.
    /// </summary>
    private static RopeScaling? ReadRopeScaling(GgufFile gguf, string a, int headDim)
    {
        if (gguf.FindTensor("rope_freqs.weight") is not null)
        {
            return new RopeScaling(RopeScalingKind.Factors, 1f, Divisors: Vector(gguf, "rope_freqs.weight", headDim / 2)).Validated(gguf.Path, "tensor rope_freqs.weight");
        }
        string type = gguf.Get<string>($"{a}.rope.scaling.type") ?? "none";
        return type switch
        {
            "none" => null,
            "linear" => new RopeScaling(RopeScalingKind.Linear, gguf.GetFloat($"{a}.rope.scaling.factor", 1f, 1f, 1024f)).Validated(gguf.Path, $"{a}.rope.scaling"),
            // Not llama.cpp's (its converter writes rope_freqs), but other writers spell Llama 3.1's scaling as keys.
            "llama3" => new RopeScaling(RopeScalingKind.Llama3,
                gguf.GetFloat($"{a}.rope.scaling.factor", 8f, 1f, 1024f),
                gguf.GetFloat($"{a}.rope.scaling.low_freq_factor", 1f, 1e-3f, 1e3f),
                gguf.GetFloat($"{a}.rope.scaling.high_freq_factor", 4f, 1e-3f, 1e3f),
                (int)gguf.GetInt($"{a}.rope.scaling.original_context_length", 8192, 1, MaxContext)).Validated(gguf.Path, $"{a}.rope.scaling"),
            _ => throw new ModelFormatException(gguf.Path, $"metadata {a}.rope.scaling.type '{type}' is not implemented (none, linear, llama3; llama.cpp writes Llama 3.1's scaling as tensor rope_freqs.weight, also read)"),
        };
    }

    // Sane ranges (llama.cpp checks layers against LLAMA_MAX_LAYERS = 512; head-pruned and grown
    // research models go beyond neither these nor the rest).
    internal const int MaxLayers = 1024;
    internal const int MaxVocab = 1 << 24;
    internal const int MaxContext = 1 << 26;
    internal const float MinEpsilon = 1e-12f, MaxEpsilon = 0.1f;
    internal const float MinRopeBase = 1f, MaxRopeBase = 1e10f;

    /// <summary>
    /// Head counts may be per-layer arrays (written after head pruning): one entry per layer, each in
    /// [1, dim]; the config keeps the maximum. Null when the key is absent.
    /// </summary>
    private static int? MaxHeads(GgufFile gguf, string key, int layers, int dim)
    {
        if (!gguf.Metadata.TryGetValue(key, out object? v))
        {
            return null;
        }
        if (v is not System.Array)
        {
            return (int)gguf.GetInt(key, 0, 1, dim);
        }
        var counts = GgufFile.IntegerArray(v) ?? throw new ModelFormatException(gguf.Path, $"metadata {key} must be an integer or an array of integers");
        if (counts.Length != layers || counts.Any(c => c < 1 || c > dim))
        {
            throw new ModelFormatException(gguf.Path, $"metadata {key} must hold {layers} counts (one per layer) in [1, {dim}]; it holds {counts.Length}: [{string.Join(", ", counts.Take(8))}{(counts.Length > 8 ? ", ..." : "")}]");
        }
        return (int)counts.Max();
    }

    /// <summary>Per-layer head counts from metadata (scalar: the same for every layer).</summary>
    private static int HeadsOf(GgufFile gguf, string key, int layer, int fallback) =>
        gguf.Metadata.GetValueOrDefault(key) switch
        {
            null => fallback,
            System.Array a => (int)GgufFile.IntegerArray(a)![layer], // MaxHeads checked the array
            _ => (int)gguf.Get<long>(key),
        };

    private static int SharedKv(GgufFile gguf, int layer, int layers)
    {
        if (!gguf.Metadata.TryGetValue(KvShareKey, out object? v))
        {
            return -1;
        }
        if (v.GetType() != typeof(int[]) || v is not int[] a || a.Length != layers)
        {
            throw new ModelFormatException(gguf.Path, $"metadata {KvShareKey} must be an i32 array with one entry per layer ({layers})");
        }
        return a[layer];
    }

    private const string KvShareKey = "kernels.kv_share_source";

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

    /// <summary>tokenizer.ggml.model, checked to be one this project runs ("llama": SentencePiece, "gpt2": byte-level BPE), or null when absent.</summary>
    private static string? TokenizerModel(GgufFile gguf)
    {
        string? kind = gguf.Get<string>("tokenizer.ggml.model");
        return kind is null or "llama" or "gpt2" ? kind
            : throw new ModelFormatException(gguf.Path, $"tokenizer.ggml.model '{kind}' is not supported (llama: SentencePiece, gpt2: byte-level BPE)");
    }

    private static string[] TokenStrings(GgufFile gguf) =>
        gguf.Metadata.GetValueOrDefault("tokenizer.ggml.tokens") as string[] is { Length: > 0 } tokens ? tokens
            : throw new ModelFormatException(gguf.Path, "metadata tokenizer.ggml.tokens is missing, empty or not a string array");

    private static int[]? TokenTypes(GgufFile gguf, int count)
    {
        int[]? types = gguf.Metadata.GetValueOrDefault("tokenizer.ggml.token_type") switch
        {
            null => null,
            int[] t => t,
            _ => throw new ModelFormatException(gguf.Path, "metadata tokenizer.ggml.token_type must be an i32 array"),
        };
        if (types is not null && types.Length != count)
        {
            throw new ModelFormatException(gguf.Path, $"tokenizer arrays have different lengths: {count} tokens, {types.Length} token types");
        }
        return types;
    }

    private static TokenKind Kind(int type) => Enum.IsDefined(typeof(TokenKind), type) ? (TokenKind)type : TokenKind.Normal;

    /// <summary>
    /// The embedded byte-level BPE vocabulary (tokenizer.ggml.model = gpt2: tokens, merges, token
    /// types, tokenizer.ggml.pre, special ids), or null when the file embeds none or a SentencePiece one.
    /// </summary>
    public static ByteLevelVocabulary? ReadByteLevelVocabulary(GgufFile gguf)
    {
        if (TokenizerModel(gguf) != "gpt2")
        {
            return null;
        }
        var tokens = TokenStrings(gguf);
        var merges = gguf.Metadata.GetValueOrDefault("tokenizer.ggml.merges") as string[]
            ?? throw new ModelFormatException(gguf.Path, "metadata tokenizer.ggml.merges is missing or not a string array (a gpt2 tokenizer needs its merges)");
        var kinds = TokenTypes(gguf, tokens.Length)?.Select(Kind).ToArray() ?? Enumerable.Repeat(TokenKind.Normal, tokens.Length).ToArray();
        // As llama.cpp: a missing key means "default" (with a warning there); an unknown name is an error.
        string preName = gguf.Get<string>("tokenizer.ggml.pre") ?? "default";
        var pre = Tokenization.PreTokenizers.Find(preName)
            ?? throw new ModelFormatException(gguf.Path, $"tokenizer.ggml.pre '{preName}' is not a pre-tokenizer this project implements ({string.Join(", ", Tokenization.PreTokenizers.Names)})");
        int? Id(string key) => gguf.Metadata.ContainsKey(key) ? (int)gguf.GetInt(key, 0, 0, tokens.Length - 1) : null;
        // llama.cpp finds EOT by name when the key is absent (Llama 3's <|eot_id|>, ChatML's <|im_end|>, ...).
        int? eot = Id("tokenizer.ggml.eot_token_id");
        if (eot is null)
        {
            int found = Array.FindIndex(tokens, t => t is "<|eot_id|>" or "<|im_end|>" or "<|end|>" or "<end_of_turn>" or "<|endoftext|>" or "<EOT>");
            eot = found >= 0 ? found : null;
        }
        bool addBos = gguf.Metadata.ContainsKey("tokenizer.ggml.add_bos_token") ? gguf.Get<bool>("tokenizer.ggml.add_bos_token") : pre.IgnoreMerges;
        bool addEos = gguf.Metadata.ContainsKey("tokenizer.ggml.add_eos_token") && gguf.Get<bool>("tokenizer.ggml.add_eos_token");
        var special = new SpecialTokens(Id("tokenizer.ggml.bos_token_id"), Id("tokenizer.ggml.eos_token_id"), eot, Id("tokenizer.ggml.unknown_token_id"), addBos, addEos);
        return new ByteLevelVocabulary(tokens, merges, kinds, pre, special, gguf.Path, "tokenizer.ggml.merges");
    }

    /// <summary>The embedded SentencePiece vocabulary (tokenizer.ggml.model = llama), or null when the file embeds none or a byte-level one.</summary>
    public static Vocabulary? ReadVocabulary(GgufFile gguf)
    {
        if (TokenizerModel(gguf) != "llama")
        {
            return null;
        }
        var tokens = TokenStrings(gguf);
        float[] scores = gguf.Metadata.GetValueOrDefault("tokenizer.ggml.scores") switch
        {
            null => new float[tokens.Length],
            float[] f => f,
            _ => throw new ModelFormatException(gguf.Path, "metadata tokenizer.ggml.scores must be an f32 array"),
        };
        int[]? types = TokenTypes(gguf, tokens.Length);
        if (scores.Length != tokens.Length)
        {
            throw new ModelFormatException(gguf.Path, $"tokenizer arrays have different lengths: {tokens.Length} tokens, {scores.Length} scores");
        }
        if (scores.Any(x => !float.IsFinite(x)))
        {
            throw new ModelFormatException(gguf.Path, "metadata tokenizer.ggml.scores holds NaN or infinite values");
        }
        var pieces = tokens.Select(t => Encoding.UTF8.GetBytes(t.Replace('\u2581', ' '))).ToArray();
        var kinds = types?.Select(Kind).ToArray();
        int Id(string key, int fallback) => (int)gguf.GetInt(key, fallback, 0, tokens.Length - 1);
        return new Vocabulary(pieces, scores, kinds, Id("tokenizer.ggml.bos_token_id", 1), Id("tokenizer.ggml.eos_token_id", 2), Id("tokenizer.ggml.unknown_token_id", 0), gguf.Path);
    }
}
