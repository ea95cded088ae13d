using System.Runtime.Intrinsics;
using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>
/// Single-query attention over a block of cached keys and values (one KV head):
/// softmax(q·kᵀ/√d)·V, optionally accumulating the attention each cached token received —
/// the H2O statistic, or VATP's value-norm-weighted statistic p_t·‖v_t‖₁ — in the same pass.
/// </summary>
public static unsafe class Attention
{
    /// <param name="query">[headDim].</param>
    /// <param name="keys">[count, headDim].</param>
    /// <param name="values">[count, headDim].</param>
    /// <param name="count">Cached tokens to attend to.</param>
    /// <param name="scores">Scratch of at least <paramref name="count"/> floats; holds the probabilities on return.</param>
    /// <param name="output">[headDim] result, overwritten.</param>
    /// <param name="received">Optional [count]: received[t] += p_t (or p_t·valueNorms[t]).</param>
    /// <param name="valueNorms">Optional [count] weights of the accumulation (‖v_t‖₁ for VATP); null = unweighted (H2O).</param>
    public static void Attend(float* query, float* keys, float* values, int count, int headDim,
        float* scores, float* output, float* received, float* valueNorms = null)
    {
        // Divide (not multiply by the reciprocal): llama2.c's rounding.
        float norm = MathF.Sqrt(headDim);
        for (int t = 0; t < count; t++)
        {
            scores[t] = VectorMath.Dot(query, keys + (long)t * headDim, headDim) / norm;
        }
        Softmax.InPlace(new Span<float>(scores, count));
        new Span<float>(output, headDim).Clear();
        for (int t = 0; t < count; t++)
        {
            VectorMath.Axpy(scores[t], values + (long)t * headDim, output, headDim);
        }
        if (received != null)
        {
            Accumulate(scores, valueNorms, received, count);
        }
    }

    /// <summary>received[t] += p[t] · (weights?[t] ?? 1): the value-norm-weighted attention reduction.</summary>
    public static void Accumulate(float* p, float* weights, float* received, int count)
    {
        if (weights == null)
        {
            ElementWise.Binary(new AddOperator(), p, received, received, count);
        }
        else
        {
            ElementWise.Ternary(new MultiplyAddOperator(), p, weights, received, received, count);
        }
    }

    /// <summary>‖v‖₁ of <paramref name="length"/> floats.</summary>
    public static float L1Norm(float* v, int length)
    {
        float s = 0f;
        for (int i = 0; i < length; i++)
        {
            s += MathF.Abs(v[i]);
        }
        return s;
    }
}
