using Kernels.Simd.Matrices;

namespace Kernels.Simd.Reference;

/// <summary>
/// Plain scalar definitions of every kernel, written in llama2.c's (run.c's) order of operations
/// with sequential float sums. The tests compare the SIMD kernels against these, and the
/// reference backend runs the whole model on them.
/// </summary>
public static class ScalarReference
{
    /// <summary>y[t, r] = Σ_k W[r, k] · x[t, k], summed sequentially in k.</summary>
    public static void MatMul(WeightMatrix w, ReadOnlySpan<float> x, Span<float> y, int n)
    {
        int rows = w.Rows, cols = w.Columns;
        var row = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            w.CopyRow(r, row);
            for (int t = 0; t < n; t++)
            {
                float acc = 0f;
                var xt = x.Slice(t * cols, cols);
                for (int c = 0; c < cols; c++)
                {
                    acc += row[c] * xt[c];
                }
                y[t * rows + r] = acc;
            }
        }
    }

    /// <summary>run.c rmsnorm: o = w · (x / sqrt(Σx²/n + eps)).</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> o, float eps)
    {
        int dim = weight.Length;
        for (int row = 0; row < x.Length / dim; row++)
        {
            var xr = x.Slice(row * dim, dim);
            float ss = 0f;
            for (int j = 0; j < dim; j++)
            {
                ss += xr[j] * xr[j];
            }
            ss /= dim;
            ss += eps;
            ss = 1f / MathF.Sqrt(ss);
            for (int j = 0; j < dim; j++)
            {
                o[row * dim + j] = weight[j] * (ss * xr[j]);
            }
        }
    }

    public static void Softmax(Span<float> x) => Simd.Softmax.InPlace(x);

    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float s = 0f;
        for (int i = 0; i < a.Length; i++)
        {
            s += a[i] * b[i];
        }
        return s;
    }

    public static void SwiGlu(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> h)
    {
        for (int i = 0; i < gate.Length; i++)
        {
            h[i] = Simd.SwiGlu.Scalar(gate[i], up[i]);
        }
    }

    /// <summary>run.c attention for one head: scores, softmax, Σ p·v (sequential).</summary>
    public static void Attend(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int count, int headDim,
        Span<float> scores, Span<float> output, Span<float> received, ReadOnlySpan<float> valueNorms = default)
    {
        float norm = MathF.Sqrt(headDim);
        for (int t = 0; t < count; t++)
        {
            scores[t] = Dot(q, keys.Slice(t * headDim, headDim)) / norm;
        }
        Softmax(scores[..count]);
        output[..headDim].Clear();
        for (int t = 0; t < count; t++)
        {
            float a = scores[t];
            for (int i = 0; i < headDim; i++)
            {
                output[i] += a * values[t * headDim + i];
            }
        }
        if (!received.IsEmpty)
        {
            for (int t = 0; t < count; t++)
            {
                received[t] += valueNorms.IsEmpty ? scores[t] : scores[t] * valueNorms[t];
            }
        }
    }
}
