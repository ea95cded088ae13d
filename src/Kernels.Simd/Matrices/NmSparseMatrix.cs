namespace Kernels.Simd.Matrices;

/// <summary>
/// Compressed N:M matrix with groups along the input (reduction) dimension: per row, the N kept
/// values of every group of M consecutive columns, plus their in-group indices.
/// </summary>
/// <remarks>
/// <para>Layout (row-major, every row 64-byte aligned):</para>
/// <list type="bullet">
/// <item>values: [Rows, ValueStride] in <see cref="ValueType"/> (F32/F16/BF16); kept values in
/// column order, ValueStride = KeptPerRow rounded up to 32 (zero padded).</item>
/// <item>metadata: [Rows, MetaStride] bytes, in blocks of 16 kept values. 2:4: one uint32 per
/// block, value j's index at bits 2j..2j+1 (2 bits per kept value). 4:8: 6 bytes (48 bits, little
/// endian) per block, value j's index at bits 3j..3j+2 (3 bits per kept value), so one 64-bit
/// broadcast and one byte-granular shift (vpmultishiftqb) decode a whole block. Rows carry 2
/// spare bytes so that 64-bit read of the last block stays inside the row. Indices are strictly
/// increasing within a group.</item>
/// <item>dense tail: when Columns is not a multiple of M, the last Columns mod M columns are
/// kept dense ([Rows, TailColumns]) — the documented policy for dimensions that do not divide
/// (stories260K's hidden_dim 172 under 4:8: 21 groups + 4 dense columns). Pruners leave those
/// columns unpruned.</item>
/// </list>
/// </remarks>
public sealed unsafe class NmSparseMatrix : WeightMatrix
{
    private readonly NativeBuffer _values;
    private readonly NativeBuffer _meta;
    private readonly DenseMatrix? _tail;

    private NmSparseMatrix(string name, int rows, int columns, NmPattern pattern, ElementType valueType, NmParts? parts = null)
        : base(name, rows, columns)
    {
        pattern.ThrowIfUnsupported(name);
        Pattern = pattern;
        ValueType = valueType;
        Groups = columns / pattern.M;
        TailColumns = columns - Groups * pattern.M;
        KeptPerRow = Groups * pattern.N;
        Blocks = (KeptPerRow + 15) / 16;
        ValueStride = (KeptPerRow + 31) / 32 * 32;
        MetaStride = MetaStrideFor(pattern, KeptPerRow);
        long valueBytes = (long)rows * ValueStride * valueType.Size(), metaBytesTotal = (long)rows * MetaStride;
        if (parts is not null)
        {
            NmParts.Check(name, parts, valueBytes, metaBytesTotal, rows, TailColumns, valueType);
            (_values, _meta, _tail) = (parts.Values, parts.Index, parts.Tail);
            return;
        }
        _values = new NativeBuffer(valueBytes);
        _meta = new NativeBuffer(metaBytesTotal);
        if (TailColumns > 0)
        {
            _tail = new DenseMatrix(name + ".tail", rows, TailColumns, valueType);
        }
    }

    /// <summary>A matrix over existing arrays in this class's layout (a compact N:M file); the sizes are checked.</summary>
    public static NmSparseMatrix FromParts(string name, int rows, int columns, NmPattern pattern, ElementType valueType, NmParts parts) =>
        new(name, rows, columns, pattern, valueType, parts);

    /// <summary>The arrays of this matrix as stored.</summary>
    public NmParts Parts => new(_values, _meta, _tail);

    public NmPattern Pattern { get; }
    public ElementType ValueType { get; }

    /// <summary>Complete groups per row (columns covered: Groups·M).</summary>
    public int Groups { get; }

    /// <summary>Trailing columns stored dense (Columns mod M).</summary>
    public int TailColumns { get; }

    public int KeptPerRow { get; }

    /// <summary>Blocks of 16 kept values per row (the last one may be partial).</summary>
    internal int Blocks { get; }

    public int ValueStride { get; }

    public int MetaStride { get; }

    private int _finite;

    /// <summary>F16 values contain no Inf/NaN (checked once): the fast widening is exact.</summary>
    internal bool HalfValuesFinite
    {
        get
        {
            if (_finite == 0)
            {
                _finite = ValueType == ElementType.F16 && Vectors.HalfBits.AllFinite((ushort*)Values, (long)Rows * ValueStride)
                          && (_tail is null || _tail.HalfValuesFinite) ? 1 : 2;
            }
            return _finite == 1;
        }
    }

    internal byte* Values => (byte*)_values.Pointer;

    /// <summary>The value array [Rows, ValueStride] in storage order (for device uploads).</summary>
    public byte* RawValues => Values;

    /// <summary>The metadata [Rows, MetaStride] bytes (for device uploads).</summary>
    public byte* RawMeta => Meta;
    internal byte* Meta => (byte*)_meta.Pointer;
    internal DenseMatrix? Tail => _tail;

    /// <summary>Bytes streamed per GEMV: kept values, their index bits, and the dense tail.</summary>
    public override long ByteSize =>
        (long)Rows * KeptPerRow * ValueType.Size() + (long)Rows * KeptPerRow * Pattern.IndexBits / 8 + (_tail?.ByteSize ?? 0);

    public override string Format => $"{Pattern} {ValueType} (input groups{(TailColumns > 0 ? $", {TailColumns} dense tail columns" : "")})";

    /// <summary>In-group index (0..M-1) of kept value <paramref name="k"/> of row <paramref name="row"/>.</summary>
    public int IndexOf(int row, int k) => IndexOf(Meta + (long)row * MetaStride, Pattern.M, k);

    /// <summary>In-group index of kept value <paramref name="k"/> from a row's metadata (the layout above).</summary>
    internal static int IndexOf(byte* rowMeta, int m, int k)
    {
        if (m == 4)
        {
            return (int)(*(uint*)(rowMeta + 4 * (k >> 4)) >> (2 * (k & 15))) & 3;
        }
        return (int)(*(ulong*)(rowMeta + 6 * (k >> 4)) >> (3 * (k & 15))) & 7;
    }

    /// <summary>Writes the in-group index of kept value <paramref name="k"/> into a row's metadata.</summary>
    private static void SetIndex(byte* rowMeta, int m, int k, int index)
    {
        if (m == 4)
        {
            uint* word = (uint*)(rowMeta + 4 * (k >> 4));
            int shift = 2 * (k & 15);
            *word = (*word & ~(3u << shift)) | ((uint)index & 3) << shift;
        }
        else
        {
            // The 64-bit window also covers the next block's first 2 bytes (or the row's spare
            // bytes): read-modify-write leaves them as they were.
            ulong* word = (ulong*)(rowMeta + 6 * (k >> 4));
            int shift = 3 * (k & 15);
            *word = (*word & ~(7ul << shift)) | ((ulong)index & 7) << shift;
        }
    }

    /// <summary>Kept value <paramref name="k"/> of row <paramref name="row"/>.</summary>
    public float ValueOf(int row, int k) => ValueType.ReadAsSingle(Values, (long)row * ValueStride + StorageIndex(k));

    /// <summary>
    /// Where kept value k is stored within its row. 16-bit types interleave every full block of
    /// 32 kept values pairwise (k, k+16, k+1, k+17, …) so kernels widen two steps without shuffles.
    /// </summary>
    public int StorageIndex(int k) => ValueType == ElementType.F32 ? k : NmLayout.StorageIndex(k, KeptPerRow);

    public override float GetElement(int row, int column)
    {
        if (column >= Groups * Pattern.M)
        {
            return _tail!.GetElement(row, column - Groups * Pattern.M);
        }
        int k = KeptSlotOf(Meta + (long)row * MetaStride, Pattern, column);
        return k < 0 ? 0f : ValueOf(row, k);
    }

    /// <summary>
    /// Bytes of one row's index metadata for <paramref name="kept"/> kept values, rounded to 8: a
    /// uint32 per 16 for 2:4, 6 bytes per 16 plus 2 for 4:8 (kernels read the last 6-byte block as
    /// a uint64). Every input-axis format shares this layout.
    /// </summary>
    internal static int MetaStrideFor(NmPattern pattern, int kept)
    {
        int blocks = (kept + 15) / 16;
        int bytes = pattern.M == 4 ? 4 * blocks : 6 * blocks + 2;
        return (bytes + 7) / 8 * 8;
    }

    /// <summary>The kept slot of a row that holds input <paramref name="column"/> (inside the grouped columns), or -1 where that weight was pruned.</summary>
    internal static int KeptSlotOf(byte* rowMeta, NmPattern pattern, int column)
    {
        int g = column / pattern.M, i = column % pattern.M;
        for (int k = g * pattern.N; k < (g + 1) * pattern.N; k++)
        {
            if (IndexOf(rowMeta, pattern.M, k) == i)
            {
                return k;
            }
        }
        return -1;
    }

    /// <summary>The input column of kept slot <paramref name="k"/> of a row.</summary>
    internal static int ColumnOf(byte* rowMeta, NmPattern pattern, int k) => k / pattern.N * pattern.M + IndexOf(rowMeta, pattern.M, k);

    public override void CopyRow(int row, Span<float> destination)
    {
        if ((uint)row >= (uint)Rows)
        {
            ThrowHelper.OutOfRange(nameof(row), $"{Name}: row {row} outside [0, {Rows})");
        }
        destination[..Columns].Clear();
        byte* meta = Meta + (long)row * MetaStride;
        for (int k = 0; k < KeptPerRow; k++)
        {
            destination[ColumnOf(meta, Pattern, k)] = ValueOf(row, k);
        }
        _tail?.CopyRow(row, destination.Slice(Groups * Pattern.M, TailColumns));
    }

    /// <summary>
    /// Compresses a matrix whose every group has at most N non-zeros (a pruned matrix). Groups
    /// with fewer non-zeros keep explicit zeros. Throws, naming the first offending group, if the
    /// matrix is not N:M sparse.
    /// </summary>
    public static NmSparseMatrix Compress(WeightMatrix source, NmPattern pattern, ElementType valueType)
    {
        var m = new NmSparseMatrix(source.Name, source.Rows, source.Columns, pattern, valueType);
        try
        {
            ForEachRow(source, m.CompressRow);
            return m;
        }
        catch
        {
            m.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Selects N entries per group of a row (the non-zeros, then the first zeros) in ascending
    /// positions, the stored order kernels expect. Throws, naming the matrix, row and columns,
    /// when a group holds more than N non-zeros.
    /// </summary>
    internal static void SelectKept(string name, int r, ReadOnlySpan<float> row, NmPattern pattern, int groups, Span<float> values, Span<byte> indices)
    {
        int n = pattern.N, m = pattern.M;
        int k = 0;
        for (int g = 0; g < groups; g++)
        {
            int baseColumn = g * m;
            uint mask = 0;
            int count = 0;
            for (int i = 0; i < m; i++)
            {
                if (row[baseColumn + i] != 0f)
                {
                    mask |= 1u << i;
                    count++;
                }
            }
            if (count > n)
            {
                throw new ArgumentException($"{name}: row {r}, columns {baseColumn}..{baseColumn + m - 1} hold {count} non-zeros, more than {n}: the matrix is not {pattern} sparse along its input dimension");
            }
            for (int i = 0; count < n; i++)
            {
                if ((mask >> i & 1) == 0)
                {
                    mask |= 1u << i;
                    count++;
                }
            }
            for (int i = 0; i < m; i++)
            {
                if ((mask >> i & 1) != 0)
                {
                    values[k] = row[baseColumn + i];
                    indices[k++] = (byte)i;
                }
            }
        }
    }

    /// <summary>Packs a row's in-group indices into its metadata (the layout above).</summary>
    internal static void WriteIndices(byte* rowMeta, int m, ReadOnlySpan<byte> indices)
    {
        for (int j = 0; j < indices.Length; j++)
        {
            SetIndex(rowMeta, m, j, indices[j]);
        }
    }

    /// <summary>Calls <paramref name="compressRow"/>(row index, row as float) for every row, rows in parallel (a one-off conversion, not a kernel).</summary>
    internal static void ForEachRow(WeightMatrix source, Action<int, float[]> compressRow)
    {
        try
        {
            Parallel.For(0, (source.Rows + 63) / 64, block =>
            {
                var row = new float[source.Columns];
                for (int r = block * 64; r < Math.Min(source.Rows, block * 64 + 64); r++)
                {
                    source.CopyRow(r, row);
                    compressRow(r, row);
                }
            });
        }
        catch (AggregateException e) when (e.InnerException is ArgumentException inner)
        {
            throw inner;
        }
    }

    /// <summary>Selects N entries per group, stores values and packs indices.</summary>
    private void CompressRow(int r, float[] row)
    {
        int m = Pattern.M;
        var values = new float[KeptPerRow];
        var indices = new byte[KeptPerRow];
        SelectKept(Name, r, row, Pattern, Groups, values, indices);
        // Values in storage order (16-bit types interleave whole 32-blocks), then one typed pass.
        byte* dst = Values + (long)r * ValueStride * ValueType.Size();
        switch (ValueType)
        {
            case ElementType.F32:
                values.AsSpan().CopyTo(new Span<float>(dst, KeptPerRow));
                break;
            case ElementType.F16:
                for (int j = 0; j < KeptPerRow; j++)
                {
                    ((ushort*)dst)[StorageIndex(j)] = BitConverter.HalfToUInt16Bits((Half)values[j]);
                }
                break;
            default:
                for (int j = 0; j < KeptPerRow; j++)
                {
                    ((ushort*)dst)[StorageIndex(j)] = Vectors.HalfBits.SingleToBFloat16(values[j]);
                }
                break;
        }
        WriteIndices(Meta + (long)r * MetaStride, m, indices);
        for (int t = 0; t < TailColumns; t++)
        {
            ValueType.WriteFromSingle(_tail!.Data, (long)r * TailColumns + t, row[Groups * m + t]);
        }
    }

    /// <summary>True when every group of M input columns of <paramref name="source"/> has at most N non-zeros.</summary>
    public static bool Satisfies(WeightMatrix source, NmPattern pattern)
    {
        int groups = source.Columns / pattern.M;
        var row = new float[source.Columns];
        for (int r = 0; r < source.Rows; r++)
        {
            source.CopyRow(r, row);
            for (int g = 0; g < groups; g++)
            {
                int nz = 0;
                for (int i = 0; i < pattern.M; i++)
                {
                    nz += row[g * pattern.M + i] != 0f ? 1 : 0;
                }
                if (nz > pattern.N)
                {
                    return false;
                }
            }
        }
        return groups > 0;
    }

    private void Set(int row, int k, int index, float value)
    {
        ValueType.WriteFromSingle(Values, (long)row * ValueStride + StorageIndex(k), value);
        SetIndex(Meta + (long)row * MetaStride, Pattern.M, k, index);
    }

    /// <summary>Checks the structural invariant: indices strictly increasing and below M in every group.</summary>
    public void Validate()
    {
        for (int r = 0; r < Rows; r++)
        {
            for (int g = 0; g < Groups; g++)
            {
                int last = -1;
                for (int j = 0; j < Pattern.N; j++)
                {
                    int i = IndexOf(r, g * Pattern.N + j);
                    if (i <= last || i >= Pattern.M)
                    {
                        throw new InvalidDataException($"{Name}: row {r} group {g}: indices not strictly increasing within [0, {Pattern.M})");
                    }
                    last = i;
                }
            }
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
