using System.Runtime.Intrinsics.X86;
using Kernels.Simd.Matrices;
using Kernels.Simd.Threading;

namespace Kernels.Simd.Quantized;

/// <summary>
/// y = x · Wᵀ for quantized weights, reading the blocks in place; multithreaded over rows.
/// </summary>
/// <remarks>
/// <para>Q8_0, Q4_0, Q4_K, Q5_K and Q6_K take integer kernels (<see cref="Int8RowDots"/>): x is
/// quantized once per call to int8 blocks of 32 with float scales, like llama.cpp does, so their
/// results differ from the float product by that rounding of x (at most half a step of each
/// block's scale per element). The other formats dequantize one block at a time and take
/// exact float dot products. Inf/NaN block scales propagate like in llama.cpp.</para>
/// <para>For 2-15
/// tokens each row is decoded once into int8 values and scales and multiplied with four tokens
/// at a time while it sits in L1 (<see cref="Int8Gemm"/>); from <see cref="PanelTokens"/> tokens
/// on, panels of rows are dequantized exactly to float32 and multiplied by the dense GEMM.</para>
/// </remarks>
public static unsafe class QuantizedMatMul
{
    /// <summary>The byte dot product the integer kernels use on this machine.</summary>
    public static Int8DotKind DotKind { get; } =
        SimdInfo.Tier >= SimdTier.Vector256 && Avx2.IsSupported && Fma.IsSupported
            ? Int8DotKind.Madd
            : Int8DotKind.Scalar;

    /// <summary>y[n, Rows] = x[n, Columns] · Wᵀ.</summary>
    public static void Multiply(QuantizedMatrix w, float* x, float* y, int n) =>
        Multiply(w, x, y, n, n == 1 && WidensOneToken(w.Type) ? Int8DotKind.Widened : DotKind);

    /// <summary>
    /// One-token Q4_0 products widen the weights to float (<see cref="WideningRowDots"/>) where
    /// AVX-512 allows: measured 20-30 % faster than the integer kernel at TinyLlama's shapes once
    /// the scales came from the table and the other kernels' scale conversion lost its branch
    /// (docs/reports/quantized), and exact in x. Q8_0 measured even and stays integer.
    /// </summary>
    public static bool WidensOneToken(QuantType type) =>
        type == QuantType.Q4_0 && DotKind == Int8DotKind.Madd && WideningRowDots.IsSupported;

    /// <summary>As <see cref="Multiply(QuantizedMatrix, float*, float*, int)"/> with an explicit byte dot product (tests run every one the CPU has).</summary>
    public static void Multiply(QuantizedMatrix w, float* x, float* y, int n, Int8DotKind kind)
    {
        if (n == 0 || w.Rows == 0)
        {
            return;
        }
        if (kind == Int8DotKind.Madd && !(Avx2.IsSupported && Fma.IsSupported)
            || kind == Int8DotKind.Widened && !(WideningRowDots.IsSupported && n == 1 && w.Type is QuantType.Q8_0 or QuantType.Q4_0))
        {
            ThrowHelper.NotSupported($"{kind} products of {w.Type} weights and {n} token(s) are not supported on this CPU");
        }
        long work = w.ByteSize * Math.Max(1, n / 8);
        bool parallel = work >= DenseGemv.ParallelThresholdBytes && WorkerPool.Shared.ThreadCount > 1;
        int minChunk = (int)Math.Max(1, DenseGemv.ChunkBytes / Math.Max(1, w.RowStrideBytes));
        if (n >= PanelTokens && kind != Int8DotKind.Scalar)
        {
            MultiplyByPanels(w, x, y, n);
        }
        else if (kind == Int8DotKind.Widened)
        {
            var job = new WidenedJob(w, x, y);
            Run(ref job, w.Rows, minChunk, parallel);
        }
        else if (Int8RowDots.Supports(w.Type))
        {
            var xq = QuantizedInput.ForCurrentThread;
            xq.Quantize(x, w.Columns, n, simd: kind != Int8DotKind.Scalar);
            if (n > 1 && kind == Int8DotKind.Madd)
            {
                var job = new Int8GemmJob<MaddDot>(w, xq, y, n);
                Run(ref job, w.Rows, minChunk, parallel);
            }
            else
            {
                var job = new Int8Job(w, xq, y, n, kind);
                Run(ref job, w.Rows, minChunk, parallel);
            }
        }
        else
        {
            var job = new DequantizedJob(w, x, y, n);
            Run(ref job, w.Rows, minChunk, parallel);
        }
    }

    /// <summary>From this many tokens on, products go through dequantized float panels and the dense GEMM.</summary>
    internal const int PanelTokens = 16;

    /// <summary>Bytes of one dequantized panel (a slice of rows as float32).</summary>
    private const long PanelBytes = 8L << 20;

    [ThreadStatic] private static NativeBuffer? t_panel;
    [ThreadStatic] private static NativeBuffer? t_panelOutput;

    /// <summary>
    /// Prefill: the rows are dequantized (exactly, <see cref="Dequantization"/>) a panel at a time
    /// into float32 and multiplied by the dense GEMM, whose register tiles reuse every weight
    /// across many tokens; the integer tile kernel paid a conversion and a scale per block and
    /// token, and ran at about the same speed for every format (measured: docs/reports/quantized).
    /// </summary>
    private static void MultiplyByPanels(QuantizedMatrix w, float* x, float* y, int n)
    {
        int rows = w.Rows, cols = w.Columns;
        int panelRows = (int)Math.Clamp(PanelBytes / Math.Max(1, cols * 4L), 1, rows);
        var panel = Reserve(ref t_panel, (long)panelRows * cols * 4);
        var output = Reserve(ref t_panelOutput, (long)panelRows * n * 4);
        for (int r0 = 0; r0 < rows; r0 += panelRows)
        {
            int count = Math.Min(panelRows, rows - r0);
            var job = new DequantizeRowsJob(w, r0, (float*)panel.Pointer);
            DequantizePanel(ref job, count);
            using (var dense = new DenseMatrix(w.Name, count, cols, ElementType.F32, panel.Pointer, null))
            {
                DenseGemm.Multiply(dense, x, (float*)output.Pointer, n);
            }
            ScatterPanel((float*)output.Pointer, count, y, rows, r0, n);
        }
    }

    /// <summary>Runs a panel's dequantization job over its <paramref name="count"/> rows, on every thread of the pool.</summary>
    internal static void DequantizePanel<TJob>(ref TJob job, int count) where TJob : struct, IRangeJob
    {
        if (WorkerPool.Shared.ThreadCount > 1)
        {
            WorkerPool.Shared.For(count, Math.Max(1, count / (4 * WorkerPool.Shared.ThreadCount)), ref job);
        }
        else
        {
            job.Execute(0, count);
        }
    }

    /// <summary>Copies a panel's outputs [n, count] into columns [r0, r0 + count) of y [n, rows].</summary>
    internal static void ScatterPanel(float* panelOutput, int count, float* y, int rows, int r0, int n)
    {
        for (int t = 0; t < n; t++)
        {
            new ReadOnlySpan<float>(panelOutput + (long)t * count, count).CopyTo(new Span<float>(y + (long)t * rows + r0, count));
        }
    }

    /// <summary>A thread's scratch buffer of at least <paramref name="bytes"/> (grown, never shrunk).</summary>
    internal static NativeBuffer Reserve(ref NativeBuffer? buffer, long bytes)
    {
        if (buffer is null || buffer.ByteLength < bytes)
        {
            buffer?.Dispose();
            buffer = new NativeBuffer(Math.Max(bytes, 64));
        }
        return buffer;
    }

    private readonly struct DequantizeRowsJob(QuantizedMatrix w, int first, float* panel) : IRangeJob
    {
        private readonly byte* _data = w.Data;
        private readonly long _stride = w.RowStrideBytes;
        private readonly int _columns = w.Columns;
        private readonly QuantType _type = w.Type;

        public void Execute(int begin, int end)
        {
            for (int r = begin; r < end; r++)
            {
                Dequantization.Row(_type, _data + (first + r) * _stride, panel + (long)r * _columns, _columns);
            }
        }
    }

    /// <summary>Most matrices <see cref="MultiplyMany"/> takes at once.</summary>
    public const int MaxShared = 4;

    /// <summary>
    /// y_i = W_i x (one token) for up to <see cref="MaxShared"/> matrices with the same columns
    /// (Q/K/V, gate/up; their formats may differ, as in Q4_K_M files): x is quantized once and
    /// all rows run in one parallel region.
    /// </summary>
    public static void MultiplyMany(ReadOnlySpan<QuantizedMatrix> ws, float* x, ReadOnlySpan<nint> ys)
    {
        if (ws.Length == 0 || ws.Length != ys.Length || ws.Length > MaxShared)
        {
            ThrowHelper.Argument($"MultiplyMany takes 1 to {MaxShared} matrices with one output each (got {ws.Length} and {ys.Length})", nameof(ws));
        }
        bool integer = DotKind != Int8DotKind.Scalar, quantizeX = false;
        long bytes = 0;
        foreach (var w in ws)
        {
            if (w.Columns != ws[0].Columns)
            {
                ThrowHelper.ShapeMismatch($"{w.Name}: {w.Columns} columns cannot share a GEMV with {ws[0].Name} ({ws[0].Columns} columns)");
            }
            integer &= Int8RowDots.Supports(w.Type);
            quantizeX |= !WidensOneToken(w.Type);
            bytes += w.ByteSize;
        }
        if (!integer)
        {
            for (int i = 0; i < ws.Length; i++)
            {
                Multiply(ws[i], x, (float*)ys[i], 1);
            }
            return;
        }
        var xq = QuantizedInput.ForCurrentThread;
        if (quantizeX)
        {
            xq.Quantize(x, ws[0].Columns, 1);
        }
        var job = new ManyJob(xq, x, ws[0].Columns / QuantizedInput.BlockSize);
        long minRowBytes = long.MaxValue;
        for (int i = 0; i < ws.Length; i++)
        {
            job.Add(ws[i], (float*)ys[i], DotKind);
            minRowBytes = Math.Min(minRowBytes, Math.Max(1, ws[i].RowStrideBytes));
        }
        bool parallel = bytes >= DenseGemv.ParallelThresholdBytes && WorkerPool.Shared.ThreadCount > 1;
        Run(ref job, job.Rows, (int)Math.Max(1, DenseGemv.ChunkBytes / minRowBytes), parallel);
    }

    private static void Run<TJob>(ref TJob job, int rows, int minChunk, bool parallel) where TJob : struct, IRangeJob
    {
        if (parallel)
        {
            WorkerPool.Shared.ForGuided(rows, minChunk, ref job);
        }
        else
        {
            job.Execute(0, rows);
        }
    }

    /// <summary>The rows of several matrices, numbered one after another, each with its output and row dots.</summary>
    /// <param name="xq">x quantized (read by the integer dot products only).</param>
    /// <param name="x">x as float (read by the widened Q4_0 rows).</param>
    /// <param name="blocks">Blocks of 32 per row.</param>
    private struct ManyJob(QuantizedInput xq, float* x, int blocks) : IRangeJob
    {
        private fixed long _data[MaxShared];
        private fixed long _stride[MaxShared];
        private fixed long _y[MaxShared];
        /// <summary>The integer dot product, or 0 for a matrix whose rows are widened to float.</summary>
        private fixed long _dot[MaxShared];
        private fixed int _ends[MaxShared];
        private int _count;
        private readonly int _blocks = blocks;
        private readonly float* _x = x;
        private readonly sbyte* _qx = xq.Values;
        private readonly float* _dx = xq.Scales;
        private readonly float* _sx = xq.Sums;

        public readonly int Rows => _count == 0 ? 0 : _ends[_count - 1];

        public void Add(QuantizedMatrix w, float* y, Int8DotKind kind)
        {
            _data[_count] = (long)w.Data;
            _stride[_count] = w.RowStrideBytes;
            _y[_count] = (long)y;
            _dot[_count] = WidensOneToken(w.Type) ? 0 : (long)Int8RowDots.For(w.Type, kind);
            _ends[_count] = Rows + w.Rows;
            _count++;
        }

        public readonly void Execute(int begin, int end)
        {
            int start = 0;
            for (int m = 0; m < _count && begin < end; start = _ends[m++])
            {
                if (begin >= _ends[m])
                {
                    continue;
                }
                int stop = Math.Min(end, _ends[m]);
                var dot = (delegate*<byte*, sbyte*, float*, float*, int, float>)_dot[m];
                byte* data = (byte*)_data[m];
                float* y = (float*)_y[m];
                if (dot == null)
                {
                    WideningRowDots.Rows(QuantType.Q4_0, data, _stride[m], _x, y, _blocks, begin - start, stop - start);
                }
                else
                {
                    for (int r = begin - start; r < stop - start; r++)
                    {
                        y[r] = dot(data + r * _stride[m], _qx, _dx, _sx, _blocks);
                    }
                }
                begin = stop;
            }
        }
    }

    /// <summary>One token, Q8_0/Q4_0 widened to float (<see cref="WideningRowDots"/>).</summary>
    private readonly struct WidenedJob(QuantizedMatrix w, float* x, float* y) : IRangeJob
    {
        private readonly byte* _data = w.Data;
        private readonly long _stride = w.RowStrideBytes;
        private readonly int _blocks = w.Columns / 32;
        private readonly QuantType _type = w.Type;

        public void Execute(int begin, int end) => WideningRowDots.Rows(_type, _data, _stride, x, y, _blocks, begin, end);
    }

    private readonly struct Int8Job : IRangeJob
    {
        private readonly byte* _w;
        private readonly long _stride;
        private readonly int _rows;
        private readonly int _blocks;
        private readonly sbyte* _qx;
        private readonly float* _dx;
        private readonly float* _sx;
        private readonly float* _y;
        private readonly int _n;
        private readonly delegate*<byte*, sbyte*, float*, float*, int, float> _dot;

        public Int8Job(QuantizedMatrix w, QuantizedInput x, float* y, int n, Int8DotKind kind)
        {
            _w = w.Data;
            _stride = w.RowStrideBytes;
            _rows = w.Rows;
            _blocks = x.BlocksPerToken;
            _qx = x.Values;
            _dx = x.Scales;
            _sx = x.Sums;
            _y = y;
            _n = n;
            _dot = Int8RowDots.For(w.Type, kind);
        }

        public void Execute(int begin, int end)
        {
            for (int r = begin; r < end; r++)
            {
                byte* row = _w + r * _stride;
                for (int t = 0; t < _n; t++)
                {
                    long b = (long)t * _blocks;
                    _y[(long)t * _rows + r] = _dot(row, _qx + b * QuantizedInput.BlockSize, _dx + b, _sx + b, _blocks);
                }
            }
        }
    }

    /// <summary>Several tokens: each row decoded once (<see cref="Int8Gemm"/>), then multiplied with four tokens at a time.</summary>
    private readonly struct Int8GemmJob<TDot> : IRangeJob where TDot : struct, IByteDot
    {
        private readonly byte* _w;
        private readonly long _stride;
        private readonly int _rows;
        private readonly int _columns;
        private readonly QuantType _type;
        private readonly QuantizedInput _x;
        private readonly float* _y;
        private readonly int _n;

        public Int8GemmJob(QuantizedMatrix w, QuantizedInput x, float* y, int n)
        {
            _w = w.Data;
            _stride = w.RowStrideBytes;
            _rows = w.Rows;
            _columns = w.Columns;
            _type = w.Type;
            _x = x;
            _y = y;
            _n = n;
        }

        public void Execute(int begin, int end)
        {
            byte* scratch = stackalloc byte[Int8Gemm.ScratchBytes(_columns)];
            var decoded = Int8Gemm.Layout(scratch, _columns);
            for (int r = begin; r < end; r++)
            {
                Int8Gemm.Decode(_type, _w + r * _stride, _columns, decoded);
                for (int t = 0; t < _n; t += 4)
                {
                    Int8Gemm.Tile<TDot>(decoded, _columns / 32, _x, t, Math.Min(4, _n - t), _y + (long)t * _rows + r, _rows);
                }
            }
        }
    }

    private readonly struct DequantizedJob : IRangeJob
    {
        private readonly byte* _w;
        private readonly long _stride;
        private readonly int _rows;
        private readonly int _columns;
        private readonly QuantType _type;
        private readonly float* _x;
        private readonly float* _y;
        private readonly int _n;

        public DequantizedJob(QuantizedMatrix w, float* x, float* y, int n)
        {
            _w = w.Data;
            _stride = w.RowStrideBytes;
            _rows = w.Rows;
            _columns = w.Columns;
            _type = w.Type;
            _x = x;
            _y = y;
            _n = n;
        }

        public void Execute(int begin, int end)
        {
            int k = _type.BlockElements(), bytes = _type.BlockBytes();
            float* block = stackalloc float[256];
            for (int r = begin; r < end; r++)
            {
                byte* row = _w + r * _stride;
                for (int t = 0; t < _n; t++)
                {
                    _y[(long)t * _rows + r] = 0;
                }
                for (int c = 0; c < _columns; c += k, row += bytes)
                {
                    Dequantization.Block(_type, row, block);
                    for (int t = 0; t < _n; t++)
                    {
                        _y[(long)t * _rows + r] += VectorMath.Dot(block, _x + (long)t * _columns + c, k);
                    }
                }
            }
        }
    }
}
