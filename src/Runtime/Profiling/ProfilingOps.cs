using System.Diagnostics;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;
using Kernels.Simd.Threading;

namespace Kernels.Runtime.Profiling;

/// <summary>
/// A backend decorator that times every operation of the forward pass and charges it to a
/// <see cref="ProfilePart"/> of the profiler's open step (the Llm.cs <c>TimeLlm</c> pattern).
/// Matmuls are classed by which of the model's matrices they read. After each operation the
/// inner backend is synchronized, so asynchronous (GPU) backends are timed per operation too,
/// at the cost of the overlap they would otherwise get.
/// </summary>
public sealed class ProfilingOps : ITransformerOps
{
    private readonly ForwardProfiler _profiler;
    private readonly LlamaModel _model;
    private Dictionary<WeightMatrix, ProfilePart> _classes = new(ReferenceEqualityComparer.Instance);

    public ProfilingOps(ITransformerOps inner, LlamaModel model, ForwardProfiler profiler)
    {
        Inner = inner;
        _model = model;
        _profiler = profiler;
    }

    /// <summary>The backend doing the work.</summary>
    public ITransformerOps Inner { get; }

    public string Name => Inner.Name + " (profiled)";

    private readonly struct Timer
    {
        private readonly long _start, _handOff;

        private Timer(long start, long handOff)
        {
            _start = start;
            _handOff = handOff;
        }

        public static Timer Start() => new(Stopwatch.GetTimestamp(), WorkerPool.Shared.HandOffTicks);

        public void Stop(ProfilingOps owner, ProfilePart part, long bytes = 0)
        {
            owner.Inner.Synchronize();
            owner._profiler.Charge(part, Stopwatch.GetTimestamp() - _start, WorkerPool.Shared.HandOffTicks - _handOff, bytes);
        }
    }

    private ProfilePart ClassOf(WeightMatrix w)
    {
        if (_classes.TryGetValue(w, out var part))
        {
            return part;
        }
        // Matrices are replaced by compression, pruning or KV sharing: rebuild the map on a miss.
        var map = new Dictionary<WeightMatrix, ProfilePart>(ReferenceEqualityComparer.Instance) { [_model.Classifier] = ProfilePart.LmHead };
        foreach (var l in _model.Layers)
        {
            map[l.Query] = map[l.Key] = map[l.Value] = ProfilePart.Qkv;
            map[l.Output] = ProfilePart.OutputProjection;
            map[l.Gate] = map[l.Up] = ProfilePart.GateUp;
            map[l.Down] = ProfilePart.Down;
        }
        _classes = map;
        return map.TryGetValue(w, out part) ? part : ProfilePart.Other;
    }

    public DeviceTensor Allocate(int length) => Inner.Allocate(length);

    public void Embed(WeightMatrix embedding, ReadOnlySpan<int> tokens, DeviceTensor x)
    {
        var t = Timer.Start();
        Inner.Embed(embedding, tokens, x);
        t.Stop(this, ProfilePart.Other);
    }

    public void RmsNorm(DeviceTensor x, float[] weight, float epsilon, int n, DeviceTensor y)
    {
        var t = Timer.Start();
        Inner.RmsNorm(x, weight, epsilon, n, y);
        t.Stop(this, ProfilePart.NormsRope);
    }

    public void MatMul(WeightMatrix w, DeviceTensor x, int n, DeviceTensor y)
    {
        var t = Timer.Start();
        Inner.MatMul(w, x, n, y);
        t.Stop(this, ClassOf(w), w.ByteSize);
    }

    public void MatMul(ReadOnlySpan<WeightMatrix> ws, DeviceTensor x, int n, ReadOnlySpan<DeviceTensor> ys)
    {
        var t = Timer.Start();
        Inner.MatMul(ws, x, n, ys);
        long bytes = 0;
        foreach (var w in ws)
        {
            bytes += w.ByteSize;
        }
        t.Stop(this, ws.Length == 0 ? ProfilePart.Other : ClassOf(ws[0]), bytes);
    }

    public void Rope(DeviceTensor x, int n, int heads, RopeTable table, ReadOnlySpan<int> positions)
    {
        var t = Timer.Start();
        Inner.Rope(x, n, heads, table, positions);
        t.Stop(this, ProfilePart.NormsRope);
    }

    public void Attention(IKvCache cache, int layer, int cacheLayer, bool appendKv, DeviceTensor q, DeviceTensor k, DeviceTensor v,
        int n, int heads, int kvHeads, ReadOnlySpan<int> positions, DeviceTensor output)
    {
        var t = Timer.Start();
        Inner.Attention(cache, layer, cacheLayer, appendKv, q, k, v, n, heads, kvHeads, positions, output);
        t.Stop(this, ProfilePart.Attention);
    }

    public void SwiGlu(DeviceTensor gate, DeviceTensor up, int count, DeviceTensor h)
    {
        var t = Timer.Start();
        Inner.SwiGlu(gate, up, count, h);
        t.Stop(this, ProfilePart.GateUp);
    }

    public void AddBias(DeviceTensor x, float[]? bias, int n)
    {
        var t = Timer.Start();
        Inner.AddBias(x, bias, n);
        t.Stop(this, ProfilePart.Qkv);
    }

    public void PrepareMaskedMlp(LlamaLayer layer) => Inner.PrepareMaskedMlp(layer);

    public void MaskedGateUp(LlamaLayer layer, DeviceTensor x, int offset, ReadOnlySpan<int> inputs, DeviceTensor h)
    {
        var t = Timer.Start();
        Inner.MaskedGateUp(layer, x, offset, inputs, h);
        // Bytes of the selected columns of gate and up (the copies keep the model's element size).
        t.Stop(this, ProfilePart.GateUp, 2 * ColumnBytes(layer.Gate) * inputs.Length);
    }

    public void MaskedDown(LlamaLayer layer, DeviceTensor h, ReadOnlySpan<int> columns, DeviceTensor y, int offset)
    {
        var t = Timer.Start();
        Inner.MaskedDown(layer, h, columns, y, offset);
        t.Stop(this, ProfilePart.Down, ColumnBytes(layer.Down) * columns.Length);
    }

    private static long ColumnBytes(WeightMatrix w) => w.Columns == 0 ? 0 : w.ByteSize / w.Columns;

    public void ZeroHeads(DeviceTensor x, int n, int heads, int headDim, ReadOnlySpan<int> maskedHeads)
    {
        var t = Timer.Start();
        Inner.ZeroHeads(x, n, heads, headDim, maskedHeads);
        t.Stop(this, ProfilePart.Attention);
    }

    public void AddInPlace(DeviceTensor x, DeviceTensor delta, int count)
    {
        var t = Timer.Start();
        Inner.AddInPlace(x, delta, count);
        t.Stop(this, ProfilePart.Other);
    }

    public void Copy(DeviceTensor source, int sourceOffset, DeviceTensor destination, int destinationOffset, int count)
    {
        var t = Timer.Start();
        Inner.Copy(source, sourceOffset, destination, destinationOffset, count);
        t.Stop(this, ProfilePart.Other);
    }

    /// <summary>Downloads happen to read logits for sampling (or activations for observers): charged to sampling.</summary>
    public void Download(DeviceTensor source, int offset, Span<float> destination)
    {
        var t = Timer.Start();
        Inner.Download(source, offset, destination);
        t.Stop(this, ProfilePart.Sampling);
    }

    public void Upload(ReadOnlySpan<float> source, DeviceTensor destination, int offset)
    {
        var t = Timer.Start();
        Inner.Upload(source, destination, offset);
        t.Stop(this, ProfilePart.Other);
    }

    public bool AllFinite(DeviceTensor x, int offset, int count) => Inner.AllFinite(x, offset, count);

    public bool Supports(BackendFeature feature) => Inner.Supports(feature);

    public int ArgMax(DeviceTensor source, int offset, int count)
    {
        var t = Timer.Start();
        int r = Inner.ArgMax(source, offset, count);
        t.Stop(this, ProfilePart.Sampling);
        return r;
    }

    public IKvCache CreateKvCache(LlamaModel model, int capacity) => Inner.CreateKvCache(model, capacity);

    public void Synchronize() => Inner.Synchronize();

    public void Dispose() => Inner.Dispose();
}
