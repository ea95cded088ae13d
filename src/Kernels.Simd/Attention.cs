namespace Kernels.Simd;

/// <summary>
/// Single-query attention over a contiguous block of cached keys and values (one KV head):
/// softmax(q·kᵀ/√d)·V, optionally accumulating the attention each cached token received.
/// </summary>
public static unsafe class Attention
{
    /// <param name="query">[headDim].</param>
    /// <param name="keys">[count, headDim].</param>
    /// <param name="values">[count, headDim].</param>
    /// <param name="count">Cached tokens to attend to.</param>
    /// <param name="scores">Scratch of at least <paramref name="count"/> floats; holds the probabilities on return.</param>
    /// <param name="output">[headDim] result, overwritten.</param>
    /// <param name="received">Optional [count]: received[t] += p_t (H2O/VATP statistics; fused so scoring costs one add per token).</param>
    public static void Attend(float* query, float* keys, float* values, int count, int headDim,
        float* scores, float* output, float* received)
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
            for (int t = 0; t < count; t++)
            {
                received[t] += scores[t];
            }
        }
    }
}
