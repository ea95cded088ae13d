using Kernels.Simd.Quantized;

namespace Kernels.Simd.Matrices;

/// <summary>
/// Compressed N:M matrix (groups along the input dimension, 2:4 or 4:8) whose kept values are
/// quantized: per row, the kept values form one ggml Q8_0 or Q4_0 row (blocks of 32 kept values,
/// each with an F16 scale computed over those kept values only), next to the same 2-bit / 3-bit
/// index metadata as <see cref="NmSparseMatrix"/>.
/// </summary>
/// <remarks>
/// <para>At half density a block of 32 kept values spans 64 input columns. A pruned matrix
/// quantized with one scale per 64 columns (<see cref="Quantization.QuantizeRow(QuantType, ReadOnlySpan{float}, Span{byte}, int)"/>
/// with a span of 2 blocks) converts to this format without changing a single value: ggml's
/// rule recomputes the same scale from the kept values and the same integers.</para>
/// <para>Layout: values [Rows, ValueRowBytes] (KeptPerRow rounded up to 32, zero padded; the
/// buffer has 64 spare bytes because kernels load 16 bytes at a time), metadata as
/// <see cref="NmSparseMatrix"/>, and Columns mod M trailing columns dense in float32.</para>
/// </remarks>
public sealed unsafe class NmQuantizedMatrix : WeightMatrix
{
    private readonly NativeBuffer _values;
    private readonly NativeBuffer _meta;
    private readonly DenseMatrix? _tail;

    private NmQuantizedMatrix(string name, int rows, int columns, NmPattern pattern, QuantType valueType, NmParts? parts = null)
        : base(name, rows, columns)
    {
        pattern.ThrowIfUnsupported(name);
        if (valueType is not (QuantType.Q8_0 or QuantType.Q4_0))
        {
            ThrowHelper.NotSupported($"{name}: N:M kept values in {valueType} are not supported (Q8_0 and Q4_0 are)");
        }
        Pattern = pattern;
        ValueType = valueType;
        Groups = columns / pattern.M;
        TailColumns = columns - Groups * pattern.M;
        KeptPerRow = Groups * pattern.N;
        ValueStride = (KeptPerRow + 31) / 32 * 32;
        ValueRowBytes = valueType.RowBytes(ValueStride);
        MetaStride = NmSparseMatrix.MetaStrideFor(pattern, KeptPerRow);
        if (parts is not null)
        {
            NmParts.Check(name, parts, rows * ValueRowBytes + 64, (long)rows * MetaStride, rows, TailColumns, ElementType.F32);
            (_values, _meta, _tail) = (parts.Values, parts.Index, parts.Tail);
            return;
        }
        _values = new NativeBuffer(rows * ValueRowBytes + 64);
        _meta = new NativeBuffer((long)rows * MetaStride);
        if (TailColumns > 0)
        {
            _tail = new DenseMatrix(name + ".tail", rows, TailColumns, ElementType.F32);
        }
    }

    /// <summary>A matrix over existing arrays in this class's layout (a compact N:M file); the sizes are checked (values include the 64 spare bytes).</summary>
    public static NmQuantizedMatrix FromParts(string name, int rows, int columns, NmPattern pattern, QuantType valueType, NmParts parts) =>
        new(name, rows, columns, pattern, valueType, parts);

    /// <summary>The arrays of this matrix as stored.</summary>
    public NmParts Parts => new(_values, _meta, _tail);

    public NmPattern Pattern { get; }

    /// <summary>Q8_0 or Q4_0: the block format of the kept values.</summary>
    public QuantType ValueType { get; }

    /// <summary>Complete groups per row (columns covered: Groups·M).</summary>
    public int Groups { get; }

    /// <summary>Trailing columns stored dense in float32 (Columns mod M).</summary>
    public int TailColumns { get; }

    public int KeptPerRow { get; }

    /// <summary>Kept values per row rounded up to whole blocks of 32.</summary>
    public int ValueStride { get; }

    /// <summary>Bytes of one row's value blocks.</summary>
    public long ValueRowBytes { get; }

    public int MetaStride { get; }

    internal byte* Values => (byte*)_values.Pointer;
    internal byte* Meta => (byte*)_meta.Pointer;
    internal DenseMatrix? Tail => _tail;

    /// <summary>Bytes streamed per GEMV: value blocks, index bits and the dense tail.</summary>
    public override long ByteSize =>
        Rows * ValueRowBytes + (long)Rows * KeptPerRow * Pattern.IndexBits / 8 + (_tail?.ByteSize ?? 0);

    public override string Format => $"{Pattern} {ValueType} (input groups{(TailColumns > 0 ? $", {TailColumns} dense tail columns" : "")})";

    /// <summary>In-group index (0..M-1) of kept value <paramref name="k"/> of row <paramref name="row"/>.</summary>
    public int IndexOf(int row, int k) => NmSparseMatrix.IndexOf(Meta + (long)row * MetaStride, Pattern.M, k);

    /// <summary>Kept value <paramref name="k"/> of row <paramref name="row"/> (dequantized).</summary>
    public float ValueOf(int row, int k) => Dequantization.Element(ValueType, Values + row * ValueRowBytes, k);

    public override float GetElement(int row, int column)
    {
        if ((uint)row >= (uint)Rows || (uint)column >= (uint)Columns)
        {
            ThrowHelper.OutOfRange(nameof(row), $"{Name}: element ({row}, {column}) outside [{Rows}, {Columns}]");
        }
        if (column >= Groups * Pattern.M)
        {
            return _tail!.GetElement(row, column - Groups * Pattern.M);
        }
        int k = NmSparseMatrix.KeptSlotOf(Meta + (long)row * MetaStride, Pattern, column);
        return k < 0 ? 0f : ValueOf(row, k);
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
        destination[..Columns].Clear();
        var kept = new float[ValueStride];
        fixed (float* k = kept)
        {
            Dequantization.Row(ValueType, Values + row * ValueRowBytes, k, ValueStride);
        }
        byte* meta = Meta + (long)row * MetaStride;
        for (int k = 0; k < KeptPerRow; k++)
        {
            destination[NmSparseMatrix.ColumnOf(meta, Pattern, k)] = kept[k];
        }
        _tail?.CopyRow(row, destination.Slice(Groups * Pattern.M, TailColumns));
    }

    /// <summary>
    /// Compresses a matrix whose every group of M input columns has at most N non-zeros, and
    /// quantizes each row's kept values with ggml's <paramref name="valueType"/> rule (blocks of
    /// 32 kept values). Throws, naming the first offending group, if the matrix is not N:M sparse.
    /// </summary>
    public static NmQuantizedMatrix Compress(WeightMatrix source, NmPattern pattern, QuantType valueType)
    {
        var m = new NmQuantizedMatrix(source.Name, source.Rows, source.Columns, pattern, valueType);
        try
        {
            NmSparseMatrix.ForEachRow(source, m.CompressRow);
            return m;
        }
        catch
        {
            m.Dispose();
            throw;
        }
    }

    private void CompressRow(int r, float[] row)
    {
        var kept = new float[ValueStride];
        var indices = new byte[KeptPerRow];
        NmSparseMatrix.SelectKept(Name, r, row, Pattern, Groups, kept, indices);
        Quantization.QuantizeRow(ValueType, kept, new Span<byte>(Values + r * ValueRowBytes, (int)ValueRowBytes));
        NmSparseMatrix.WriteIndices(Meta + (long)r * MetaStride, Pattern.M, indices);
        for (int t = 0; t < TailColumns; t++)
        {
            ((float*)_tail!.Data)[(long)r * TailColumns + t] = row[Groups * Pattern.M + t];
        }
    }

    public override void Multiply(ReadOnlySpan<float> x, Span<float> y, int n)
    {
        CheckMultiplyArguments(x, y, n);
        fixed (float* px = x)
        fixed (float* py = y)
        {
            SparseGemm.Multiply(this, px, py, n);
        }
    }

    public override void Dispose()
    {
        _values.Dispose();
        _meta.Dispose();
        _tail?.Dispose();
        base.Dispose();
    }
}
