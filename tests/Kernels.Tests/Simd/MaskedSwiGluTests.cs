using Kernels.Simd;
using Kernels.Simd.Matrices;
using Xunit;

namespace Kernels.Tests.Simd;

/// <summary>The masked SwiGLU decode kernels of DIP against a double-precision definition over the selected columns (every SIMD tier).</summary>
public sealed class MaskedSwiGluTests
{
    /// <summary>
    /// Unselected columns are never read: filling them with NaN changes nothing. Large selections
    /// run in groups of 16 columns from far-apart stretches on several threads, with remainders.
    /// </summary>
    [Theory]
    [InlineData(ElementType.F32, 40, 100, 6, 4)]
    [InlineData(ElementType.F16, 40, 100, 6, 4)]
    [InlineData(ElementType.F32, 300, 517, 151, 203)]
    [InlineData(ElementType.F16, 300, 517, 151, 203)]
    [InlineData(ElementType.BF16, 301, 640, 300, 333)]
    public void Masked_swiglu_reads_only_the_selected_columns(ElementType type, int dim, int hidden, int keepInputs, int keepHidden)
    {
        var rng = new Random(4);
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        float[] gw = R(hidden * dim), uw = R(hidden * dim), dw = R(dim * hidden), x = R(dim);
        int[] inputs = keepInputs == 6 ? new[] { 0, 3, 7, 8, 21, 39 } : Enumerable.Range(0, dim).OrderBy(_ => rng.Next()).Take(keepInputs).Order().ToArray();
        var hiddenCols = keepHidden == 4 ? new[] { 1, 5, 50, 99 } : Enumerable.Range(0, hidden).OrderBy(_ => rng.Next()).Take(keepHidden).Order().ToArray();
        // Reference over the selected columns only.
        var g = new double[hidden];
        var u = new double[hidden];
        foreach (int j in inputs)
        {
            for (int i = 0; i < hidden; i++)
            {
                g[i] += (double)gw[i * dim + j] * x[j];
                u[i] += (double)uw[i * dim + j] * x[j];
            }
        }
        var h = g.Select((gi, i) => SwiGlu.Scalar((float)gi, (float)u[i])).ToArray();
        var expected = new double[dim];
        foreach (int i in hiddenCols)
        {
            for (int o = 0; o < dim; o++)
            {
                expected[o] += (double)dw[o * hidden + i] * h[i];
            }
        }
        // Poison every unselected column.
        for (int i = 0; i < hidden; i++)
        {
            for (int j = 0; j < dim; j++)
            {
                if (!inputs.Contains(j))
                {
                    gw[i * dim + j] = float.NaN;
                    uw[i * dim + j] = float.NaN;
                }
            }
        }
        for (int o = 0; o < dim; o++)
        {
            for (int i = 0; i < hidden; i++)
            {
                if (!hiddenCols.Contains(i))
                {
                    dw[o * hidden + i] = float.NaN;
                }
            }
        }
        using var gate = DenseMatrix.FromSingle("g", hidden, dim, gw);
        using var up = DenseMatrix.FromSingle("u", hidden, dim, uw);
        using var down = DenseMatrix.FromSingle("d", dim, hidden, dw);
        using var mlp = new ColumnMajorMlp(gate, up, down, type);
        var hs = new float[hidden];
        MaskedSwiGlu.GateUp(mlp, x, inputs, hs);
        var y = new float[dim];
        MaskedSwiGlu.Down(mlp, hs, hiddenCols, y);
        float tol = type switch { ElementType.F32 => 1e-5f, ElementType.F16 => 2e-2f, _ => 6e-2f };
        for (int o = 0; o < dim; o++)
        {
            Assert.True(float.IsFinite(y[o]), $"y[{o}] read a poisoned column");
            Assert.True(Math.Abs(expected[o] - y[o]) <= tol * (1 + Math.Abs(expected[o])), $"y[{o}] {y[o]} vs {expected[o]}");
        }
    }

}
