namespace Kernels.Simd.Matrices;

/// <summary>
/// A dense row-major matrix in F32, F16 or BF16, either owning native memory or viewing memory
/// owned by someone else (a memory-mapped model file).
/// </summary>
public sealed unsafe class DenseMatrix : WeightMatrix
{
    private readonly NativeBuffer? _buffer;
    private readonly object? _keepAlive;

    /// <summary>Views existing memory. <paramref name="keepAlive"/> is held so the memory outlives this view.</summary>
    public DenseMatrix(string name, int rows, int columns, ElementType type, void* data, object? keepAlive)
        : base(name, rows, columns)
    {
        if (data == null && (long)rows * columns > 0)
        {
            ThrowHelper.Argument($"{name}: null data pointer.", nameof(data));
        }
        ElementType = type;
        Data = (byte*)data;
        _keepAlive = keepAlive;
    }

    /// <summary>Allocates a zeroed, 64-byte aligned matrix.</summary>
    public DenseMatrix(string name, int rows, int columns, ElementType type)
        : base(name, rows, columns)
    {
        ElementType = type;
        _buffer = new NativeBuffer((long)rows * columns * type.Size());
        Data = (byte*)_buffer.Pointer;
    }

    /// <summary>Copies a float32 row-major array into a new matrix of <paramref name="type"/> (rounding to nearest even).</summary>
    public static DenseMatrix FromSingle(string name, int rows, int columns, ReadOnlySpan<float> values, ElementType type = ElementType.F32)
    {
        if (values.Length != (long)rows * columns)
        {
            ThrowHelper.ShapeMismatch($"{name}: {values.Length} values for a {rows}x{columns} matrix");
        }
        var m = new DenseMatrix(name, rows, columns, type);
        for (long i = 0; i < values.Length; i++)
        {
            type.WriteFromSingle(m.Data, i, values[(int)i]);
        }
        return m;
    }

    public ElementType ElementType { get; }

    /// <summary>What owns the memory this matrix views (a model file), or null when the matrix owns it.</summary>
    public object? Owner => _keepAlive;

    /// <summary>First byte of row 0; rows are contiguous (row stride = Columns elements).</summary>
    public byte* Data { get; }

    private int _finite; // 0 unknown, 1 all finite, 2 has Inf/NaN

    /// <summary>
    /// For F16: true when no element is Inf/NaN, so kernels may use the fast exact widening.
    /// Checked once (one pass over the data) and cached; weights are immutable after load.
    /// </summary>
    public bool HalfValuesFinite
    {
        get
        {
            if (ElementType != ElementType.F16)
            {
                return false;
            }
            if (_finite == 0)
            {
                _finite = Vectors.HalfBits.AllFinite((ushort*)Data, (long)Rows * Columns) ? 1 : 2;
            }
            return _finite == 1;
        }
    }

    public long RowStrideBytes => (long)Columns * ElementType.Size();

    public override long ByteSize => (long)Rows * Columns * ElementType.Size();

    public override string Format => $"dense {ElementType}";

    /// <summary>Row <paramref name="row"/> as raw bytes.</summary>
    public byte* Row(int row) => Data + row * RowStrideBytes;

    public override float GetElement(int row, int column) => ElementType.ReadAsSingle(Data, (long)row * Columns + column);

    public override void CopyRow(int row, Span<float> destination) => ReadRow(row, destination);

    /// <summary>Copies row <paramref name="row"/> into <paramref name="destination"/> as float (embedding lookup).</summary>
    public void ReadRow(int row, Span<float> destination)
    {
        if ((uint)row >= (uint)Rows)
        {
            ThrowHelper.OutOfRange(nameof(row), $"{Name}: row {row} outside [0, {Rows})");
        }
        if (destination.Length < Columns)
        {
            ThrowHelper.DestinationTooShort();
        }
        fixed (float* d = destination)
        {
            Conversion.ToSingle(ElementType, Row(row), d, Columns);
        }
    }

    public override void Multiply(ReadOnlySpan<float> x, Span<float> y, int n)
    {
        CheckMultiplyArguments(x, y, n);
        fixed (float* px = x)
        fixed (float* py = y)
        {
            if (n == 1)
            {
                DenseGemv.Multiply(this, px, py);
            }
            else
            {
                DenseGemm.Multiply(this, px, py, n);
            }
        }
    }

    public override void Dispose()
    {
        _buffer?.Dispose();
        GC.KeepAlive(_keepAlive);
        base.Dispose();
    }
}
