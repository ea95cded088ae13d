using Kernels.Simd.Matrices;

namespace Kernels.Tests.Simd;

/// <summary>Random dense matrices pruned to N:M by magnitude, in either axis.</summary>
internal static class SparseTestData
{
    public static float[] Random(int count, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => r.NextSingle() * 2 - 1).ToArray();
    }

    /// <summary>Keeps the N largest |w| of every group of M along the chosen axis; trailing columns/rows that do not fill a group stay dense.</summary>
    public static float[] Prune(float[] w, int rows, int cols, NmPattern p, NmAxis axis = NmAxis.Input)
    {
        var result = (float[])w.Clone();
        if (axis == NmAxis.Input)
        {
            for (int r = 0; r < rows; r++)
            {
                for (int g = 0; g + p.M <= cols; g += p.M)
                {
                    var order = Enumerable.Range(0, p.M).OrderBy(i => MathF.Abs(w[r * cols + g + i])).ToArray();
                    for (int i = 0; i < p.M - p.N; i++)
                    {
                        result[r * cols + g + order[i]] = 0;
                    }
                }
            }
        }
        else
        {
            for (int c = 0; c < cols; c++)
            {
                for (int g = 0; g + p.M <= rows; g += p.M)
                {
                    var order = Enumerable.Range(0, p.M).OrderBy(i => MathF.Abs(w[(g + i) * cols + c])).ToArray();
                    for (int i = 0; i < p.M - p.N; i++)
                    {
                        result[(g + order[i]) * cols + c] = 0;
                    }
                }
            }
        }
        return result;
    }

    /// <summary>Rounds through the storage type so dense and sparse hold identical values.</summary>
    public static float[] RoundTo(float[] w, ElementType type)
    {
        var r = new float[w.Length];
        unsafe
        {
            ushort b;
            for (int i = 0; i < w.Length; i++)
            {
                if (type == ElementType.F32)
                {
                    r[i] = w[i];
                }
                else
                {
                    type.WriteFromSingle(&b, 0, w[i]);
                    r[i] = type.ReadAsSingle(&b, 0);
                }
            }
        }
        return r;
    }
}
