namespace Kernels.Simd.Matrices;

/// <summary>
/// Compressed N:M matrix whose groups run along the OUTPUT dimension: in every column, each
/// group of M consecutive rows keeps N weights (DaSS's gate_proj/up_proj pattern). Stored in
/// column panels, which is the layout an output-grouped pattern needs: y = Σ_j x_j · W[:, j],
/// each column's kept weights expanded into their rows.
/// </summary>
/// <remarks>
/// <para>Layout: rows are cut into panels of 32. For panel p and column j: 16 value slots
/// (slots 0-7 hold the kept weights of rows 0-15 of the panel in row order, slots 8-15 those of
/// rows 16-31) in <see cref="ValueType"/>, and a uint32 bitmask of the kept rows. A bitmask is M
/// bits per group of M rows = 2 bits per kept value at N/M = 1/2 for both patterns, and it maps
/// straight onto AVX-512's vexpandps.</para>
/// <para>Rows past the last whole group (Rows mod M) are kept dense, the same tail policy as the
/// input-axis format.</para>
/// </remarks>
public sealed unsafe class NmOutputSparseMatrix : WeightMatrix
{
    internal const int PanelRows = 32;

    private readonly NativeBuffer _values;
    private readonly NativeBuffer _masks;
    private readonly DenseMatrix? _tail;

    private NmOutputSparseMatrix(string name, int rows, int columns, NmPattern pattern, ElementType valueType, NmParts? parts = null)
        : base(name, rows, columns)
    {
        pattern.ThrowIfUnsupported(name);
        Pattern = pattern;
        ValueType = valueType;
        GroupedRows = rows / pattern.M * pattern.M;
        TailRows = rows - GroupedRows;
        Panels = (GroupedRows + PanelRows - 1) / PanelRows;
        long valueBytes = (long)Panels * columns * 16 * valueType.Size() + 64, maskBytes = (long)Panels * columns * sizeof(uint);
        if (parts is not null)
        {
            NmParts.Check(name, parts, valueBytes, maskBytes, TailRows, columns, valueType);
            (_values, _masks, _tail) = (parts.Values, parts.Index, parts.Tail);
            return;
        }
        _values = new NativeBuffer(valueBytes);
        _masks = new NativeBuffer(maskBytes);
        if (TailRows > 0)
        {
            _tail = new DenseMatrix(name + ".tail", TailRows, columns, valueType);
        }
    }

    /// <summary>A matrix over existing arrays in this class's layout (a compact N:M file); the sizes are checked.</summary>
    public static NmOutputSparseMatrix FromParts(string name, int rows, int columns, NmPattern pattern, ElementType valueType, NmParts parts) =>
        new(name, rows, columns, pattern, valueType, parts);

    /// <summary>The arrays of this matrix as stored.</summary>
    public NmParts Parts => new(_values, _masks, _tail);

    public NmPattern Pattern { get; }
    public ElementType ValueType { get; }
    public int GroupedRows { get; }
    public int TailRows { get; }
    internal int Panels { get; }
    internal byte* Values => (byte*)_values.Pointer;
    internal uint* Masks => (uint*)_masks.Pointer;
    internal DenseMatrix? Tail => _tail;

    public override long ByteSize =>
        (long)GroupedRows / Pattern.M * Pattern.N * Columns * ValueType.Size() + (long)GroupedRows * Columns / 8 + (_tail?.ByteSize ?? 0);

    public override string Format => $"{Pattern} {ValueType} (output groups{(TailRows > 0 ? $", {TailRows} dense tail rows" : "")})";

    private int _finite;

    internal bool HalfValuesFinite
    {
        get
        {
            if (_finite == 0)
            {
                _finite = ValueType == ElementType.F16 && Vectors.HalfBits.AllFinite((ushort*)Values, (long)Panels * Columns * 16)
                          && (_tail is null || _tail.HalfValuesFinite) ? 1 : 2;
            }
            return _finite == 1;
        }
    }

    public override float GetElement(int row, int column)
    {
        if (row >= GroupedRows)
        {
            return _tail!.GetElement(row - GroupedRows, column);
        }
        int p = row / PanelRows, i = row % PanelRows;
        uint mask = Masks[(long)p * Columns + column];
        if ((mask >> i & 1) == 0)
        {
            return 0f;
        }
        int half = i / 16;
        int slot = 8 * half + System.Numerics.BitOperations.PopCount(mask >> (16 * half) & ((1u << (i % 16)) - 1));
        return ValueType.ReadAsSingle(Values, ((long)p * Columns + column) * 16 + slot);
    }

    /// <summary>Compresses a matrix whose every column has at most N non-zeros in each group of M rows.</summary>
    public static NmOutputSparseMatrix Compress(WeightMatrix source, NmPattern pattern, ElementType valueType)
    {
        var m = new NmOutputSparseMatrix(source.Name, source.Rows, source.Columns, pattern, valueType);
        try
        {
            int cols = source.Columns;
            var dense = new float[(long)Math.Min(PanelRows, source.Rows) * cols];
            var row = new float[cols];
            for (int p = 0; p < m.Panels; p++)
            {
                int r0 = p * PanelRows, rv = Math.Min(PanelRows, m.GroupedRows - r0);
                for (int i = 0; i < rv; i++)
                {
                    source.CopyRow(r0 + i, row);
                    row.CopyTo(dense, (long)i * cols);
                }
                for (int j = 0; j < cols; j++)
                {
                    uint mask = 0;
                    int[] slot = { 0, 8 };
                    long baseIndex = ((long)p * cols + j) * 16;
                    for (int g = 0; g < rv; g += pattern.M)
                    {
                        int nonzero = 0;
                        for (int i = g; i < g + pattern.M; i++)
                        {
                            if (dense[(long)i * cols + j] != 0f)
                            {
                                nonzero++;
                            }
                        }
                        if (nonzero > pattern.N)
                        {
                            throw new ArgumentException($"{source.Name}: column {j}, rows {r0 + g}..{r0 + g + pattern.M - 1} hold {nonzero} non-zeros: the matrix is not {pattern} sparse along its output dimension");
                        }
                        // Keep the non-zeros and fill with the first zero rows so every group holds exactly N.
                        int fill = pattern.N - nonzero;
                        for (int i = g; i < g + pattern.M; i++)
                        {
                            float v = dense[(long)i * cols + j];
                            if (v != 0f || fill-- > 0)
                            {
                                mask |= 1u << i;
                                int half = i / 16;
                                valueType.WriteFromSingle(m.Values, baseIndex + slot[half]++, v);
                            }
                        }
                    }
                    m.Masks[(long)p * cols + j] = mask;
                }
            }
            for (int t = 0; t < m.TailRows; t++)
            {
                source.CopyRow(m.GroupedRows + t, row);
                for (int j = 0; j < cols; j++)
                {
                    valueType.WriteFromSingle(m._tail!.Data, (long)t * cols + j, row[j]);
                }
            }
            return m;
        }
        catch
        {
            m.Dispose();
            throw;
        }
    }

    /// <summary>True when every group of M rows in every column of <paramref name="source"/> has at most N non-zeros.</summary>
    public static bool Satisfies(WeightMatrix source, NmPattern pattern)
    {
        int grouped = source.Rows / pattern.M * pattern.M;
        var counts = new int[source.Columns];
        var row = new float[source.Columns];
        for (int r = 0; r < grouped; r++)
        {
            if (r % pattern.M == 0)
            {
                Array.Clear(counts);
            }
            source.CopyRow(r, row);
            for (int j = 0; j < row.Length; j++)
            {
                if (row[j] != 0f && ++counts[j] > pattern.N)
                {
                    return false;
                }
            }
        }
        return grouped > 0;
    }

    public override void Multiply(ReadOnlySpan<float> x, Span<float> y, int n)
    {
        CheckMultiplyArguments(x, y, n);
        fixed (float* px = x)
        fixed (float* py = y)
        {
            SparseOutputGemm.Multiply(this, px, py, n);
        }
    }

    public override void Dispose()
    {
        _values.Dispose();
        _masks.Dispose();
        _tail?.Dispose();
        base.Dispose();
    }
}
