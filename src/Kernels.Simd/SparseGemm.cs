using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;
using Kernels.Simd.Threading;
using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>
/// Y[n, Rows] = X[n, Columns] · Wᵀ for an input-axis N:M matrix (<see cref="NmSparseMatrix"/>),
/// decode (n = 1) and prefill (n &gt; 1) alike; multithreaded over rows.
/// </summary>
/// <remarks>
/// Tiles of 4 rows x 4 tokens (4 x 1 for single tokens): per step of one vector of kept values,
/// each row's metadata is decoded once into permute indices, each token's 2-vector window of x
/// is loaded once, and one two-source permute per (row, token) gathers the activations that
/// meet that row's kept weights. Only kept values and their index bits are read from memory,
/// which is what makes decode up to 2x faster than dense. Remainders of fewer than one vector of
/// kept values per row and the dense tail columns are summed in scalar code. Batches of
/// <see cref="BroadcastMinTokens"/> or more go to <see cref="SparseBroadcastGemm"/> instead.
/// </remarks>
public static unsafe class SparseGemm
{
    public static void Multiply(NmSparseMatrix w, float* x, float* y, int n) => Multiply(w, x, y, n, SparseKernel.Auto);

    /// <summary>Kernel choice for 256/512-bit tiers; tests force each one.</summary>
    internal enum SparseKernel
    {
        Auto,
        Permute,
        Broadcast,
    }

    internal static void Multiply(NmSparseMatrix w, float* x, float* y, int n, SparseKernel kernel)
    {
        if (n <= 0 || w.Rows == 0)
        {
            return;
        }
        bool broadcast = kernel == SparseKernel.Broadcast || kernel == SparseKernel.Auto && n >= BroadcastMinTokens;
        switch (w.ValueType)
        {
            case ElementType.F32: ByPattern<SparseF32Values, F32Loader>(w, Rows.Of(w), x, x, y, n, broadcast); break;
            case ElementType.F16 when w.HalfValuesFinite:
                // The permute kernels take the rebias from pre-scaled activations (the broadcast kernel and the scalar tier rebias themselves).
                float* scaled = !broadcast && HasPermuteKernels
                    ? ScaledInput.TryScale(x, (long)n * w.Columns, SparseF16ScaledInputValues.InputScale)
                    : null;
                if (scaled != null)
                {
                    ByPattern<SparseF16ScaledInputValues, F16Loader>(w, Rows.Of(w), x, scaled, y, n, broadcast);
                }
                else
                {
                    ByPattern<SparseF16Values, F16Loader>(w, Rows.Of(w), x, x, y, n, broadcast);
                }
                break;
            case ElementType.F16: Scalar<SparseF16Values, F16Loader>(w, Rows.Of(w), x, y, n); break; // Inf/NaN weights: exact scalar path
            default: ByPattern<SparseBF16Values, BF16Loader>(w, Rows.Of(w), x, x, y, n, broadcast); break;
        }
    }

    private static void Scalar<TValues, TLoad>(WeightMatrix w, Rows rows, float* x, float* y, int n) where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
    {
        var job = new ScalarJob<TValues, TLoad> { Rows = rows, X = x, Y = y, N = n };
        Schedule(w, n, ref job);
    }

    /// <summary>Y[n, Rows] = X[n, Columns] · Wᵀ for N:M rows whose kept values are int8 or 4-bit blocks (<see cref="NmQuantizedMatrix"/>).</summary>
    public static void Multiply(NmQuantizedMatrix w, float* x, float* y, int n)
    {
        if (n <= 0 || w.Rows == 0)
        {
            return;
        }
        // Prefill panels for 8-bit kept values only: with 4-bit ones, a model's decode after a
        // panel prefill ran 30 % slower (TinyLlama 2:4 Q4_0 in `kernels bench`: 27 against 40
        // tok/s; not the buffers, not the float product; cause not found), which outweighs their
        // prefill gain (docs/reports/quantized).
        if (n >= QuantizedMatMul.PanelTokens && w.ValueType == QuantType.Q8_0 && HasPermuteKernels)
        {
            SparseQuantizedPanels.Multiply(w, x, y, n);
            return;
        }
        if (w.ValueType == QuantType.Q8_0)
        {
            Quantized<SparseQ8Values>(w, x, y, n);
        }
        else
        {
            Quantized<SparseQ4Values>(w, x, y, n);
        }
    }

    private static void Quantized<TValues>(NmQuantizedMatrix w, float* x, float* y, int n) where TValues : struct, ISparseValues =>
        ByPattern<TValues, F32Loader>(w, Rows.Of(w), x, x, y, n, broadcast: false); // the tail is float32

    /// <summary>Where a compressed N:M matrix's rows are: what the jobs need of either matrix class.</summary>
    private readonly struct Rows
    {
        public byte* Values { get; init; }
        public byte* Meta { get; init; }
        public byte* Tail { get; init; }
        public long ValueRowBytes { get; init; }
        public int MetaStride { get; init; }
        public int Kept { get; init; }
        public int Columns { get; init; }
        public int Count { get; init; }
        public int TailColumns { get; init; }
        public int GroupedColumns { get; init; }
        public int M { get; init; }

        public static Rows Of(NmSparseMatrix w) => new()
        {
            Values = w.Values, Meta = w.Meta, Tail = w.Tail is { } t ? t.Data : null,
            ValueRowBytes = (long)w.ValueStride * w.ValueType.Size(), MetaStride = w.MetaStride, Kept = w.KeptPerRow,
            Columns = w.Columns, Count = w.Rows, TailColumns = w.TailColumns, GroupedColumns = w.Groups * w.Pattern.M, M = w.Pattern.M,
        };

        public static Rows Of(NmQuantizedMatrix w) => new()
        {
            Values = w.Values, Meta = w.Meta, Tail = w.Tail is { } t ? t.Data : null,
            ValueRowBytes = w.ValueRowBytes, MetaStride = w.MetaStride, Kept = w.KeptPerRow,
            Columns = w.Columns, Count = w.Rows, TailColumns = w.TailColumns, GroupedColumns = w.Groups * w.Pattern.M, M = w.Pattern.M,
        };
    }

    /// <param name="x">Activations [n, Columns].</param>
    /// <param name="windows">x pre-multiplied by TValues.InputScale (x itself when that is 1): what the permutes gather.</param>
    /// <param name="broadcast">Use the broadcast (sparse-times-dense) kernel rather than the permute tiles (float matrices only).</param>
    private static void ByPattern<TValues, TLoad>(WeightMatrix w, Rows rows, float* x, float* windows, float* y, int n, bool broadcast)
        where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
    {
        var width = new ByWidth<TValues, TLoad> { W = w, Rows = rows, X = x, Windows = windows, Y = y, N = n, Broadcast = broadcast };
        SimdDispatch.Run(ref width);
    }

    /// <summary>Permute (gather) kernels exist for 512- and 256-bit vectors; the 128-bit and scalar tiers run the scalar definition (permutes over 4 lanes do not pay).</summary>
    private static bool HasPermuteKernels => SimdInfo.Tier >= SimdTier.Vector256;

    private struct ByWidth<TValues, TLoad> : IWidthKernel where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
    {
        public WeightMatrix W;
        public Rows Rows;
        public float* X, Windows, Y;
        public int N;
        public bool Broadcast;

        /// <remarks>The type tests are JIT-time constants: each instantiation keeps one branch.</remarks>
        public readonly void Vector<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
        {
            bool fourEight = Rows.M == 8;
            if (typeof(TTier) == typeof(Vec512))
            {
                if (fourEight)
                {
                    Run<Vec512, Vector512<float>, Vector512<int>, Gather512FourEight, TValues, TLoad>(W, Rows, X, Windows, Y, N, Broadcast);
                }
                else
                {
                    Run<Vec512, Vector512<float>, Vector512<int>, Gather512TwoFour, TValues, TLoad>(W, Rows, X, Windows, Y, N, Broadcast);
                }
            }
            else if (typeof(TTier) == typeof(Vec256))
            {
                if (fourEight)
                {
                    Run<Vec256, Vector256<float>, Vector256<int>, Gather256FourEight, TValues, TLoad>(W, Rows, X, Windows, Y, N, Broadcast);
                }
                else
                {
                    Run<Vec256, Vector256<float>, Vector256<int>, Gather256TwoFour, TValues, TLoad>(W, Rows, X, Windows, Y, N, Broadcast);
                }
            }
            else
            {
                Scalar();
            }
        }

        public readonly void Scalar() => Scalar<TValues, TLoad>(W, Rows, X, Y, N);
    }

    /// <summary>
    /// Batches at least this large use the broadcast kernel (no permutes; FMA-bound). Measured at
    /// 5632x2048 F16, 2:4: at 48 and 64 tokens it beats the permute tiles (6.2 vs 7.9 ms, 7.3 vs
    /// 11.3 ms); at 32 its half-filled 64-token tiles lose (6.0 vs 5.4 ms).
    /// </summary>
    public static int BroadcastMinTokens { get; set; } = 48;

    private static void Run<TTier, TVec, TIdx, TGather, TValues, TLoad>(WeightMatrix w, Rows rows, float* x, float* windows, float* y, int n, bool broadcast)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TIdx : unmanaged
        where TGather : struct, ISparseGather<TVec, TIdx> where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
    {
        if (broadcast && TValues.InputScale == 1f && w is NmSparseMatrix floats)
        {
            SparseBroadcastGemm.Run<TTier, TVec, TIdx, TGather, TValues, TLoad>(floats, x, y, n);
            return;
        }
        var job = new Job<TTier, TVec, TIdx, TGather, TValues, TLoad>
        {
            Values = rows.Values, Meta = rows.Meta, ValueRowBytes = rows.ValueRowBytes, MetaStride = rows.MetaStride,
            Kept = rows.Kept, K = rows.Columns, M = rows.Count, N = n, X = windows, Exact = x, Y = y,
            Tail = rows.Tail, TailColumns = rows.TailColumns, GroupedColumns = rows.GroupedColumns,
        };
        Schedule(w, n, ref job);
    }

    private static void Schedule<TJob>(WeightMatrix w, int n, ref TJob job) where TJob : struct, IRangeJob
    {
        int rows = w.Rows;
        if (w.ByteSize * Math.Max(1, n / 4) < DenseGemv.ParallelThresholdBytes)
        {
            job.Execute(0, rows);
            return;
        }
        long rowBytes = Math.Max(1, w.ByteSize / Math.Max(1, rows));
        if (n == 1)
        {
            // Decode: guided pieces (see DenseGemv) so both threads finish together.
            WorkerPool.Shared.ForGuided(rows, (int)Math.Max(4, DenseGemv.ChunkBytes / rowBytes), ref job);
            return;
        }
        int chunk = (int)Math.Clamp((1L << 20) / rowBytes / Math.Max(1, n / 4), 4, Math.Max(4, rows / (8 * WorkerPool.Shared.ThreadCount)));
        WorkerPool.Shared.For(rows, (chunk + 3) & ~3, ref job);
    }

    private struct Job<TTier, TVec, TIdx, TGather, TValues, TLoad> : IRangeJob
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TIdx : unmanaged
        where TGather : struct, ISparseGather<TVec, TIdx> where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
    {
        public byte* Values, Meta, Tail;
        public long ValueRowBytes;
        public int MetaStride, Kept, K, M, N, TailColumns, GroupedColumns;
        /// <summary>X: the tiles' activations (scaled by TValues.InputScale); Exact: the caller's, for the scalar remainder.</summary>
        public float* X, Exact, Y;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            float* sums = stackalloc float[16];
            long rowBytes = ValueRowBytes;
            if (N == 1)
            {
                // Decode: two rows at once, one from each half of the piece (two sequential streams far apart; see DenseGemv).
                int h = (end - begin) / 2;
                for (int r = begin; r < begin + h; r++)
                {
                    Row2(Values + r * rowBytes, Meta + (long)r * MetaStride,
                        Values + (r + h) * rowBytes, Meta + (long)(r + h) * MetaStride, X, out sums[0], out sums[4]);
                    Finish(r, 1, 0, 1, sums);
                    Finish(r + h, 1, 0, 1, sums + 4);
                }
                for (int r = begin + 2 * h; r < end; r++)
                {
                    sums[0] = Row1(Values + r * rowBytes, Meta + (long)r * MetaStride, X);
                    Finish(r, 1, 0, 1, sums);
                }
                return;
            }
            for (int r = begin; r < end; r += 4)
            {
                int rv = Math.Min(4, end - r);
                // Rows past the end repeat the last valid one (results discarded).
                int r1 = r + Math.Min(1, rv - 1), r2 = r + Math.Min(2, rv - 1), r3 = r + Math.Min(3, rv - 1);
                byte* v0 = Values + r * rowBytes, v1 = Values + r1 * rowBytes;
                byte* v2 = Values + r2 * rowBytes, v3 = Values + r3 * rowBytes;
                byte* m0 = Meta + (long)r * MetaStride, m1 = Meta + (long)r1 * MetaStride;
                byte* m2 = Meta + (long)r2 * MetaStride, m3 = Meta + (long)r3 * MetaStride;
                int t = 0;
                for (; t + 4 <= N; t += 4)
                {
                    float* x0 = X + (long)t * K;
                    Tile4x4(v0, v1, v2, v3, m0, m1, m2, m3, x0, x0 + K, x0 + 2 * K, x0 + 3 * K, sums);
                    Finish(r, rv, t, 4, sums);
                }
                for (; t < N; t++)
                {
                    // A batch's last tokens: row by row, each row one sequential stream.
                    for (int rr = 0; rr < rv; rr++)
                    {
                        byte* v = rr switch { 0 => v0, 1 => v1, 2 => v2, _ => v3 };
                        byte* m = rr switch { 0 => m0, 1 => m1, 2 => m2, _ => m3 };
                        sums[rr * 4] = Row1(v, m, X + (long)t * K);
                    }
                    Finish(r, rv, t, 1, sums);
                }
            }
        }

        /// <summary>Adds the kept values not covered by whole pairs and the dense tail, then stores Y.</summary>
        private readonly void Finish(int r, int rv, int t0, int tokens, float* sums)
        {
            int paired = TValues.PairedKept<TTier, TVec>(Kept);
            for (int tt = 0; tt < tokens; tt++)
            {
                float* x = Exact + (long)(t0 + tt) * K;
                for (int rr = 0; rr < rv; rr++)
                {
                    int row = r + rr;
                    float s = sums[rr * 4 + tt];
                    byte* vals = Values + row * ValueRowBytes;
                    byte* meta = Meta + (long)row * MetaStride;
                    for (int k = paired; k < Kept; k++)
                    {
                        s += TValues.LoadKept(vals, k, Kept) * x[k / (TGather.M / 2) * TGather.M + NmSparseMatrix.IndexOf(meta, TGather.M, k)];
                    }
                    if (Tail != null)
                    {
                        byte* tail = Tail + (long)row * TailColumns * TLoad.Type.Size();
                        for (int c = 0; c < TailColumns; c++)
                        {
                            s += TLoad.LoadScalar(tail, c) * x[GroupedColumns + c];
                        }
                    }
                    Y[(long)(t0 + tt) * M + row] = s;
                }
            }
        }


        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly void Tile4x4(byte* v0, byte* v1, byte* v2, byte* v3, byte* m0, byte* m1, byte* m2, byte* m3,
            float* x0, float* x1, float* x2, float* x3, float* sums)
        {
            int c = TTier.Count;
            int paired = TValues.PairedKept<TTier, TVec>(Kept);
            int second = TValues.SecondOffset<TTier, TVec>();
            TVec a00 = TTier.Zero, a01 = TTier.Zero, a02 = TTier.Zero, a03 = TTier.Zero;
            TVec a10 = TTier.Zero, a11 = TTier.Zero, a12 = TTier.Zero, a13 = TTier.Zero;
            TVec a20 = TTier.Zero, a21 = TTier.Zero, a22 = TTier.Zero, a23 = TTier.Zero;
            TVec a30 = TTier.Zero, a31 = TTier.Zero, a32 = TTier.Zero, a33 = TTier.Zero;
            for (int p = 0; p < paired; p += 2 * c)
            {
                TValues.LoadPair<TTier, TVec>(v0, p, out TVec w0a, out TVec w0b);
                TValues.LoadPair<TTier, TVec>(v1, p, out TVec w1a, out TVec w1b);
                TValues.LoadPair<TTier, TVec>(v2, p, out TVec w2a, out TVec w2b);
                TValues.LoadPair<TTier, TVec>(v3, p, out TVec w3a, out TVec w3b);
                for (int half = 0; half < 2; half++)
                {
                    int k = TValues.FirstKept(p) + half * second;
                    int step = k / c;
                    nint col = 2 * k;
                    TVec w0 = half == 0 ? w0a : w0b, w1 = half == 0 ? w1a : w1b, w2 = half == 0 ? w2a : w2b, w3 = half == 0 ? w3a : w3b;
                    TIdx i0 = TGather.Decode(m0, step), i1 = TGather.Decode(m1, step);
                    TIdx i2 = TGather.Decode(m2, step), i3 = TGather.Decode(m3, step);
                    TVec lo = TTier.Load(x0 + col), hi = TTier.Load(x0 + col + c);
                    a00 = TTier.MultiplyAdd(w0, TGather.Gather(lo, hi, i0), a00);
                    a10 = TTier.MultiplyAdd(w1, TGather.Gather(lo, hi, i1), a10);
                    a20 = TTier.MultiplyAdd(w2, TGather.Gather(lo, hi, i2), a20);
                    a30 = TTier.MultiplyAdd(w3, TGather.Gather(lo, hi, i3), a30);
                    lo = TTier.Load(x1 + col); hi = TTier.Load(x1 + col + c);
                    a01 = TTier.MultiplyAdd(w0, TGather.Gather(lo, hi, i0), a01);
                    a11 = TTier.MultiplyAdd(w1, TGather.Gather(lo, hi, i1), a11);
                    a21 = TTier.MultiplyAdd(w2, TGather.Gather(lo, hi, i2), a21);
                    a31 = TTier.MultiplyAdd(w3, TGather.Gather(lo, hi, i3), a31);
                    lo = TTier.Load(x2 + col); hi = TTier.Load(x2 + col + c);
                    a02 = TTier.MultiplyAdd(w0, TGather.Gather(lo, hi, i0), a02);
                    a12 = TTier.MultiplyAdd(w1, TGather.Gather(lo, hi, i1), a12);
                    a22 = TTier.MultiplyAdd(w2, TGather.Gather(lo, hi, i2), a22);
                    a32 = TTier.MultiplyAdd(w3, TGather.Gather(lo, hi, i3), a32);
                    lo = TTier.Load(x3 + col); hi = TTier.Load(x3 + col + c);
                    a03 = TTier.MultiplyAdd(w0, TGather.Gather(lo, hi, i0), a03);
                    a13 = TTier.MultiplyAdd(w1, TGather.Gather(lo, hi, i1), a13);
                    a23 = TTier.MultiplyAdd(w2, TGather.Gather(lo, hi, i2), a23);
                    a33 = TTier.MultiplyAdd(w3, TGather.Gather(lo, hi, i3), a33);
                }
            }
            // sums[row * 4 + token]
            sums[0] = TTier.Sum(a00); sums[1] = TTier.Sum(a01); sums[2] = TTier.Sum(a02); sums[3] = TTier.Sum(a03);
            sums[4] = TTier.Sum(a10); sums[5] = TTier.Sum(a11); sums[6] = TTier.Sum(a12); sums[7] = TTier.Sum(a13);
            sums[8] = TTier.Sum(a20); sums[9] = TTier.Sum(a21); sums[10] = TTier.Sum(a22); sums[11] = TTier.Sum(a23);
            sums[12] = TTier.Sum(a30); sums[13] = TTier.Sum(a31); sums[14] = TTier.Sum(a32); sums[15] = TTier.Sum(a33);
        }

        /// <summary>Two rows against one token; the x windows are shared (kept value k of every row lies in columns [2k, 2k + 2·Count)).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly void Row2(byte* v0, byte* m0, byte* v1, byte* m1, float* x, out float y0, out float y1)
        {
            int c = TTier.Count;
            int paired = TValues.PairedKept<TTier, TVec>(Kept);
            int second = TValues.SecondOffset<TTier, TVec>();
            TVec a0 = TTier.Zero, b0 = TTier.Zero, a1 = TTier.Zero, b1 = TTier.Zero;
            for (int p = 0; p < paired; p += 2 * c)
            {
                int ka = TValues.FirstKept(p), kb = ka + second;
                int sa = ka / c, sb = kb / c;
                TVec loA = TTier.Load(x + 2 * ka), hiA = TTier.Load(x + 2 * ka + c);
                TVec loB = TTier.Load(x + 2 * kb), hiB = TTier.Load(x + 2 * kb + c);
                TValues.LoadPair<TTier, TVec>(v0, p, out TVec wa, out TVec wb);
                a0 = TTier.MultiplyAdd(wa, TGather.Gather(loA, hiA, TGather.Decode(m0, sa)), a0);
                b0 = TTier.MultiplyAdd(wb, TGather.Gather(loB, hiB, TGather.Decode(m0, sb)), b0);
                TValues.LoadPair<TTier, TVec>(v1, p, out wa, out wb);
                a1 = TTier.MultiplyAdd(wa, TGather.Gather(loA, hiA, TGather.Decode(m1, sa)), a1);
                b1 = TTier.MultiplyAdd(wb, TGather.Gather(loB, hiB, TGather.Decode(m1, sb)), b1);
            }
            y0 = TTier.Sum(TTier.Add(a0, b0));
            y1 = TTier.Sum(TTier.Add(a1, b1));
        }

        /// <summary>One row against one token, in exactly the order <see cref="Row2"/> sums each of its rows.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly float Row1(byte* v, byte* m, float* x)
        {
            int c = TTier.Count;
            int paired = TValues.PairedKept<TTier, TVec>(Kept);
            int second = TValues.SecondOffset<TTier, TVec>();
            TVec a = TTier.Zero, b = TTier.Zero;
            for (int p = 0; p < paired; p += 2 * c)
            {
                int ka = TValues.FirstKept(p), kb = ka + second;
                TValues.LoadPair<TTier, TVec>(v, p, out TVec wa, out TVec wb);
                a = TTier.MultiplyAdd(wa, TGather.Gather(TTier.Load(x + 2 * ka), TTier.Load(x + 2 * ka + c), TGather.Decode(m, ka / c)), a);
                b = TTier.MultiplyAdd(wb, TGather.Gather(TTier.Load(x + 2 * kb), TTier.Load(x + 2 * kb + c), TGather.Decode(m, kb / c)), b);
            }
            return TTier.Sum(TTier.Add(a, b));
        }
    }

    /// <summary>Scalar definition: Σ over kept values of value · x[group·M + index], then the dense tail.</summary>
    private struct ScalarJob<TValues, TLoad> : IRangeJob where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
    {
        public Rows Rows;
        public float* X, Y;
        public int N;

        public readonly void Execute(int begin, int end)
        {
            var w = Rows;
            int size = TLoad.Type.Size();
            int n2 = w.M / 2;
            for (int r = begin; r < end; r++)
            {
                byte* vals = w.Values + r * w.ValueRowBytes;
                byte* meta = w.Meta + (long)r * w.MetaStride;
                for (int t = 0; t < N; t++)
                {
                    float* x = X + (long)t * w.Columns;
                    float s = 0f;
                    for (int k = 0; k < w.Kept; k++)
                    {
                        s += TValues.LoadKept(vals, k, w.Kept) * x[k / n2 * w.M + NmSparseMatrix.IndexOf(meta, w.M, k)];
                    }
                    if (w.Tail != null)
                    {
                        byte* tr = w.Tail + (long)r * w.TailColumns * size;
                        for (int c = 0; c < w.TailColumns; c++)
                        {
                            s += TLoad.LoadScalar(tr, c) * x[w.GroupedColumns + c];
                        }
                    }
                    Y[(long)t * w.Count + r] = s;
                }
            }
        }
    }
}
