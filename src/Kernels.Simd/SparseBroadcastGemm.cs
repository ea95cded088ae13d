using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using Kernels.Simd.Matrices;
using Kernels.Simd.Threading;
using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>
/// Large-batch (prefill) product with an input-axis N:M matrix, as a sparse-times-dense
/// product: every kept weight is broadcast and multiplied into 8 (or, for batches of at most 4
/// vectors, 4) vectors of tokens: one tile,
/// each FMA taking its activations straight from L1. No permutes; half the FLOPs of the dense
/// product.
/// </summary>
/// <remarks>
/// Layout and blocking, chosen by measurement on a 32 KiB-L1 / 1 MiB-L2 core:
/// <list type="bullet">
/// <item>X is transposed once per block of tokens into tiles Xt[tile][K][8 vectors].</item>
/// <item>A chunk of <see cref="RowsPerChunk"/> rows decodes its index metadata once, for every
/// tile, into one byte per kept value: the input column relative to its 64-column slice.</item>
/// <item>Per tile and per slice (a 32 KiB block of Xt), all rows of the chunk run over the slice
/// while it sits in L1; their accumulators (one tile per row) live in L2. Rows per chunk set how
/// often a slice comes back from L3: 32 rows made that traffic, not the FMAs, the limit.</item>
/// <item>While a slice is in use, each row prefetches its share of the next slice's Xt block
/// and its own next values.</item>
/// <item>F32 values are read in place; 16-bit values are widened per slice into a small buffer.</item>
/// </list>
/// </remarks>
internal static unsafe class SparseBroadcastGemm
{
    private const int SliceKept = 32;        // kept values of a row per slice = one interleaved storage block
    private const int SliceColumns = 64;     // the input columns they come from (N:M = 1:2)
    private const int RowsPerChunk = 128;

    public static void Run<TTier, TVec, TIdx, TGather, TValues, TLoad>(NmSparseMatrix w, float* x, float* y, int n)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TIdx : unmanaged
        where TGather : struct, ISparseGather<TVec, TIdx> where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
    {
        // Batches that fill no more than half of an 8-vector tile use 4-vector tiles (no FMAs on padding).
        if (n <= FourVectors.Vectors * TTier.Count)
        {
            Run<TTier, TVec, TIdx, TGather, TValues, TLoad, FourVectors>(w, x, y, n);
        }
        else
        {
            Run<TTier, TVec, TIdx, TGather, TValues, TLoad, EightVectors>(w, x, y, n);
        }
    }

    private static void Run<TTier, TVec, TIdx, TGather, TValues, TLoad, TWidth>(NmSparseMatrix w, float* x, float* y, int n)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TIdx : unmanaged
        where TGather : struct, ISparseGather<TVec, TIdx> where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
        where TWidth : struct, ITileWidth
    {
        int tile = TWidth.Vectors * TTier.Count;
        int k = w.Columns, m = w.Rows;
        // Token blocks keep the transposed X under ~32 MB (as the dense packed kernel does).
        int blockTokens = Math.Max(tile, (int)Math.Min((n + tile - 1) / tile * tile, (8L << 20) / Math.Max(1, k) / tile * tile));
        for (int t0 = 0; t0 < n; t0 += blockTokens)
        {
            int tokens = Math.Min(blockTokens, n - t0);
            int tiles = (tokens + tile - 1) / tile;
            float* xt = DenseGemm.Scratch.PackedX((long)tiles * k * tile);
            var pack = new TransposeJob { X = x + (long)t0 * k, Xt = xt, K = k, Tokens = tokens, Tile = tile, Tiles = tiles };
            WorkerPool.Shared.For(k, 256, ref pack);
            var job = new Job<TTier, TVec, TIdx, TGather, TValues, TLoad, TWidth>
            {
                W = w, Xt = xt, Y = y + (long)t0 * m, Tile = tile, Tokens = tokens,
            };
            WorkerPool.Shared.For(m, RowsPerChunk, ref job);
        }
    }

    /// <summary>Vectors of tokens per tile: accumulators per row, FMAs per broadcast weight.</summary>
    private interface ITileWidth
    {
        static abstract int Vectors { get; }
    }

    private readonly struct EightVectors : ITileWidth
    {
        public static int Vectors => 8;
    }

    private readonly struct FourVectors : ITileWidth
    {
        public static int Vectors => 4;
    }

    /// <summary>Xt[i][c][t] = X[i·Tile + t, c], zero past the last token; full 16x16 blocks transposed in registers.</summary>
    private struct TransposeJob : IRangeJob
    {
        public float* X, Xt;
        public int K, Tokens, Tile, Tiles;

        public readonly void Execute(int begin, int end)
        {
            for (int i = 0; i < Tiles; i++)
            {
                int t0 = i * Tile, tokens = Math.Min(Tile, Tokens - t0);
                float* tileBase = Xt + (long)i * K * Tile;
                float* src = X + (long)t0 * K;
                int c = begin;
                // Whole 16-column blocks (the caller's chunks are multiples of 16), whole 16-token blocks.
                for (; c + 16 <= end; c += 16)
                {
                    int t = 0;
                    for (; t + 16 <= tokens; t += 16)
                    {
                        Transpose.Block16x16(src + (long)t * K + c, K, tileBase + (long)c * Tile + t, Tile);
                    }
                    for (int cc = c; cc < c + 16; cc++)
                    {
                        CopyColumn(src, cc, tileBase + (long)cc * Tile, t, tokens);
                    }
                }
                for (; c < end; c++)
                {
                    CopyColumn(src, c, tileBase + (long)c * Tile, 0, tokens);
                }
            }
        }

        /// <summary>dst[t] = src[t·K + c] for t in [from, tokens), zero from there to Tile.</summary>
        private readonly void CopyColumn(float* src, int c, float* dst, int from, int tokens)
        {
            int t = from;
            for (; t < tokens; t++)
            {
                dst[t] = src[(long)t * K + c];
            }
            for (; t < Tile; t++)
            {
                dst[t] = 0f;
            }
        }
    }

    private struct Job<TTier, TVec, TIdx, TGather, TValues, TLoad, TWidth> : IRangeJob
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TIdx : unmanaged
        where TGather : struct, ISparseGather<TVec, TIdx> where TValues : struct, ISparseValues where TLoad : struct, IWeightLoader
        where TWidth : struct, ITileWidth
    {
        public NmSparseMatrix W;
        public float* Xt, Y;
        public int Tile, Tokens;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            var w = W;
            int tile = Tile, rows = end - begin, size = TLoad.Type.Size();
            int shift = System.Numerics.BitOperations.Log2((uint)tile);
            // Whole slices: kept [32s, 32s + 32) ↔ columns [64s, 64s + 64).
            int slices = TValues.PairedKept<TTier, TVec>(w.KeptPerRow) / SliceKept;
            int whole = slices * SliceKept;
            float* acc = DenseGemm.Scratch.PackedW((long)rows * tile + (long)rows * whole / sizeof(float) + 1);   // [row][tile]
            byte* columns = (byte*)(acc + (long)rows * tile);                                                   // [slice][row][32]
            DecodeColumns(begin, end, slices, columns);
            float* vals = stackalloc float[2 * SliceKept];
            byte* cols = stackalloc byte[2 * SliceKept];
            long blockBytes = (long)SliceColumns * tile * sizeof(float);
            long blockShare = (blockBytes / rows + 63) & ~63L;
            for (int t0 = 0; t0 < Tokens; t0 += tile)
            {
                float* xt = Xt + (long)(t0 / tile) * w.Columns * tile;
                for (int s = 0; s < slices; s++)
                {
                    float* slice = xt + (long)s * SliceColumns * tile;
                    for (int r = begin; r < end; r++)
                    {
                        byte* values = w.Values + ((long)r * w.ValueStride + s * SliceKept) * size;
                        if (Sse.IsSupported && s + 1 < slices)
                        {
                            // This row's next slice is read one pass over the chunk later: time enough to arrive from DRAM (into L1: F32 values are read in place).
                            Sse.Prefetch0(values + SliceKept * size);
                            Sse.Prefetch0(values + SliceKept * size + 64);
                        }
                        if (Sse.IsSupported && (s + 1 < slices || t0 + tile < Tokens))
                        {
                            // Each row brings in its share of the next Xt block (the next tile's first after the last slice):
                            // the hardware prefetchers do not follow the slice's column order, and first touches from L3 stalled
                            // the FMAs (prefetching measured 1.39x -> 1.6x over dense at 11008x4096, n = 512).
                            byte* nextBlock = (byte*)(s + 1 < slices ? slice + SliceColumns * tile : xt + (long)w.Columns * tile);
                            long from = (long)(r - begin) * blockShare, to = Math.Min(blockBytes, from + blockShare);
                            for (long b = from; b < to; b += 64)
                            {
                                Sse.Prefetch0(nextBlock + b);
                            }
                        }
                        float* v;
                        if (TValues.Type == ElementType.F32)
                        {
                            v = (float*)values;
                        }
                        else
                        {
                            WidenSlice(values, vals);
                            v = vals;
                        }
                        Accumulate(slice, shift, v, columns + ((long)s * rows + (r - begin)) * SliceKept, SliceKept, acc + (r - begin) * tile, s == 0);
                    }
                }
                // Kept values beyond the whole slices and the dense tail columns: scalar decode, columns relative to the end of the slices.
                float* rest = xt + (long)slices * SliceColumns * tile;
                int restStart = slices * SliceColumns;
                for (int r = begin; r < end; r++)
                {
                    int count = 0;
                    float* a = acc + (r - begin) * tile;
                    bool first = slices == 0;
                    for (int k = whole; k < w.KeptPerRow; k++)
                    {
                        vals[count] = w.ValueOf(r, k);
                        cols[count++] = (byte)(k / w.Pattern.N * w.Pattern.M + w.IndexOf(r, k) - restStart);
                    }
                    if (w.Tail is { } tailMatrix)
                    {
                        // Fewer than M tail columns: together with fewer than 32 leftover kept values they fit the buffers.
                        int grouped = w.Groups * w.Pattern.M;
                        for (int t = 0; t < w.TailColumns; t++)
                        {
                            vals[count] = tailMatrix.GetElement(r, t);
                            cols[count++] = (byte)(grouped + t - restStart);
                        }
                    }
                    if (count > 0 || first)
                    {
                        Accumulate(rest, shift, vals, cols, count, a, first);
                    }
                }
                StoreTile(acc, rows, tile, begin, t0, Math.Min(tile, Tokens - t0));
            }
        }

        /// <summary>
        /// Y[t0 + t, row] = acc[row - begin][t]: transposed in 16x16 register blocks. (Row by row,
        /// every token's value went to its own cache line of Y: with 5632 rows that was half the
        /// kernel's time at K = 2048.)
        /// </summary>
        private readonly void StoreTile(float* acc, int rows, int tile, int begin, int t0, int tokens)
        {
            int m = W.Rows;
            int r = 0;
            for (; r + 16 <= rows; r += 16)
            {
                int t = 0;
                for (; t + 16 <= tokens; t += 16)
                {
                    Transpose.Block16x16(acc + (long)r * tile + t, tile, Y + (long)(t0 + t) * m + begin + r, m);
                }
                for (; t < tokens; t++)
                {
                    for (int rr = r; rr < r + 16; rr++)
                    {
                        Y[(long)(t0 + t) * m + begin + rr] = acc[(long)rr * tile + t];
                    }
                }
            }
            for (; r < rows; r++)
            {
                for (int t = 0; t < tokens; t++)
                {
                    Y[(long)(t0 + t) * m + begin + r] = acc[(long)r * tile + t];
                }
            }
        }

        /// <summary>columns[s][row][j] = input column of row's kept value 32s + j, relative to column 64s.</summary>
        private readonly void DecodeColumns(int begin, int end, int slices, byte* columns)
        {
            var w = W;
            int c = TTier.Count, rows = end - begin;
            for (int r = begin; r < end; r++)
            {
                byte* meta = w.Meta + (long)r * w.MetaStride;
                for (int s = 0; s < slices; s++)
                {
                    byte* dst = columns + ((long)s * rows + (r - begin)) * SliceKept;
                    for (int k = 0; k < SliceKept; k += c)
                    {
                        TGather.StoreColumns(TGather.Decode(meta, (s * SliceKept + k) / c), 2 * k, dst + k);
                    }
                }
            }
        }

        /// <summary>One slice of a row's 16-bit values, widened to float in kept order.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void WidenSlice(byte* values, float* destination)
        {
            int c = TTier.Count;
            int second = TValues.SecondOffset<TTier, TVec>();
            for (int p = 0; p < SliceKept; p += 2 * c)
            {
                int ka = TValues.FirstKept(p);
                TValues.LoadPair<TTier, TVec>(values, p, out TVec wa, out TVec wb);
                TTier.Store(destination + ka, wa);
                TTier.Store(destination + ka + second, wb);
            }
        }

        /// <summary>a[0..tile) (+)= Σ_j vals[j] · xt[cols[j] · tile ..].</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Accumulate(float* xt, int shift, float* vals, byte* cols, int count, float* a, bool first)
        {
            int c = TTier.Count;
            bool eight = TWidth.Vectors == 8;   // a JIT-time constant: the 4-vector instantiation drops a4..a7
            TVec a0, a1, a2, a3, a4, a5, a6, a7;
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = TTier.Zero;
            if (!first)
            {
                a0 = TTier.Load(a); a1 = TTier.Load(a + c); a2 = TTier.Load(a + 2 * c); a3 = TTier.Load(a + 3 * c);
                if (eight)
                {
                    a4 = TTier.Load(a + 4 * c); a5 = TTier.Load(a + 5 * c); a6 = TTier.Load(a + 6 * c); a7 = TTier.Load(a + 7 * c);
                }
            }
            int jj = 0;
            if (eight)
            {
                // Two kept values per step into two sets of accumulators: 16 independent FMA chains (8 left the
                // FMA pipes waiting on their 4-cycle latency).
                TVec b0, b1, b2, b3, b4, b5, b6, b7;
                b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = TTier.Zero;
                for (; jj + 2 <= count; jj += 2)
                {
                    TVec v = TTier.Broadcast(vals[jj]);
                    TVec u = TTier.Broadcast(vals[jj + 1]);
                    float* row = xt + ((nint)cols[jj] << shift);
                    float* next = xt + ((nint)cols[jj + 1] << shift);
                    a0 = TTier.MultiplyAdd(v, TTier.Load(row), a0);
                    b0 = TTier.MultiplyAdd(u, TTier.Load(next), b0);
                    a1 = TTier.MultiplyAdd(v, TTier.Load(row + c), a1);
                    b1 = TTier.MultiplyAdd(u, TTier.Load(next + c), b1);
                    a2 = TTier.MultiplyAdd(v, TTier.Load(row + 2 * c), a2);
                    b2 = TTier.MultiplyAdd(u, TTier.Load(next + 2 * c), b2);
                    a3 = TTier.MultiplyAdd(v, TTier.Load(row + 3 * c), a3);
                    b3 = TTier.MultiplyAdd(u, TTier.Load(next + 3 * c), b3);
                    a4 = TTier.MultiplyAdd(v, TTier.Load(row + 4 * c), a4);
                    b4 = TTier.MultiplyAdd(u, TTier.Load(next + 4 * c), b4);
                    a5 = TTier.MultiplyAdd(v, TTier.Load(row + 5 * c), a5);
                    b5 = TTier.MultiplyAdd(u, TTier.Load(next + 5 * c), b5);
                    a6 = TTier.MultiplyAdd(v, TTier.Load(row + 6 * c), a6);
                    b6 = TTier.MultiplyAdd(u, TTier.Load(next + 6 * c), b6);
                    a7 = TTier.MultiplyAdd(v, TTier.Load(row + 7 * c), a7);
                    b7 = TTier.MultiplyAdd(u, TTier.Load(next + 7 * c), b7);
                }
                a0 = TTier.Add(a0, b0); a1 = TTier.Add(a1, b1); a2 = TTier.Add(a2, b2); a3 = TTier.Add(a3, b3);
                a4 = TTier.Add(a4, b4); a5 = TTier.Add(a5, b5); a6 = TTier.Add(a6, b6); a7 = TTier.Add(a7, b7);
            }
            for (int j = jj; j < count; j++)
            {
                TVec v = TTier.Broadcast(vals[j]);
                float* row = xt + ((nint)cols[j] << shift);
                a0 = TTier.MultiplyAdd(v, TTier.Load(row), a0);
                a1 = TTier.MultiplyAdd(v, TTier.Load(row + c), a1);
                a2 = TTier.MultiplyAdd(v, TTier.Load(row + 2 * c), a2);
                a3 = TTier.MultiplyAdd(v, TTier.Load(row + 3 * c), a3);
                if (eight)
                {
                    a4 = TTier.MultiplyAdd(v, TTier.Load(row + 4 * c), a4);
                    a5 = TTier.MultiplyAdd(v, TTier.Load(row + 5 * c), a5);
                    a6 = TTier.MultiplyAdd(v, TTier.Load(row + 6 * c), a6);
                    a7 = TTier.MultiplyAdd(v, TTier.Load(row + 7 * c), a7);
                }
            }
            TTier.Store(a, a0); TTier.Store(a + c, a1); TTier.Store(a + 2 * c, a2); TTier.Store(a + 3 * c, a3);
            if (eight)
            {
                TTier.Store(a + 4 * c, a4); TTier.Store(a + 5 * c, a5); TTier.Store(a + 6 * c, a6); TTier.Store(a + 7 * c, a7);
            }
        }
    }
}
