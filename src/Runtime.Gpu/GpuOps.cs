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
/// KV eviction policies and dynamic input pruning run on the host backends (documented).
/// </summary>
public sealed class GpuOps : ITransformerOps
{
    private readonly GpuDevice _device;
    private readonly Dictionary<object, IDisposable> _weights = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<float[], MemoryBuffer1D<float, Stride1D.Dense>> _vectors = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<RopeTable, (MemoryBuffer1D<float, Stride1D.Dense> Cos, MemoryBuffer1D<float, Stride1D.Dense> Sin)> _ropes = new(ReferenceEqualityComparer.Instance);
    private MemoryBuffer1D<int, Stride1D.Dense>? _ints;
    private MemoryBuffer1D<float, Stride1D.Dense>? _scratch, _scores;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _result;

    public GpuOps(GpuDevice device)
    {
        _device = device;
        _result = device.Accelerator.Allocate1D<int>(1);
    }

    public GpuDevice Device => _device;

    public string Name => $"ilgpu {_device.Description}";

    private Accelerator A => _device.Accelerator;

    private GpuKernels K => _device.Kernels;

    public DeviceTensor Allocate(int length) => new GpuTensor(A, length);

    private static GpuTensor G(DeviceTensor t) => t as GpuTensor ?? throw new ArgumentException("tensor belongs to another backend");

    /// <summary>Bytes of weights uploaded so far.</summary>
    public long WeightBytes => _weights.Values.Sum(w => w switch { GpuMatrix m => m.Bytes, GpuSparseMatrix s => s.Bytes, _ => 0 });

    private object Upload(WeightMatrix w)
    {
        if (!_weights.TryGetValue(w, out var d))
        {
            d = w is NmSparseMatrix { ValueType: not ElementType.BF16 } s ? new GpuSparseMatrix(A, s) : new GpuMatrix(A, w);
            _weights[w] = d;
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
        K.Embed((GpuMatrix)Upload(embedding), Ints(tokens), tokens.Length, G(x).View);
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
        int baseCount = c.Counts[cacheLayer];
        if (appendKv)
        {
            if (baseCount + n > c.Storage.Shape.Capacity)
            {
                throw new InvalidOperationException($"KV cache full: layer {cacheLayer} holds {baseCount} of {c.Storage.Shape.Capacity} tokens and {n} more were added");
            }
            K.AppendKv(G(k).View, G(v).View, c.Storage, cacheLayer, baseCount, n);
            c.Counts[cacheLayer] += n;
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

    public void Download(DeviceTensor source, int offset, Span<float> destination) =>
        G(source).View.SubView(offset, destination.Length).CopyToCPU(ref MemoryMarshal.GetReference(destination), destination.Length);

    public void Upload(ReadOnlySpan<float> source, DeviceTensor destination, int offset) =>
        G(destination).View.SubView(offset, source.Length).CopyFromCPU(ref MemoryMarshal.GetReference(source), source.Length);

    /// <summary>The dense forward pass with the full cache: no eviction, DIP or token pruning yet.</summary>
    public bool Supports(BackendFeature feature) => feature == BackendFeature.None;

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
        return new GpuKvCache(new GpuKvStorage(A, Math.Max(1, model.Layers.Count), kvHeads, capacity, model.Config.HeadDim), model.Layers.Count);
    }

    public void Dispose()
    {
        foreach (var w in _weights.Values)
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
        _ints?.Dispose();
        _scratch?.Dispose();
        _scores?.Dispose();
        _result.Dispose();
    }
}

/// <summary>Device KV cache with host-side counts (every KV head of a layer holds the same tokens on the GPU).</summary>
public sealed class GpuKvCache : IKvCache
{
    public GpuKvCache(GpuKvStorage storage, int layers)
    {
        Storage = storage;
        Counts = new int[Math.Max(1, layers)];
    }

    public GpuKvStorage Storage { get; }

    public int[] Counts { get; }

    /// <summary>Accumulate received attention per slot (VATP/H2O statistics) on the device.</summary>
    public bool TrackAttention { get; set; }

    /// <summary>Weight the accumulation by ‖v‖₁ (VATP).</summary>
    public bool WeightByValueNorm { get; set; }

    public int Count(int layer, int kvHead) => Counts[layer];

    public long BytesHeld => Storage.Bytes;

    public long BytesUsed => Counts.Sum(c => (long)c) * Storage.Shape.KvHeads * 2L * Storage.Shape.HeadDim * sizeof(float);

    public void Reset()
    {
        Array.Clear(Counts);
        Storage.Received.MemSetToZero();
    }

    public void Dispose() => Storage.Dispose();
}
