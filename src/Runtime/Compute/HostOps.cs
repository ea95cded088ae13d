using Kernels.Runtime.Model;
using Kernels.Simd;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;
using Kernels.Simd.Threading;

namespace Kernels.Runtime.Compute;

/// <summary>A tensor in host memory (64-byte aligned).</summary>
public sealed unsafe class HostTensor : DeviceTensor
{
    private readonly NativeBuffer _buffer;

    public HostTensor(int length) : base(length) => _buffer = NativeBuffer.Of<float>(length);

    public float* Pointer => (float*)_buffer.Pointer;

    public Span<float> Span => new(_buffer.Pointer, Length);

    public Span<float> Slice(int offset, int count) => Span.Slice(offset, count);

    public override void Dispose() => _buffer.Dispose();
}

/// <summary>
/// The CPU backend on the SIMD kernels of Kernels.Simd (AVX-512/AVX2/128-bit as dispatched),
/// multithreaded on the shared worker pool.
/// </summary>
public unsafe class HostOps : ITransformerOps
{
    private readonly MaskedMlpCopies<ColumnMajorMlp> _maskedMlps = new(copy => copy);

    public virtual string Name => $"cpu-simd {SimdInfo.Tier}, {WorkerPool.Shared.ThreadCount} threads";

    public DeviceTensor Allocate(int length) => new HostTensor(length);

    protected static HostTensor H(DeviceTensor t) => t as HostTensor ?? throw new ArgumentException("tensor belongs to another backend");

    public virtual void Embed(WeightMatrix embedding, ReadOnlySpan<int> tokens, DeviceTensor x)
    {
        int dim = embedding.Columns;
        var xs = H(x).Span;
        for (int t = 0; t < tokens.Length; t++)
        {
            if ((uint)tokens[t] >= (uint)embedding.Rows)
            {
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {tokens[t]} outside the vocabulary of {embedding.Rows}");
            }
            embedding.CopyRow(tokens[t], xs.Slice(t * dim, dim));
        }
    }

    public virtual void RmsNorm(DeviceTensor x, float[] weight, float epsilon, int n, DeviceTensor y) =>
        Kernels.Simd.RmsNorm.Apply(H(x).Slice(0, n * weight.Length), weight, H(y).Span, epsilon);

    public virtual void MatMul(WeightMatrix w, DeviceTensor x, int n, DeviceTensor y) =>
        w.Multiply(H(x).Slice(0, n * w.Columns), H(y).Slice(0, n * w.Rows), n);

    /// <summary>A decode step's dense or quantized projections of one input run as one GEMV (one fork/join, x permuted or quantized once); anything else one by one.</summary>
    public virtual void MatMul(ReadOnlySpan<WeightMatrix> ws, DeviceTensor x, int n, ReadOnlySpan<DeviceTensor> ys)
    {
        if (ws.Length != ys.Length)
        {
            throw new ArgumentException($"{ws.Length} matrices but {ys.Length} outputs", nameof(ys));
        }
        if (n == 1 && ws.Length is > 1 and <= DenseGemv.MaxShared && SameDenseFormat(ws))
        {
            var matrices = new SharedInputMatrices();
            Shared(ws, H(x), ys, ((Span<DenseMatrix>)matrices)[..ws.Length], &DenseGemv.MultiplyMany);
            return;
        }
        if (n == 1 && ws.Length is > 1 and <= QuantizedMatMul.MaxShared && SameColumnsQuantized(ws))
        {
            var matrices = new SharedInputQuantized();
            Shared(ws, H(x), ys, ((Span<QuantizedMatrix>)matrices)[..ws.Length], &QuantizedMatMul.MultiplyMany);
            return;
        }
        for (int i = 0; i < ws.Length; i++)
        {
            MatMul(ws[i], x, n, ys[i]);
        }
    }

    /// <summary>One GEMV region for matrices that share x (Q/K/V, gate/up).</summary>
    private static void Shared<TMatrix>(ReadOnlySpan<WeightMatrix> ws, HostTensor x, ReadOnlySpan<DeviceTensor> ys, Span<TMatrix> typed,
        delegate*<ReadOnlySpan<TMatrix>, float*, ReadOnlySpan<nint>, void> multiply) where TMatrix : WeightMatrix
    {
        Span<nint> outputs = stackalloc nint[ws.Length];
        for (int i = 0; i < ws.Length; i++)
        {
            typed[i] = (TMatrix)ws[i];
            var y = H(ys[i]);
            if (y.Length < ws[i].Rows)
            {
                throw new ArgumentException($"{ws[i].Name}: output holds {y.Length} floats, needs {ws[i].Rows}", nameof(ys));
            }
            outputs[i] = (nint)y.Pointer;
        }
        fixed (float* px = x.Slice(0, ws[0].Columns))
        {
            multiply(typed, px, outputs);
        }
    }

    [System.Runtime.CompilerServices.InlineArray(QuantizedMatMul.MaxShared)]
    private struct SharedInputQuantized
    {
        private QuantizedMatrix _first;
    }

    private static bool SameColumnsQuantized(ReadOnlySpan<WeightMatrix> ws)
    {
        foreach (var w in ws)
        {
            if (w is not QuantizedMatrix || w.Columns != ws[0].Columns)
            {
                return false;
            }
        }
        return true;
    }

    [System.Runtime.CompilerServices.InlineArray(DenseGemv.MaxShared)]
    private struct SharedInputMatrices
    {
        private DenseMatrix _first;
    }

    private static bool SameDenseFormat(ReadOnlySpan<WeightMatrix> ws)
    {
        if (ws[0] is not DenseMatrix first)
        {
            return false;
        }
        foreach (var w in ws)
        {
            if (w is not DenseMatrix d || d.ElementType != first.ElementType || d.Columns != first.Columns)
            {
                return false;
            }
        }
        return true;
    }

    public void Rope(DeviceTensor x, int n, int heads, RopeTable table, ReadOnlySpan<int> positions)
    {
        int width = heads * table.HeadDim;
        var xs = H(x).Span;
        for (int t = 0; t < n; t++)
        {
            Kernels.Simd.Rope.ApplyInterleaved(xs.Slice(t * width, width), table.HeadDim, table.Cos(positions[t]), table.Sin(positions[t]));
        }
    }

    public void Attention(IKvCache cache, int layer, int cacheLayer, bool appendKv, DeviceTensor q, DeviceTensor k, DeviceTensor v,
        int n, int heads, int kvHeads, ReadOnlySpan<int> positions, DeviceTensor output)
    {
        var kv = cache as HostKvCache ?? throw new ArgumentException("KV cache belongs to another backend");
        int d = kv.HeadDim;
        int kvWidth = kvHeads * d;
        var baseCounts = new int[kvHeads];
        for (int g = 0; g < kvHeads; g++)
        {
            if (appendKv)
            {
                kv.Reserve(cacheLayer, g, n);
                var h = kv.Get(cacheLayer, g);
                baseCounts[g] = h.Count;
                var ks = H(k).Span;
                var vs = H(v).Span;
                for (int t = 0; t < n; t++)
                {
                    int slot = h.Count + t;
                    ks.Slice(t * kvWidth + g * d, d).CopyTo(h.Keys.AsSpan(slot * d, d));
                    var vrow = vs.Slice(t * kvWidth + g * d, d);
                    vrow.CopyTo(h.Values.AsSpan(slot * d, d));
                    h.Positions[slot] = positions[t];
                    if (kv.TrackAttention)
                    {
                        h.Received.AsSpan(slot * h.ScoreRows, h.ScoreRows).Clear();
                        h.ValueNorms[slot] = kv.ValueNorm(vrow);
                    }
                }
                h.Count += n;
            }
            else
            {
                // Shared cache: the source layer appended this batch already.
                baseCounts[g] = kv.Get(cacheLayer, g).Count - n;
            }
        }
        if (n > 1 && !kv.TrackAttention && BatchedAttention && Kernels.Simd.CausalAttention.Supports(d))
        {
            var batched = new BatchedAttentionJob
            {
                Cache = kv, Layer = cacheLayer, Q = H(q).Pointer, Out = H(output).Pointer, N = n, Heads = heads, KvHeads = kvHeads,
                HeadDim = d, First = baseCounts,
            };
            int blocks = (n + Kernels.Simd.CausalAttention.BlockTokens - 1) / Kernels.Simd.CausalAttention.BlockTokens;
            WorkerPool.Shared.For(kvHeads * blocks, 1, ref batched);
            return;
        }
        fixed (int* bc = baseCounts)
        {
            var job = new AttentionJob
            {
                Cache = kv, Layer = cacheLayer, Q = H(q).Pointer, Out = H(output).Pointer, N = n, Heads = heads, KvHeads = kvHeads,
                HeadDim = d, BaseCounts = bc, Track = kv.TrackAttention, Self = this,
                Weighted = kv.WeightByValueNorm, TrackFrom = kv.ScoreFromPosition, FirstPosition = positions[0],
            };
            // With tracking, one item per KV head owns its accumulators (no races); otherwise (token, kv head) items.
            int items = kv.TrackAttention ? kvHeads : n * kvHeads;
            if ((long)n * heads * (baseCounts[0] + n) * d < 32 * 1024)
            {
                job.Execute(0, items);
            }
            else
            {
                WorkerPool.Shared.For(items, 1, ref job);
            }
        }
    }

    /// <summary>Whether batches (prefill) may use the blocked causal-attention kernel; the reference backend keeps the per-query definition.</summary>
    protected virtual bool BatchedAttention => true;

    /// <summary>Batches without attention statistics: items are (KV head, block of tokens), each two small matrix products.</summary>
    private struct BatchedAttentionJob : IRangeJob
    {
        public HostKvCache Cache;
        public int Layer, N, Heads, KvHeads, HeadDim;
        public float* Q;
        public float* Out;
        public int[] First;

        public readonly void Execute(int begin, int end)
        {
            int group = Heads / KvHeads;
            long stride = (long)Heads * HeadDim;
            int block = Kernels.Simd.CausalAttention.BlockTokens;
            int blocks = (N + block - 1) / block;
            for (int item = begin; item < end; item++)
            {
                // Last token blocks first: they attend to the most keys, so the cheap ones fill in at the end.
                int g = item % KvHeads, t0 = (blocks - 1 - item / KvHeads) * block;
                var head = Cache.Get(Layer, g);
                fixed (float* keys = head.Keys)
                fixed (float* values = head.Values)
                {
                    Kernels.Simd.CausalAttention.Attend(Q + (long)g * group * HeadDim, stride, group, HeadDim, keys, values, First[g],
                        t0, Math.Min(N, t0 + block), Out + (long)g * group * HeadDim);
                }
            }
        }
    }

    /// <summary>One query head against one KV head's first <paramref name="count"/> slots.</summary>
    protected virtual void AttendHead(float* q, HostKvCache.Head head, int count, int headDim, float* scores, float* output, float* received, float* valueNorms)
    {
        fixed (float* keys = head.Keys)
        fixed (float* values = head.Values)
        {
            Kernels.Simd.Attention.Attend(q, keys, values, count, headDim, scores, output, received, valueNorms);
        }
    }

    private struct AttentionJob : IRangeJob
    {
        public HostKvCache Cache;
        public HostOps Self;
        public int Layer, N, Heads, KvHeads, HeadDim;
        public float* Q;
        public float* Out;
        public int* BaseCounts;
        public bool Track, Weighted;
        public int TrackFrom, FirstPosition;

        [ThreadStatic] private static float[]? t_scores;

        public readonly void Execute(int begin, int end)
        {
            int group = Heads / KvHeads;
            int qWidth = Heads * HeadDim;
            for (int item = begin; item < end; item++)
            {
                int g = Track ? item : item % KvHeads;
                int t0 = Track ? 0 : item / KvHeads;
                int t1 = Track ? N : t0 + 1;
                var head = Cache.Get(Layer, g);
                int need = BaseCounts[g] + N;
                if (t_scores is null || t_scores.Length < need)
                {
                    t_scores = new float[Math.Max(need, 256)];
                }
                fixed (float* scores = t_scores)
                fixed (float* received = Track ? head.Received : null)
                fixed (float* norms = Track && Weighted ? head.ValueNorms : null)
                {
                    for (int t = t0; t < t1; t++)
                    {
                        int count = BaseCounts[g] + t + 1;
                        // Statistics only from queries at or after TrackFrom (Scissorhands' window).
                        float* recv = FirstPosition + t >= TrackFrom ? received : null;
                        for (int j = 0; j < group; j++)
                        {
                            int h = g * group + j;
                            float* q = Q + (long)t * qWidth + h * HeadDim, o = Out + (long)t * qWidth + h * HeadDim;
                            if (head.ScoreRows == 1)
                            {
                                Self.AttendHead(q, head, count, HeadDim, scores, o, recv, norms);
                                continue;
                            }
                            // One score per query head: the probabilities left in scores go to row j of each slot.
                            Self.AttendHead(q, head, count, HeadDim, scores, o, null, null);
                            if (recv != null)
                            {
                                for (int s = 0; s < count; s++)
                                {
                                    recv[s * group + j] += norms == null ? scores[s] : scores[s] * norms[s];
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    public virtual void SwiGlu(DeviceTensor gate, DeviceTensor up, int count, DeviceTensor h) =>
        Kernels.Simd.SwiGlu.Apply(H(gate).Pointer, H(up).Pointer, H(h).Pointer, count);

    public void AddBias(DeviceTensor x, float[]? bias, int n)
    {
        if (bias is null)
        {
            return;
        }
        var xs = H(x).Span;
        for (int t = 0; t < n; t++)
        {
            var row = xs.Slice(t * bias.Length, bias.Length);
            VectorMath.Add(row, bias, row);
        }
    }

    public void PrepareMaskedMlp(LlamaLayer layer) => _maskedMlps.Get(layer);

    public void MaskedGateUp(LlamaLayer layer, DeviceTensor x, int offset, ReadOnlySpan<int> inputs, DeviceTensor h)
    {
        var mlp = _maskedMlps.Get(layer);
        MaskedSwiGlu.GateUp(mlp, H(x).Slice(offset, mlp.Dim), inputs, H(h).Slice(0, mlp.Hidden));
    }

    public void MaskedDown(LlamaLayer layer, DeviceTensor h, ReadOnlySpan<int> columns, DeviceTensor y, int offset)
    {
        var mlp = _maskedMlps.Get(layer);
        MaskedSwiGlu.Down(mlp, H(h).Slice(0, mlp.Hidden), columns, H(y).Slice(offset, mlp.Dim));
    }

    public void ZeroHeads(DeviceTensor x, int n, int heads, int headDim, ReadOnlySpan<int> maskedHeads)
    {
        var xs = H(x).Span;
        for (int t = 0; t < n; t++)
        {
            foreach (int h in maskedHeads)
            {
                xs.Slice((t * heads + h) * headDim, headDim).Clear();
            }
        }
    }

    public void AddInPlace(DeviceTensor x, DeviceTensor delta, int count) =>
        VectorMath.Add(H(x).Pointer, H(delta).Pointer, H(x).Pointer, count);

    public void Copy(DeviceTensor source, int sourceOffset, DeviceTensor destination, int destinationOffset, int count) =>
        H(source).Slice(sourceOffset, count).CopyTo(H(destination).Slice(destinationOffset, count));

    public void Download(DeviceTensor source, int offset, Span<float> destination) =>
        H(source).Slice(offset, destination.Length).CopyTo(destination);

    public void Upload(ReadOnlySpan<float> source, DeviceTensor destination, int offset) =>
        source.CopyTo(H(destination).Slice(offset, source.Length));

    /// <summary>The host backends run every feature.</summary>
    public bool Supports(BackendFeature feature) => true;

    public bool AllFinite(DeviceTensor x, int offset, int count) => FiniteCheck.AllFinite(H(x).Slice(offset, count));

    public int ArgMax(DeviceTensor source, int offset, int count) => VectorMath.ArgMax(H(source).Slice(offset, count));

    public IKvCache CreateKvCache(LlamaModel model, int capacity) => new HostKvCache(model, capacity);

    public virtual void Dispose()
    {
        _maskedMlps.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// The reference backend: the same host memory and cache, every kernel the plain scalar
/// definition from <see cref="Kernels.Simd.Reference.ScalarReference"/> (llama2.c's order of
/// operations). Slow; for tests and for checking the SIMD backend.
/// </summary>
public sealed unsafe class ReferenceOps : HostOps
{
    public override string Name => "reference (scalar)";

    protected override bool BatchedAttention => false;

    public override void RmsNorm(DeviceTensor x, float[] weight, float epsilon, int n, DeviceTensor y) =>
        Kernels.Simd.Reference.ScalarReference.RmsNorm(H(x).Slice(0, n * weight.Length), weight, H(y).Span, epsilon);

    public override void MatMul(WeightMatrix w, DeviceTensor x, int n, DeviceTensor y) =>
        Kernels.Simd.Reference.ScalarReference.MatMul(w, H(x).Slice(0, n * w.Columns), H(y).Slice(0, n * w.Rows), n);

    public override void MatMul(ReadOnlySpan<WeightMatrix> ws, DeviceTensor x, int n, ReadOnlySpan<DeviceTensor> ys)
    {
        if (ws.Length != ys.Length)
        {
            throw new ArgumentException($"{ws.Length} matrices but {ys.Length} outputs", nameof(ys));
        }
        for (int i = 0; i < ws.Length; i++)
        {
            MatMul(ws[i], x, n, ys[i]);
        }
    }

    protected override void AttendHead(float* q, HostKvCache.Head head, int count, int headDim, float* scores, float* output, float* received, float* valueNorms) =>
        Kernels.Simd.Reference.ScalarReference.Attend(new ReadOnlySpan<float>(q, headDim), head.Keys, head.Values, count, headDim,
            new Span<float>(scores, count), new Span<float>(output, headDim), received == null ? default : new Span<float>(received, count),
            valueNorms == null ? default : new ReadOnlySpan<float>(valueNorms, count));

    public override void SwiGlu(DeviceTensor gate, DeviceTensor up, int count, DeviceTensor h) =>
        Kernels.Simd.Reference.ScalarReference.SwiGlu(H(gate).Slice(0, count), H(up).Slice(0, count), H(h).Span);
}
