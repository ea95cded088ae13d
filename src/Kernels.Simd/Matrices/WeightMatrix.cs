namespace Kernels.Simd.Matrices;

/// <summary>
/// A linear layer's weight W with <see cref="Rows"/> outputs and <see cref="Columns"/> inputs
/// (y = W x, PyTorch nn.Linear layout), in some storage format.
/// </summary>
public abstract class WeightMatrix : IDisposable
{
    protected WeightMatrix(string name, int rows, int columns)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(columns);
        Name = name;
        Rows = rows;
        Columns = columns;
    }

    /// <summary>Tensor name, used in error messages.</summary>
    public string Name { get; }

    public int Rows { get; }

    public int Columns { get; }

    /// <summary>Bytes a GEMV reads from this matrix (values plus metadata).</summary>
    public abstract long ByteSize { get; }

    /// <summary>Short description of the format, e.g. "dense F16" or "2:4 F16 (input groups)".</summary>
    public abstract string Format { get; }

    /// <summary>
    /// y = x · Wᵀ for a batch of <paramref name="n"/> tokens, with the SIMD kernels.
    /// </summary>
    /// <param name="x">[n, Columns] activations, row-major.</param>
    /// <param name="y">[n, Rows] outputs, row-major; overwritten.</param>
    /// <param name="n">Tokens in the batch.</param>
    public abstract void Multiply(ReadOnlySpan<float> x, Span<float> y, int n);

    /// <summary>Reads W[row, column] as float (slow; for tests, conversion and references).</summary>
    public abstract float GetElement(int row, int column);

    /// <summary>Writes row <paramref name="row"/> as float (zeros included).</summary>
    public virtual void CopyRow(int row, Span<float> destination)
    {
        if ((uint)row >= (uint)Rows)
        {
            ThrowHelper.OutOfRange(nameof(row), $"{Name}: row {row} outside [0, {Rows})");
        }
        if (destination.Length < Columns)
        {
            ThrowHelper.DestinationTooShort();
        }
        for (int c = 0; c < Columns; c++)
        {
            destination[c] = GetElement(row, c);
        }
    }

    /// <summary>Writes the whole matrix as dense float32 (row-major), zeros included.</summary>
    public void CopyToDense(Span<float> destination)
    {
        if (destination.Length < (long)Rows * Columns)
        {
            ThrowHelper.DestinationTooShort();
        }
        for (int r = 0; r < Rows; r++)
        {
            CopyRow(r, destination.Slice(r * Columns, Columns));
        }
    }

    /// <summary>The whole matrix as a new dense float32 array.</summary>
    public float[] ToDenseArray()
    {
        var a = new float[(long)Rows * Columns];
        CopyToDense(a);
        return a;
    }

    protected void CheckMultiplyArguments(ReadOnlySpan<float> x, Span<float> y, int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if (x.Length < (long)n * Columns)
        {
            ThrowHelper.ShapeMismatch($"{Name}: x has {x.Length} floats, needs n*Columns = {n}*{Columns}");
        }
        if (y.Length < (long)n * Rows)
        {
            ThrowHelper.ShapeMismatch($"{Name}: y has {y.Length} floats, needs n*Rows = {n}*{Rows}");
        }
        if (System.Runtime.InteropServices.MemoryMarshal.AsBytes(x).Overlaps(System.Runtime.InteropServices.MemoryMarshal.AsBytes((ReadOnlySpan<float>)y)))
        {
            ThrowHelper.Argument($"{Name}: x and y must not overlap (a matrix product cannot run in place).", "y");
        }
    }

    public virtual void Dispose() => GC.SuppressFinalize(this);
}
