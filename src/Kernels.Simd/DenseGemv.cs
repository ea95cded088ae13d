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
/// Bandwidth-bound: four rows are streamed at once (x is loaded once per four rows), and rows
/// are handed to threads in chunks of about 1 MiB of weights. Per row, the sum is accumulated
/// lane-wise in vector order and reduced at the end; the tail uses one overlapping vector whose
/// already-counted lanes are masked to zero.
/// </remarks>
public static unsafe class DenseGemv
{
    /// <summary>Below this many weight bytes a GEMV runs on the calling thread only.</summary>
    internal const long ParallelThresholdBytes = 256 * 1024;

    /// <summary>y[Rows] = W[Rows, Columns] · x[Columns].</summary>
    public static void Multiply(DenseMatrix w, float* x, float* y)
    {
        switch (w.ElementType)
        {
            case ElementType.F32: Dispatch<F32Loader>(w, x, y); break;
            case ElementType.F16 when w.HalfValuesFinite: Dispatch<F16FiniteLoader>(w, x, y); break;
            case ElementType.F16: Dispatch<F16Loader>(w, x, y); break;
            case ElementType.BF16: Dispatch<BF16Loader>(w, x, y); break;
            default: ThrowHelper.NotSupported($"{w.Name}: element type {w.ElementType}"); break;
        }
    }

    private static void Dispatch<TLoad>(DenseMatrix w, float* x, float* y) where TLoad : struct, IWeightLoader
    {
        if (SimdInfo.Use512)
        {
            Run<Vec512, Vector512<float>, TLoad>(w, x, y);
        }
        else if (SimdInfo.Use256)
        {
            Run<Vec256, Vector256<float>, TLoad>(w, x, y);
        }
        else if (SimdInfo.Use128)
        {
            Run<Vec128, Vector128<float>, TLoad>(w, x, y);
        }
        else
        {
            var job = new ScalarJob<TLoad> { W = w.Data, X = x, Y = y, K = w.Columns };
            Schedule(w, ref job);
        }
    }

    private static void Run<TTier, TVec, TLoad>(DenseMatrix w, float* x, float* y)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TLoad : struct, IWeightLoader
    {
        var job = new Job<TTier, TVec, TLoad> { W = w.Data, X = x, Y = y, K = w.Columns };
        Schedule(w, ref job);
    }

    private static void Schedule<TJob>(DenseMatrix w, ref TJob job) where TJob : struct, IRangeJob
    {
        int rows = w.Rows;
        if (w.ByteSize < ParallelThresholdBytes)
        {
            job.Execute(0, rows);
            return;
        }
        // ~1 MiB of weights per chunk, a multiple of 4 rows, at least 8 chunks per thread for balance.
        long rowBytes = Math.Max(1, w.RowStrideBytes);
        int chunk = (int)Math.Clamp((1L << 20) / rowBytes, 4, Math.Max(4, rows / (8 * WorkerPool.Shared.ThreadCount)));
        chunk = (chunk + 3) & ~3;
        WorkerPool.Shared.For(rows, chunk, ref job);
    }

    private struct Job<TTier, TVec, TLoad> : IRangeJob
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TLoad : struct, IWeightLoader
    {
        public byte* W;
        public float* X;
        public float* Y;
        public int K;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            long stride = (long)K * TLoad.Type.Size();
            int r = begin;
            for (; r + 4 <= end; r += 4)
            {
                Dot4(W + r * stride, stride, X, K, Y + r);
            }
            for (; r < end; r++)
            {
                Y[r] = Dot(W + r * stride, X, K);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Dot4(byte* w0, long stride, float* x, int k, float* y)
        {
            int n = TTier.Count;
            if (k < n)
            {
                y[0] = DotScalar(w0, x, 0, k, 0f);
                y[1] = DotScalar(w0 + stride, x, 0, k, 0f);
                y[2] = DotScalar(w0 + 2 * stride, x, 0, k, 0f);
                y[3] = DotScalar(w0 + 3 * stride, x, 0, k, 0f);
                return;
            }
            byte* w1 = w0 + stride, w2 = w1 + stride, w3 = w2 + stride;
            TVec a0 = TTier.Zero, a1 = TTier.Zero, a2 = TTier.Zero, a3 = TTier.Zero;
            nint i = 0;
            for (; i <= k - n; i += n)
            {
                TVec xv = TTier.Load(x + i);
                a0 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w0, i), xv, a0);
                a1 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w1, i), xv, a1);
                a2 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w2, i), xv, a2);
                a3 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w3, i), xv, a3);
            }
            int rem = k - (int)i;
            if (rem > 0)
            {
                nint t = k - n;
                TVec xv = TTier.Load(x + t);
                a0 = TTier.Add(a0, TTier.KeepLast(TTier.Multiply(TLoad.Load<TTier, TVec>(w0, t), xv), rem));
                a1 = TTier.Add(a1, TTier.KeepLast(TTier.Multiply(TLoad.Load<TTier, TVec>(w1, t), xv), rem));
                a2 = TTier.Add(a2, TTier.KeepLast(TTier.Multiply(TLoad.Load<TTier, TVec>(w2, t), xv), rem));
                a3 = TTier.Add(a3, TTier.KeepLast(TTier.Multiply(TLoad.Load<TTier, TVec>(w3, t), xv), rem));
            }
            y[0] = TTier.Sum(a0);
            y[1] = TTier.Sum(a1);
            y[2] = TTier.Sum(a2);
            y[3] = TTier.Sum(a3);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static float Dot(byte* w, float* x, int k)
        {
            int n = TTier.Count;
            if (k < n)
            {
                return DotScalar(w, x, 0, k, 0f);
            }
            TVec a0 = TTier.Zero, a1 = TTier.Zero;
            nint i = 0;
            for (; i <= k - 2 * n; i += 2 * n)
            {
                a0 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w, i), TTier.Load(x + i), a0);
                a1 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w, i + n), TTier.Load(x + i + n), a1);
            }
            for (; i <= k - n; i += n)
            {
                a0 = TTier.MultiplyAdd(TLoad.Load<TTier, TVec>(w, i), TTier.Load(x + i), a0);
            }
            int rem = k - (int)i;
            if (rem > 0)
            {
                nint t = k - n;
                a1 = TTier.Add(a1, TTier.KeepLast(TTier.Multiply(TLoad.Load<TTier, TVec>(w, t), TTier.Load(x + t)), rem));
            }
            return TTier.Sum(TTier.Add(a0, a1));
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static float DotScalar(byte* w, float* x, int from, int to, float acc)
        {
            for (int i = from; i < to; i++)
            {
                acc += TLoad.LoadScalar(w, i) * x[i];
            }
            return acc;
        }
    }

    private struct ScalarJob<TLoad> : IRangeJob where TLoad : struct, IWeightLoader
    {
        public byte* W;
        public float* X;
        public float* Y;
        public int K;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            long stride = (long)K * TLoad.Type.Size();
            for (int r = begin; r < end; r++)
            {
                byte* w = W + r * stride;
                float acc = 0f;
                for (int i = 0; i < K; i++)
                {
                    acc += TLoad.LoadScalar(w, i) * X[i];
                }
                Y[r] = acc;
            }
        }
    }
}
