using Kernels.Simd.Matrices;

namespace Kernels.Runtime.Simplification;

/// <summary>Copies a subset of a dense matrix's rows or columns, keeping its element type (bytes are copied, not re-rounded).</summary>
public static unsafe class MatrixSlicing
{
    /// <summary>New [rows.Count, Columns] matrix holding the listed rows of <paramref name="m"/> in order.</summary>
    public static DenseMatrix SelectRows(WeightMatrix m, IReadOnlyList<int> rows)
    {
        var d = Dense(m, "remove rows");
        long stride = d.RowStrideBytes;
        var result = new DenseMatrix(d.Name, rows.Count, d.Columns, d.ElementType);
        for (int i = 0; i < rows.Count; i++)
        {
            CheckIndex(rows[i], d.Rows, d.Name, "row");
            Buffer.MemoryCopy(d.Row(rows[i]), result.Row(i), stride, stride);
        }
        return result;
    }

    /// <summary>New [Rows, columns.Count] matrix holding the listed columns of <paramref name="m"/> in order.</summary>
    public static DenseMatrix SelectColumns(WeightMatrix m, IReadOnlyList<int> columns)
    {
        var d = Dense(m, "remove columns");
        int size = d.ElementType.Size();
        foreach (int c in columns)
        {
            CheckIndex(c, d.Columns, d.Name, "column");
        }
        var result = new DenseMatrix(d.Name, d.Rows, columns.Count, d.ElementType);
        for (int r = 0; r < d.Rows; r++)
        {
            byte* src = d.Row(r), dst = result.Row(r);
            // Runs of consecutive columns (whole heads) are copied in one block.
            for (int i = 0; i < columns.Count;)
            {
                int j = i + 1;
                while (j < columns.Count && columns[j] == columns[j - 1] + 1)
                {
                    j++;
                }
                long bytes = (long)(j - i) * size;
                Buffer.MemoryCopy(src + (long)columns[i] * size, dst + (long)i * size, bytes, bytes);
                i = j;
            }
        }
        return result;
    }

    private static DenseMatrix Dense(WeightMatrix m, string what) =>
        m as DenseMatrix ?? throw new InvalidOperationException($"{m.Name}: cannot {what} of a {m.Format} matrix; simplify the architecture before N:M compression");

    private static void CheckIndex(int index, int count, string name, string what)
    {
        if ((uint)index >= (uint)count)
        {
            throw new ArgumentOutOfRangeException(nameof(index), $"{name}: {what} {index} outside 0..{count - 1}");
        }
    }
}
