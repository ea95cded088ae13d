using Kernels.Simd.Quantized;

namespace Kernels.Simd.Matrices;

/// <summary>
/// A row-major matrix of llama.cpp quantized blocks (<see cref="QuantType"/>), viewed in place:
/// the kernels read the blocks directly, there is no float copy.
/// </summary>
public sealed unsafe class QuantizedMatrix : WeightMatrix
{
    private readonly object? _keepAlive;
    private readonly NativeBuffer? _buffer;

    /// <summary>Views <paramref name="rows"/> rows of blocks at <paramref name="data"/>; <paramref name="keepAlive"/> owns the memory.</summary>
    public QuantizedMatrix(string name, int rows, int columns, QuantType type, void* data, object? keepAlive)
        : base(name, rows, columns)
    {
        if (columns % type.BlockElements() != 0)
        {
            ThrowHelper.Argument($"{name}: a {type} row holds whole blocks of {type.BlockElements()} weights; {columns} columns is not a multiple", nameof(columns));
        }
        if (data == null && (long)rows * columns > 0)
        {
            ThrowHelper.Argument($"{name}: null data pointer.", nameof(data));
        }
        Type = type;
        Data = (byte*)data;
        _keepAlive = keepAlive;
    }

    /// <summary>Allocates a zeroed matrix (for writers and tests that fill the blocks).</summary>
    public QuantizedMatrix(string name, int rows, int columns, QuantType type)
        : this(name, rows, columns, type, (void*)1, null)
    {
        _buffer = new NativeBuffer(Math.Max(1, rows * type.RowBytes(columns)));
        Data = (byte*)_buffer.Pointer;
    }

    public QuantType Type { get; }

    public byte* Data { get; }

    /// <summary>What owns the memory this matrix views (a model file), or null when it owns it.</summary>
    public object? Owner => _keepAlive;

    public long RowStrideBytes => Type.RowBytes(Columns);

    public byte* Row(int row) => Data + row * RowStrideBytes;

    public override long ByteSize => Rows * RowStrideBytes;

    public override string Format => Type.ToString();

    public override float GetElement(int row, int column)
    {
        if ((uint)row >= (uint)Rows || (uint)column >= (uint)Columns)
        {
            ThrowHelper.OutOfRange(nameof(row), $"{Name}: element ({row}, {column}) outside [{Rows}, {Columns}]");
        }
        return Dequantization.Element(Type, Row(row), column);
    }

    public override void CopyRow(int row, Span<float> destination)
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
            Dequantization.Row(Type, Row(row), d, Columns);
        }
    }

    public override void Multiply(ReadOnlySpan<float> x, Span<float> y, int n)
    {
        CheckMultiplyArguments(x, y, n);
        fixed (float* px = x)
        fixed (float* py = y)
        {
            QuantizedMatMul.Multiply(this, px, py, n);
        }
    }

    public override void Dispose()
    {
        _buffer?.Dispose();
        GC.KeepAlive(_keepAlive);
        base.Dispose();
    }
}
