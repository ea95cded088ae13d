using Kernels.Simd.Matrices;

namespace Kernels.Runtime.Pruning;

/// <summary>
/// Turns importance scores [rows, cols] into prune masks (true = set to zero): N:M groups along
/// a row (input axis) or a column (output axis), or an unstructured ratio per row or per column.
/// Lowest scores are pruned; ties go to the lower index (a stable ascending order). Trailing
/// columns/rows that do not fill a whole group are never pruned (the dense-tail policy of the
/// compressed formats).
/// </summary>
public static class PruningMasks
{
    /// <summary>In every row, in each complete group of M consecutive columns, prune the M - N lowest scores.</summary>
    public static bool[] NmAlongRows(float[] scores, int rows, int cols, NmPattern p)
    {
        var mask = new bool[scores.Length];
        Span<int> order = stackalloc int[p.M];
        for (int r = 0; r < rows; r++)
        {
            for (int g = 0; g + p.M <= cols; g += p.M)
            {
                long b = (long)r * cols + g;
                Lowest(i => scores[b + i], p.M, order);
                for (int k = 0; k < p.M - p.N; k++)
                {
                    mask[b + order[k]] = true;
                }
            }
        }
        return mask;
    }

    /// <summary>In every column, in each complete group of M consecutive rows, prune the M - N lowest scores.</summary>
    public static bool[] NmAlongColumns(float[] scores, int rows, int cols, NmPattern p)
    {
        var mask = new bool[scores.Length];
        Span<int> order = stackalloc int[p.M];
        for (int c = 0; c < cols; c++)
        {
            for (int g = 0; g + p.M <= rows; g += p.M)
            {
                Lowest(i => scores[(long)(g + i) * cols + c], p.M, order);
                for (int k = 0; k < p.M - p.N; k++)
                {
                    mask[(long)(g + order[k]) * cols + c] = true;
                }
            }
        }
        return mask;
    }

    /// <summary>In every row, prune the floor(ratio·cols) lowest scores.</summary>
    public static bool[] UnstructuredAlongRows(float[] scores, int rows, int cols, double ratio)
    {
        var mask = new bool[scores.Length];
        int k = (int)Math.Floor(ratio * cols);
        var idx = new int[cols];
        var keys = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                idx[c] = c;
                keys[c] = scores[(long)r * cols + c];
            }
            StableSort(keys, idx);
            for (int i = 0; i < k; i++)
            {
                mask[(long)r * cols + idx[i]] = true;
            }
        }
        return mask;
    }

    /// <summary>In every column, prune the floor(ratio·rows) lowest scores.</summary>
    public static bool[] UnstructuredAlongColumns(float[] scores, int rows, int cols, double ratio)
    {
        var mask = new bool[scores.Length];
        int k = (int)Math.Floor(ratio * rows);
        var idx = new int[rows];
        var keys = new float[rows];
        for (int c = 0; c < cols; c++)
        {
            for (int r = 0; r < rows; r++)
            {
                idx[r] = r;
                keys[r] = scores[(long)r * cols + c];
            }
            StableSort(keys, idx);
            for (int i = 0; i < k; i++)
            {
                mask[(long)idx[i] * cols + c] = true;
            }
        }
        return mask;
    }

    /// <summary>Zeroes the masked weights in place; returns how many were zeroed.</summary>
    public static int Apply(float[] weights, bool[] mask)
    {
        int n = 0;
        for (long i = 0; i < weights.LongLength; i++)
        {
            if (mask[i])
            {
                weights[i] = 0f;
                n++;
            }
        }
        return n;
    }

    /// <summary>order[0..M) = positions sorted by ascending score, ties by position.</summary>
    private static void Lowest(Func<int, float> score, int m, Span<int> order)
    {
        for (int i = 0; i < m; i++)
        {
            order[i] = i;
        }
        // Insertion sort: stable, M ≤ 8.
        for (int i = 1; i < m; i++)
        {
            int v = order[i];
            float s = score(v);
            int j = i - 1;
            while (j >= 0 && score(order[j]) > s)
            {
                order[j + 1] = order[j];
                j--;
            }
            order[j + 1] = v;
        }
    }

    private static void StableSort(float[] keys, int[] idx)
    {
        // Array.Sort is unstable; sort (key, index) pairs instead.
        var pairs = new (float Key, int Index)[keys.Length];
        for (int i = 0; i < keys.Length; i++)
        {
            pairs[i] = (keys[i], idx[i]);
        }
        Array.Sort(pairs, (a, b) => a.Key != b.Key ? a.Key.CompareTo(b.Key) : a.Index.CompareTo(b.Index));
        for (int i = 0; i < keys.Length; i++)
        {
            idx[i] = pairs[i].Index;
        }
    }
}
