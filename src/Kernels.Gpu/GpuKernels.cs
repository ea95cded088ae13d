using ILGPU;
using ILGPU.Runtime;

namespace Kernels.Gpu;

/// <summary>
/// Every kernel, loaded once for one accelerator, with launch helpers that pick the grid.
/// Launches are asynchronous on the accelerator's default stream; reading a result back
/// (GetAsArray1D, CopyToCPU) synchronises.
/// </summary>
public sealed class GpuKernels
{
    private readonly Accelerator _a;

    private readonly Action<KernelConfig, DenseView, ArrayView<float>, ArrayView<float>, int> _denseRows;
    private readonly Action<KernelConfig, DenseView, ArrayView<float>, ArrayView<float>, int> _denseRowsF16Pairs;
    private readonly Action<KernelConfig, DenseView, ArrayView<float>, ArrayView<float>, int> _denseTiled;
    private readonly Action<KernelConfig, DenseView, ArrayView<float>, ArrayView<float>, int> _denseLanes;
    private readonly Action<KernelConfig, SparseView, ArrayView<float>, ArrayView<float>, int> _sparseTiled;
    private readonly Action<KernelConfig, SparseView, ArrayView<float>, ArrayView<float>, int> _sparseLanes;
    private readonly Action<KernelConfig, SparseView, ArrayView<float>, ArrayView<float>, int> _sparseRows;
    private readonly Action<KernelConfig, SparseView, ArrayView<float>, ArrayView<float>, int> _sparseTokens;
    private readonly Action<KernelConfig, QuantizedView, ArrayView<float>, ArrayView<float>, int> _quantizedRows, _quantizedLanes, _quantizedTiled;
    private readonly Action<KernelConfig, NmQuantizedView, ArrayView<float>, ArrayView<float>, int> _nmQuantizedRows, _nmQuantizedLanes, _nmQuantizedTiled;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int> _transpose;
    private readonly Action<KernelConfig, DenseView, ArrayView<int>, ArrayView<float>, int> _embed;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, int> _rmsNorm;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int> _rope;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, KvShape, int, int, int> _appendKv;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, KvShape, int, int, int, int, int, int> _attention;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _swiGlu;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int> _add;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int> _addBias;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, long, int> _moveSlots;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, int, int, int, int> _zeroHeads;
    private readonly Action<KernelConfig, ArrayView<float>, int, ArrayView<float>, int, int> _copy;
    private readonly Action<KernelConfig, ArrayView<float>, int, int, ArrayView<int>> _argMax;
    private readonly Action<KernelConfig, ArrayView<float>, int, int> _softmax;
    private readonly Action<KernelConfig, ArrayView<float>, int, int, ArrayView<int>, ArrayView<int>> _topK;
    private readonly Action<KernelConfig, DenseView, DenseView, ArrayView<float>, ArrayView<int>, int, ArrayView<float>> _maskedGateUp;
    private readonly Action<KernelConfig, DenseView, ArrayView<float>, ArrayView<int>, int, ArrayView<float>> _maskedDown;

    public GpuKernels(Accelerator accelerator)
    {
        _a = accelerator;
        _denseRows = accelerator.LoadStreamKernel<DenseView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.DenseRows);
        _denseRowsF16Pairs = accelerator.LoadStreamKernel<DenseView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.DenseRowsF16Pairs);
        _denseTiled = accelerator.LoadStreamKernel<DenseView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.DenseTiled);
        _denseLanes = accelerator.LoadStreamKernel<DenseView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.DenseLanes);
        _sparseLanes = accelerator.LoadStreamKernel<SparseView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.SparseLanes);
        _sparseTiled = accelerator.LoadStreamKernel<SparseView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.SparseTiled);
        _sparseRows = accelerator.LoadStreamKernel<SparseView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.SparseRows);
        _sparseTokens = accelerator.LoadStreamKernel<SparseView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.SparseTokens);
        _quantizedRows = accelerator.LoadStreamKernel<QuantizedView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.QuantizedRows);
        _quantizedLanes = accelerator.LoadStreamKernel<QuantizedView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.QuantizedLanes);
        _quantizedTiled = accelerator.LoadStreamKernel<QuantizedView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.QuantizedTiled);
        _nmQuantizedRows = accelerator.LoadStreamKernel<NmQuantizedView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.NmQuantizedRows);
        _nmQuantizedLanes = accelerator.LoadStreamKernel<NmQuantizedView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.NmQuantizedLanes);
        _nmQuantizedTiled = accelerator.LoadStreamKernel<NmQuantizedView, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.NmQuantizedTiled);
        _transpose = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int>(GpuKernelBodies.Transpose);
        _embed = accelerator.LoadStreamKernel<DenseView, ArrayView<int>, ArrayView<float>, int>(GpuKernelBodies.Embed);
        _rmsNorm = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, int>(GpuKernelBodies.RmsNorm);
        _rope = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int>(GpuKernelBodies.Rope);
        _appendKv = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, KvShape, int, int, int>(GpuKernelBodies.AppendKv);
        _attention = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, KvShape, int, int, int, int, int, int>(GpuKernelBodies.Attention);
        // The CPU accelerator runs every thread of a group as an OS thread: one-warp groups and a
        // grid of a few groups per core keep its launches cheap; GPUs get 8-warp groups and full grids.
        bool cpu = accelerator.AcceleratorType == AcceleratorType.CPU;
        GroupSize = cpu ? GpuKernelBodies.Warp : Math.Min(256, accelerator.MaxNumThreadsPerGroup);
        ReductionGroupSize = cpu ? GpuKernelBodies.Warp : Math.Min(1024, accelerator.MaxNumThreadsPerGroup);
        MaxGroups = cpu ? 2 * Environment.ProcessorCount : int.MaxValue;
        LanePerRow = cpu;
        _swiGlu = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.SwiGlu);
        _add = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(GpuKernelBodies.AddInPlace);
        _addBias = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int>(GpuKernelBodies.AddBias);
        _moveSlots = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, long, int>(GpuKernelBodies.MoveSlots);
        _zeroHeads = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<int>, int, int, int, int>(GpuKernelBodies.ZeroHeads);
        _copy = accelerator.LoadStreamKernel<ArrayView<float>, int, ArrayView<float>, int, int>(GpuKernelBodies.Copy);
        _argMax = accelerator.LoadStreamKernel<ArrayView<float>, int, int, ArrayView<int>>(GpuKernelBodies.ArgMax);
        _softmax = accelerator.LoadStreamKernel<ArrayView<float>, int, int>(GpuKernelBodies.Softmax);
        _topK = accelerator.LoadStreamKernel<ArrayView<float>, int, int, ArrayView<int>, ArrayView<int>>(GpuKernelBodies.TopKAbs);
        _maskedGateUp = accelerator.LoadStreamKernel<DenseView, DenseView, ArrayView<float>, ArrayView<int>, int, ArrayView<float>>(GpuKernelBodies.MaskedGateUp);
        _maskedDown = accelerator.LoadStreamKernel<DenseView, ArrayView<float>, ArrayView<int>, int, ArrayView<float>>(GpuKernelBodies.MaskedDown);
    }

    /// <summary>Batches at least this large use the tiled dense kernel (weights reused from shared memory).</summary>
    public int TiledMinTokens { get; set; } = 16;

    /// <summary>Batches at least this large use the token-vector sparse kernel.</summary>
    public int SparseTokensMinTokens { get; set; } = 8;

    /// <summary>Row products use one lane per row (the CPU accelerator's default) instead of one warp per row.</summary>
    public bool LanePerRow { get; set; }

    /// <summary>Threads per group of the warp-per-item kernels.</summary>
    public int GroupSize { get; }

    /// <summary>Threads of the single-group reductions (argmax, softmax, top-k).</summary>
    public int ReductionGroupSize { get; }

    /// <summary>Cap on the grid of grid-stride kernels.</summary>
    public int MaxGroups { get; }

    /// <summary>A 1-D grid for <paramref name="count"/> element-wise work items (grid-stride).</summary>
    private KernelConfig Flat(long count) =>
        new((int)Math.Max(1, Math.Min(MaxGroups, (count + GroupSize - 1) / GroupSize)), GroupSize);

    /// <summary>A 1-D grid for <paramref name="items"/> warp-sized work items.</summary>
    private KernelConfig WarpItems(long items)
    {
        int warpsPerGroup = GroupSize / GpuKernelBodies.Warp;
        long groups = Math.Max(1, Math.Min(MaxGroups, (items + warpsPerGroup - 1) / warpsPerGroup));
        return new KernelConfig((int)groups, GroupSize);
    }

    public void Dense(GpuMatrix w, ArrayView<float> x, ArrayView<float> y, int n)
    {
        var v = w.View;
        if (n >= TiledMinTokens && !LanePerRow)
        {
            _denseTiled(new KernelConfig(new Index2D((w.Rows + 63) / 64, (n + 63) / 64), new Index2D(256, 1)), v, x, y, n);
        }
        else if (LanePerRow)
        {
            _denseLanes(Flat((long)w.Rows * n), v, x, y, n);
        }
        else if (w.Half != 0 && (w.Columns & 1) == 0)
        {
            _denseRowsF16Pairs(WarpItems((long)w.Rows * n), v, x, y, n);
        }
        else
        {
            _denseRows(WarpItems((long)w.Rows * n), v, x, y, n);
        }
    }

    public void Sparse(GpuSparseMatrix w, ArrayView<float> x, ArrayView<float> y, int n, ArrayView<float> transposeScratch)
    {
        var v = w.View;
        if (LanePerRow)
        {
            _sparseLanes(Flat((long)w.Shape.Rows * n), v, x, y, n);
        }
        else if (n >= TiledMinTokens)
        {
            _sparseTiled(new KernelConfig(new Index2D((w.Shape.Rows + 63) / 64, (n + 63) / 64), new Index2D(256, 1)), v, x, y, n);
        }
        else if (n >= SparseTokensMinTokens)
        {
            _transpose(Flat((long)w.Shape.Columns * n), x, transposeScratch, w.Shape.Columns, n);
            _sparseTokens(WarpItems((long)w.Shape.Rows * ((n + 31) / 32)), v, transposeScratch, y, n);
        }
        else
        {
            _sparseRows(WarpItems((long)w.Shape.Rows * n), v, x, y, n);
        }
    }

    /// <summary>y = x·Wᵀ for a Q8_0 / Q4_0 matrix: warp (or, on the CPU accelerator, lane) per row for decode, the tiled GEMM for prefill.</summary>
    public void Quantized(GpuQuantizedMatrix w, ArrayView<float> x, ArrayView<float> y, int n)
    {
        var v = w.View;
        if (LanePerRow)
        {
            _quantizedLanes(Flat((long)w.Rows * n), v, x, y, n);
        }
        else if (n >= TiledMinTokens)
        {
            _quantizedTiled(new KernelConfig(new Index2D((w.Rows + 63) / 64, (n + 63) / 64), new Index2D(256, 1)), v, x, y, n);
        }
        else
        {
            _quantizedRows(WarpItems((long)w.Rows * n), v, x, y, n);
        }
    }

    /// <summary>y = x·Wᵀ for an N:M matrix with Q8_0 / Q4_0 kept values.</summary>
    public void NmQuantized(GpuNmQuantizedMatrix w, ArrayView<float> x, ArrayView<float> y, int n)
    {
        var v = w.View;
        if (LanePerRow)
        {
            _nmQuantizedLanes(Flat((long)w.Shape.Rows * n), v, x, y, n);
        }
        else if (n >= TiledMinTokens)
        {
            _nmQuantizedTiled(new KernelConfig(new Index2D((w.Shape.Rows + 63) / 64, (n + 63) / 64), new Index2D(256, 1)), v, x, y, n);
        }
        else
        {
            _nmQuantizedRows(WarpItems((long)w.Shape.Rows * n), v, x, y, n);
        }
    }

    public void Embed(GpuMatrix e, ArrayView<int> tokens, int n, ArrayView<float> x) => _embed(Flat((long)n * e.Columns), e.View, tokens, x, n * e.Columns);

    public void RmsNorm(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int n, int dim, float eps) =>
        _rmsNorm(new KernelConfig(Math.Min(n, MaxGroups), ReductionGroupSize), x, w, y, dim, eps, n);

    public void Rope(ArrayView<float> x, ArrayView<float> cos, ArrayView<float> sin, ArrayView<int> positions, int n, int heads, int headDim) =>
        _rope(Flat((long)n * heads * (headDim / 2)), x, cos, sin, positions, heads, headDim, n * heads * (headDim / 2));

    public void AppendKv(ArrayView<float> k, ArrayView<float> v, GpuKvStorage cache, int layer, int baseCount, int n) =>
        _appendKv(Flat((long)n * cache.Shape.KvHeads), k, v, cache.Keys.View, cache.Values.View, cache.Norms.View, cache.Shape, layer, baseCount, n * cache.Shape.KvHeads);

    public void Attention(ArrayView<float> q, GpuKvStorage cache, int layer, int heads, int baseCount, int n, ArrayView<float> scores, ArrayView<float> output, bool track, bool weighted) =>
        _attention(WarpItems((long)n * heads), q, cache.Keys.View, cache.Values.View, cache.Norms.View, cache.Received.View,
            scores, output, cache.Shape, layer, heads, baseCount, track ? 1 : 0, weighted ? 1 : 0, n);

    public void SwiGlu(ArrayView<float> g, ArrayView<float> u, ArrayView<float> h, int count) => _swiGlu(Flat(count), g, u, h, count);

    public void Add(ArrayView<float> x, ArrayView<float> d, int count) => _add(Flat(count), x, d, count);

    /// <summary>x[t, :] += bias for n rows of bias's width.</summary>
    public void AddBias(ArrayView<float> x, ArrayView<float> bias, int width, int n) => _addBias(Flat((long)n * width), x, bias, width, checked(n * width));

    /// <summary>Applies planned KV slot moves (from, to pairs) within one head whose slots start at <paramref name="first"/>.</summary>
    public void MoveSlots(GpuKvStorage cache, long first, ArrayView<int> moves, int count) =>
        _moveSlots(Flat((long)count * cache.Shape.HeadDim), cache.Keys.View, cache.Values.View, cache.Norms.View, cache.Received.View, moves, count, first, cache.Shape.HeadDim);

    /// <summary>Zeroes the listed heads of every token row of x[n, heads·headDim].</summary>
    public void ZeroHeads(ArrayView<float> x, ArrayView<int> masked, int count, int n, int heads, int headDim)
    {
        int total = checked(n * count * headDim);
        _zeroHeads(Flat(total), x, masked, count, heads, headDim, total);
    }

    public void Copy(ArrayView<float> src, int srcOffset, ArrayView<float> dst, int dstOffset, int count) => _copy(Flat(count), src, srcOffset, dst, dstOffset, count);

    public void ArgMax(ArrayView<float> x, int offset, int count, ArrayView<int> result) => _argMax(new KernelConfig(1, ReductionGroupSize), x, offset, count, result);

    public void Softmax(ArrayView<float> x, int offset, int count) => _softmax(new KernelConfig(1, ReductionGroupSize), x, offset, count);

    public void TopKAbs(ArrayView<float> x, int length, int k, ArrayView<int> selected, ArrayView<int> counter) =>
        _topK(new KernelConfig(1, ReductionGroupSize), x, length, k, selected, counter);

    public void MaskedGateUp(GpuMatrix gateT, GpuMatrix upT, ArrayView<float> x, ArrayView<int> selected, int count, ArrayView<float> h) =>
        _maskedGateUp(Flat(gateT.Columns), gateT.View, upT.View, x, selected, count, h);

    public void MaskedDown(GpuMatrix downT, ArrayView<float> h, ArrayView<int> selected, int count, ArrayView<float> y) =>
        _maskedDown(Flat(downT.Columns), downT.View, h, selected, count, y);

    public void Synchronize() => _a.Synchronize();
}
