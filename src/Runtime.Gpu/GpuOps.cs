using Kernels.Simd;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using Kernels.Gpu;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;

namespace Kernels.Runtime.Gpu;

/// <summary>A tensor in accelerator memory.</summary>
public sealed class GpuTensor : DeviceTensor
{
    public GpuTensor(Accelerator a, int length) : base(length) => Buffer = a.Allocate1D<float>(Math.Max(1, length));

    public MemoryBuffer1D<float, Stride1D.Dense> Buffer { get; }

    public ArrayView<float> View => Buffer.View;

    public override void Dispose() => Buffer.Dispose();
}

/// <summary>
/// The ILGPU backend (CUDA, OpenCL, or ILGPU's CPU accelerator): every operation of the forward
/// pass runs as a kernel on device tensors. Weights are uploaded once, on first use, and reused;
/// per step only token ids and positions go up and, for greedy decoding, one token id comes back.
/// KV eviction policies and DIP's masked SwiGLU run here too; SDTP token pruning runs on the host backends.
/// </summary>
public sealed class GpuOps : ITransformerOps
{
    private readonly GpuDevice _device;
    private readonly Dictionary<object, IDisposable> _weights = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<object, GpuMatrix> _embeddings = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<float[], MemoryBuffer1D<float, Stride1D.Dense>> _vectors = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<RopeTable, (MemoryBuffer1D<float, Stride1D.Dense> Cos, MemoryBuffer1D<float, Stride1D.Dense> Sin)> _ropes = new(ReferenceEqualityComparer.Instance);
    private MemoryBuffer1D<int, Stride1D.Dense>? _ints;
    private MemoryBuffer1D<float, Stride1D.Dense>? _scratch, _scores;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _result;
    private readonly MaskedMlpCopies<GpuMaskedMlp> _maskedMlps;

    public GpuOps(GpuDevice device)
    {
        _device = device;
        _result = device.Accelerator.Allocate1D<int>(1);
        _maskedMlps = new MaskedMlpCopies<GpuMaskedMlp>(host => new GpuMaskedMlp(device.Accelerator, host));
    }

    public GpuDevice Device => _device;

    public string Name => $"ilgpu {_device.Description}";

    private Accelerator A => _device.Accelerator;

    private GpuKernels K => _device.Kernels;

    public DeviceTensor Allocate(int length) => new GpuTensor(A, length);

    private static GpuTensor G(DeviceTensor t) => t as GpuTensor ?? throw new ArgumentException("tensor belongs to another backend");

    /// <summary>Bytes of weights uploaded so far.</summary>
    public long WeightBytes => _weights.Values.Concat(_embeddings.Values).Sum(w => w switch
    {
        GpuMatrix m => m.Bytes, GpuSparseMatrix s => s.Bytes, GpuQuantizedMatrix q => q.Bytes, GpuNmQuantizedMatrix nq => nq.Bytes, _ => 0,
    });

    /// <summary>A linear's device copy in the format a kernel reads: N:M (F32/F16 or Q8_0/Q4_0 values), Q8_0/Q4_0 blocks, else dense (BF16 and K-quants widened to F32).</summary>
    private object Upload(WeightMatrix w)
    {
        if (!_weights.TryGetValue(w, out var d))
        {
            d = w switch
            {
                NmSparseMatrix { ValueType: not ElementType.BF16 } s => new GpuSparseMatrix(A, s),
                NmQuantizedMatrix nq => new GpuNmQuantizedMatrix(A, nq),
                QuantizedMatrix q when GpuQuantizedMatrix.Supports(q.Type) => new GpuQuantizedMatrix(A, q),
                _ => _embeddings.Remove(w, out var table) ? table : new GpuMatrix(A, w), // a tied embedding's table serves as is
            };
            _weights[w] = d;
        }
        return d;
    }

    /// <summary>
    /// The token embedding as a dense table (rows are gathered, not multiplied). A tied classifier
    /// stored dense shares the copy; a quantized one keeps its blocks and the table is separate.
    /// </summary>
    private GpuMatrix UploadEmbedding(WeightMatrix w)
    {
        if (_weights.TryGetValue(w, out var shared) && shared is GpuMatrix dense)
        {
            return dense;
        }
        if (!_embeddings.TryGetValue(w, out var d))
        {
            d = new GpuMatrix(A, w);
            _embeddings[w] = d;
        }
        return d;
    }

    private ArrayView<float> Vector(float[] v)
    {
        if (!_vectors.TryGetValue(v, out var b))
        {
            b = A.Allocate1D<float>(v.Length);
            b.CopyFromCPU(v);
            _vectors[v] = b;
        }
        return b.View;
    }

    private ArrayView<int> Ints(ReadOnlySpan<int> values)
    {
        if (_ints is null || _ints.Length < values.Length)
        {
            _ints?.Dispose();
            _ints = A.Allocate1D<int>(Math.Max(256, values.Length));
        }
        var view = _ints.View.SubView(0, values.Length);
        view.CopyFromCPU(ref MemoryMarshal.GetReference(values), values.Length);
        return view;
    }

    private static ArrayView<float> Grow(Accelerator a, ref MemoryBuffer1D<float, Stride1D.Dense>? buffer, long length)
    {
        if (buffer is null || buffer.Length < length)
        {
            buffer?.Dispose();
            buffer = a.Allocate1D<float>(Math.Max(1024, length));
        }
        return buffer.View;
    }

    public void Embed(WeightMatrix embedding, ReadOnlySpan<int> tokens, DeviceTensor x)
    {
        foreach (int t in tokens)
        {
            if ((uint)t >= (uint)embedding.Rows)
            {
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} outside the vocabulary of {embedding.Rows}");
            }
        }
        K.Embed(UploadEmbedding(embedding), Ints(tokens), tokens.Length, G(x).View);
    }

    public void RmsNorm(DeviceTensor x, float[] weight, float epsilon, int n, DeviceTensor y) =>
        K.RmsNorm(G(x).View, Vector(weight), G(y).View, n, weight.Length, epsilon);

    public void MatMul(WeightMatrix w, DeviceTensor x, int n, DeviceTensor y)
    {
        switch (Upload(w))
        {
            case GpuSparseMatrix s:
                K.Sparse(s, G(x).View, G(y).View, n, Grow(A, ref _scratch, (long)w.Columns * n));
                break;
            case GpuMatrix d:
                K.Dense(d, G(x).View, G(y).View, n);
                break;
            case GpuQuantizedMatrix q:
                K.Quantized(q, G(x).View, G(y).View, n);
                break;
            case GpuNmQuantizedMatrix nq:
                K.NmQuantized(nq, G(x).View, G(y).View, n);
                break;
        }
    }

    public void Rope(DeviceTensor x, int n, int heads, RopeTable table, ReadOnlySpan<int> positions)
    {
        int needed = 0;
        foreach (int p in positions)
        {
            if ((uint)p >= (uint)table.Positions)
            {
                throw new ArgumentOutOfRangeException(nameof(positions), $"position {p} is beyond the model's context of {table.Positions}");
            }
            needed = Math.Max(needed, p + 1);
        }
        int half = table.HeadDim / 2;
        if (!_ropes.TryGetValue(table, out var r) || r.Cos.Length < (long)needed * half)
        {
            // The host table grows with the positions reached; the device copy follows it.
            r.Cos?.Dispose();
            r.Sin?.Dispose();
            var (hostCos, hostSin) = table.Rows(needed);
            var cos = A.Allocate1D<float>(hostCos.Length);
            var sin = A.Allocate1D<float>(hostSin.Length);
            cos.CopyFromCPU(hostCos);
            sin.CopyFromCPU(hostSin);
            _ropes[table] = r = (cos, sin);
        }
        K.Rope(G(x).View, r.Cos.View, r.Sin.View, Ints(positions), n, heads, table.HeadDim);
    }

    public void Attention(IKvCache cache, int layer, int cacheLayer, bool appendKv, DeviceTensor q, DeviceTensor k, DeviceTensor v,
        int n, int heads, int kvHeads, ReadOnlySpan<int> positions, DeviceTensor output)
    {
        var c = cache as GpuKvCache ?? throw new ArgumentException("KV cache belongs to another backend");
        if (kvHeads != c.Storage.Shape.KvHeads)
        {
            throw new NotSupportedException("the GPU backend keeps one KV-head count for all layers (head-pruned models run on the host backends)");
        }
        int baseCount = c.LayerCount(cacheLayer);
        if (appendKv)
        {
            if (baseCount + n > c.Storage.Shape.Capacity)
            {
                throw new InvalidOperationException($"KV cache full: layer {cacheLayer} holds {baseCount} of {c.Storage.Shape.Capacity} tokens and {n} more were added");
            }
            K.AppendKv(G(k).View, G(v).View, c.Storage, cacheLayer, baseCount, n);
            c.Appended(cacheLayer, positions);
        }
        else
        {
            baseCount -= n;
        }
        var scores = Grow(A, ref _scores, (long)n * heads * c.Storage.Shape.Capacity);
        K.Attention(G(q).View, c.Storage, cacheLayer, heads, baseCount, n, scores, G(output).View, c.TrackAttention, c.WeightByValueNorm);
    }

    public void SwiGlu(DeviceTensor gate, DeviceTensor up, int count, DeviceTensor h) => K.SwiGlu(G(gate).View, G(up).View, G(h).View, count);

    public void AddInPlace(DeviceTensor x, DeviceTensor delta, int count) => K.Add(G(x).View, G(delta).View, count);

    public void Copy(DeviceTensor source, int sourceOffset, DeviceTensor destination, int destinationOffset, int count) =>
        K.Copy(G(source).View, sourceOffset, G(destination).View, destinationOffset, count);

    public void ZeroHeads(DeviceTensor x, int n, int heads, int headDim, ReadOnlySpan<int> maskedHeads)
    {
        foreach (int h in maskedHeads)
        {
            if ((uint)h >= (uint)heads)
            {
                throw new ArgumentOutOfRangeException(nameof(maskedHeads), $"head {h} of {heads}");
            }
        }
        if (maskedHeads.Length > 0 && n > 0)
        {
            K.ZeroHeads(G(x).View, Ints(maskedHeads), maskedHeads.Length, n, heads, headDim);
        }
    }

    public void Download(DeviceTensor source, int offset, Span<float> destination) =>
        G(source).View.SubView(offset, destination.Length).CopyToCPU(ref MemoryMarshal.GetReference(destination), destination.Length);

    public void Upload(ReadOnlySpan<float> source, DeviceTensor destination, int offset) =>
        G(destination).View.SubView(offset, source.Length).CopyFromCPU(ref MemoryMarshal.GetReference(source), source.Length);

    /// <summary>KV eviction (VATP, H2O, StreamingLLM) through <see cref="GpuKvCache"/> and DIP's masked SwiGLU; not yet SDTP token pruning or Scissorhands' scoring window.</summary>
    public bool Supports(BackendFeature feature) =>
        (feature & ~(BackendFeature.KvMemory | BackendFeature.DynamicInputPruning)) == BackendFeature.None;

    public void AddBias(DeviceTensor x, float[]? bias, int n)
    {
        if (bias is not null && n > 0)
        {
            K.AddBias(G(x).View, Vector(bias), bias.Length, n);
        }
    }

    public void PrepareMaskedMlp(LlamaLayer layer) => _maskedMlps.Get(layer);

    /// <summary>One thread per intermediate feature sums the selected rows of gateᵀ and upᵀ; the indices go up with the call.</summary>
    public void MaskedGateUp(LlamaLayer layer, DeviceTensor x, int offset, ReadOnlySpan<int> inputs, DeviceTensor h)
    {
        var mlp = _maskedMlps.Get(layer);
        K.MaskedGateUp(mlp.GateT, mlp.UpT, G(x).View.SubView(offset, mlp.GateT.Rows), Ints(inputs), inputs.Length, G(h).View);
    }

    public void MaskedDown(LlamaLayer layer, DeviceTensor h, ReadOnlySpan<int> columns, DeviceTensor y, int offset)
    {
        var mlp = _maskedMlps.Get(layer);
        K.MaskedDown(mlp.DownT, G(h).View, Ints(columns), columns.Length, G(y).View.SubView(offset, mlp.DownT.Columns));
    }

    /// <summary>Downloads and scans on the host: one small copy per layer (n·dim floats).</summary>
    public bool AllFinite(DeviceTensor x, int offset, int count)
    {
        var host = new float[count];
        G(x).View.SubView(offset, count).CopyToCPU(host);
        return FiniteCheck.AllFinite(host);
    }

    public int ArgMax(DeviceTensor source, int offset, int count)
    {
        K.ArgMax(G(source).View, offset, count, _result.View);
        int[] r = _result.GetAsArray1D();
        return r[0];
    }

    public void Synchronize() => A.Synchronize();

    public IKvCache CreateKvCache(LlamaModel model, int capacity)
    {
        int kvHeads = model.Layers.Count == 0 ? model.Config.KvHeads : model.Layers.Max(l => l.KvHeads);
        return new GpuKvCache(new GpuKvStorage(A, Math.Max(1, model.Layers.Count), kvHeads, capacity, model.Config.HeadDim), model.Layers.Count, K);
    }

    public void Dispose()
    {
        foreach (var w in _weights.Values.Concat<IDisposable>(_embeddings.Values))
        {
            w.Dispose();
        }
        foreach (var v in _vectors.Values)
        {
            v.Dispose();
        }
        foreach (var (c, s) in _ropes.Values)
        {
            c.Dispose();
            s.Dispose();
        }
        _maskedMlps.Dispose();
        _ints?.Dispose();
        _scratch?.Dispose();
        _scores?.Dispose();
        _result.Dispose();
    }
}

/// <summary>
/// Device KV cache: keys, values, ‖v‖₁ and received attention in device memory
/// [layer, KV head, slot, headDim]; counts and token positions mirrored on the host. It implements
/// the cache operations eviction needs (<see cref="IKvMemory"/>) by reading a head's slots to the
/// host, compacting them exactly as the host cache does (last live slot into each hole) and writing
/// them back: correct, but a copy per evicted head. The attention kernel keeps one count per layer,
/// so every KV head of a layer must hold the same number of tokens when a pass runs (the policies
/// evict every head to the same target).
/// </summary>
public sealed class GpuKvCache : IKvMemory
{
    private readonly int[][] _counts;     // [layer][head]
    private readonly int[][][] _positions; // [layer][head][slot]
    private readonly GpuKernels _kernels;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _moves;
    private readonly int[] _hostMoves;

    public GpuKvCache(GpuKvStorage storage, int layers, GpuKernels kernels)
    {
        Storage = storage;
        _kernels = kernels;
        // At most capacity / 2 moves per compaction (each fills a hole below the live count from a kept slot above it).
        _hostMoves = new int[2 * Math.Max(1, storage.Shape.Capacity / 2)];
        _moves = storage.Keys.Accelerator.Allocate1D<int>(_hostMoves.Length);
        int n = Math.Max(1, layers), heads = storage.Shape.KvHeads;
        _counts = Enumerable.Range(0, n).Select(_ => new int[heads]).ToArray();
        _positions = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, heads).Select(_ => new int[storage.Shape.Capacity]).ToArray()).ToArray();
    }

    public GpuKvStorage Storage { get; }

    public int Layers => _counts.Length;

    public int HeadDim => Storage.Shape.HeadDim;

    public int KvHeads(int layer) => Storage.Shape.KvHeads;

    /// <summary>None, attention or attention × ‖v‖₁: the device kernel has no other norm (<see cref="BackendFeature.KvScoreVariants"/>).</summary>
    public KvScoring Scoring
    {
        get => _scoring;
        set => _scoring = value is KvScoring.None or KvScoring.Attention or KvScoring.AttentionTimesValueNorm
            ? value
            : throw new NotSupportedException($"the GPU attention kernel scores with attention or attention x L1 value norm, not {value}");
    }

    private KvScoring _scoring;

    /// <summary>The device kernel sums the group's query heads into one score per slot.</summary>
    public bool ScorePerQueryHead
    {
        get => false;
        set
        {
            if (value)
            {
                throw new NotSupportedException("the GPU attention kernel keeps one score per KV slot (no per-query-head scores)");
            }
        }
    }

    /// <summary>Accumulate received attention per slot (VATP/H2O statistics) on the device.</summary>
    public bool TrackAttention => Scoring != KvScoring.None;

    /// <summary>Weight the accumulation by ‖v‖₁ (VATP).</summary>
    public bool WeightByValueNorm => Scoring == KvScoring.AttentionTimesValueNorm;

    /// <summary>The device kernel scores every query: a window needs <see cref="BackendFeature.KvScoreWindow"/>, which this backend lacks.</summary>
    public int ScoreFromPosition
    {
        get => 0;
        set
        {
            if (value != 0)
            {
                throw new NotSupportedException("the GPU attention kernel scores every query (no Scissorhands window)");
            }
        }
    }

    /// <summary>Storage is allocated once at capacity on the device.</summary>
    public int GrowthCap { get; set; } = int.MaxValue;

    public int Count(int layer, int kvHead) => _counts[layer][kvHead];

    /// <summary>The tokens every KV head of <paramref name="layer"/> holds (the attention kernel's count).</summary>
    public int LayerCount(int layer)
    {
        int c = _counts[layer][0];
        if (_counts[layer].Any(x => x != c))
        {
            throw new InvalidOperationException($"layer {layer}: the KV heads hold different token counts ({string.Join(", ", _counts[layer])}); the GPU kernel needs them equal");
        }
        return c;
    }

    /// <summary>Records tokens appended to every KV head of <paramref name="layer"/> at <paramref name="positions"/>.</summary>
    public void Appended(int layer, ReadOnlySpan<int> positions)
    {
        for (int g = 0; g < _counts[layer].Length; g++)
        {
            positions.CopyTo(_positions[layer][g].AsSpan(_counts[layer][g]));
            _counts[layer][g] += positions.Length;
        }
    }

    public long BytesHeld => Storage.Bytes;

    public long BytesUsed => _counts.Sum(l => l.Sum(c => (long)c)) * 2L * HeadDim * sizeof(float);

    public long StatisticsBytes => (Storage.Norms.Length + Storage.Received.Length) * sizeof(float) + _positions.Sum(l => l.Sum(h => (long)h.Length)) * sizeof(int);

    public ReadOnlySpan<int> Positions(int layer, int kvHead) => _positions[layer][kvHead].AsSpan(0, _counts[layer][kvHead]);

    public ReadOnlySpan<float> Scores(int layer, int kvHead) =>
        Scoring == KvScoring.None ? ReadOnlySpan<float>.Empty : Read(Storage.Received, Slot(layer, kvHead, 0), _counts[layer][kvHead]);

    public void WriteScores(int layer, int kvHead, ReadOnlySpan<float> scores) => Write(Storage.Received, Slot(layer, kvHead, 0), scores);

    public ReadOnlySpan<float> Keys(int layer, int kvHead) => Read(Storage.Keys, Slot(layer, kvHead, 0) * HeadDim, _counts[layer][kvHead] * HeadDim);

    public ReadOnlySpan<float> Values(int layer, int kvHead) => Read(Storage.Values, Slot(layer, kvHead, 0) * HeadDim, _counts[layer][kvHead] * HeadDim);

    public void WriteKey(int layer, int kvHead, int slot, ReadOnlySpan<float> key)
    {
        if ((uint)slot >= (uint)_counts[layer][kvHead] || key.Length != HeadDim)
        {
            throw new ArgumentOutOfRangeException(nameof(slot), $"slot {slot} of {_counts[layer][kvHead]} live slots, key of {key.Length} floats (head dim {HeadDim})");
        }
        Write(Storage.Keys, Slot(layer, kvHead, slot) * HeadDim, key);
    }

    /// <summary>
    /// Removes the slots not kept, moving the last kept slot into each hole (the host cache's order,
    /// so both backends attend in the same slot order). The moves are planned on the host (positions
    /// live there) and applied on the device by one kernel: no K/V data crosses the bus.
    /// </summary>
    public void Keep(int layer, int kvHead, ReadOnlySpan<bool> keep)
    {
        int n = _counts[layer][kvHead];
        var planner = new MovePlanner(_positions[layer][kvHead], _hostMoves);
        int count = SlotCompaction.Apply(keep[..n], ref planner);
        long first = Slot(layer, kvHead, 0);
        if (planner.Count > 0)
        {
            var moves = _moves.View.SubView(0, 2 * planner.Count);
            moves.CopyFromCPU(ref _hostMoves[0], moves.Length);
            _kernels.MoveSlots(Storage, first, moves, planner.Count);
        }
        if (count < n)
        {
            // Slots past the live count start from zero when reused (after the moves read them: same stream).
            Storage.Received.View.SubView(first + count, n - count).MemSetToZero();
        }
        _counts[layer][kvHead] = count;
    }

    /// <summary>Moves positions on the host and records each (from, to) pair for the device kernel.</summary>
    private struct MovePlanner(int[] positions, int[] moves) : SlotCompaction.IMover
    {
        public int Count;

        public void Move(int from, int to)
        {
            positions[to] = positions[from];
            moves[2 * Count] = from;
            moves[2 * Count + 1] = to;
            Count++;
        }
    }

    /// <summary>Device storage has a fixed size: nothing to give back.</summary>
    public void Trim(int layer, int kvHead, int slots)
    {
    }

    public void Reset()
    {
        foreach (var layer in _counts)
        {
            Array.Clear(layer);
        }
        Storage.Received.MemSetToZero();
    }

    public void Dispose()
    {
        _moves.Dispose();
        Storage.Dispose();
    }

    private long Slot(int layer, int kvHead, int slot) => ((long)layer * Storage.Shape.KvHeads + kvHead) * Storage.Shape.Capacity + slot;

    // Copies wait for the kernels queued before them and finish before returning: the host reads
    // what the last pass wrote, and the next pass reads what eviction wrote.
    private static float[] Read(MemoryBuffer1D<float, Stride1D.Dense> buffer, long offset, int count)
    {
        var host = new float[count];
        if (count > 0)
        {
            buffer.Accelerator.Synchronize();
            buffer.View.SubView(offset, count).CopyToCPU(host);
        }
        return host;
    }

    private static void Write(MemoryBuffer1D<float, Stride1D.Dense> buffer, long offset, ReadOnlySpan<float> data)
    {
        if (data.Length > 0)
        {
            buffer.Accelerator.Synchronize();
            buffer.View.SubView(offset, data.Length).CopyFromCPU(ref MemoryMarshal.GetReference(data), data.Length);
            buffer.Accelerator.Synchronize();
        }
    }
}
