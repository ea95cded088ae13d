using System.Buffers.Binary;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;

namespace Kernels.Runtime.IO;

/// <summary>
/// llama2.c "version 0" checkpoints: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
/// vocab_size, seq_len; negative vocab = separate classifier at the end), then float32 arrays
/// in run.c's fixed order. Weights are mapped, not copied.
/// </summary>
public static unsafe class Llama2cCheckpoint
{
    public const int HeaderBytes = 28;

    /// <summary>Magic of llama2.c's later "ak42" export versions, which this reader rejects clearly.</summary>
    private const uint AkMagic = 0x616b3432;

    public static LlamaConfig ReadConfig(ReadOnlySpan<byte> header, string path, out bool sharedClassifier)
    {
        if (header.Length < HeaderBytes)
        {
            throw new ModelFormatException(path, $"file has {header.Length} bytes, fewer than the 28-byte llama2.c header");
        }
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) == AkMagic)
        {
            throw new ModelFormatException(path, "llama2.c export version 1/2 (magic 'ak42') is not supported; export with version 0 (legacy)");
        }
        Span<int> v = stackalloc int[7];
        for (int i = 0; i < 7; i++)
        {
            v[i] = BinaryPrimitives.ReadInt32LittleEndian(header[(4 * i)..]);
        }
        int dim = v[0], hidden = v[1], layers = v[2], heads = v[3], kvHeads = v[4], vocab = v[5], seq = v[6];
        sharedClassifier = vocab > 0;
        if (dim is <= 0 or > 1 << 16 || hidden is <= 0 or > 1 << 18 || layers is < 1 or > 1024 || heads is <= 0 or > 1 << 12 || kvHeads is <= 0 or > 1 << 12
            || vocab == 0 || Math.Abs((long)vocab) > 1 << 22 || seq is <= 0 or > 1 << 22)
        {
            throw new ModelFormatException(path, $"header values are implausible (not a llama2.c checkpoint?): dim {dim}, hidden_dim {hidden}, n_layers {layers}, n_heads {heads}, n_kv_heads {kvHeads}, vocab_size {vocab}, seq_len {seq}");
        }
        if (dim % heads != 0)
        {
            throw new ModelFormatException(path, $"invalid configuration: dim {dim} not divisible by n_heads {heads}");
        }
        return LlamaConfig.Create(dim, hidden, layers, heads, kvHeads, Math.Abs(vocab), seq).Validated(path);
    }

    /// <summary>The exact size of a version-0 file with this header (run.c reads the arrays back to back).</summary>
    public static long ExpectedBytes(LlamaConfig config, bool sharedClassifier)
    {
        long dim = config.Dim, hidden = config.HiddenDim, L = config.Layers, vocab = config.VocabSize;
        long headDim = config.HeadDim, kvDim = config.KvDim, qDim = config.Heads * headDim;
        long floats = vocab * dim + L * dim + L * qDim * dim + 2 * L * kvDim * dim + L * dim * qDim + L * dim
                      + 3 * L * hidden * dim + dim + 2 * config.MaxSequenceLength * headDim / 2 + (sharedClassifier ? 0 : vocab * dim);
        return HeaderBytes + floats * 4;
    }

    /// <summary>Throws unless the file is exactly as long as its header says.</summary>
    public static void CheckSize(LlamaConfig config, bool sharedClassifier, long fileBytes, string path)
    {
        long expected = ExpectedBytes(config, sharedClassifier);
        if (fileBytes < expected)
        {
            throw new ModelFormatException(path, $"truncated: the header ({config.Dim}x{config.HiddenDim}, {config.Layers} layers, vocab {config.VocabSize}) needs {expected} bytes, the file has {fileBytes}");
        }
        if (fileBytes > expected)
        {
            throw new ModelFormatException(path, $"{fileBytes - expected} unexpected trailing bytes after {expected} (wrong shared-classifier sign or not a version-0 checkpoint)");
        }
    }

    public static LlamaModel Load(string path, IProgress<float>? progress = null, CancellationToken cancellationToken = default,
        WeightMemory memory = WeightMemory.HugePages)
    {
        var file = new MappedFile(path, memory);
        try
        {
            var config = ReadConfig(file.Span(0, (int)Math.Min(file.Length, HeaderBytes)), path, out bool shared);
            CheckSize(config, shared, file.Length, path);
            long dim = config.Dim, hidden = config.HiddenDim, L = config.Layers, vocab = config.VocabSize;
            long headDim = config.HeadDim, kvDim = config.KvDim, qDim = config.Heads * headDim;

            float* p = (float*)(file.Pointer + HeaderBytes);
            float* Take(long count)
            {
                float* r = p;
                p += count;
                return r;
            }

            DenseMatrix Mat(string name, float* data, long rows, long cols) =>
                new(name, (int)rows, (int)cols, ElementType.F32, data, file);

            var embedding = Mat("token_embedding_table", Take(vocab * dim), vocab, dim);
            float* rmsAtt = Take(L * dim);
            float* wq = Take(L * qDim * dim);
            float* wk = Take(L * kvDim * dim);
            float* wv = Take(L * kvDim * dim);
            float* wo = Take(L * dim * qDim);
            float* rmsFfn = Take(L * dim);
            float* w1 = Take(L * hidden * dim);
            float* w2 = Take(L * dim * hidden);
            float* w3 = Take(L * hidden * dim);
            float* rmsFinal = Take(dim);
            Take(config.MaxSequenceLength * headDim / 2); // legacy freq_cis_real
            Take(config.MaxSequenceLength * headDim / 2); // legacy freq_cis_imag
            WeightMatrix classifier = shared ? embedding : Mat("wcls", Take(vocab * dim), vocab, dim);

            var layers = new List<LlamaLayer>();
            for (long l = 0; l < L; l++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                layers.Add(new LlamaLayer
                {
                    AttentionNorm = new ReadOnlySpan<float>(rmsAtt + l * dim, (int)dim).ToArray(),
                    Query = Mat($"wq[{l}]", wq + l * qDim * dim, qDim, dim),
                    Key = Mat($"wk[{l}]", wk + l * kvDim * dim, kvDim, dim),
                    Value = Mat($"wv[{l}]", wv + l * kvDim * dim, kvDim, dim),
                    Output = Mat($"wo[{l}]", wo + l * dim * qDim, dim, qDim),
                    FfnNorm = new ReadOnlySpan<float>(rmsFfn + l * dim, (int)dim).ToArray(),
                    Gate = Mat($"w1[{l}]", w1 + l * hidden * dim, hidden, dim),
                    Down = Mat($"w2[{l}]", w2 + l * dim * hidden, dim, hidden),
                    Up = Mat($"w3[{l}]", w3 + l * hidden * dim, hidden, dim),
                    Heads = config.Heads,
                    KvHeads = config.KvHeads,
                });
                progress?.Report((l + 1f) / Math.Max(1, L));
            }
            var model = new LlamaModel(config, embedding, layers, new ReadOnlySpan<float>(rmsFinal, (int)dim).ToArray(), classifier, path);
            model.Own(file);
            model.Metadata["format"] = "llama2.c v0";
            progress?.Report(1f);
            return model;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }
}
