using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Kernels.Simd.Matrices;
using Kernels.Simd.Threading;
using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>
/// Dense matrix product Y[n, Rows] = X[n, Columns] · Wᵀ (prefill, batches of tokens) for
/// F32/F16/BF16 weights; multithreaded over output rows.
/// </summary>
/// <remarks>
/// Two regimes:
/// <list type="bullet">
/// <item>Small batches (n &lt; <see cref="PackedMinTokens"/>): weight-streaming "dot" tiles of
/// 4 rows x 4 tokens; each weight row is read from memory once and reused for every token while
/// it sits in L2. Bandwidth-bound like GEMV.</item>
/// <item>Large batches: BLIS-style packing. X is packed once into token panels [K][NR]; for each
/// 256-deep slice of K, a panel of MR = 2 vectors of rows is transposed (and widened from
/// F16/BF16) into L1, and a register-blocked micro-kernel (MR x NR accumulators, one broadcast
/// per token and k) sweeps all token panels. Compute-bound.</item>
/// </list>
/// Summation order differs from GEMV (blocked over K), so results agree to float rounding only.
/// </remarks>
public static unsafe class DenseGemm
{
    /// <summary>Batches at least this large use the packed, register-blocked kernel.</summary>
    public static int PackedMinTokens { get; set; } = 128;

    internal const int KC = 256;

    public static void Multiply(DenseMatrix w, float* x, float* y, int n) => Multiply(w, x, y, n, GemmKernel.Auto);

    /// <summary>Kernel choice; tests force each one.</summary>
    internal enum GemmKernel
    {
        Auto,
        Dot,
        Packed,
    }

    internal static void Multiply(DenseMatrix w, float* x, float* y, int n, GemmKernel kernel)
    {
        switch (w.ElementType)
        {
            case ElementType.F32: Dispatch<F32Loader>(w, x, y, n, kernel); break;
            case ElementType.F16 when w.HalfValuesFinite: Dispatch<F16FiniteLoader>(w, x, y, n, kernel); break;
            case ElementType.F16: Dispatch<F16Loader>(w, x, y, n, kernel); break;
            case ElementType.BF16: Dispatch<BF16Loader>(w, x, y, n, kernel); break;
            default: ThrowHelper.NotSupported($"{w.Name}: element type {w.ElementType}"); break;
        }
    }

    private static void Dispatch<TLoad>(DenseMatrix w, float* x, float* y, int n, GemmKernel kernel) where TLoad : struct, IWeightLoader
    {
        var width = new ByWidth<TLoad> { W = w, X = x, Y = y, N = n, Kernel = kernel };
        SimdDispatch.Run(ref width);
    }

    private struct ByWidth<TLoad> : IWidthKernel where TLoad : struct, IWeightLoader
    {
        public DenseMatrix W;
        public float* X, Y;
        public int N;
        public GemmKernel Kernel;

        public readonly void Vector<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
            Run<TTier, TVec, TLoad>(W, X, Y, N, Kernel);

        public readonly void Scalar()
        {
            var job = new ScalarJob<TLoad> { W = W.Data, X = X, Y = Y, K = W.Columns, M = W.Rows, N = N };
            WorkerPool.Shared.For(W.Rows, Math.Max(1, W.Rows / (4 * WorkerPool.Shared.ThreadCount)), ref job);
        }
    }

    private static void Run<TTier, TVec, TLoad>(DenseMatrix w, float* x, float* y, int n, GemmKernel kernel)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TLoad : struct, IWeightLoader
    {
        int m = w.Rows, k = w.Columns;
        if (m == 0 || n == 0)
        {
            return;
        }
        if (k == 0)
        {
            new Span<float>(y, checked(n * m)).Clear();
            return;
        }
        bool useDot = kernel == GemmKernel.Dot || kernel == GemmKernel.Auto && (n < PackedMinTokens || k < TTier.Count);
        if (useDot)
        {
            var job = new DotJob<TTier, TVec, TLoad> { W = w.Data, X = x, Y = y, K = k, M = m, N = n };
            int chunk = Math.Max(4, (m / (8 * WorkerPool.Shared.ThreadCount)) & ~3);
            if ((long)m * k * n < 64 * 1024)
            {
                job.Execute(0, m);
            }
            else
            {
                WorkerPool.Shared.For(m, chunk, ref job);
            }
            return;
        }

        int mr = 2 * TTier.Count;
        int nr = PackedTokens<TTier, TVec>();
        // Token blocks keep the packed X under ~32 MB.
        int maxTokens = Math.Max(nr, (int)Math.Min(n, (8L << 20) / k) / nr * nr);
        for (int t0 = 0; t0 < n; t0 += maxTokens)
        {
            int nb = Math.Min(maxTokens, n - t0);
            int panels = (nb + nr - 1) / nr;
            float* xp = Scratch.PackedX((long)panels * k * nr);
            var pack = new PackXJob { X = x + (long)t0 * k, Xp = xp, K = k, N = nb, NR = nr };
            WorkerPool.Shared.For(panels, 1, ref pack);

            var job = new PackedJob<TTier, TVec, TLoad>
            {
                W = w.Data, Xp = xp, Y = y + (long)t0 * m, K = k, M = m, N = nb, NR = nr, MR = mr,
            };
            int rowPanels = (m + mr - 1) / mr;
            WorkerPool.Shared.For(rowPanels, Math.Max(1, Math.Min(4, rowPanels / (4 * WorkerPool.Shared.ThreadCount))), ref job);
        }
    }

    /// <summary>Tokens per micro-tile: 8 when 32 vector registers exist (AVX-512), else 4.</summary>
    private static int PackedTokens<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
        TTier.Count == 16 ? 8 : 4;

    /// <summary>Per-thread scratch buffers, grown on demand and kept for reuse (no per-call allocation once warm).</summary>
    internal static class Scratch
    {
        [ThreadStatic] private static NativeBuffer? t_packedX;
        [ThreadStatic] private static NativeBuffer? t_packedW;

        public static float* PackedX(long floats) => Get(ref t_packedX, floats);

        public static float* PackedW(long floats) => Get(ref t_packedW, floats);

        private static float* Get(ref NativeBuffer? buffer, long floats)
        {
            long bytes = floats * sizeof(float);
            if (buffer is null || buffer.ByteLength < bytes)
            {
                buffer?.Dispose();
                buffer = new NativeBuffer(Math.Max(bytes, 64 * 1024));
            }
            return (float*)buffer.Pointer;
        }
    }

    /// <summary>X[n, K] → Xp[panel][K][NR] (token-interleaved, zero-padded past n).</summary>
    private struct PackXJob : IRangeJob
    {
        public float* X;
        public float* Xp;
        public int K;
        public int N;
        public int NR;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            for (int p = begin; p < end; p++)
            {
                float* dst = Xp + (long)p * K * NR;
                for (int j = 0; j < NR; j++)
                {
                    int t = p * NR + j;
                    if (t < N)
                    {
                        float* src = X + (long)t * K;
                        for (int kk = 0; kk < K; kk++)
                        {
                            dst[kk * NR + j] = src[kk];
                        }
                    }
                    else
                    {
                        for (int kk = 0; kk < K; kk++)
                        {
                            dst[kk * NR + j] = 0f;
                        }
                    }
                }
            }
        }
    }

    private struct PackedJob<TTier, TVec, TLoad> : IRangeJob
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TLoad : struct, IWeightLoader
    {
        public byte* W;
        public float* Xp;
        public float* Y;
        public int K, M, N, NR, MR;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            float* wp = Scratch.PackedW((long)KC * MR + KC);
            float* rowTmp = wp + (long)KC * MR;
            int tokenPanels = (N + NR - 1) / NR;
            long stride = (long)K * TLoad.Type.Size();
            for (int kb = 0; kb < K; kb += KC)
            {
                int kc = Math.Min(KC, K - kb);
                for (int p = begin; p < end; p++)
                {
                    int r0 = p * MR;
                    int rv = Math.Min(MR, M - r0);
                    PackW(W + r0 * stride, stride, kb, kc, rv, wp, rowTmp);
                    for (int tp = 0; tp < tokenPanels; tp++)
                    {
                        float* xp = Xp + ((long)tp * K + kb) * NR;
                        int tv = Math.Min(NR, N - tp * NR);
                        float* y = Y + (long)tp * NR * M + r0;
                        if (NR == 8)
                        {
                            Kernel8(wp, xp, kc, y, M, rv, tv, kb > 0);
                        }
                        else
                        {
                            Kernel4(wp, xp, kc, y, M, rv, tv, kb > 0);
                        }
                    }
                }
            }
        }

        /// <summary>W rows [r0, r0+rv), columns [kb, kb+kc) → wp[k][MR] as float, zero rows past rv.</summary>
        private readonly void PackW(byte* w, long stride, int kb, int kc, int rv, float* wp, float* rowTmp)
        {
            int mr = MR;
            for (int r = 0; r < mr; r++)
            {
                if (r < rv)
                {
                    float* src;
                    if (TLoad.Type == ElementType.F32)
                    {
                        src = (float*)(w + r * stride) + kb;
                    }
                    else
                    {
                        Conversion.ToSingle(TLoad.Type, w + r * stride + (long)kb * 2, rowTmp, kc);
                        src = rowTmp;
                    }
                    for (int kk = 0; kk < kc; kk++)
                    {
                        wp[kk * mr + r] = src[kk];
                    }
                }
                else
                {
                    for (int kk = 0; kk < kc; kk++)
                    {
                        wp[kk * mr + r] = 0f;
                    }
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Kernel8(float* wp, float* xp, int kc, float* y, int ldy, int rv, int tv, bool accumulate)
        {
            int c = TTier.Count;
            // Allocated before the loop: a zeroing helper call after it would force the JIT to spill
            // every accumulator inside the loop (vector registers do not survive calls).
            float* tile = stackalloc float[16 * 16];
            TVec c00 = TTier.Zero, c01 = TTier.Zero, c10 = TTier.Zero, c11 = TTier.Zero;
            TVec c20 = TTier.Zero, c21 = TTier.Zero, c30 = TTier.Zero, c31 = TTier.Zero;
            TVec c40 = TTier.Zero, c41 = TTier.Zero, c50 = TTier.Zero, c51 = TTier.Zero;
            TVec c60 = TTier.Zero, c61 = TTier.Zero, c70 = TTier.Zero, c71 = TTier.Zero;
            float* xEnd = xp + 8 * kc;
            // Pointer-bounded loop with all stores after it: keeps the 16 accumulators in registers
            // (an index loop followed by array stores made the JIT spill them every iteration).
            while (xp < xEnd)
            {
                TVec w0 = TTier.Load(wp);
                TVec w1 = TTier.Load(wp + c);
                TVec b = TTier.Broadcast(xp[0]);
                c00 = TTier.MultiplyAdd(w0, b, c00); c01 = TTier.MultiplyAdd(w1, b, c01);
                b = TTier.Broadcast(xp[1]);
                c10 = TTier.MultiplyAdd(w0, b, c10); c11 = TTier.MultiplyAdd(w1, b, c11);
                b = TTier.Broadcast(xp[2]);
                c20 = TTier.MultiplyAdd(w0, b, c20); c21 = TTier.MultiplyAdd(w1, b, c21);
                b = TTier.Broadcast(xp[3]);
                c30 = TTier.MultiplyAdd(w0, b, c30); c31 = TTier.MultiplyAdd(w1, b, c31);
                b = TTier.Broadcast(xp[4]);
                c40 = TTier.MultiplyAdd(w0, b, c40); c41 = TTier.MultiplyAdd(w1, b, c41);
                b = TTier.Broadcast(xp[5]);
                c50 = TTier.MultiplyAdd(w0, b, c50); c51 = TTier.MultiplyAdd(w1, b, c51);
                b = TTier.Broadcast(xp[6]);
                c60 = TTier.MultiplyAdd(w0, b, c60); c61 = TTier.MultiplyAdd(w1, b, c61);
                b = TTier.Broadcast(xp[7]);
                c70 = TTier.MultiplyAdd(w0, b, c70); c71 = TTier.MultiplyAdd(w1, b, c71);
                wp += 2 * c;
                xp += 8;
            }
            int mr = 2 * c;
            TTier.Store(tile, c00); TTier.Store(tile + c, c01);
            TTier.Store(tile + mr, c10); TTier.Store(tile + mr + c, c11);
            TTier.Store(tile + 2 * mr, c20); TTier.Store(tile + 2 * mr + c, c21);
            TTier.Store(tile + 3 * mr, c30); TTier.Store(tile + 3 * mr + c, c31);
            TTier.Store(tile + 4 * mr, c40); TTier.Store(tile + 4 * mr + c, c41);
            TTier.Store(tile + 5 * mr, c50); TTier.Store(tile + 5 * mr + c, c51);
            TTier.Store(tile + 6 * mr, c60); TTier.Store(tile + 6 * mr + c, c61);
            TTier.Store(tile + 7 * mr, c70); TTier.Store(tile + 7 * mr + c, c71);
            StoreTile(tile, 8, y, ldy, rv, tv, accumulate);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Kernel4(float* wp, float* xp, int kc, float* y, int ldy, int rv, int tv, bool accumulate)
        {
            int c = TTier.Count;
            float* tile = stackalloc float[16 * 8];
            TVec c00 = TTier.Zero, c01 = TTier.Zero, c10 = TTier.Zero, c11 = TTier.Zero;
            TVec c20 = TTier.Zero, c21 = TTier.Zero, c30 = TTier.Zero, c31 = TTier.Zero;
            float* xEnd = xp + 4 * kc;
            while (xp < xEnd)
            {
                TVec w0 = TTier.Load(wp);
                TVec w1 = TTier.Load(wp + c);
                TVec b = TTier.Broadcast(xp[0]);
                c00 = TTier.MultiplyAdd(w0, b, c00); c01 = TTier.MultiplyAdd(w1, b, c01);
                b = TTier.Broadcast(xp[1]);
                c10 = TTier.MultiplyAdd(w0, b, c10); c11 = TTier.MultiplyAdd(w1, b, c11);
                b = TTier.Broadcast(xp[2]);
                c20 = TTier.MultiplyAdd(w0, b, c20); c21 = TTier.MultiplyAdd(w1, b, c21);
                b = TTier.Broadcast(xp[3]);
                c30 = TTier.MultiplyAdd(w0, b, c30); c31 = TTier.MultiplyAdd(w1, b, c31);
                wp += 2 * c;
                xp += 4;
            }
            int mr = 2 * c;
            TTier.Store(tile, c00); TTier.Store(tile + c, c01);
            TTier.Store(tile + mr, c10); TTier.Store(tile + mr + c, c11);
            TTier.Store(tile + 2 * mr, c20); TTier.Store(tile + 2 * mr + c, c21);
            TTier.Store(tile + 3 * mr, c30); TTier.Store(tile + 3 * mr + c, c31);
            StoreTile(tile, 4, y, ldy, rv, tv, accumulate);
        }

        /// <summary>tile[t][MR] → Y[t, r] for the valid tv tokens and rv rows.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void StoreTile(float* tile, int nr, float* y, int ldy, int rv, int tv, bool accumulate)
        {
            int mr = 2 * TTier.Count;
            for (int t = 0; t < tv; t++)
            {
                float* src = tile + t * mr;
                float* dst = y + (long)t * ldy;
                if (rv == mr)
                {
                    TVec a = TTier.Load(src), b = TTier.Load(src + TTier.Count);
                    if (accumulate)
                    {
                        a = TTier.Add(a, TTier.Load(dst));
                        b = TTier.Add(b, TTier.Load(dst + TTier.Count));
                    }
                    TTier.Store(dst, a);
                    TTier.Store(dst + TTier.Count, b);
                }
                else
                {
                    for (int r = 0; r < rv; r++)
                    {
                        dst[r] = accumulate ? dst[r] + src[r] : src[r];
                    }
                }
            }
        }
    }

    /// <summary>Weight-streaming tiles of 4 rows x 4 tokens (small batches).</summary>
    private struct DotJob<TTier, TVec, TLoad> : IRangeJob
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TLoad : struct, IWeightLoader
    {
        public byte* W;
        public float* X;
        public float* Y;
        public int K, M, N;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            long stride = (long)K * TLoad.Type.Size();
            float* sums = stackalloc float[16];
            for (int r = begin; r < end; r += 4)
            {
                int rv = Math.Min(4, end - r);
                // Rows past the end repeat the last valid row (results discarded): no branch in the kernel.
                byte* w0 = W + r * stride;
                byte* w1 = W + (r + Math.Min(1, rv - 1)) * stride;
                byte* w2 = W + (r + Math.Min(2, rv - 1)) * stride;
                byte* w3 = W + (r + Math.Min(3, rv - 1)) * stride;
                for (int t = 0; t < N; t += 4)
                {
                    int tv = Math.Min(4, N - t);
                    float* x0 = X + (long)t * K;
                    float* x1 = X + (long)(t + Math.Min(1, tv - 1)) * K;
                    float* x2 = X + (long)(t + Math.Min(2, tv - 1)) * K;
                    float* x3 = X + (long)(t + Math.Min(3, tv - 1)) * K;
                    if (K >= TTier.Count)
                    {
                        Tile(w0, w1, w2, w3, x0, x1, x2, x3, K, sums);
                    }
                    else
                    {
                        TileScalar(w0, w1, w2, w3, x0, x1, x2, x3, K, sums);
                    }
                    for (int tt = 0; tt < tv; tt++)
                    {
                        float* dst = Y + (long)(t + tt) * M + r;
                        for (int rr = 0; rr < rv; rr++)
                        {
                            dst[rr] = sums[tt * 4 + rr];
                        }
                    }
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Tile(byte* w0, byte* w1, byte* w2, byte* w3, float* x0, float* x1, float* x2, float* x3, int k, float* sums)
        {
            int n = TTier.Count;
            TVec a00 = TTier.Zero, a01 = TTier.Zero, a02 = TTier.Zero, a03 = TTier.Zero;
            TVec a10 = TTier.Zero, a11 = TTier.Zero, a12 = TTier.Zero, a13 = TTier.Zero;
            TVec a20 = TTier.Zero, a21 = TTier.Zero, a22 = TTier.Zero, a23 = TTier.Zero;
            TVec a30 = TTier.Zero, a31 = TTier.Zero, a32 = TTier.Zero, a33 = TTier.Zero;
            nint i = 0;
            for (; i <= k - n; i += n)
            {
                TVec v0 = TLoad.Load<TTier, TVec>(w0, i), v1 = TLoad.Load<TTier, TVec>(w1, i);
                TVec v2 = TLoad.Load<TTier, TVec>(w2, i), v3 = TLoad.Load<TTier, TVec>(w3, i);
                TVec x = TTier.Load(x0 + i);
                a00 = TTier.MultiplyAdd(v0, x, a00); a01 = TTier.MultiplyAdd(v1, x, a01);
                a02 = TTier.MultiplyAdd(v2, x, a02); a03 = TTier.MultiplyAdd(v3, x, a03);
                x = TTier.Load(x1 + i);
                a10 = TTier.MultiplyAdd(v0, x, a10); a11 = TTier.MultiplyAdd(v1, x, a11);
                a12 = TTier.MultiplyAdd(v2, x, a12); a13 = TTier.MultiplyAdd(v3, x, a13);
                x = TTier.Load(x2 + i);
                a20 = TTier.MultiplyAdd(v0, x, a20); a21 = TTier.MultiplyAdd(v1, x, a21);
                a22 = TTier.MultiplyAdd(v2, x, a22); a23 = TTier.MultiplyAdd(v3, x, a23);
                x = TTier.Load(x3 + i);
                a30 = TTier.MultiplyAdd(v0, x, a30); a31 = TTier.MultiplyAdd(v1, x, a31);
                a32 = TTier.MultiplyAdd(v2, x, a32); a33 = TTier.MultiplyAdd(v3, x, a33);
            }
            int rem = k - (int)i;
            if (rem > 0)
            {
                nint t = k - n;
                TVec v0 = TLoad.Load<TTier, TVec>(w0, t), v1 = TLoad.Load<TTier, TVec>(w1, t);
                TVec v2 = TLoad.Load<TTier, TVec>(w2, t), v3 = TLoad.Load<TTier, TVec>(w3, t);
                // Mask x: the overlapped lanes contribute exactly zero (weights are finite in practice;
                // masking products instead would cost 16 extra ops for the same result).
                TVec x = TTier.KeepLast(TTier.Load(x0 + t), rem);
                a00 = TTier.MultiplyAdd(v0, x, a00); a01 = TTier.MultiplyAdd(v1, x, a01);
                a02 = TTier.MultiplyAdd(v2, x, a02); a03 = TTier.MultiplyAdd(v3, x, a03);
                x = TTier.KeepLast(TTier.Load(x1 + t), rem);
                a10 = TTier.MultiplyAdd(v0, x, a10); a11 = TTier.MultiplyAdd(v1, x, a11);
                a12 = TTier.MultiplyAdd(v2, x, a12); a13 = TTier.MultiplyAdd(v3, x, a13);
                x = TTier.KeepLast(TTier.Load(x2 + t), rem);
                a20 = TTier.MultiplyAdd(v0, x, a20); a21 = TTier.MultiplyAdd(v1, x, a21);
                a22 = TTier.MultiplyAdd(v2, x, a22); a23 = TTier.MultiplyAdd(v3, x, a23);
                x = TTier.KeepLast(TTier.Load(x3 + t), rem);
                a30 = TTier.MultiplyAdd(v0, x, a30); a31 = TTier.MultiplyAdd(v1, x, a31);
                a32 = TTier.MultiplyAdd(v2, x, a32); a33 = TTier.MultiplyAdd(v3, x, a33);
            }
            sums[0] = TTier.Sum(a00); sums[1] = TTier.Sum(a01); sums[2] = TTier.Sum(a02); sums[3] = TTier.Sum(a03);
            sums[4] = TTier.Sum(a10); sums[5] = TTier.Sum(a11); sums[6] = TTier.Sum(a12); sums[7] = TTier.Sum(a13);
            sums[8] = TTier.Sum(a20); sums[9] = TTier.Sum(a21); sums[10] = TTier.Sum(a22); sums[11] = TTier.Sum(a23);
            sums[12] = TTier.Sum(a30); sums[13] = TTier.Sum(a31); sums[14] = TTier.Sum(a32); sums[15] = TTier.Sum(a33);
        }

        private static void TileScalar(byte* w0, byte* w1, byte* w2, byte* w3, float* x0, float* x1, float* x2, float* x3, int k, float* sums)
        {
            byte** w = stackalloc byte*[4] { w0, w1, w2, w3 };
            float** x = stackalloc float*[4] { x0, x1, x2, x3 };
            for (int t = 0; t < 4; t++)
            {
                for (int r = 0; r < 4; r++)
                {
                    float acc = 0f;
                    for (int i = 0; i < k; i++)
                    {
                        acc += TLoad.LoadScalar(w[r], i) * x[t][i];
                    }
                    sums[t * 4 + r] = acc;
                }
            }
        }
    }

    private struct ScalarJob<TLoad> : IRangeJob where TLoad : struct, IWeightLoader
    {
        public byte* W;
        public float* X;
        public float* Y;
        public int K, M, N;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            long stride = (long)K * TLoad.Type.Size();
            for (int r = begin; r < end; r++)
            {
                byte* w = W + r * stride;
                for (int t = 0; t < N; t++)
                {
                    float* x = X + (long)t * K;
                    float acc = 0f;
                    for (int i = 0; i < K; i++)
                    {
                        acc += TLoad.LoadScalar(w, i) * x[i];
                    }
                    Y[(long)t * M + r] = acc;
                }
            }
        }
    }
}
