using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Kernels.Simd.Matrices;
using Kernels.Simd.Threading;
using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>
/// Y[n, Rows] = X[n, Columns] · Wᵀ for an output-axis N:M matrix (<see cref="NmOutputSparseMatrix"/>):
/// per 32-row panel, y_panel += x_j · expand(kept weights of column j) for every column.
/// </summary>
/// <remarks>
/// AVX-512: the 16 kept values of a column-panel are widened once and expanded into the two
/// 16-row halves with vexpandps under the stored row masks; one broadcast of x_j and two FMAs
/// per token. Tiles of one panel x 4 tokens (or 2 panels x 1 token for decode). Other tiers use
/// the scalar definition. Multithreaded over panels.
/// </remarks>
public static unsafe class SparseOutputGemm
{
    public static void Multiply(NmOutputSparseMatrix w, float* x, float* y, int n)
    {
        if (n <= 0 || w.Rows == 0)
        {
            return;
        }
        if (w.Panels > 0)
        {
            if (SimdInfo.Use512)
            {
                switch (w.ValueType)
                {
                    case ElementType.F32: Run<F32Loader>(w, x, y, n); break;
                    case ElementType.F16 when w.HalfValuesFinite: Run<F16FiniteLoader>(w, x, y, n); break;
                    case ElementType.F16: Run<F16Loader>(w, x, y, n); break;
                    default: Run<BF16Loader>(w, x, y, n); break;
                }
            }
            else
            {
                var job = new ScalarJob { W = w, X = x, Y = y, N = n };
                WorkerPool.Shared.For(w.Panels, 1, ref job);
            }
        }
        if (w.Tail is { } tail)
        {
            // Dense tail rows: their own small product, scattered into Y.
            var ty = new float[(long)n * tail.Rows];
            fixed (float* pty = ty)
            {
                if (n == 1)
                {
                    DenseGemv.Multiply(tail, x, pty);
                }
                else
                {
                    DenseGemm.Multiply(tail, x, pty, n);
                }
            }
            for (int t = 0; t < n; t++)
            {
                for (int r = 0; r < tail.Rows; r++)
                {
                    y[(long)t * w.Rows + w.GroupedRows + r] = ty[(long)t * tail.Rows + r];
                }
            }
        }
    }

    private static void Run<TLoad>(NmOutputSparseMatrix w, float* x, float* y, int n) where TLoad : struct, IWeightLoader
    {
        var job = new Job512<TLoad> { Values = w.Values, Masks = w.Masks, K = w.Columns, M = w.Rows, Grouped = w.GroupedRows, N = n, X = x, Y = y };
        if (w.ByteSize * Math.Max(1, n / 4) < DenseGemv.ParallelThresholdBytes)
        {
            job.Execute(0, w.Panels);
        }
        else
        {
            WorkerPool.Shared.For(w.Panels, n == 1 ? 2 : 1, ref job);
        }
    }

    private struct Job512<TLoad> : IRangeJob where TLoad : struct, IWeightLoader
    {
        public byte* Values;
        public uint* Masks;
        public int K, M, Grouped, N;
        public float* X, Y;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Expand(byte* values, uint mask, out Vector512<float> lo, out Vector512<float> hi)
        {
            Vector512<float> v = TLoad.Load<Vec512, Vector512<float>>(values, 0);
            Vector512<int> m = Vector512.Create((int)mask);
            // Literal constants (not static readonly fields: a class-init check in the loop makes the JIT spill every accumulator).
            Vector512<int> bitsLo = Vector512.Create(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768);
            Vector512<int> bitsHi = Vector512.Create(1 << 16, 1 << 17, 1 << 18, 1 << 19, 1 << 20, 1 << 21, 1 << 22, 1 << 23,
                1 << 24, 1 << 25, 1 << 26, 1 << 27, 1 << 28, 1 << 29, 1 << 30, 1 << 31);
            lo = Avx512F.Expand(Vector512<float>.Zero, Vector512.Equals(m & bitsLo, bitsLo).AsSingle(), v);
            hi = Avx512F.Expand(Vector512<float>.Zero, Vector512.Equals(m & bitsHi, bitsHi).AsSingle(), Avx512F.Shuffle4x128(v, v, 0b_11_10_11_10));
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            int size = TLoad.Type.Size();
            float* tile = stackalloc float[32 * 4];
            for (int p = begin; p < end; p++)
            {
                byte* vals = Values + (long)p * K * 16 * size;
                uint* masks = Masks + (long)p * K;
                int rows = Math.Min(32, Grouped - p * 32);
                int t = 0;
                for (; t + 4 <= N; t += 4)
                {
                    float* x0 = X + (long)t * K, x1 = x0 + K, x2 = x1 + K, x3 = x2 + K;
                    Vector512<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
                    for (int j = 0; j < K; j++)
                    {
                        Expand(vals + (long)j * 16 * size, masks[j], out var lo, out var hi);
                        var s = Vector512.Create(x0[j]);
                        a0 = Avx512F.FusedMultiplyAdd(lo, s, a0); b0 = Avx512F.FusedMultiplyAdd(hi, s, b0);
                        s = Vector512.Create(x1[j]);
                        a1 = Avx512F.FusedMultiplyAdd(lo, s, a1); b1 = Avx512F.FusedMultiplyAdd(hi, s, b1);
                        s = Vector512.Create(x2[j]);
                        a2 = Avx512F.FusedMultiplyAdd(lo, s, a2); b2 = Avx512F.FusedMultiplyAdd(hi, s, b2);
                        s = Vector512.Create(x3[j]);
                        a3 = Avx512F.FusedMultiplyAdd(lo, s, a3); b3 = Avx512F.FusedMultiplyAdd(hi, s, b3);
                    }
                    a0.Store(tile); b0.Store(tile + 16); a1.Store(tile + 32); b1.Store(tile + 48);
                    a2.Store(tile + 64); b2.Store(tile + 80); a3.Store(tile + 96); b3.Store(tile + 112);
                    for (int tt = 0; tt < 4; tt++)
                    {
                        new ReadOnlySpan<float>(tile + 32 * tt, rows).CopyTo(new Span<float>(Y + (long)(t + tt) * M + p * 32, rows));
                    }
                }
                for (; t < N; t++)
                {
                    float* x0 = X + (long)t * K;
                    Vector512<float> a0 = default, b0 = default, a1 = default, b1 = default;
                    int j = 0;
                    for (; j + 2 <= K; j += 2)
                    {
                        Expand(vals + (long)j * 16 * size, masks[j], out var lo, out var hi);
                        var s = Vector512.Create(x0[j]);
                        a0 = Avx512F.FusedMultiplyAdd(lo, s, a0); b0 = Avx512F.FusedMultiplyAdd(hi, s, b0);
                        Expand(vals + (long)(j + 1) * 16 * size, masks[j + 1], out lo, out hi);
                        s = Vector512.Create(x0[j + 1]);
                        a1 = Avx512F.FusedMultiplyAdd(lo, s, a1); b1 = Avx512F.FusedMultiplyAdd(hi, s, b1);
                    }
                    if (j < K)
                    {
                        Expand(vals + (long)j * 16 * size, masks[j], out var lo, out var hi);
                        var s = Vector512.Create(x0[j]);
                        a0 = Avx512F.FusedMultiplyAdd(lo, s, a0); b0 = Avx512F.FusedMultiplyAdd(hi, s, b0);
                    }
                    (a0 + a1).Store(tile);
                    (b0 + b1).Store(tile + 16);
                    new ReadOnlySpan<float>(tile, rows).CopyTo(new Span<float>(Y + (long)t * M + p * 32, rows));
                }
            }
        }
    }

    /// <summary>Scalar definition: y[t, row] = Σ_j x[t, j] · W[row, j] over the kept weights.</summary>
    private struct ScalarJob : IRangeJob
    {
        public NmOutputSparseMatrix W;
        public float* X, Y;
        public int N;

        public readonly void Execute(int begin, int end)
        {
            var w = W;
            int k = w.Columns;
            var acc = new float[32];
            for (int p = begin; p < end; p++)
            {
                int rows = Math.Min(32, w.GroupedRows - p * 32);
                for (int t = 0; t < N; t++)
                {
                    Array.Clear(acc);
                    float* x = X + (long)t * k;
                    for (int j = 0; j < k; j++)
                    {
                        uint mask = w.Masks[(long)p * k + j];
                        int slotLo = 0, slotHi = 8;
                        for (int i = 0; i < rows; i++)
                        {
                            if ((mask >> i & 1) != 0)
                            {
                                int slot = i < 16 ? slotLo++ : slotHi++;
                                acc[i] += w.ValueType.ReadAsSingle(w.Values, ((long)p * k + j) * 16 + slot) * x[j];
                            }
                        }
                    }
                    for (int i = 0; i < rows; i++)
                    {
                        Y[(long)t * w.Rows + p * 32 + i] = acc[i];
                    }
                }
            }
        }
    }
}
