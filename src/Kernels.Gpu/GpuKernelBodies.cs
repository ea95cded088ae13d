using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Algorithms.ScanReduceOperations;

namespace Kernels.Gpu;

/// <summary>
/// The kernel bodies (ILGPU C#, compiled to PTX / OpenCL C / the CPU accelerator). Conventions:
/// warps of 32 lanes cooperate on a row or a (token, head); warp and group reductions are
/// ILGPU.Algorithms' (<c>AllReduce</c> over its scan-reduce operations); weights come as readonly
/// struct views, one per format (<see cref="DenseView"/>, <see cref="SparseView"/>).
/// </summary>
internal static class GpuKernelBodies
{
    public const int Warp = 32;

    // ---------------------------------------------------------------- helpers

    /// <summary>IEEE binary16 bits to float (exact, Inf/NaN included).</summary>
    public static float HalfToFloat(ushort h)
    {
        uint em = (uint)h & 0x7FFFu;
        uint sign = ((uint)h & 0x8000u) << 16;
        uint shifted = em << 13;
        float finite = Interop.IntAsFloat(shifted) * 5.192296858534828e33f;
        uint bits = em >= 0x7C00u ? (shifted | 0x7F800000u) : Interop.FloatAsInt(finite);
        return Interop.IntAsFloat(bits | sign);
    }

    /// <summary>Σ over the warp, in every lane.</summary>
    private static float WarpSum(float v) => WarpExtensions.AllReduce<float, AddFloat>(v);

    /// <summary>Most warps in a group (1024 threads).</summary>
    private const int MaxWarpsPerGroup = 1024 / Warp;

    /// <summary>
    /// Σ over the group, in every thread, in a fixed order: each warp's sum, then the warps' sums in
    /// warp order. ILGPU.Algorithms' group AllReduce combines the warps with atomic adds, whose order
    /// (and so the float result's last bits) varies from run to run; a near-tie downstream (argmax,
    /// top-k) then flips between runs.
    /// </summary>
    private static float GroupSum(float v)
    {
        var partial = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        float warpSum = WarpSum(v);
        if (ILGPU.Warp.LaneIdx == 0)
        {
            partial[ILGPU.Warp.WarpIdx] = warpSum;
        }
        Group.Barrier();
        int warps = (Group.DimX + Warp - 1) / Warp;
        float total = 0f;
        for (int i = 0; i < warps; i++)
        {
            total += partial[i];
        }
        Group.Barrier(); // every thread has read the partials before a next call overwrites them
        return total;
    }

    // ---------------------------------------------------------------- dense

    /// <summary>The global warp index and warp count of a 1-D launch (grid-stride loops over work items).</summary>
    public static int GlobalWarp => Grid.IdxX * (Group.DimX / Warp) + ILGPU.Warp.WarpIdx;

    public static int WarpCount => Grid.DimX * (Group.DimX / Warp);

    /// <summary>
    /// y[t, r] = Σ_c W[r, c]·x[t, c]: one warp per (row, token) work item, grid-stride over all n·rows
    /// items (the launch sizes the grid for the device: many groups on a GPU, a few on the CPU accelerator).
    /// </summary>
    public static void DenseRows(DenseView w, ArrayView<float> x, ArrayView<float> y, int n)
    {
        int lane = ILGPU.Warp.LaneIdx, rows = w.Rows, cols = w.Columns;
        for (int item = GlobalWarp; item < rows * n; item += WarpCount)
        {
            int r = item % rows, t = item / rows;
            long wBase = (long)r * cols, xBase = (long)t * cols;
            float acc = 0f;
            for (int c = lane; c < cols; c += Warp)
            {
                acc += w.Elements[wBase + c] * x[xBase + c];
            }
            acc = WarpSum(acc);
            if (lane == 0)
            {
                y[(long)t * rows + r] = acc;
            }
        }
    }

    /// <summary>
    /// <see cref="DenseRows"/> for F16 rows of even length: weights are read as pairs (32-bit loads,
    /// 128 B per warp access instead of 64). A separate kernel because a uniform branch between the
    /// two loops inside one kernel cost the F32 path 30-40% on an H100.
    /// </summary>
    public static void DenseRowsF16Pairs(DenseView w, ArrayView<float> x, ArrayView<float> y, int n)
    {
        int lane = ILGPU.Warp.LaneIdx, rows = w.Rows, cols = w.Columns;
        var pairs = w.Elements.F16.Cast<uint>();
        int half = cols / 2;
        for (int item = GlobalWarp; item < rows * n; item += WarpCount)
        {
            int r = item % rows, t = item / rows;
            long pBase = (long)r * half, xBase = (long)t * cols;
            float acc = 0f;
            for (int c2 = lane; c2 < half; c2 += Warp)
            {
                uint p = pairs[pBase + c2];
                acc += HalfToFloat((ushort)(p & 0xFFFFu)) * x[xBase + 2 * c2] + HalfToFloat((ushort)(p >> 16)) * x[xBase + 2 * c2 + 1];
            }
            acc = WarpSum(acc);
            if (lane == 0)
            {
                y[(long)t * rows + r] = acc;
            }
        }
    }

    /// <summary>
    /// y[t, r] with one LANE per (row, token) item and no cross-lane traffic: uncoalesced on a GPU,
    /// but on ILGPU's CPU accelerator (where every warp shuffle is a barrier across OS threads)
    /// an order of magnitude faster than <see cref="DenseRows"/>.
    /// </summary>
    public static void DenseLanes(DenseView w, ArrayView<float> x, ArrayView<float> y, int n)
    {
        int rows = w.Rows, cols = w.Columns;
        for (int item = GlobalThread; item < rows * n; item += ThreadCount)
        {
            int r = item % rows, t = item / rows;
            long wBase = (long)r * cols, xBase = (long)t * cols;
            float acc = 0f;
            for (int c = 0; c < cols; c++)
            {
                acc += w.Elements[wBase + c] * x[xBase + c];
            }
            y[(long)t * rows + r] = acc;
        }
    }

    /// <summary>Sparse counterpart of <see cref="DenseLanes"/>: one lane per (row, token) item.</summary>
    public static void SparseLanes(SparseView w, ArrayView<float> x, ArrayView<float> y, int n) => NmLanes(w, x, y, n);

    private static void NmLanes<TWeights>(TWeights w, ArrayView<float> x, ArrayView<float> y, int n) where TWeights : struct, INmWeights
    {
        var s = w.Shape;
        for (int item = GlobalThread; item < s.Rows * n; item += ThreadCount)
        {
            int r = item % s.Rows, t = item / s.Rows;
            long xBase = (long)t * s.Columns;
            float acc = 0f;
            for (int k = 0; k < s.Kept; k++)
            {
                acc += w.Kept(r, k) * x[xBase + w.Column(r, k)];
            }
            for (int c = 0; c < s.TailColumns; c++)
            {
                acc += w.TailAt(r, c) * x[xBase + s.Grouped + c];
            }
            y[(long)t * s.Rows + r] = acc;
        }
    }

    public const int Tile = 64, TileK = 16;

    /// <summary>
    /// Tiled GEMM Y[n, M] = X[n, K]·Wᵀ: 64x64 output tiles (rows x tokens), 16-deep K slices staged
    /// in shared memory, each of the 256 threads accumulating a 4x4 register block.
    /// Grid (⌈M/64⌉, ⌈n/64⌉), groups of 256.
    /// </summary>
    public static void DenseTiled(DenseView w, ArrayView<float> x, ArrayView<float> y, int n) => Tiled(w, x, y, w.Rows, w.Columns, n);

    /// <summary>
    /// The tiled GEMM shared by dense and sparse weights: 64x64 output tiles (rows x tokens),
    /// 16-deep K slices of weights (<typeparamref name="TWeights"/> decodes each element once per
    /// 64 tokens) and activations staged in shared memory, each of the 256 threads accumulating a
    /// 4x4 register block.
    /// </summary>
    private static void Tiled<TWeights>(TWeights weights, ArrayView<float> x, ArrayView<float> y, int m, int k, int n)
        where TWeights : struct, ITileWeights
    {
        var ws = SharedMemory.Allocate<float>(TileK * Tile);
        var xs = SharedMemory.Allocate<float>(TileK * Tile);
        int tid = Group.IdxX;
        int tr = tid / 16, tt = tid % 16;          // 16x16 threads, 4x4 outputs each
        int row0 = Grid.IdxX * Tile, tok0 = Grid.IdxY * Tile;
        float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        for (int k0 = 0; k0 < k; k0 += TileK)
        {
            // Each thread stages 4 weights and 4 activations: element e = tid + 256·i of the 64x16 tile.
            for (int i = 0; i < 4; i++)
            {
                int e = tid + 256 * i;
                int rr = e / TileK, kk = e % TileK;
                int gr = row0 + rr, gk = k0 + kk;
                ws[kk * Tile + rr] = gr < m && gk < k ? weights.At(gr, gk) : 0f;
                int gt = tok0 + rr;
                xs[kk * Tile + rr] = gt < n && gk < k ? x[(long)gt * k + gk] : 0f;
            }
            Group.Barrier();
            for (int kk = 0; kk < TileK; kk++)
            {
                float a0 = ws[kk * Tile + tr * 4], a1 = ws[kk * Tile + tr * 4 + 1], a2 = ws[kk * Tile + tr * 4 + 2], a3 = ws[kk * Tile + tr * 4 + 3];
                float b0 = xs[kk * Tile + tt * 4], b1 = xs[kk * Tile + tt * 4 + 1], b2 = xs[kk * Tile + tt * 4 + 2], b3 = xs[kk * Tile + tt * 4 + 3];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            Group.Barrier();
        }
        Store(y, m, n, row0 + tr * 4, tok0 + tt * 4, c00, c01, c02, c03, 0);
        Store(y, m, n, row0 + tr * 4, tok0 + tt * 4, c10, c11, c12, c13, 1);
        Store(y, m, n, row0 + tr * 4, tok0 + tt * 4, c20, c21, c22, c23, 2);
        Store(y, m, n, row0 + tr * 4, tok0 + tt * 4, c30, c31, c32, c33, 3);
    }

    /// <summary>
    /// Tiled product with an input-axis N:M matrix: the 64x16 weight tile is decompressed from the
    /// compressed format into shared memory (each element decoded once per 64 tokens), then the
    /// same register-blocked inner loop as <see cref="DenseTiled"/>. Reads half the weight bytes of
    /// the dense kernel; computes the same FLOPs (CUDA cores have no sparse FMA; mma.sp would).
    /// </summary>
    public static void SparseTiled(SparseView w, ArrayView<float> x, ArrayView<float> y, int n) => Tiled(w, x, y, w.Shape.Rows, w.Shape.Columns, n);

    private static void Store(ArrayView<float> y, int m, int n, int r0, int t0, float v0, float v1, float v2, float v3, int i)
    {
        int r = r0 + i;
        if (r >= m)
        {
            return;
        }
        if (t0 < n) { y[(long)t0 * m + r] = v0; }
        if (t0 + 1 < n) { y[(long)(t0 + 1) * m + r] = v1; }
        if (t0 + 2 < n) { y[(long)(t0 + 2) * m + r] = v2; }
        if (t0 + 3 < n) { y[(long)(t0 + 3) * m + r] = v3; }
    }

    // ---------------------------------------------------------------- N:M sparse (input axis)

    /// <summary>
    /// y[t, r] for an input-axis N:M matrix: one warp per (row, token) item (grid-stride); lanes walk
    /// the kept values, gather x[group·M + index], and add the dense tail.
    /// </summary>
    public static void SparseRows(SparseView w, ArrayView<float> x, ArrayView<float> y, int n) => NmRows(w, x, y, n);

    private static void NmRows<TWeights>(TWeights w, ArrayView<float> x, ArrayView<float> y, int n) where TWeights : struct, INmWeights
    {
        for (int item = GlobalWarp; item < w.Shape.Rows * n; item += WarpCount)
        {
            NmRow(w, x, y, n, item % w.Shape.Rows, item / w.Shape.Rows);
        }
    }

    private static void NmRow<TWeights>(TWeights w, ArrayView<float> x, ArrayView<float> y, int n, int r, int t) where TWeights : struct, INmWeights
    {
        var s = w.Shape;
        int lane = ILGPU.Warp.LaneIdx;
        long xBase = (long)t * s.Columns;
        float acc = 0f;
        for (int k = lane; k < s.Kept; k += Warp)
        {
            acc += w.Kept(r, k) * x[xBase + w.Column(r, k)];
        }
        for (int c = lane; c < s.TailColumns; c += Warp)
        {
            acc += w.TailAt(r, c) * x[xBase + s.Grouped + c];
        }
        acc = WarpSum(acc);
        if (lane == 0)
        {
            y[(long)t * s.Rows + r] = acc;
        }
    }

    // ---------------------------------------------------------------- block-quantized (Q8_0, Q4_0), dense or N:M

    /// <summary>
    /// y[t, r] for a Q8_0 / Q4_0 matrix: one warp per (row, token) item, lanes over the columns, so a
    /// warp reads one block's scale and values together (the blocks are dequantized in registers;
    /// the matrix stays at its GGUF size on the device).
    /// </summary>
    public static void QuantizedRows(QuantizedView w, ArrayView<float> x, ArrayView<float> y, int n)
    {
        int lane = ILGPU.Warp.LaneIdx, rows = w.Rows, cols = w.Columns;
        for (int item = GlobalWarp; item < rows * n; item += WarpCount)
        {
            int r = item % rows, t = item / rows;
            long rowByte = r * w.RowBytes, xBase = (long)t * cols;
            float acc = 0f;
            for (int c = lane; c < cols; c += Warp)
            {
                acc += w.Blocks.Element(rowByte, c) * x[xBase + c];
            }
            acc = WarpSum(acc);
            if (lane == 0)
            {
                y[(long)t * rows + r] = acc;
            }
        }
    }

    /// <summary><see cref="QuantizedRows"/> with one lane per (row, token) item (the CPU accelerator's fast path).</summary>
    public static void QuantizedLanes(QuantizedView w, ArrayView<float> x, ArrayView<float> y, int n)
    {
        int rows = w.Rows, cols = w.Columns;
        for (int item = GlobalThread; item < rows * n; item += ThreadCount)
        {
            int r = item % rows, t = item / rows;
            long rowByte = r * w.RowBytes, xBase = (long)t * cols;
            float acc = 0f;
            for (int c = 0; c < cols; c++)
            {
                acc += w.Blocks.Element(rowByte, c) * x[xBase + c];
            }
            y[(long)t * rows + r] = acc;
        }
    }

    /// <summary>The tiled GEMM over a block-quantized matrix (prefill): each element is dequantized once per tile.</summary>
    public static void QuantizedTiled(QuantizedView w, ArrayView<float> x, ArrayView<float> y, int n) => Tiled(w, x, y, w.Rows, w.Columns, n);

    /// <summary>N:M with Q8_0 / Q4_0 kept values: one warp per (row, token) item, as <see cref="SparseRows"/>.</summary>
    public static void NmQuantizedRows(NmQuantizedView w, ArrayView<float> x, ArrayView<float> y, int n) => NmRows(w, x, y, n);

    public static void NmQuantizedLanes(NmQuantizedView w, ArrayView<float> x, ArrayView<float> y, int n) => NmLanes(w, x, y, n);

    public static void NmQuantizedTiled(NmQuantizedView w, ArrayView<float> x, ArrayView<float> y, int n) => Tiled(w, x, y, w.Shape.Rows, w.Shape.Columns, n);

    /// <summary>Global thread index and thread count of a 1-D launch (grid-stride loops).</summary>
    public static int GlobalThread => Grid.IdxX * Group.DimX + Group.IdxX;

    public static int ThreadCount => Grid.DimX * Group.DimX;

    /// <summary>Xt[c, t] = X[t, c]; grid-stride over K·n.</summary>
    public static void Transpose(ArrayView<float> x, ArrayView<float> xt, int k, int n)
    {
        for (int i = GlobalThread; i < k * n; i += ThreadCount)
        {
            int c = i / n, t = i % n;
            xt[i] = x[(long)t * k + c];
        }
    }

    /// <summary>
    /// Batched sparse product "kept weight × token vector": one warp per (row, 32-token tile) item,
    /// lanes = tokens; every lane reads the same kept value and column (broadcast), then a
    /// coalesced Xt row. Grid-stride over items.
    /// </summary>
    public static void SparseTokens(SparseView w, ArrayView<float> xt, ArrayView<float> y, int n)
    {
        int tiles = (n + Warp - 1) / Warp;
        for (int item = GlobalWarp; item < w.Shape.Rows * tiles; item += WarpCount)
        {
            SparseTokenTile(w, xt, y, n, item % w.Shape.Rows, item / w.Shape.Rows * Warp + ILGPU.Warp.LaneIdx);
        }
    }

    private static void SparseTokenTile(SparseView w, ArrayView<float> xt, ArrayView<float> y, int n, int r, int t)
    {
        var s = w.Shape;
        int tc = t < n ? t : n - 1;
        float acc = 0f;
        for (int k = 0; k < s.Kept; k++)
        {
            acc += w.Kept(r, k) * xt[(long)w.Column(r, k) * n + tc];
        }
        for (int c = 0; c < s.TailColumns; c++)
        {
            acc += w.TailAt(r, c) * xt[(long)(s.Grouped + c) * n + tc];
        }
        if (t < n)
        {
            y[(long)t * s.Rows + r] = acc;
        }
    }

    // ---------------------------------------------------------------- transformer pieces

    /// <summary>x[t, i] = embedding[token_t, i]. Auto-grouped over n·dim.</summary>
    public static void Embed(DenseView e, ArrayView<int> tokens, ArrayView<float> x, int count)
    {
        int dim = e.Columns;
        for (int i = GlobalThread; i < count; i += ThreadCount)
        {
            int t = i / dim, c = i % dim;
            x[i] = e.At(tokens[t], c);
        }
    }

    /// <summary>RMSNorm, one row per group (grid-stride): y = w ⊙ x / sqrt(mean(x²) + eps).</summary>
    public static void RmsNorm(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int dim, float eps, int n)
    {
        int tid = Group.IdxX, size = Group.DimX;
        for (int row = Grid.IdxX; row < n; row += Grid.DimX)
        {
            long b = (long)row * dim;
            float ss = 0f;
            for (int i = tid; i < dim; i += size)
            {
                float v = x[b + i];
                ss += v * v;
            }
            float scale = 1f / XMath.Sqrt(GroupSum(ss) / dim + eps);
            for (int i = tid; i < dim; i += size)
            {
                y[b + i] = w[i] * (scale * x[b + i]);
            }
        }
    }

    /// <summary>Interleaved-pair RoPE in place; one thread per (token, head, pair).</summary>
    public static void Rope(ArrayView<float> x, ArrayView<float> cos, ArrayView<float> sin, ArrayView<int> positions, int heads, int headDim, int count)
    {
        for (int i = GlobalThread; i < count; i += ThreadCount)
        {
            RopePair(x, cos, sin, positions, heads, headDim, i);
        }
    }

    private static void RopePair(ArrayView<float> x, ArrayView<float> cos, ArrayView<float> sin, ArrayView<int> positions, int heads, int headDim, int i)
    {
        int half = headDim / 2;
        int pair = i % half;
        int head = i / half % heads;
        int t = i / (half * heads);
        long b = (long)t * heads * headDim + head * headDim + 2 * pair;
        long table = (long)positions[t] * half + pair;
        float fcr = cos[table], fci = sin[table];
        float v0 = x[b], v1 = x[b + 1];
        x[b] = v0 * fcr - v1 * fci;
        x[b + 1] = v0 * fci + v1 * fcr;
    }

    /// <summary>Appends n tokens' k/v rows to a KV head's slots (and their ‖v‖₁); one thread per (token, kv head).</summary>
    public static void AppendKv(ArrayView<float> k, ArrayView<float> v, ArrayView<float> keys, ArrayView<float> values, ArrayView<float> norms,
        KvShape s, int layer, int baseCount, int count)
    {
        for (int i = GlobalThread; i < count; i += ThreadCount)
        {
            AppendOne(k, v, keys, values, norms, s, layer, baseCount, i);
        }
    }

    private static void AppendOne(ArrayView<float> k, ArrayView<float> v, ArrayView<float> keys, ArrayView<float> values, ArrayView<float> norms,
        KvShape s, int layer, int baseCount, int i)
    {
        int t = i / s.KvHeads, g = i % s.KvHeads;
        long slot = ((long)layer * s.KvHeads + g) * s.Capacity + baseCount + t;
        long src = ((long)t * s.KvHeads + g) * s.HeadDim;
        float l1 = 0f;
        for (int d = 0; d < s.HeadDim; d++)
        {
            keys[slot * s.HeadDim + d] = k[src + d];
            float vv = v[src + d];
            values[slot * s.HeadDim + d] = vv;
            l1 += XMath.Abs(vv);
        }
        norms[slot] = l1;
    }

    /// <summary>
    /// Causal attention, one warp per (token, query head): scores over the head's cached slots,
    /// softmax (warp max/sum), output = Σ p·v; with track != 0 every probability is also added
    /// (atomically, summed over the GQA group) to received[slot], weighted by ‖v‖₁ when weighted != 0
    /// — VATP's value-norm-weighted attention reduction. Grid (n, heads), groups of 32.
    /// </summary>
    public static void Attention(ArrayView<float> q, ArrayView<float> keys, ArrayView<float> values, ArrayView<float> norms, ArrayView<float> received,
        ArrayView<float> scores, ArrayView<float> output, KvShape s, int layer, int heads, int baseCount, int track, int weighted, int n)
    {
        for (int item = GlobalWarp; item < n * heads; item += WarpCount)
        {
            AttendOne(q, keys, values, norms, received, scores, output, s, layer, heads, baseCount, track, weighted, item / heads, item % heads);
        }
    }

    private static void AttendOne(ArrayView<float> q, ArrayView<float> keys, ArrayView<float> values, ArrayView<float> norms, ArrayView<float> received,
        ArrayView<float> scores, ArrayView<float> output, KvShape s, int layer, int heads, int baseCount, int track, int weighted, int t, int h)
    {
        int lane = ILGPU.Warp.LaneIdx;
        int group = heads / s.KvHeads, g = h / group;
        int count = baseCount + t + 1;
        long head = (long)layer * s.KvHeads + g;
        long slot0 = head * s.Capacity;
        long qBase = ((long)t * heads + h) * s.HeadDim;
        long sBase = ((long)t * heads + h) * s.Capacity;
        float norm = XMath.Sqrt((float)s.HeadDim);
        float max = float.NegativeInfinity;
        for (int j = lane; j < count; j += Warp)
        {
            float dot = 0f;
            long kb = (slot0 + j) * s.HeadDim;
            for (int d = 0; d < s.HeadDim; d++)
            {
                dot += q[qBase + d] * keys[kb + d];
            }
            float sc = dot / norm;
            scores[sBase + j] = sc;
            max = XMath.Max(max, sc);
        }
        max = WarpExtensions.AllReduce<float, MaxFloat>(max);
        float sum = 0f;
        for (int j = lane; j < count; j += Warp)
        {
            float e = XMath.Exp(scores[sBase + j] - max);
            scores[sBase + j] = e;
            sum += e;
        }
        sum = WarpSum(sum);
        for (int j = lane; j < count; j += Warp)
        {
            float p = scores[sBase + j] / sum;
            scores[sBase + j] = p;
            if (track != 0)
            {
                Atomic.Add(ref received[slot0 + j], weighted != 0 ? p * norms[slot0 + j] : p);
            }
        }
        ILGPU.Warp.Barrier();
        for (int d = lane; d < s.HeadDim; d += Warp)
        {
            float acc = 0f;
            for (int j = 0; j < count; j++)
            {
                acc += scores[sBase + j] * values[(slot0 + j) * s.HeadDim + d];
            }
            output[qBase + d] = acc;
        }
    }

    /// <summary>h = silu(g)⊙u.</summary>
    public static void SwiGlu(ArrayView<float> g, ArrayView<float> u, ArrayView<float> h, int count)
    {
        for (int i = GlobalThread; i < count; i += ThreadCount)
        {
            float gv = g[i];
            h[i] = gv * (1f / (1f + XMath.Exp(-gv))) * u[i];
        }
    }

    /// <summary>x[t, masked[j], :] = 0 for every token t and listed head j; thread per element (grid-stride).</summary>
    public static void ZeroHeads(ArrayView<float> x, ArrayView<int> masked, int count, int heads, int headDim, int total)
    {
        for (int i = GlobalThread; i < total; i += ThreadCount)
        {
            int d = i % headDim, j = i / headDim % count, t = i / (headDim * count);
            x[((long)t * heads + masked[j]) * headDim + d] = 0f;
        }
    }

    /// <summary>
    /// KV compaction: for each (from, to) pair of <paramref name="moves"/>, slot from of one head
    /// (slots at <paramref name="first"/>) overwrites slot to — key, value, ‖v‖₁ and received
    /// attention. Sources are kept slots and targets evicted ones, so the moves are independent;
    /// thread per (move, dimension), grid-stride.
    /// </summary>
    public static void MoveSlots(ArrayView<float> keys, ArrayView<float> values, ArrayView<float> norms, ArrayView<float> received,
        ArrayView<int> moves, int count, long first, int headDim)
    {
        for (int i = GlobalThread; i < count * headDim; i += ThreadCount)
        {
            int m = i / headDim, d = i % headDim;
            long from = first + moves[2 * m], to = first + moves[2 * m + 1];
            keys[to * headDim + d] = keys[from * headDim + d];
            values[to * headDim + d] = values[from * headDim + d];
            if (d == 0)
            {
                norms[to] = norms[from];
                received[to] = received[from];
            }
        }
    }

    /// <summary>x[t, j] += bias[j] over n rows of <paramref name="width"/>; grid-stride over n·width.</summary>
    public static void AddBias(ArrayView<float> x, ArrayView<float> bias, int width, int total)
    {
        for (int i = GlobalThread; i < total; i += ThreadCount)
        {
            x[i] += bias[i % width];
        }
    }

    /// <summary>x += d.</summary>
    public static void AddInPlace(ArrayView<float> x, ArrayView<float> d, int count)
    {
        for (int i = GlobalThread; i < count; i += ThreadCount)
        {
            x[i] += d[i];
        }
    }

    /// <summary>dst[dOff + i] = src[sOff + i].</summary>
    public static void Copy(ArrayView<float> src, int sourceOffset, ArrayView<float> dst, int destinationOffset, int count)
    {
        for (int i = GlobalThread; i < count; i += ThreadCount)
        {
            dst[destinationOffset + i] = src[sourceOffset + i];
        }
    }

    /// <summary>
    /// Index of the largest value (ties: lowest index, NaN never wins), one group: each thread
    /// packs its best (value, index) into one key — the float's bits made monotonic in the high
    /// half, the complemented index in the low half — and a group max-reduction picks the winner.
    /// Key 0 means "no value" (empty or all NaN): every real key is larger.
    /// </summary>
    public static void ArgMax(ArrayView<float> x, int offset, int count, ArrayView<int> result)
    {
        int tid = Group.IdxX, size = Group.DimX;
        ulong best = 0;
        for (int i = tid; i < count; i += size)
        {
            float v = x[offset + i];
            if (!float.IsNaN(v))
            {
                ulong key = ((ulong)OrderedBits(v) << 32) | (uint)~i;
                best = key > best ? key : best;
            }
        }
        best = GroupExtensions.AllReduce<ulong, MaxUInt64>(best);
        if (tid == 0)
        {
            result[0] = best == 0 ? -1 : ~(int)(uint)best;
        }
    }

    /// <summary>Float bits mapped so that unsigned order is numeric order (-inf lowest); -0 maps as +0 (they compare equal: the lower index wins).</summary>
    private static uint OrderedBits(float v)
    {
        uint bits = Interop.FloatAsInt(v == 0f ? 0f : v);
        return (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
    }

    /// <summary>Softmax of one row in place (max-subtracted), one group.</summary>
    public static void Softmax(ArrayView<float> x, int offset, int count)
    {
        int tid = Group.IdxX, size = Group.DimX;
        float m = float.NegativeInfinity;
        for (int i = tid; i < count; i += size)
        {
            m = XMath.Max(m, x[offset + i]);
        }
        m = GroupExtensions.AllReduce<float, MaxFloat>(m);
        float sum = 0f;
        for (int i = tid; i < count; i += size)
        {
            float e = XMath.Exp(x[offset + i] - m);
            x[offset + i] = e;
            sum += e;
        }
        sum = GroupSum(sum);
        for (int i = tid; i < count; i += size)
        {
            x[offset + i] /= sum;
        }
    }

    // ---------------------------------------------------------------- dynamic input pruning

    /// <summary>
    /// Top-k of |x| for one vector per 1024-thread group: a bisection over the float bit patterns
    /// finds the k-th largest magnitude (32 counting rounds), then all larger entries and, in index
    /// order, enough equal ones are compacted into selected[0..k) (ties go to the lower index).
    /// </summary>
    public static void TopKAbs(ArrayView<float> x, int length, int k, ArrayView<int> selected, ArrayView<int> counter)
    {
        int tid = Group.IdxX, size = Group.DimX;
        uint prefix = 0;
        for (int bit = 30; bit >= 0; bit--)
        {
            uint candidate = prefix | (1u << bit);
            int c = 0;
            for (int i = tid; i < length; i += size)
            {
                c += (Interop.FloatAsInt(x[i]) & 0x7FFFFFFFu) >= candidate ? 1 : 0;
            }
            if (GroupExtensions.AllReduce<int, AddInt32>(c) >= k)
            {
                prefix = candidate;
            }
        }
        // prefix = bits of the k-th largest |x|. Strictly larger ones first (any order), then ties in index order.
        if (tid == 0)
        {
            counter[0] = 0;
        }
        Group.Barrier();
        for (int i = tid; i < length; i += size)
        {
            if ((Interop.FloatAsInt(x[i]) & 0x7FFFFFFFu) > prefix)
            {
                selected[Atomic.Add(ref counter[0], 1)] = i;
            }
        }
        Group.Barrier();
        if (tid == 0)
        {
            int n = counter[0];
            for (int i = 0; i < length && n < k; i++)
            {
                if ((Interop.FloatAsInt(x[i]) & 0x7FFFFFFFu) == prefix)
                {
                    selected[n++] = i;
                }
            }
            counter[0] = n;
        }
    }

    /// <summary>h[i] = silu(Σ_{j∈sel} x_j·Gᵀ[j, i]) · Σ_{j∈sel} x_j·Uᵀ[j, i] over the selected input columns only; thread per i.</summary>
    public static void MaskedGateUp(DenseView gateT, DenseView upT, ArrayView<float> x, ArrayView<int> selected, int count, ArrayView<float> h)
    {
        for (int i = GlobalThread; i < gateT.Columns; i += ThreadCount)
        {
            float g = 0f, u = 0f;
            for (int s = 0; s < count; s++)
            {
                int j = selected[s];
                float xv = x[j];
                g += xv * gateT.At(j, i);
                u += xv * upT.At(j, i);
            }
            h[i] = g * (1f / (1f + XMath.Exp(-g))) * u;
        }
    }

    /// <summary>y[o] = Σ_{i∈sel} h_i·Dᵀ[i, o]; thread per output o.</summary>
    public static void MaskedDown(DenseView downT, ArrayView<float> h, ArrayView<int> selected, int count, ArrayView<float> y)
    {
        for (int o = GlobalThread; o < downT.Columns; o += ThreadCount)
        {
            float acc = 0f;
            for (int s = 0; s < count; s++)
            {
                int i = selected[s];
                acc += h[i] * downT.At(i, o);
            }
            y[o] = acc;
        }
    }
}

/// <summary>Shape of a compressed input-axis N:M matrix on the device.</summary>
public struct SparseShape
{
    public int Rows, Columns, M, Kept, ValueStride, MetaStride, TailColumns, Grouped;
}

/// <summary>Shape of the device KV cache: [layers][kvHeads][capacity][headDim].</summary>
public struct KvShape
{
    public int KvHeads, Capacity, HeadDim;
}

/// <summary>Element W[r, c] of a weight matrix, for the tiled GEMM (a struct: specialized per format, no virtual calls on the device).</summary>
internal interface ITileWeights
{
    float At(int r, int c);
}

/// <summary>An input-axis N:M matrix as the row kernels walk it: kept value k of a row, the column it multiplies, the dense tail.</summary>
internal interface INmWeights
{
    SparseShape Shape { get; }

    float Kept(int r, int k);

    int Column(int r, int k);

    float TailAt(int r, int c);
}
