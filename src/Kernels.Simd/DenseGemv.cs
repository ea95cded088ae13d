using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Kernels.Simd.Matrices;
using Kernels.Simd.Threading;
using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>
/// Dense matrix-vector product y = W x (decode, one token), F32/F16/BF16 weights, float
/// activations; multithreaded over rows.
/// </summary>
/// <remarks>
/// <para>Bandwidth-bound, so the access pattern decides the speed. Each thread takes a piece of
/// rows (guided: large pieces first, small ones at the end) and streams two rows at once, one
/// from each half of its piece, front to back: two sequential streams far apart. Measured here
/// (docs/reports/peers): neighbouring rows streamed together ran at about two thirds of the
/// bandwidth of a single row (4 rows: 41 vs 61 GB/s, 2 rows: 29 vs 42), while two rows half a
/// piece apart ran 10-18 % faster than one.</para>
/// <para>16-bit weights are widened in pairs without shuffles: a vector of 2·Count halves is
/// split into its even and odd 16-bit lanes (shift and mask, <see cref="IFloatVector{TVec}.LoadHalfPairInterleaved"/>),
/// and x is permuted once per call into the same even/odd order (<see cref="PairedInput"/>).
/// For F16 the activations are also pre-multiplied by 2¹¹², which turns the widening into two
/// integer operations per vector and makes every product bit-identical to the rebiased one; when a
/// scaled activation would overflow, the rebias multiply is kept instead. Weights holding Inf/NaN
/// take the exact general widening.</para>
/// <para>Summation order per row: lane-wise into two accumulators, then a horizontal sum, then
/// the tail that does not fill a block, in order; the same whether a row is streamed alone or
/// beside another, so results do not depend on how the threads split the rows.</para>
/// </remarks>
public static unsafe class DenseGemv
{
    /// <summary>Below this many weight bytes a GEMV runs on the calling thread only.</summary>
    internal const long ParallelThresholdBytes = 256 * 1024;

    /// <summary>Smallest piece of weight bytes handed to a thread (guided scheduling hands out larger ones first).</summary>
    internal const long ChunkBytes = 64 * 1024;

    /// <summary>Most matrices <see cref="MultiplyMany"/> takes at once.</summary>
    public const int MaxShared = RowSet.Capacity;

    /// <summary>y[Rows] = W[Rows, Columns] · x[Columns].</summary>
    public static void Multiply(DenseMatrix w, float* x, float* y)
    {
        var rows = new RowSet(w.ElementType, w.Columns);
        rows.Add(w, y);
        Multiply(ref rows, x, w);
    }

    /// <summary>
    /// y_i = W_i x for up to <see cref="RowSet.Capacity"/> matrices that share x, in one parallel
    /// region (Q/K/V, gate/up): one fork/join and one permutation of x instead of one per matrix.
    /// Every matrix must have the same columns and element type.
    /// </summary>
    public static void MultiplyMany(ReadOnlySpan<DenseMatrix> ws, float* x, ReadOnlySpan<nint> ys)
    {
        if (ws.Length == 0 || ws.Length != ys.Length || ws.Length > RowSet.Capacity)
        {
            ThrowHelper.Argument($"MultiplyMany takes 1 to {RowSet.Capacity} matrices with one output each (got {ws.Length} and {ys.Length})", nameof(ws));
        }
        var rows = new RowSet(ws[0].ElementType, ws[0].Columns);
        bool finite = true;
        for (int i = 0; i < ws.Length; i++)
        {
            if (ws[i].ElementType != rows.Type || ws[i].Columns != rows.Columns)
            {
                ThrowHelper.ShapeMismatch($"{ws[i].Name}: {ws[i].ElementType} with {ws[i].Columns} columns cannot share a GEMV with {ws[0].Name} ({rows.Type}, {rows.Columns} columns)");
            }
            rows.Add(ws[i], (float*)ys[i]);
            finite &= ws[i].ElementType != ElementType.F16 || ws[i].HalfValuesFinite;
        }
        Multiply(ref rows, x, ws[0], finite);
    }

    private static void Multiply(ref RowSet rows, float* x, DenseMatrix first) => Multiply(ref rows, x, first, first.ElementType != ElementType.F16 || first.HalfValuesFinite);

    private static void Multiply(ref RowSet rows, float* x, DenseMatrix first, bool halvesFinite)
    {
        switch (rows.Type)
        {
            case ElementType.F32: Natural<F32Loader>(ref rows, x); break;
            case ElementType.F16 when halvesFinite && SimdInfo.Tier != SimdTier.Scalar:
                float* scaled = PairedInput.TryPermute(x, rows.Columns, PairWidth, SparseF16ScaledInputValues.InputScale);
                if (scaled != null)
                {
                    Paired<SparseF16ScaledInputValues, F16Loader>(ref rows, x, scaled);
                }
                else
                {
                    Paired<SparseF16Values, F16Loader>(ref rows, x, PairedInput.TryPermute(x, rows.Columns, PairWidth, 1f));
                }
                break;
            case ElementType.F16: Natural<F16Loader>(ref rows, x); break;
            case ElementType.BF16 when SimdInfo.Tier != SimdTier.Scalar:
                Paired<SparseBF16Values, BF16Loader>(ref rows, x, PairedInput.TryPermute(x, rows.Columns, PairWidth, 1f));
                break;
            case ElementType.BF16: Natural<BF16Loader>(ref rows, x); break;
            default: ThrowHelper.NotSupported($"{first.Name}: element type {rows.Type}"); break;
        }
    }

    /// <summary>Elements per even/odd pair of vectors at the dispatched tier.</summary>
    private static int PairWidth => 2 * Math.Max(4, SimdDispatch.Lanes);

    /// <summary>The rows of up to four matrices with the same columns, numbered one after another, with their outputs.</summary>
    internal struct RowSet
    {
        public const int Capacity = 4;

        private fixed long _data[Capacity];
        private fixed long _outputs[Capacity];
        private fixed int _ends[Capacity];

        public RowSet(ElementType type, int columns)
        {
            Type = type;
            Columns = columns;
        }

        public ElementType Type { get; }

        public int Columns { get; }

        public int Count { get; private set; }

        /// <summary>Rows of all matrices together.</summary>
        public int Rows { get; private set; }

        /// <summary>Weight bytes of all matrices together.</summary>
        public readonly long Bytes => (long)Rows * Columns * Type.Size();

        public void Add(DenseMatrix w, float* y)
        {
            _data[Count] = (long)w.Data;
            _outputs[Count] = (long)y;
            Rows += w.Rows;
            _ends[Count] = Rows;
            Count++;
        }

        /// <summary>Matrix <paramref name="segment"/>'s data, output and local rows [from, to) that fall in [begin, end) of the numbering (from ≥ to when none).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Slice(int segment, int begin, int end, out byte* data, out float* outputs, out int from, out int to)
        {
            int start = segment == 0 ? 0 : _ends[segment - 1];
            from = Math.Max(begin, start) - start;
            to = Math.Min(end, _ends[segment]) - start;
            data = (byte*)_data[segment];
            outputs = (float*)_outputs[segment];
        }
    }

    private static void Natural<TLoad>(ref RowSet rows, float* x) where TLoad : struct, IWeightLoader
    {
        var width = new NaturalByWidth<TLoad> { Rows = rows, X = x };
        SimdDispatch.Run(ref width);
    }

    private struct NaturalByWidth<TLoad> : IWidthKernel where TLoad : struct, IWeightLoader
    {
        public RowSet Rows;
        public float* X;

        public readonly void Vector<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
        {
            var job = new NaturalJob<TTier, TVec, TLoad> { Rows = Rows, X = X };
            Schedule(Rows, ref job);
        }

        public readonly void Scalar()
        {
            var job = new ScalarJob<TLoad> { Rows = Rows, X = X };
            Schedule(Rows, ref job);
        }
    }

    /// <param name="paired">x permuted into even/odd blocks and multiplied by TValues.InputScale (<see cref="PairedInput"/>).</param>
    private static void Paired<TValues, TLoad>(ref RowSet rows, float* x, float* paired)
        where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
    {
        var width = new PairedByWidth<TValues, TLoad> { Rows = rows, X = x, PairedX = paired };
        SimdDispatch.Run(ref width);
    }

    private struct PairedByWidth<TValues, TLoad> : IWidthKernel where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
    {
        public RowSet Rows;
        public float* X, PairedX;

        public readonly void Vector<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
        {
            var job = new PairedJob<TTier, TVec, TValues, TLoad> { Rows = Rows, X = X, Paired = PairedX };
            Schedule(Rows, ref job);
        }

        /// <summary>The paired layout is built for vectors: the scalar tier runs the 128-bit instantiation (software-emulated lanes).</summary>
        public readonly void Scalar() => Vector<Vec128, System.Runtime.Intrinsics.Vector128<float>>();
    }

    private static void Schedule<TJob>(in RowSet rows, ref TJob job) where TJob : struct, IRangeJob
    {
        if (rows.Bytes < ParallelThresholdBytes)
        {
            job.Execute(0, rows.Rows);
            return;
        }
        long rowBytes = Math.Max(1, (long)rows.Columns * rows.Type.Size());
        WorkerPool.Shared.ForGuided(rows.Rows, (int)Math.Max(1, ChunkBytes / rowBytes), ref job);
    }

    /// <summary>Rows in storage order against x in natural order (F32, and F16/BF16 without a paired path).</summary>
    private struct NaturalJob<TTier, TVec, TLoad> : IRangeJob
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TLoad : struct, IWeightLoader
    {
        public RowSet Rows;
        public float* X;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            int k = Rows.Columns;
            long stride = (long)k * TLoad.Type.Size();
            for (int s = 0; s < Rows.Count; s++)
            {
                Rows.Slice(s, begin, end, out byte* w, out float* y, out int from, out int to);
                int h = Math.Max(0, to - from) / 2;
                for (int r = from; r < from + h; r++)
                {
                    Dot2(w + r * stride, w + (r + h) * stride, X, k, out y[r], out y[r + h]);
                }
                for (int r = from + 2 * h; r < to; r++)
                {
                    y[r] = Dot(w + r * stride, X, k);
                }
            }
        }

        /// <summary>Two rows far apart at once (see <see cref="DenseGemv"/>); each row's sum in the order of <see cref="Dot"/> with two accumulators.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Dot2(byte* w0, byte* w1, float* x, int k, out float y0, out float y1)
        {
            int n = TTier.Count;
            if (k < n)
            {
                y0 = Dot(w0, x, k);
                y1 = Dot(w1, x, k);
                return;
            }
            TVec a0 = TTier.Zero, a1 = TTier.Zero, b0 = TTier.Zero, b1 = TTier.Zero;
            nint j = 0;
            for (; j <= k - 2 * n; j += 2 * n)
            {
                TVec x0 = TTier.Load(x + j), x1 = TTier.Load(x + j + n);
                a0 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w0, j), x0, a0);
                b0 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w1, j), x0, b0);
                a1 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w0, j + n), x1, a1);
                b1 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w1, j + n), x1, b1);
            }
            if (j <= k - n)
            {
                TVec x0 = TTier.Load(x + j);
                a0 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w0, j), x0, a0);
                b0 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w1, j), x0, b0);
                j += n;
            }
            int rem = k - (int)j;
            if (rem > 0)
            {
                nint t = k - n;
                TVec xt = TTier.Load(x + t);
                a1 = TTier.Add(a1, TTier.KeepLast(TTier.Multiply(TLoad.Load<TTier, TVec>(w0, t), xt), rem));
                b1 = TTier.Add(b1, TTier.KeepLast(TTier.Multiply(TLoad.Load<TTier, TVec>(w1, t), xt), rem));
            }
            y0 = TTier.Sum(TTier.Add(a0, a1));
            y1 = TTier.Sum(TTier.Add(b0, b1));
        }

        /// <summary>One row in exactly the order <see cref="Dot2"/> sums each of its rows (results do not depend on how rows were paired).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static float Dot(byte* w, float* x, int k)
        {
            int n = TTier.Count;
            if (k < n)
            {
                float s = 0f;
                for (int i = 0; i < k; i++)
                {
                    s += TLoad.LoadScalar(w, i) * x[i];
                }
                return s;
            }
            TVec a0 = TTier.Zero, a1 = TTier.Zero;
            nint j = 0;
            for (; j <= k - 2 * n; j += 2 * n)
            {
                a0 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w, j), TTier.Load(x + j), a0);
                a1 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w, j + n), TTier.Load(x + j + n), a1);
            }
            if (j <= k - n)
            {
                a0 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w, j), TTier.Load(x + j), a0);
                j += n;
            }
            int rem = k - (int)j;
            if (rem > 0)
            {
                // One overlapping vector; the lanes already summed are masked to zero.
                nint t = k - n;
                a1 = TTier.Add(a1, TTier.KeepLast(TTier.Multiply(TLoad.Load<TTier, TVec>(w, t), TTier.Load(x + t)), rem));
            }
            return TTier.Sum(TTier.Add(a0, a1));
        }
    }

    /// <summary>16-bit rows widened as even/odd pairs against the permuted x; the tail that fills no pair in scalar code against the original x.</summary>
    private struct PairedJob<TTier, TVec, TValues, TLoad> : IRangeJob
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
    {
        public RowSet Rows;
        public float* X;
        public float* Paired;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            int k = Rows.Columns;
            long stride = (long)k * TLoad.Type.Size();
            for (int s = 0; s < Rows.Count; s++)
            {
                Rows.Slice(s, begin, end, out byte* w, out float* y, out int from, out int to);
                int h = Math.Max(0, to - from) / 2;
                for (int r = from; r < from + h; r++)
                {
                    Dot2(w + r * stride, w + (r + h) * stride, Paired, X, k, out y[r], out y[r + h]);
                }
                for (int r = from + 2 * h; r < to; r++)
                {
                    y[r] = Dot(w + r * stride, Paired, X, k);
                }
            }
        }

        /// <summary>Two rows far apart at once (see <see cref="DenseGemv"/>).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Dot2(byte* w0, byte* w1, float* xp, float* x, int k, out float y0, out float y1)
        {
            int n = TTier.Count, pair = 2 * n;
            int full = k / pair * pair;
            TVec a0 = TTier.Zero, a1 = TTier.Zero, b0 = TTier.Zero, b1 = TTier.Zero;
            for (nint j = 0; j < full; j += pair)
            {
                TVec xe = TTier.Load(xp + j), xo = TTier.Load(xp + j + n);
                TValues.LoadPair<TTier, TVec>(w0, j, out TVec e0, out TVec o0);
                TValues.LoadPair<TTier, TVec>(w1, j, out TVec e1, out TVec o1);
                a0 = TTier.MultiplyAdd(e0, xe, a0);
                a1 = TTier.MultiplyAdd(o0, xo, a1);
                b0 = TTier.MultiplyAdd(e1, xe, b0);
                b1 = TTier.MultiplyAdd(o1, xo, b1);
            }
            float s0 = TTier.Sum(TTier.Add(a0, a1)), s1 = TTier.Sum(TTier.Add(b0, b1));
            for (int i = full; i < k; i++)
            {
                s0 += TLoad.LoadScalar(w0, i) * x[i];
                s1 += TLoad.LoadScalar(w1, i) * x[i];
            }
            y0 = s0;
            y1 = s1;
        }

        /// <summary>One row in exactly the order <see cref="Dot2"/> sums each of its rows.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static float Dot(byte* w, float* xp, float* x, int k)
        {
            int n = TTier.Count, pair = 2 * n;
            int full = k / pair * pair;
            TVec a0 = TTier.Zero, a1 = TTier.Zero;
            for (nint j = 0; j < full; j += pair)
            {
                TValues.LoadPair<TTier, TVec>(w, j, out TVec e, out TVec o);
                a0 = TTier.MultiplyAdd(e, TTier.Load(xp + j), a0);
                a1 = TTier.MultiplyAdd(o, TTier.Load(xp + j + n), a1);
            }
            float s = TTier.Sum(TTier.Add(a0, a1));
            for (int i = full; i < k; i++)
            {
                s += TLoad.LoadScalar(w, i) * x[i];
            }
            return s;
        }
    }

    private struct ScalarJob<TLoad> : IRangeJob where TLoad : struct, IWeightLoader
    {
        public RowSet Rows;
        public float* X;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            int k = Rows.Columns;
            long stride = (long)k * TLoad.Type.Size();
            for (int s = 0; s < Rows.Count; s++)
            {
                Rows.Slice(s, begin, end, out byte* data, out float* y, out int from, out int to);
                for (int r = from; r < to; r++)
                {
                    byte* w = data + r * stride;
                    float acc = 0f;
                    for (int i = 0; i < k; i++)
                    {
                        acc += TLoad.LoadScalar(w, i) * X[i];
                    }
                    y[r] = acc;
                }
            }
        }
    }
}
