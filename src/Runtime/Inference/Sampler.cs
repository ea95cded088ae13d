namespace Kernels.Runtime.Inference;

/// <summary>
/// llama2.c's sampler: greedy at temperature 0; otherwise logits / T, softmax, then top-p
/// (nucleus) or plain multinomial sampling with run.c's xorshift* generator, so a seed gives
/// the same token stream as <c>run -s seed</c>.
/// </summary>
public sealed class Sampler
{
    private ulong _state;
    private readonly (float Prob, int Index)[] _candidates;

    public Sampler(int vocabSize, float temperature, float topP, ulong seed)
    {
        if (temperature < 0 || float.IsNaN(temperature))
        {
            throw new ArgumentOutOfRangeException(nameof(temperature), "temperature must be >= 0");
        }
        if (topP < 0 || topP > 1 || float.IsNaN(topP))
        {
            throw new ArgumentOutOfRangeException(nameof(topP), "top-p must be in [0, 1]");
        }
        Temperature = temperature;
        TopP = topP;
        _state = seed == 0 ? 1 : seed; // xorshift state must be non-zero
        _candidates = new (float, int)[vocabSize];
    }

    public float Temperature { get; }
    public float TopP { get; }
    public bool IsGreedy => Temperature == 0f;

    private uint NextU32()
    {
        _state ^= _state >> 12;
        _state ^= _state << 25;
        _state ^= _state >> 27;
        return (uint)((_state * 0x2545F4914F6CDD1DUL) >> 32);
    }

    public float NextFloat() => (NextU32() >> 8) / 16777216.0f;

    /// <summary>Samples from logits (modified in place).</summary>
    public int Sample(Span<float> logits)
    {
        if (IsGreedy)
        {
            return Kernels.Simd.VectorMath.ArgMax(logits);
        }
        for (int i = 0; i < logits.Length; i++)
        {
            logits[i] /= Temperature;
        }
        Kernels.Simd.Softmax.InPlace(logits);
        float coin = NextFloat();
        return TopP <= 0 || TopP >= 1 ? SampleMultinomial(logits, coin) : SampleTopP(logits, coin);
    }

    private static int SampleMultinomial(ReadOnlySpan<float> probs, float coin)
    {
        float cdf = 0f;
        for (int i = 0; i < probs.Length; i++)
        {
            cdf += probs[i];
            if (coin < cdf)
            {
                return i;
            }
        }
        return probs.Length - 1;
    }

    private int SampleTopP(ReadOnlySpan<float> probs, float coin)
    {
        // Tokens below (1 - p) / (n - 1) cannot be part of the nucleus: drop them before sorting.
        float cutoff = (1f - TopP) / (probs.Length - 1);
        int n0 = 0;
        for (int i = 0; i < probs.Length; i++)
        {
            if (probs[i] >= cutoff)
            {
                _candidates[n0++] = (probs[i], i);
            }
        }
        var span = _candidates.AsSpan(0, n0);
        span.Sort((a, b) => a.Prob != b.Prob ? b.Prob.CompareTo(a.Prob) : a.Index.CompareTo(b.Index));
        float cumulative = 0f;
        int last = n0 - 1;
        for (int i = 0; i < n0; i++)
        {
            cumulative += span[i].Prob;
            if (cumulative > TopP)
            {
                last = i;
                break;
            }
        }
        float r = coin * cumulative;
        float cdf = 0f;
        for (int i = 0; i <= last; i++)
        {
            cdf += span[i].Prob;
            if (r < cdf)
            {
                return span[i].Index;
            }
        }
        return span[last].Index;
    }
}
