using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;

namespace Kernels.Runtime.Model;

/// <summary>A Llama shape for synthetic models (benchmarks: timing does not depend on weight values).</summary>
public sealed record SyntheticShape(string Name, int Dim, int Hidden, int Layers, int Heads, int KvHeads, int Vocab, int MaxSequence)
{
    public static readonly SyntheticShape TinyLlama = new("tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048);
    public static readonly SyntheticShape Llama7B = new("llama-7b", 4096, 11008, 32, 32, 32, 32000, 4096);
    public static readonly SyntheticShape Small = new("small", 512, 1376, 4, 8, 4, 4096, 1024);

    public static SyntheticShape Parse(string name) => name.ToLowerInvariant() switch
    {
        "tinyllama" or "tinyllama-1.1b" or "1b" => TinyLlama,
        "7b" or "llama-7b" => Llama7B,
        "small" => Small,
        _ => throw new ArgumentException($"unknown shape '{name}' (tinyllama, 7b, small)"),
    };

    /// <summary>Parameters in the block linears and in embedding + classifier.</summary>
    public (long Blocks, long EmbeddingAndHead) Parameters
    {
        get
        {
            long head = Dim / Heads;
            long q = (long)Heads * head, kv = (long)KvHeads * head;
            long perLayer = q * Dim + 2 * kv * Dim + Dim * q + 3L * Hidden * Dim;
            return (perLayer * Layers, 2L * Vocab * Dim);
        }
    }
}

/// <summary>One matrix of a synthetic model: its name, shape, position in the build order, and whether N:M pruning applies.</summary>
public sealed record SyntheticTensor(string Name, int Rows, int Columns, int Index, bool Prunable)
{
    /// <summary>The random stream of this tensor for a model seed.</summary>
    public int Seed(int modelSeed) => modelSeed * 1000 + Index;
}

/// <summary>
/// Builds Llama-shaped models with random weights in memory (no downloads): uniform weights of
/// the scale of a trained model (std 0.02), unit norms, a separate classifier. Sparse variants
/// prune every block linear to N:M by magnitude along its input dimension and store it compressed.
/// </summary>
public static class SyntheticModel
{
    public static LlamaModel Create(SyntheticShape shape, ElementType type, NmPattern? sparsity, int seed = 1, IProgress<float>? progress = null)
    {
        var config = Config(shape);
        var plan = Plan(shape);
        var matrices = new WeightMatrix[plan.Count];
        for (int i = 0; i < plan.Count; i++)
        {
            var t = plan[i];
            if (t.Prunable && sparsity is { } p)
            {
                using var pruned = RandomDense(t.Name, t.Rows, t.Columns, ElementType.F32, p, t.Seed(seed));
                matrices[i] = NmSparseMatrix.Compress(pruned, p, type);
            }
            else
            {
                matrices[i] = Materialize(t, type, seed);
            }
            progress?.Report((i + 1f) / plan.Count);
        }

        var layers = new List<LlamaLayer>();
        for (int l = 0; l < shape.Layers; l++)
        {
            int b = 1 + 7 * l;
            layers.Add(new LlamaLayer
            {
                AttentionNorm = Ones(shape.Dim),
                Query = matrices[b],
                Key = matrices[b + 1],
                Value = matrices[b + 2],
                Output = matrices[b + 3],
                FfnNorm = Ones(shape.Dim),
                Gate = matrices[b + 4],
                Down = matrices[b + 5],
                Up = matrices[b + 6],
                Heads = shape.Heads,
                KvHeads = shape.KvHeads,
            });
        }
        var model = new LlamaModel(config, (DenseMatrix)matrices[0], layers, Ones(shape.Dim), matrices[^1], $"synthetic:{shape.Name}");
        model.Metadata["format"] = $"synthetic {shape.Name} {type}{(sparsity is { } sp ? " " + sp : " dense")}";
        return model;
    }

    /// <summary>The configuration of <paramref name="shape"/> (head dim = dim / heads).</summary>
    public static LlamaConfig Config(SyntheticShape shape) =>
        LlamaConfig.Create(shape.Dim, shape.Hidden, shape.Layers, shape.Heads, shape.KvHeads, shape.Vocab, shape.MaxSequence).Validated(shape.Name);

    /// <summary>
    /// Every matrix of a synthetic model in build order (embedding; per layer q, k, v, o, gate,
    /// down, up; classifier), with llama.cpp's tensor names. The position fixes each tensor's
    /// seed, so the in-memory model and a GGUF written by <c>kernels synth</c> hold the same weights.
    /// </summary>
    public static IReadOnlyList<SyntheticTensor> Plan(SyntheticShape shape)
    {
        var config = Config(shape);
        int q = shape.Heads * config.HeadDim, kv = shape.KvHeads * config.HeadDim;
        var plan = new List<SyntheticTensor> { new("token_embd.weight", shape.Vocab, shape.Dim, 0, false) };
        for (int l = 0; l < shape.Layers; l++)
        {
            string p = $"blk.{l}.";
            foreach (var (name, rows, cols) in new[]
            {
                ("attn_q", q, shape.Dim), ("attn_k", kv, shape.Dim), ("attn_v", kv, shape.Dim), ("attn_output", shape.Dim, q),
                ("ffn_gate", shape.Hidden, shape.Dim), ("ffn_down", shape.Dim, shape.Hidden), ("ffn_up", shape.Hidden, shape.Dim),
            })
            {
                plan.Add(new SyntheticTensor(p + name + ".weight", rows, cols, plan.Count, true));
            }
        }
        plan.Add(new SyntheticTensor("output.weight", shape.Vocab, shape.Dim, plan.Count, false));
        return plan;
    }

    /// <summary>The dense weights of one planned tensor in <paramref name="type"/>.</summary>
    public static DenseMatrix Materialize(SyntheticTensor tensor, ElementType type, int seed) =>
        RandomDense(tensor.Name, tensor.Rows, tensor.Columns, type, null, tensor.Seed(seed));

    private static float[] Ones(int n) => Enumerable.Repeat(1f, n).ToArray();

    private const int BankSize = 1 << 24;
    private static readonly Lazy<float[]> s_bank = new(() =>
    {
        // uniform(-a, a), std 0.02: one 64 MiB bank sliced at pseudo-random offsets per row. The
        // values repeat across rows (irrelevant for timing: every weight is still streamed from memory).
        var bank = new float[BankSize];
        const float a = 0.0346f;
        Parallel.For(0, 64, chunk =>
        {
            ulong s = 0x9E3779B97F4A7C15UL * (ulong)(chunk + 1);
            int n = BankSize / 64;
            for (int i = chunk * n; i < (chunk + 1) * n; i++)
            {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                bank[i] = ((s >> 40) * (1f / (1 << 24)) * 2f - 1f) * a;
            }
        });
        return bank;
    });

    /// <summary>
    /// Deterministic random blocks of a quantized format — random bytes, every F16 block scale a
    /// finite value of random sign and magnitude 0.002-0.052 — for kernel tests and benchmarks
    /// (the bytes exercise every bit of the layout; they quantize nothing).
    /// </summary>
    public static unsafe QuantizedMatrix RandomQuantized(string name, QuantType type, int rows, int cols, int seed)
    {
        var m = new QuantizedMatrix(name, rows, cols, type);
        var r = new Random(seed);
        long blocks = (long)rows * cols / type.BlockElements();
        for (long b = 0; b < blocks; b++)
        {
            byte* block = m.Data + b * type.BlockBytes();
            r.NextBytes(new Span<byte>(block, type.BlockBytes()));
            foreach (int offset in type.ScaleOffsets())
            {
                float scale = (0.002f + 0.05f * r.NextSingle()) * (r.Next(2) == 0 ? -1 : 1);
                *(ushort*)(block + offset) = Kernels.Simd.Vectors.HalfBits.SingleToHalf(scale);
            }
        }
        return m;
    }

    /// <summary>Deterministic weights of the given storage type, optionally pruned to N:M by magnitude along the input dimension.</summary>
    public static unsafe DenseMatrix RandomDense(string name, int rows, int cols, ElementType type, NmPattern? sparsity, int seed)
    {
        var m = new DenseMatrix(name, rows, cols, type);
        var bank = s_bank.Value;
        Parallel.For(0, (rows + 15) / 16, () => new float[cols], (block, _, row) =>
        {
            for (int r = block * 16; r < Math.Min(rows, block * 16 + 16); r++)
            {
                ulong h = ((ulong)(uint)seed * 0x9E3779B97F4A7C15UL) ^ ((ulong)(r + 1) * 0xBF58476D1CE4E5B9UL);
                h ^= h >> 31;
                int offset = (int)(h % (ulong)(BankSize - cols));
                bank.AsSpan(offset, cols).CopyTo(row);
                if (sparsity is { } p)
                {
                    PruneRow(row, p, h);
                }
                switch (type)
                {
                    case ElementType.F32:
                        row.CopyTo(new Span<float>(m.Row(r), cols));
                        break;
                    case ElementType.F16:
                        System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(row, new Span<Half>(m.Row(r), cols));
                        break;
                    default:
                        ushort* dst = (ushort*)m.Row(r);
                        for (int c = 0; c < cols; c++)
                        {
                            dst[c] = Kernels.Simd.Vectors.HalfBits.SingleToBFloat16(row[c]);
                        }
                        break;
                }
            }
            return row;
        }, _ => { });
        return m;
    }

    /// <summary>
    /// Keeps N of every complete group of M, the pattern chosen by a hash (decode time does not
    /// depend on which weights are kept; magnitude pruning of real models is in the pruning module).
    /// </summary>
    private static void PruneRow(float[] row, NmPattern p, ulong hash)
    {
        var patterns = p.M == 4 ? s_patterns24 : s_patterns48;
        for (int g = 0; g + p.M <= row.Length; g += p.M)
        {
            hash ^= hash << 13;
            hash ^= hash >> 7;
            hash ^= hash << 17;
            uint keep = patterns[(int)(hash % (ulong)patterns.Length)];
            for (int i = 0; i < p.M; i++)
            {
                if ((keep >> i & 1) == 0)
                {
                    row[g + i] = 0f;
                }
            }
        }
    }

    private static readonly uint[] s_patterns24 = Patterns(4, 2);
    private static readonly uint[] s_patterns48 = Patterns(8, 4);

    private static uint[] Patterns(int m, int n) =>
        Enumerable.Range(0, 1 << m).Where(b => System.Numerics.BitOperations.PopCount((uint)b) == n).Select(b => (uint)b).ToArray();
}
