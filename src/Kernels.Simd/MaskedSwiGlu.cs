using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Kernels.Simd.Matrices;
using Kernels.Simd.Threading;
using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>
/// A SwiGLU MLP stored column-major for dynamic input pruning: gateᵀ and upᵀ [dim, hidden] and
/// downᵀ [hidden, dim], so that one input feature's weights (a column of W) are one contiguous
/// row and a decode step reads ONLY the selected columns.
/// </summary>
public sealed class ColumnMajorMlp : IDisposable
{
    public ColumnMajorMlp(WeightMatrix gate, WeightMatrix up, WeightMatrix down, ElementType type)
    {
        if (gate.Rows != up.Rows || gate.Columns != up.Columns || down.Columns != gate.Rows || down.Rows != gate.Columns)
        {
            ThrowHelper.ShapeMismatch($"{gate.Name}/{up.Name}/{down.Name}: not a SwiGLU MLP");
        }
        Dim = gate.Columns;
        Hidden = gate.Rows;
        GateT = Transpose(gate, type);
        UpT = Transpose(up, type);
        DownT = Transpose(down, type);
    }

    public int Dim { get; }
    public int Hidden { get; }

    /// <summary>[dim, hidden]: row j = column j of W_gate.</summary>
    public DenseMatrix GateT { get; }

    /// <summary>[dim, hidden]: row j = column j of W_up.</summary>
    public DenseMatrix UpT { get; }

    /// <summary>[hidden, dim]: row i = column i of W_down.</summary>
    public DenseMatrix DownT { get; }

    public long ByteSize => GateT.ByteSize + UpT.ByteSize + DownT.ByteSize;

    private static unsafe DenseMatrix Transpose(WeightMatrix m, ElementType type)
    {
        var t = new DenseMatrix(m.Name + "ᵀ", m.Columns, m.Rows, type);
        if (m is DenseMatrix d && d.ElementType == type)
        {
            // Same storage type: move raw elements in cache-sized tiles, on every thread.
            var job = new TransposeJob { Source = d.Data, Destination = t.Data, Rows = m.Rows, Columns = m.Columns, Size = type.Size() };
            WorkerPool.Shared.For((m.Rows + TransposeJob.Tile - 1) / TransposeJob.Tile, 1, ref job);
            return t;
        }
        var row = new float[m.Columns];
        for (int r = 0; r < m.Rows; r++)
        {
            m.CopyRow(r, row);
            for (int c = 0; c < m.Columns; c++)
            {
                type.WriteFromSingle(t.Data, (long)c * m.Rows + r, row[c]);
            }
        }
        return t;
    }

    /// <summary>Destination[c, r] = Source[r, c] for one band of <see cref="Tile"/> source rows per item, tile by tile.</summary>
    private unsafe struct TransposeJob : IRangeJob
    {
        public const int Tile = 64;
        public byte* Source, Destination;
        public int Rows, Columns, Size;

        public readonly void Execute(int begin, int end)
        {
            for (int band = begin; band < end; band++)
            {
                int r0 = band * Tile, r1 = Math.Min(Rows, r0 + Tile);
                for (int c0 = 0; c0 < Columns; c0 += Tile)
                {
                    int c1 = Math.Min(Columns, c0 + Tile);
                    for (int r = r0; r < r1; r++)
                    {
                        for (int c = c0; c < c1; c++)
                        {
                            long from = (long)r * Columns + c, to = (long)c * Rows + r;
                            if (Size == 2)
                            {
                                ((ushort*)Destination)[to] = ((ushort*)Source)[from];
                            }
                            else
                            {
                                ((uint*)Destination)[to] = ((uint*)Source)[from];
                            }
                        }
                    }
                }
            }
        }
    }

    public void Dispose()
    {
        GateT.Dispose();
        UpT.Dispose();
        DownT.Dispose();
    }
}

/// <summary>
/// The masked SwiGLU decode kernels of dynamic input pruning (DIP): with the MLP input x and a
/// set of kept input features, g = W_g[:, I]·x[I] and u = W_u[:, I]·x[I] in one fused pass over
/// the selected columns; h = silu(g)⊙u; and y = W_d[:, J]·h[J] over the kept intermediate
/// features. Only selected columns are read. Multithreaded over output slices, so every thread
/// streams contiguous pieces of each selected column.
/// </summary>
public static unsafe class MaskedSwiGlu
{
    /// <summary>g[hidden] and u[hidden] from the columns <paramref name="columns"/> of gate and up, then h = silu(g)⊙u.</summary>
    public static void GateUp(ColumnMajorMlp w, ReadOnlySpan<float> x, ReadOnlySpan<int> columns, Span<float> h)
    {
        if (x.Length < w.Dim || h.Length < w.Hidden)
        {
            ThrowHelper.ShapeMismatch($"masked SwiGLU: x {x.Length} (need {w.Dim}), h {h.Length} (need {w.Hidden})");
        }
        int parts = Parts((long)columns.Length * w.Hidden * 2 * w.GateT.ElementType.Size());
        var partial = Scratch(2 * w.Hidden * parts);
        fixed (float* px = x)
        fixed (int* pc = columns)
        fixed (float* ph = h)
        fixed (float* pp = partial)
        {
            var job = new AxpyJob
            {
                A = w.GateT.Data, B = w.UpT.Data, Type = w.GateT.ElementType, Finite = w.GateT.HalfValuesFinite && w.UpT.HalfValuesFinite,
                Width = w.Hidden, X = px, Columns = pc, Count = columns.Length, Parts = parts, Partials = pp,
            };
            WorkerPool.Shared.For(parts, 1, ref job);
            // Sum the per-part accumulators (part 0 holds the result) and apply SwiGLU.
            float* g = pp, u = pp + w.Hidden;
            for (int p = 1; p < parts; p++)
            {
                VectorMath.Add(g, pp + (long)p * 2 * w.Hidden, g, w.Hidden);
                VectorMath.Add(u, pp + (long)p * 2 * w.Hidden + w.Hidden, u, w.Hidden);
            }
            SwiGlu.Apply(g, u, ph, w.Hidden);
        }
    }

    /// <summary>y[dim] = Σ_{i ∈ columns} h[i] · W_d[:, i].</summary>
    public static void Down(ColumnMajorMlp w, ReadOnlySpan<float> h, ReadOnlySpan<int> columns, Span<float> y)
    {
        if (h.Length < w.Hidden || y.Length < w.Dim)
        {
            ThrowHelper.ShapeMismatch($"masked down: h {h.Length} (need {w.Hidden}), y {y.Length} (need {w.Dim})");
        }
        int parts = Parts((long)columns.Length * w.Dim * w.DownT.ElementType.Size());
        var partial = Scratch(w.Dim * parts);
        fixed (float* ph = h)
        fixed (int* pc = columns)
        fixed (float* py = y)
        fixed (float* pp = partial)
        {
            var job = new AxpyJob
            {
                A = w.DownT.Data, B = null, Type = w.DownT.ElementType, Finite = w.DownT.HalfValuesFinite,
                Width = w.Dim, X = ph, Columns = pc, Count = columns.Length, Parts = parts, Partials = pp,
            };
            WorkerPool.Shared.For(parts, 1, ref job);
            for (int p = 1; p < parts; p++)
            {
                VectorMath.Add(pp, pp + (long)p * w.Dim, pp, w.Dim);
            }
            new Span<float>(pp, w.Dim).CopyTo(y);
        }
    }

    [ThreadStatic] private static float[]? t_scratch;

    private static float[] Scratch(int n)
    {
        if (t_scratch is null || t_scratch.Length < n)
        {
            t_scratch = new float[n];
        }
        return t_scratch;
    }

    /// <summary>One part per thread for large problems, else one.</summary>
    private static int Parts(long bytes) => bytes < DenseGemv.ParallelThresholdBytes ? 1 : WorkerPool.Shared.ThreadCount;

    /// <summary>
    /// Part p takes a contiguous share of the selected columns and accumulates whole rows of the
    /// column-major matrix (one or two of them) into its own accumulator: every selected column
    /// is streamed end to end by one thread (long sequential reads), and the parts are summed after.
    /// </summary>
    private struct AxpyJob : IRangeJob
    {
        public byte* A, B;
        public ElementType Type;
        public bool Finite;
        public int Width, Count, Parts;
        public float* X, Partials;
        public int* Columns;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            int outputs = B != null ? 2 : 1;
            byte** rowsA = stackalloc byte*[Group];
            byte** rowsB = stackalloc byte*[Group];
            float* xs = stackalloc float[Group];
            for (int p = begin; p < end; p++)
            {
                float* outA = Partials + (long)p * outputs * Width;
                float* outB = B != null ? outA + Width : null;
                new Span<float>(outA, outputs * Width).Clear();
                int j0 = (int)((long)Count * p / Parts), j1 = (int)((long)Count * (p + 1) / Parts);
                long stride = (long)Width * Type.Size();
                // Groups of Group selected columns: the accumulator is loaded and stored once per group
                // instead of once per column (it does not fit L1 at real widths). A group takes one column
                // from each of Group equal stretches of the part's (ascending) selection, so its columns lie
                // far apart in memory (neighbouring columns streamed together ran at a fraction of the
                // bandwidth, see DenseGemv); the remainder goes in order.
                int stretch = (j1 - j0) / Group;
                for (int j = j0; j < j1;)
                {
                    bool spread = j < j0 + stretch;
                    int g = spread ? Group : Math.Min(Group, j1 - j);
                    for (int k = 0; k < g; k++)
                    {
                        int c = Columns[spread ? j + k * stretch : j + k];
                        xs[k] = X[c];
                        rowsA[k] = A + c * stride;
                        rowsB[k] = B != null ? B + c * stride : null;
                    }
                    AxpyGroup(xs, rowsA, g, outA, Width);
                    if (B != null)
                    {
                        AxpyGroup(xs, rowsB, g, outB, Width);
                    }
                    j = spread ? (j + 1 == j0 + stretch ? j0 + Group * stretch : j + 1) : j + g;
                }
            }
        }

        /// <summary>Columns per group: the accumulator's load and store are shared by 16 columns (8 and 4 measured slower: the accumulator does not stay in L1).</summary>
        private const int Group = 16;

        private readonly void AxpyGroup(float* xs, byte** rows, int g, float* y, int n)
        {
            switch (Type)
            {
                case ElementType.F32: AxpyGroupTyped<F32Loader>(xs, rows, g, y, n); break;
                case ElementType.F16 when Finite: AxpyGroupTyped<F16FiniteLoader>(xs, rows, g, y, n); break;
                case ElementType.F16: AxpyGroupTyped<F16Loader>(xs, rows, g, y, n); break;
                default: AxpyGroupTyped<BF16Loader>(xs, rows, g, y, n); break;
            }
        }
    }

    /// <summary>y[0..n) += Σ_k xs[k] · rows[k][0..n) for g ≤ 16 rows in any storage type.</summary>
    private static void AxpyGroupTyped<TLoad>(float* xs, byte** rows, int g, float* y, int n) where TLoad : struct, IWeightLoader
    {
        var width = new AxpyGroupByWidth<TLoad> { Xs = xs, Rows = rows, G = g, Y = y, N = n };
        SimdDispatch.Run(ref width, n);
    }

    private struct AxpyGroupByWidth<TLoad> : IWidthKernel where TLoad : struct, IWeightLoader
    {
        public float* Xs, Y;
        public byte** Rows;
        public int G, N;

        public readonly void Vector<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
            Tail(AxpyGroupTier<TTier, TVec, TLoad>(Xs, Rows, G, Y, N));

        public readonly void Scalar() => Tail(0);

        private readonly void Tail(int i)
        {
            for (; i < N; i++)
            {
                float acc = Y[i];
                for (int k = 0; k < G; k++)
                {
                    acc += Xs[k] * TLoad.LoadScalar(Rows[k], i);
                }
                Y[i] = acc;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int AxpyGroupTier<TTier, TVec, TLoad>(float* xs, byte** rows, int g, float* y, int n)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TLoad : struct, IWeightLoader
    {
        int c = TTier.Count, i = 0;
        if (g == 16)
        {
            // The common case unrolled: four independent FMA chains.
            byte* r0 = rows[0], r1 = rows[1], r2 = rows[2], r3 = rows[3], r4 = rows[4], r5 = rows[5], r6 = rows[6], r7 = rows[7];
            byte* r8 = rows[8], r9 = rows[9], r10 = rows[10], r11 = rows[11], r12 = rows[12], r13 = rows[13], r14 = rows[14], r15 = rows[15];
            for (; i <= n - c; i += c)
            {
                TVec a = TTier.MultiplyAdd(TTier.Broadcast(xs[0]), TLoad.Load<TTier, TVec>(r0, i), TTier.Load(y + i));
                TVec b = TTier.Multiply(TTier.Broadcast(xs[1]), TLoad.Load<TTier, TVec>(r1, i));
                TVec d = TTier.Multiply(TTier.Broadcast(xs[2]), TLoad.Load<TTier, TVec>(r2, i));
                TVec e = TTier.Multiply(TTier.Broadcast(xs[3]), TLoad.Load<TTier, TVec>(r3, i));
                a = TTier.MultiplyAdd(TTier.Broadcast(xs[4]), TLoad.Load<TTier, TVec>(r4, i), a);
                b = TTier.MultiplyAdd(TTier.Broadcast(xs[5]), TLoad.Load<TTier, TVec>(r5, i), b);
                d = TTier.MultiplyAdd(TTier.Broadcast(xs[6]), TLoad.Load<TTier, TVec>(r6, i), d);
                e = TTier.MultiplyAdd(TTier.Broadcast(xs[7]), TLoad.Load<TTier, TVec>(r7, i), e);
                a = TTier.MultiplyAdd(TTier.Broadcast(xs[8]), TLoad.Load<TTier, TVec>(r8, i), a);
                b = TTier.MultiplyAdd(TTier.Broadcast(xs[9]), TLoad.Load<TTier, TVec>(r9, i), b);
                d = TTier.MultiplyAdd(TTier.Broadcast(xs[10]), TLoad.Load<TTier, TVec>(r10, i), d);
                e = TTier.MultiplyAdd(TTier.Broadcast(xs[11]), TLoad.Load<TTier, TVec>(r11, i), e);
                a = TTier.MultiplyAdd(TTier.Broadcast(xs[12]), TLoad.Load<TTier, TVec>(r12, i), a);
                b = TTier.MultiplyAdd(TTier.Broadcast(xs[13]), TLoad.Load<TTier, TVec>(r13, i), b);
                d = TTier.MultiplyAdd(TTier.Broadcast(xs[14]), TLoad.Load<TTier, TVec>(r14, i), d);
                e = TTier.MultiplyAdd(TTier.Broadcast(xs[15]), TLoad.Load<TTier, TVec>(r15, i), e);
                TTier.Store(y + i, TTier.Add(TTier.Add(a, b), TTier.Add(d, e)));
            }
            return i;
        }
        for (; i <= n - c; i += c)
        {
            TVec a = TTier.Load(y + i);
            for (int k = 0; k < g; k++)
            {
                a = TTier.MultiplyAdd(TTier.Broadcast(xs[k]), TLoad.Load<TTier, TVec>(rows[k], i), a);
            }
            TTier.Store(y + i, a);
        }
        return i;
    }

}
