namespace Kernels.Simd;

/// <summary>
/// Rotary position embedding in the interleaved-pair layout of the original Llama checkpoints
/// (pairs (2i, 2i+1) of each head rotate by pos·θ^(-2i/headDim)).
/// </summary>
/// <remarks>HF checkpoints store Q/K for the rotate-half variant; loaders permute their rows to this layout.</remarks>
public static class Rope
{
    /// <summary>Rotates every head of <paramref name="vector"/> in place.</summary>
    /// <param name="vector">[heads * headDim].</param>
    /// <param name="cos">[headDim / 2] cosines for this position.</param>
    /// <param name="sin">[headDim / 2] sines for this position.</param>
    public static void ApplyInterleaved(Span<float> vector, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        if (headDim <= 0 || headDim % 2 != 0 || vector.Length % headDim != 0)
        {
            ThrowHelper.ShapeMismatch($"RoPE: vector length {vector.Length} with head dim {headDim}");
        }
        if (cos.Length < headDim / 2 || sin.Length < headDim / 2)
        {
            ThrowHelper.ShapeMismatch("RoPE: cos/sin tables shorter than headDim/2");
        }
        for (int h = 0; h < vector.Length; h += headDim)
        {
            for (int i = 0; i < headDim; i += 2)
            {
                float fcr = cos[i / 2], fci = sin[i / 2];
                float v0 = vector[h + i], v1 = vector[h + i + 1];
                vector[h + i] = v0 * fcr - v1 * fci;
                vector[h + i + 1] = v0 * fci + v1 * fcr;
            }
        }
    }
}
