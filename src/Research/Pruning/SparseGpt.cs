using Kernels.Simd.Matrices;

namespace Kernels.Runtime.Pruning;

/// <summary>
/// SparseGPT (Frantar and Alistarh) for one linear layer, following the reference code: damped
/// Hessian, upper Cholesky factor of its inverse, 128-column blocks, the mask chosen from
/// w²/d² (per block for an unstructured ratio, at every group start for N:M), error
/// propagation within the block and a lazy batch update of the remaining columns. Dead inputs
/// (zero Hessian diagonal) get their column zeroed. Computed in double.
/// </summary>
public static class SparseGpt
{
    /// <param name="weights">[rows, cols] updated in place (pruned entries become 0).</param>
    /// <param name="hessian">[cols, cols] = 2/N Σ x xᵀ.</param>
    public static void Prune(float[] weights, int rows, int cols, double[] hessian, Sparsity sparsity, int blockSize = 128, double percentDamp = 0.01)
    {
        var h = (double[])hessian.Clone();
        var w = new double[weights.LongLength];
        for (long i = 0; i < w.LongLength; i++)
        {
            w[i] = weights[i];
        }
        for (int j = 0; j < cols; j++)
        {
            if (h[(long)j * cols + j] == 0)
            {
                h[(long)j * cols + j] = 1;
                for (int r = 0; r < rows; r++)
                {
                    w[(long)r * cols + j] = 0;
                }
            }
        }
        double mean = 0;
        for (int j = 0; j < cols; j++)
        {
            mean += h[(long)j * cols + j];
        }
        double damp = percentDamp * mean / cols;
        for (int j = 0; j < cols; j++)
        {
            h[(long)j * cols + j] += damp;
        }
        double[] u = InverseUpperFactor(h, cols);

        var p = sparsity.Pattern;
        int grouped = p is { } pat ? cols / pat.M * pat.M : cols;
        var mask = new bool[rows * (long)blockSize];
        var err = new double[rows * (long)blockSize];
        Span<int> order = stackalloc int[p?.M ?? 1];
        for (int i1 = 0; i1 < cols; i1 += blockSize)
        {
            int i2 = Math.Min(i1 + blockSize, cols), count = i2 - i1;
            Array.Clear(mask);
            if (p is null)
            {
                // Unstructured: one threshold over the block's w²/d² (all rows), from the already-updated weights.
                var tmp = new double[rows * (long)count];
                for (int r = 0; r < rows; r++)
                {
                    for (int i = 0; i < count; i++)
                    {
                        double d = u[(long)(i1 + i) * cols + i1 + i];
                        double v = w[(long)r * cols + i1 + i];
                        tmp[(long)r * count + i] = v * v / (d * d);
                    }
                }
                var sorted = (double[])tmp.Clone();
                Array.Sort(sorted);
                double thresh = sorted[Math.Min(sorted.Length - 1, (int)(sorted.Length * sparsity.Ratio))];
                for (long k = 0; k < tmp.LongLength; k++)
                {
                    mask[k / count * blockSize + k % count] = tmp[k] <= thresh;
                }
            }
            for (int i = 0; i < count; i++)
            {
                int col = i1 + i;
                if (p is { } pp && col % pp.M == 0 && col + pp.M <= grouped)
                {
                    // N:M: at each group start, prune the M-N smallest w²/d² of the group in every row.
                    for (int r = 0; r < rows; r++)
                    {
                        for (int k = 0; k < pp.M; k++)
                        {
                            order[k] = k;
                        }
                        double Score(int k)
                        {
                            double d = u[(long)(col + k) * cols + col + k];
                            double v = w[(long)r * cols + col + k];
                            return v * v / (d * d);
                        }
                        for (int a = 1; a < pp.M; a++)
                        {
                            int v0 = order[a];
                            double s0 = Score(v0);
                            int b = a - 1;
                            while (b >= 0 && Score(order[b]) > s0)
                            {
                                order[b + 1] = order[b];
                                b--;
                            }
                            order[b + 1] = v0;
                        }
                        for (int k = 0; k < pp.M - pp.N; k++)
                        {
                            // The group may cross the block end when M does not divide the block size.
                            int local = i + order[k];
                            if (local < blockSize)
                            {
                                mask[(long)r * blockSize + local] = true;
                            }
                        }
                    }
                }
                double dd = u[(long)col * cols + col];
                for (int r = 0; r < rows; r++)
                {
                    long wi = (long)r * cols + col;
                    double wv = w[wi];
                    double q = mask[(long)r * blockSize + i] ? 0 : wv;
                    double e = (wv - q) / dd;
                    w[wi] = q;
                    err[(long)r * blockSize + i] = e;
                    if (e != 0)
                    {
                        // W1[:, i+1:] -= e · U[col, col+1:i2]
                        long urow = (long)col * cols;
                        for (int c = col + 1; c < i2; c++)
                        {
                            w[(long)r * cols + c] -= e * u[urow + c];
                        }
                    }
                }
            }
            // Lazy batch update: W[:, i2:] -= Err1 · U[i1:i2, i2:]
            if (i2 < cols)
            {
                for (int r = 0; r < rows; r++)
                {
                    for (int i = 0; i < count; i++)
                    {
                        double e = err[(long)r * blockSize + i];
                        if (e == 0)
                        {
                            continue;
                        }
                        long urow = (long)(i1 + i) * cols;
                        for (int c = i2; c < cols; c++)
                        {
                            w[(long)r * cols + c] -= e * u[urow + c];
                        }
                    }
                }
            }
            Array.Clear(err);
        }
        for (long i = 0; i < w.LongLength; i++)
        {
            weights[i] = (float)w[i];
        }
    }

    /// <summary>U upper-triangular with H⁻¹ = Uᵀ U (torch: cholesky(cholesky_inverse(cholesky(H)), upper=True)).</summary>
    public static double[] InverseUpperFactor(double[] h, int n)
    {
        double[] l = Cholesky(h, n);
        // Hinv = L⁻ᵀ L⁻¹ from the triangular inverse.
        var li = new double[(long)n * n];
        for (int i = 0; i < n; i++)
        {
            li[(long)i * n + i] = 1.0 / l[(long)i * n + i];
            for (int j = i + 1; j < n; j++)
            {
                double s = 0;
                for (int k = i; k < j; k++)
                {
                    s -= l[(long)j * n + k] * li[(long)k * n + i];
                }
                li[(long)j * n + i] = s / l[(long)j * n + j];
            }
        }
        var hinv = new double[(long)n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                double s = 0;
                for (int k = i; k < n; k++)
                {
                    s += li[(long)k * n + i] * li[(long)k * n + j];
                }
                hinv[(long)i * n + j] = s;
                hinv[(long)j * n + i] = s;
            }
        }
        double[] c = Cholesky(hinv, n);
        var u = new double[(long)n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                u[(long)j * n + i] = c[(long)i * n + j];
            }
        }
        return u;
    }

    /// <summary>Lower Cholesky factor of a symmetric positive-definite matrix.</summary>
    public static double[] Cholesky(double[] a, int n)
    {
        var l = new double[(long)n * n];
        for (int j = 0; j < n; j++)
        {
            double s = a[(long)j * n + j];
            for (int k = 0; k < j; k++)
            {
                s -= l[(long)j * n + k] * l[(long)j * n + k];
            }
            if (!(s > 0))
            {
                throw new ArithmeticException($"matrix is not positive definite (pivot {j} = {s}); increase the damping");
            }
            double d = Math.Sqrt(s);
            l[(long)j * n + j] = d;
            for (int i = j + 1; i < n; i++)
            {
                double t = a[(long)i * n + j];
                for (int k = 0; k < j; k++)
                {
                    t -= l[(long)i * n + k] * l[(long)j * n + k];
                }
                l[(long)i * n + j] = t / d;
            }
        }
        return l;
    }
}
