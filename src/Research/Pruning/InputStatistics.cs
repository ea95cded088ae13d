namespace Kernels.Runtime.Pruning;

/// <summary>
/// Statistics of a linear layer's input over calibration tokens: Σ x_j² per input feature
/// (Wanda/DaSS norms) and optionally Σ x xᵀ (SparseGPT's Hessian), accumulated in double.
/// </summary>
public sealed class InputStatistics
{
    public InputStatistics(int dimension, bool hessian)
    {
        Dimension = dimension;
        SumSquares = new double[dimension];
        Gram = hessian ? new double[(long)dimension * dimension] : null;
    }

    public int Dimension { get; }

    public double[] SumSquares { get; }

    /// <summary>Σ x xᵀ, row-major [d, d] (null unless requested).</summary>
    public double[]? Gram { get; }

    public long Count { get; private set; }

    /// <summary>‖X_j‖₂ over all tokens seen.</summary>
    public double Norm(int j) => Math.Sqrt(SumSquares[j]);

    public void Add(ReadOnlySpan<float> rows, int n)
    {
        int d = Dimension;
        for (int t = 0; t < n; t++)
        {
            var x = rows.Slice(t * d, d);
            for (int j = 0; j < d; j++)
            {
                SumSquares[j] += (double)x[j] * x[j];
            }
            if (Gram is { } g)
            {
                for (int i = 0; i < d; i++)
                {
                    double xi = x[i];
                    if (xi == 0)
                    {
                        continue;
                    }
                    long row = (long)i * d;
                    for (int j = 0; j < d; j++)
                    {
                        g[row + j] += xi * x[j];
                    }
                }
            }
        }
        Count += n;
    }

    /// <summary>SparseGPT's H = 2/N · Σ x xᵀ.</summary>
    public double[] Hessian()
    {
        if (Gram is null)
        {
            throw new InvalidOperationException("Gram matrix was not collected");
        }
        double scale = Count > 0 ? 2.0 / Count : 0;
        return Gram.Select(v => v * scale).ToArray();
    }
}
