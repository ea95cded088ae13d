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
    public static bool[] NmAlongRows(float[] scores, int rows, int cols, NmPattern p) =>
        Nm(scores, lines: rows, length: cols, lineStride: cols, step: 1, p);

    /// <summary>In every column, in each complete group of M consecutive rows, prune the M - N lowest scores.</summary>
    public static bool[] NmAlongColumns(float[] scores, int rows, int cols, NmPattern p) =>
        Nm(scores, lines: cols, length: rows, lineStride: 1, step: cols, p);

    /// <summary>In every row, prune the floor(ratio·cols) lowest scores.</summary>
    public static bool[] UnstructuredAlongRows(float[] scores, int rows, int cols, double ratio) =>
        Unstructured(scores, lines: rows, length: cols, lineStride: cols, step: 1, ratio);

    /// <summary>In every column, prune the floor(ratio·rows) lowest scores.</summary>
    public static bool[] UnstructuredAlongColumns(float[] scores, int rows, int cols, double ratio) =>
        Unstructured(scores, lines: cols, length: rows, lineStride: 1, step: cols, ratio);

    /// <summary>
    /// One definition for both axes: element i of line l sits at l·lineStride + i·step (rows:
    /// stride cols, step 1; columns: stride 1, step cols).
    /// </summary>
    private static bool[] Nm(float[] scores, int lines, int length, long lineStride, long step, NmPattern p)
    {
        var mask = new bool[scores.Length];
        Span<int> order = stackalloc int[p.M];
        for (int l = 0; l < lines; l++)
        {
            for (int g = 0; g + p.M <= length; g += p.M)
            {
                long b = l * lineStride + g * step;
                Lowest(scores, b, step, p.M, order);
                for (int k = 0; k < p.M - p.N; k++)
                {
                    mask[b + order[k] * step] = true;
                }
            }
        }
        return mask;
    }

    private static bool[] Unstructured(float[] scores, int lines, int length, long lineStride, long step, double ratio)
    {
        var mask = new bool[scores.Length];
        int k = (int)Math.Floor(ratio * length);
        var idx = new int[length];
        var keys = new float[length];
        for (int l = 0; l < lines; l++)
        {
            long b = l * lineStride;
            for (int i = 0; i < length; i++)
            {
                idx[i] = i;
                keys[i] = scores[b + i * step];
            }
            StableSort(keys, idx);
            for (int i = 0; i < k; i++)
            {
                mask[b + idx[i] * step] = true;
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

    /// <summary>order[0..m) = positions of scores[b + i·step] sorted ascending, ties by position.</summary>
    private static void Lowest(float[] scores, long b, long step, int m, Span<int> order)
    {
        for (int i = 0; i < m; i++)
        {
            order[i] = i;
        }
        // Insertion sort: stable, M ≤ 8.
        for (int i = 1; i < m; i++)
        {
            int v = order[i];
            float s = scores[b + v * step];
            int j = i - 1;
            while (j >= 0 && scores[b + order[j] * step] > s)
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
