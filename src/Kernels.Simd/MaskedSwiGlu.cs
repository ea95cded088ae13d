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
        var g = Scratch(2 * w.Hidden);
        fixed (float* px = x)
        fixed (int* pc = columns)
        fixed (float* ph = h)
        fixed (float* pg = g)
        {
            var job = new AxpyJob
            {
                A = w.GateT.Data, B = w.UpT.Data, Type = w.GateT.ElementType, Finite = w.GateT.HalfValuesFinite && w.UpT.HalfValuesFinite, Width = w.Hidden, X = px, Columns = pc, Count = columns.Length,
                OutA = pg, OutB = pg + w.Hidden, Slice = SliceOf(w.Hidden, (long)columns.Length * w.Hidden * 2 * w.GateT.ElementType.Size()),
            };
            Run(ref job, w.Hidden);
            SwiGlu.Apply(pg, pg + w.Hidden, ph, w.Hidden);
        }
    }

    /// <summary>y[dim] = Σ_{i ∈ columns} h[i] · W_d[:, i].</summary>
    public static void Down(ColumnMajorMlp w, ReadOnlySpan<float> h, ReadOnlySpan<int> columns, Span<float> y)
    {
        if (h.Length < w.Hidden || y.Length < w.Dim)
        {
            ThrowHelper.ShapeMismatch($"masked down: h {h.Length} (need {w.Hidden}), y {y.Length} (need {w.Dim})");
        }
        fixed (float* ph = h)
        fixed (int* pc = columns)
        fixed (float* py = y)
        {
            var job = new AxpyJob
            {
                A = w.DownT.Data, B = null, Type = w.DownT.ElementType, Finite = w.DownT.HalfValuesFinite, Width = w.Dim, X = ph, Columns = pc, Count = columns.Length,
                OutA = py, OutB = null, Slice = SliceOf(w.Dim, (long)columns.Length * w.Dim * w.DownT.ElementType.Size()),
            };
            Run(ref job, w.Dim);
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

    /// <summary>Output slice per work item: whole width for small problems, else ~threads·2 slices of 64-float multiples.</summary>
    private static int SliceOf(int width, long bytes)
    {
        if (bytes < DenseGemv.ParallelThresholdBytes)
        {
            return width;
        }
        int slices = 2 * WorkerPool.Shared.ThreadCount;
        return Math.Max(64, (width / slices + 63) / 64 * 64);
    }

    private static void Run(ref AxpyJob job, int width) => WorkerPool.Shared.For((width + job.Slice - 1) / job.Slice, 1, ref job);

    /// <summary>For a slice [s0, s1) of the output: out[s0..s1) = Σ_j x[c_j] · M[c_j, s0..s1) (for one or two matrices).</summary>
    private struct AxpyJob : IRangeJob
    {
        public byte* A, B;
        public ElementType Type;
        public bool Finite;
        public int Width, Count, Slice;
        public float* X, OutA, OutB;
        public int* Columns;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            for (int s = begin; s < end; s++)
            {
                int s0 = s * Slice, len = Math.Min(Slice, Width - s0);
                new Span<float>(OutA + s0, len).Clear();
                if (OutB != null)
                {
                    new Span<float>(OutB + s0, len).Clear();
                }
                long stride = (long)Width * Type.Size();
                for (int j = 0; j < Count; j++)
                {
                    int c = Columns[j];
                    float xv = X[c];
                    long offset = c * stride + (long)s0 * Type.Size();
                    Axpy(xv, A + offset, OutA + s0, len);
                    if (OutB != null)
                    {
                        Axpy(xv, B + offset, OutB + s0, len);
                    }
                }
            }
        }

        private readonly void Axpy(float a, byte* row, float* y, int n)
        {
            switch (Type)
            {
                case ElementType.F32: AxpyTyped<F32Loader>(a, row, y, n); break;
                case ElementType.F16 when Finite: AxpyTyped<F16FiniteLoader>(a, row, y, n); break;
                case ElementType.F16: AxpyTyped<F16Loader>(a, row, y, n); break;
                default: AxpyTyped<BF16Loader>(a, row, y, n); break;
            }
        }
    }

    /// <summary>y[0..n) += a · row[0..n) with the row in any storage type.</summary>
    private static void AxpyTyped<TLoad>(float a, byte* row, float* y, int n) where TLoad : struct, IWeightLoader
    {
        int i = 0;
        if (SimdInfo.Use512)
        {
            i = AxpyTier<Vec512, Vector512<float>, TLoad>(a, row, y, n);
        }
        else if (SimdInfo.Use256)
        {
            i = AxpyTier<Vec256, Vector256<float>, TLoad>(a, row, y, n);
        }
        for (; i < n; i++)
        {
            y[i] += a * TLoad.LoadScalar(row, i);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int AxpyTier<TTier, TVec, TLoad>(float a, byte* row, float* y, int n)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged where TLoad : struct, IWeightLoader
    {
        int c = TTier.Count, i = 0;
        TVec av = TTier.Broadcast(a);
        for (; i <= n - 2 * c; i += 2 * c)
        {
            TTier.Store(y + i, TTier.MultiplyAdd(av, TLoad.Load<TTier, TVec>(row, i), TTier.Load(y + i)));
            TTier.Store(y + i + c, TTier.MultiplyAdd(av, TLoad.Load<TTier, TVec>(row, i + c), TTier.Load(y + i + c)));
        }
        for (; i <= n - c; i += c)
        {
            TTier.Store(y + i, TTier.MultiplyAdd(av, TLoad.Load<TTier, TVec>(row, i), TTier.Load(y + i)));
        }
        return i;
    }
}
