using System.Runtime.CompilerServices;
using Kernels.Simd.Matrices;
using Kernels.Simd.Threading;
using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>
/// Large-batch (prefill) product with an input-axis N:M matrix, as a sparse-times-dense
/// product: every kept weight is broadcast and multiplied into a vector of tokens. X is
/// transposed once per tile of 4 vectors of tokens into Xt[K, tile]. Rows are processed in
/// chunks; for each 64-column slice (one 16 KiB block of Xt, which stays in L1 across the
/// chunk's rows) each row's 32 kept values and their Xt offsets are decoded with vector ops,
/// then each kept value costs one broadcast and 4 FMAs with memory operands. No permutes; half
/// the FLOPs of the dense product.
/// </summary>
internal static unsafe class SparseBroadcastGemm
{
    private const int VectorsPerTile = 8;
    private const int SliceColumns = 64;   // = 32 kept values = one interleaved storage block
    private const int RowsPerChunk = 32;

    public static void Run<TTier, TVec, TIdx, TGather, TValues, TLoad>(NmSparseMatrix w, float* x, float* y, int n)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TIdx : unmanaged
        where TGather : struct, ISparseGather<TVec, TIdx> where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
    {
        int tile = VectorsPerTile * TTier.Count;
        int k = w.Columns, m = w.Rows;
        float* xt = DenseGemm.Scratch.PackedX((long)k * tile);
        for (int t0 = 0; t0 < n; t0 += tile)
        {
            int tv = Math.Min(tile, n - t0);
            var pack = new TransposeJob { X = x + (long)t0 * k, Xt = xt, K = k, Tokens = tv, Tile = tile };
            WorkerPool.Shared.For(k, 512, ref pack);
            var job = new Job<TTier, TVec, TIdx, TGather, TValues, TLoad>
            {
                W = w, Xt = xt, Y = y + (long)t0 * m, Tile = tile, Tokens = tv,
            };
            WorkerPool.Shared.For(m, RowsPerChunk, ref job);
        }
    }

    /// <summary>Xt[c, t] = X[t, c] for the tile's tokens, zero past the last one.</summary>
    private struct TransposeJob : IRangeJob
    {
        public float* X, Xt;
        public int K, Tokens, Tile;

        public readonly void Execute(int begin, int end)
        {
            for (int c = begin; c < end; c++)
            {
                float* dst = Xt + (long)c * Tile;
                int t = 0;
                for (; t < Tokens; t++)
                {
                    dst[t] = X[(long)t * K + c];
                }
                for (; t < Tile; t++)
                {
                    dst[t] = 0f;
                }
            }
        }
    }

    private struct Job<TTier, TVec, TIdx, TGather, TValues, TLoad> : IRangeJob
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TIdx : unmanaged
        where TGather : struct, ISparseGather<TVec, TIdx> where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
    {
        public NmSparseMatrix W;
        public float* Xt, Y;
        public int Tile, Tokens;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            var w = W;
            int c = TTier.Count, size = TLoad.Type.Size();
            int tile = Tile;
            int shift = System.Numerics.BitOperations.Log2((uint)tile);
            float* acc = stackalloc float[RowsPerChunk * VectorsPerTile * 16];   // [row][tile]
            float* vals = stackalloc float[SliceColumns];
            int* offs = stackalloc int[SliceColumns];
            int paired = TValues.PairedKept<TTier, TVec>(w.KeptPerRow);
            int second = TValues.SecondOffset<TTier, TVec>();
            // Whole slices: kept [32s, 32s + 32) ↔ columns [64s, 64s + 64); every slice holds 2 (512-bit) or 4 (256-bit) pairs.
            int slices = paired / 32;
            for (int s = 0; s < slices; s++)
            {
                for (int r = begin; r < end; r++)
                {
                    byte* values = w.Values + (long)r * w.ValueStride * size;
                    byte* meta = w.Meta + (long)r * w.MetaStride;
                    int count = 0;
                    for (int p = 32 * s; p < 32 * s + 32; p += 2 * c)
                    {
                        int ka = TValues.FirstKept(p), kb = ka + second;
                        TValues.LoadPair<TTier, TVec>(values, p, out TVec wa, out TVec wb);
                        TTier.Store(vals + count, wa);
                        TTier.Store(vals + count + c, wb);
                        TGather.StoreOffsets(TGather.Decode(meta, ka / c), 2 * ka, shift, offs + count);
                        TGather.StoreOffsets(TGather.Decode(meta, kb / c), 2 * kb, shift, offs + count + c);
                        count += 2 * c;
                    }
                    Accumulate(vals, offs, count, acc + (r - begin) * tile, s == 0);
                }
            }
            // Kept values beyond the whole slices (scalar decode) and the dense tail columns.
            for (int r = begin; r < end; r++)
            {
                int count = 0;
                float* a = acc + (r - begin) * tile;
                bool first = slices == 0;
                for (int k = slices * 32; k < w.KeptPerRow; k++)
                {
                    vals[count] = w.ValueOf(r, k);
                    offs[count++] = (k / w.Pattern.N * w.Pattern.M + w.IndexOf(r, k)) * tile;
                    if (count == SliceColumns)
                    {
                        Accumulate(vals, offs, count, a, first);
                        first = false;
                        count = 0;
                    }
                }
                if (w.Tail is { } tailMatrix)
                {
                    int grouped = w.Groups * w.Pattern.M;
                    for (int t = 0; t < w.TailColumns; t++)
                    {
                        vals[count] = tailMatrix.GetElement(r, t);
                        offs[count++] = (grouped + t) * tile;
                        if (count == SliceColumns)
                        {
                            Accumulate(vals, offs, count, a, first);
                            first = false;
                            count = 0;
                        }
                    }
                }
                if (count > 0 || first)
                {
                    Accumulate(vals, offs, count, a, first);
                }
                for (int t = 0; t < Tokens; t++)
                {
                    Y[(long)t * w.Rows + r] = a[t];
                }
            }
        }

        /// <summary>a[0..tile) (+)= Σ_j vals[j] · Xt[offs[j] ..].</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly void Accumulate(float* vals, int* offs, int count, float* a, bool first)
        {
            int c = TTier.Count;
            TVec a0, a1, a2, a3, a4, a5, a6, a7;
            if (first)
            {
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = TTier.Zero;
            }
            else
            {
                a0 = TTier.Load(a); a1 = TTier.Load(a + c); a2 = TTier.Load(a + 2 * c); a3 = TTier.Load(a + 3 * c);
                a4 = TTier.Load(a + 4 * c); a5 = TTier.Load(a + 5 * c); a6 = TTier.Load(a + 6 * c); a7 = TTier.Load(a + 7 * c);
            }
            float* xt = Xt;
            for (int j = 0; j < count; j++)
            {
                TVec v = TTier.Broadcast(vals[j]);
                float* row = xt + offs[j];
                a0 = TTier.MultiplyAdd(v, TTier.Load(row), a0);
                a1 = TTier.MultiplyAdd(v, TTier.Load(row + c), a1);
                a2 = TTier.MultiplyAdd(v, TTier.Load(row + 2 * c), a2);
                a3 = TTier.MultiplyAdd(v, TTier.Load(row + 3 * c), a3);
                a4 = TTier.MultiplyAdd(v, TTier.Load(row + 4 * c), a4);
                a5 = TTier.MultiplyAdd(v, TTier.Load(row + 5 * c), a5);
                a6 = TTier.MultiplyAdd(v, TTier.Load(row + 6 * c), a6);
                a7 = TTier.MultiplyAdd(v, TTier.Load(row + 7 * c), a7);
            }
            TTier.Store(a, a0); TTier.Store(a + c, a1); TTier.Store(a + 2 * c, a2); TTier.Store(a + 3 * c, a3);
            TTier.Store(a + 4 * c, a4); TTier.Store(a + 5 * c, a5); TTier.Store(a + 6 * c, a6); TTier.Store(a + 7 * c, a7);
        }
    }
}
