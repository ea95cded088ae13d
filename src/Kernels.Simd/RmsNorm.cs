namespace Kernels.Simd;

/// <summary>RMSNorm: destination = weight ⊙ x / sqrt(mean(x²) + eps).</summary>
public static unsafe class RmsNorm
{
    /// <param name="x">[n, dim] rows to normalize.</param>
    /// <param name="weight">[dim] gain.</param>
    /// <param name="destination">[n, dim]; may alias <paramref name="x"/> exactly.</param>
    public static void Apply(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> destination, float epsilon)
    {
        int dim = weight.Length;
        if (dim == 0)
        {
            return;
        }
        if (x.Length % dim != 0)
        {
            ThrowHelper.ShapeMismatch($"RMSNorm input of {x.Length} floats is not a multiple of dim {dim}");
        }
        if (destination.Length < x.Length)
        {
            ThrowHelper.DestinationTooShort();
        }
        ThrowHelper.ThrowIfPartialOverlap(x, destination);
        fixed (float* px = x)
        fixed (float* pw = weight)
        fixed (float* pd = destination)
        {
            for (int row = 0; row < x.Length / dim; row++)
            {
                float* xr = px + (long)row * dim;
                float* dr = pd + (long)row * dim;
                float ss = VectorMath.Dot(xr, xr, dim);
                float scale = 1f / MathF.Sqrt(ss / dim + epsilon);
                // weight * (scale * x): same association as llama2.c.
                for (int i = 0; i < dim; i++)
                {
                    dr[i] = pw[i] * (scale * xr[i]);
                }
            }
        }
    }
}
