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

    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<ushort>, int, ArrayView<float>, ArrayView<float>, int, int> _denseRows;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<ushort>, int, ArrayView<float>, ArrayView<float>, int, int, int> _denseTiled;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<ushort>, int, ArrayView<uint>, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, SparseShape> _sparseRows;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<ushort>, int, ArrayView<uint>, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, SparseShape, int> _sparseTokens;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int, int> _transpose;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<ushort>, int, ArrayView<int>, ArrayView<float>, int> _embed;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float> _rmsNorm;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int> _rope;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, KvShape, int, int> _appendKv;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, KvShape, int, int, int, int, int> _attention;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>> _swiGlu;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _add;
    private readonly Action<Index1D, ArrayView<float>, int, ArrayView<float>, int> _copy;
    private readonly Action<KernelConfig, ArrayView<float>, int, int, ArrayView<int>> _argMax;
    private readonly Action<KernelConfig, ArrayView<float>, int, int> _softmax;
    private readonly Action<KernelConfig, ArrayView<float>, int, int, ArrayView<int>, ArrayView<int>> _topK;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, ArrayView<ushort>, int, ArrayView<float>, ArrayView<int>, int, ArrayView<float>, int> _maskedGateUp;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<ushort>, int, ArrayView<float>, ArrayView<int>, int, ArrayView<float>, int> _maskedDown;

    public GpuKernels(Accelerator accelerator)
    {
        _a = accelerator;
        _denseRows = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, int, ArrayView<float>, ArrayView<float>, int, int>(GpuKernelBodies.DenseRows);
        _denseTiled = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, int, ArrayView<float>, ArrayView<float>, int, int, int>(GpuKernelBodies.DenseTiled);
        _sparseRows = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, int, ArrayView<uint>, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, SparseShape>(GpuKernelBodies.SparseRows);
        _sparseTokens = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, int, ArrayView<uint>, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, SparseShape, int>(GpuKernelBodies.SparseTokens);
        _transpose = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(GpuKernelBodies.Transpose);
        _embed = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<ushort>, int, ArrayView<int>, ArrayView<float>, int>(GpuKernelBodies.Embed);
        _rmsNorm = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(GpuKernelBodies.RmsNorm);
        _rope = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>(GpuKernelBodies.Rope);
        _appendKv = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, KvShape, int, int>(GpuKernelBodies.AppendKv);
        _attention = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, KvShape, int, int, int, int, int>(GpuKernelBodies.Attention);
        _swiGlu = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GpuKernelBodies.SwiGlu);
        _add = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(GpuKernelBodies.AddInPlace);
        _copy = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, ArrayView<float>, int>(GpuKernelBodies.Copy);
        _argMax = accelerator.LoadStreamKernel<ArrayView<float>, int, int, ArrayView<int>>(GpuKernelBodies.ArgMax);
        _softmax = accelerator.LoadStreamKernel<ArrayView<float>, int, int>(GpuKernelBodies.Softmax);
        _topK = accelerator.LoadStreamKernel<ArrayView<float>, int, int, ArrayView<int>, ArrayView<int>>(GpuKernelBodies.TopKAbs);
        _maskedGateUp = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, ArrayView<ushort>, int, ArrayView<float>, ArrayView<int>, int, ArrayView<float>, int>(GpuKernelBodies.MaskedGateUp);
        _maskedDown = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<ushort>, int, ArrayView<float>, ArrayView<int>, int, ArrayView<float>, int>(GpuKernelBodies.MaskedDown);
    }

    /// <summary>Batches at least this large use the tiled dense kernel (weights reused from shared memory).</summary>
    public int TiledMinTokens { get; set; } = 16;

    /// <summary>Batches at least this large use the token-vector sparse kernel.</summary>
    public int SparseTokensMinTokens { get; set; } = 8;

    private static int Groups(int rows) => (rows + GpuKernelBodies.RowsPerGroup - 1) / GpuKernelBodies.RowsPerGroup;

    public void Dense(GpuMatrix w, ArrayView<float> x, ArrayView<float> y, int n)
    {
        if (n >= TiledMinTokens)
        {
            _denseTiled(new KernelConfig(new Index2D((w.Rows + 63) / 64, (n + 63) / 64), new Index2D(256, 1)), w.F32, w.F16, w.Half, x, y, w.Rows, w.Columns, n);
        }
        else
        {
            _denseRows(new KernelConfig(new Index2D(Groups(w.Rows), n), new Index2D(256, 1)), w.F32, w.F16, w.Half, x, y, w.Rows, w.Columns);
        }
    }

    public void Sparse(GpuSparseMatrix w, ArrayView<float> x, ArrayView<float> y, int n, ArrayView<float> transposeScratch)
    {
        if (n >= SparseTokensMinTokens)
        {
            _transpose(w.Shape.Columns * n, x, transposeScratch, w.Shape.Columns, n);
            _sparseTokens(new KernelConfig(new Index2D(Groups(w.Shape.Rows), (n + 31) / 32), new Index2D(256, 1)),
                w.F32, w.F16, w.Half, w.Meta, w.Tail32, w.Tail16, transposeScratch, y, w.Shape, n);
        }
        else
        {
            _sparseRows(new KernelConfig(new Index2D(Groups(w.Shape.Rows), n), new Index2D(256, 1)),
                w.F32, w.F16, w.Half, w.Meta, w.Tail32, w.Tail16, x, y, w.Shape);
        }
    }

    public void Embed(GpuMatrix e, ArrayView<int> tokens, int n, ArrayView<float> x) => _embed(n * e.Columns, e.F32, e.F16, e.Half, tokens, x, e.Columns);

    public void RmsNorm(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int n, int dim, float eps) =>
        _rmsNorm(new KernelConfig(n, 256), x, w, y, dim, eps);

    public void Rope(ArrayView<float> x, ArrayView<float> cos, ArrayView<float> sin, ArrayView<int> positions, int n, int heads, int headDim) =>
        _rope(n * heads * (headDim / 2), x, cos, sin, positions, heads, headDim);

    public void AppendKv(ArrayView<float> k, ArrayView<float> v, GpuKvStorage cache, int layer, int baseCount, int n) =>
        _appendKv(n * cache.Shape.KvHeads, k, v, cache.Keys.View, cache.Values.View, cache.Norms.View, cache.Shape, layer, baseCount);

    public void Attention(ArrayView<float> q, GpuKvStorage cache, int layer, int heads, int baseCount, int n, ArrayView<float> scores, ArrayView<float> output, bool track, bool weighted) =>
        _attention(new KernelConfig(new Index2D(n, heads), new Index2D(GpuKernelBodies.Warp, 1)), q, cache.Keys.View, cache.Values.View, cache.Norms.View, cache.Received.View,
            scores, output, cache.Shape, layer, heads, baseCount, track ? 1 : 0, weighted ? 1 : 0);

    public void SwiGlu(ArrayView<float> g, ArrayView<float> u, ArrayView<float> h, int count) => _swiGlu(count, g, u, h);

    public void Add(ArrayView<float> x, ArrayView<float> d, int count) => _add(count, x, d);

    public void Copy(ArrayView<float> src, int srcOffset, ArrayView<float> dst, int dstOffset, int count) => _copy(count, src, srcOffset, dst, dstOffset);

    public void ArgMax(ArrayView<float> x, int offset, int count, ArrayView<int> result) => _argMax(new KernelConfig(1, 1024), x, offset, count, result);

    public void Softmax(ArrayView<float> x, int offset, int count) => _softmax(new KernelConfig(1, 1024), x, offset, count);

    public void TopKAbs(ArrayView<float> x, int length, int k, ArrayView<int> selected, ArrayView<int> counter) =>
        _topK(new KernelConfig(1, 1024), x, length, k, selected, counter);

    public void MaskedGateUp(GpuMatrix gateT, GpuMatrix upT, ArrayView<float> x, ArrayView<int> selected, int count, ArrayView<float> h) =>
        _maskedGateUp(gateT.Columns, gateT.F32, gateT.F16, upT.F32, upT.F16, gateT.Half, x, selected, count, h, gateT.Columns);

    public void MaskedDown(GpuMatrix downT, ArrayView<float> h, ArrayView<int> selected, int count, ArrayView<float> y) =>
        _maskedDown(downT.Columns, downT.F32, downT.F16, downT.Half, h, selected, count, y, downT.Columns);

    public void Synchronize() => _a.Synchronize();
}
