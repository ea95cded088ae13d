namespace Kernels.Simd;

/// <summary>Numerically stable softmax in place (max-subtracted, float accumulation, llama2.c order).</summary>
public static class Softmax
{
    public static void InPlace(Span<float> x)
    {
        if (x.IsEmpty)
        {
            return;
        }
        float max = x[0];
        for (int i = 1; i < x.Length; i++)
        {
            if (x[i] > max)
            {
                max = x[i];
            }
        }
        float sum = 0f;
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = MathF.Exp(x[i] - max);
            sum += x[i];
        }
        for (int i = 0; i < x.Length; i++)
        {
            x[i] /= sum;
        }
    }
}
