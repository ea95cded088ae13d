namespace Kernels.Runtime.Model;

/// <summary>How RoPE frequencies are rescaled for a longer context.</summary>
public enum RopeScalingKind
{
    /// <summary>freq_i = base^(-2i/d).</summary>
    None,

    /// <summary>Position interpolation: every frequency divided by the factor (GGUF rope.scaling.type = linear).</summary>
    Linear,

    /// <summary>Llama 3.1's scaling: low frequencies divided by the factor, high ones kept, a smooth ramp between.</summary>
    Llama3,

    /// <summary>One divisor per frequency (llama.cpp's rope_freqs tensor, which its converter writes for Llama 3.1).</summary>
    Factors,
}

/// <summary>
/// RoPE scaling as HF's <c>rope_scaling</c> and GGUF's <c>{arch}.rope.scaling.*</c> keys describe it.
/// <see cref="Frequency"/> is the one definition every backend's table uses.
/// </summary>
public sealed record RopeScaling(RopeScalingKind Kind, float Factor, float LowFreqFactor = 1f, float HighFreqFactor = 4f, int OriginalContext = 8192, float[]? Divisors = null)
{
    /// <summary>The divisor of each of the <paramref name="headDim"/>/2 frequencies: llama.cpp's rope_freqs values.</summary>
    public float[] FrequencyDivisors(float theta, int headDim) =>
        Enumerable.Range(0, headDim / 2).Select(i => new RopeScaling(RopeScalingKind.None, 1).Frequency(theta, i, headDim) / Frequency(theta, i, headDim)).ToArray();

    /// <summary>The scaled frequency of pair i of a head of width d: base^(-2i/d), then the scaling.</summary>
    public float Frequency(float theta, int i, int headDim)
    {
        float freq = 1.0f / MathF.Pow(theta, 2 * i / (float)headDim);
        switch (Kind)
        {
            case RopeScalingKind.Linear:
                return freq / Factor;
            case RopeScalingKind.Factors:
                return freq / Divisors![i];
            case RopeScalingKind.Llama3:
                // HF transformers' _compute_llama3_parameters, in float.
                float lowWavelen = OriginalContext / LowFreqFactor, highWavelen = OriginalContext / HighFreqFactor;
                float wavelen = 2 * MathF.PI / freq;
                if (wavelen < highWavelen)
                {
                    return freq;
                }
                if (wavelen > lowWavelen)
                {
                    return freq / Factor;
                }
                float smooth = (OriginalContext / wavelen - LowFreqFactor) / (HighFreqFactor - LowFreqFactor);
                return (1 - smooth) * freq / Factor + smooth * freq;
            default:
                return freq;
        }
    }

    /// <summary>Checks the numbers; <paramref name="where"/> names the keys for the message.</summary>
    public RopeScaling Validated(string source, string where)
    {
        if (!(Factor >= 1 && Factor <= 1024))
        {
            throw new ModelFormatException(source, $"{where}: factor {Factor} is outside [1, 1024]");
        }
        if (Kind == RopeScalingKind.Factors && (Divisors is null || Divisors.Any(d => !(d > 0) || !float.IsFinite(d))))
        {
            throw new ModelFormatException(source, $"{where}: every frequency divisor must be positive and finite");
        }
        if (Kind == RopeScalingKind.Llama3 && !(LowFreqFactor > 0 && HighFreqFactor > LowFreqFactor && OriginalContext > 0))
        {
            throw new ModelFormatException(source, $"{where}: llama3 scaling needs 0 < low_freq_factor ({LowFreqFactor}) < high_freq_factor ({HighFreqFactor}) and original_max_position_embeddings > 0 ({OriginalContext})");
        }
        return this;
    }
}
