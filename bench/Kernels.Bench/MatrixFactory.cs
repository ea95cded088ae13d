using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;

namespace Kernels.Bench;

/// <summary>Weight matrices for the kernel benchmarks (same generator as the synthetic models).</summary>
internal static class MatrixFactory
{
    public static (int Rows, int Cols) ParseShape(string shape)
    {
        var p = shape.Split('x');
        return (int.Parse(p[0]), int.Parse(p[1]));
    }

    public static QuantizedMatrix RandomQuantized(QuantType type, int rows, int cols, int seed = 1) =>
        SyntheticModel.RandomQuantized("w", type, rows, cols, seed);

    /// <summary>An input-axis N:M matrix with <paramref name="type"/> kept values (random pruned weights).</summary>
    public static NmQuantizedMatrix SparseQuantized(NmPattern pattern, QuantType type, int rows, int cols, int seed = 1)
    {
        using var pruned = SyntheticModel.RandomDense("w", rows, cols, ElementType.F32, pattern, seed);
        return NmQuantizedMatrix.Compress(pruned, pattern, type);
    }

    /// <param name="format">dense, 2:4, 4:8, 2:4-out (output-axis groups).</param>
    public static WeightMatrix Create(string format, int rows, int cols, ElementType type, int seed = 1)
    {
        switch (format)
        {
            case "dense":
                return SyntheticModel.RandomDense("w", rows, cols, type, null, seed);
            case "2:4-out":
            {
                // Output-axis 2:4: transpose of an input-axis pruned matrix.
                using var t = SyntheticModel.RandomDense("wt", cols, rows, ElementType.F32, NmPattern.TwoFour, seed);
                var dense = new float[(long)rows * cols];
                var row = new float[rows];
                for (int c = 0; c < cols; c++)
                {
                    t.CopyRow(c, row);
                    for (int r = 0; r < rows; r++)
                    {
                        dense[(long)r * cols + c] = row[r];
                    }
                }
                using var d = DenseMatrix.FromSingle("w", rows, cols, dense);
                return NmOutputSparseMatrix.Compress(d, NmPattern.TwoFour, type);
            }
            default:
            {
                var p = NmPattern.Parse(format);
                using var pruned = SyntheticModel.RandomDense("w", rows, cols, ElementType.F32, p, seed);
                return NmSparseMatrix.Compress(pruned, p, type);
            }
        }
    }
}
