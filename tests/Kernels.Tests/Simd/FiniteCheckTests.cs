using Kernels.Simd;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Simd;

/// <summary>The non-finite scan against float.IsFinite, every length 0..256, every position of a NaN, ±Inf or an extreme finite value.</summary>
public sealed class FiniteCheckTests
{
    private static int Scalar(ReadOnlySpan<float> v)
    {
        for (int i = 0; i < v.Length; i++)
        {
            if (!float.IsFinite(v[i]))
            {
                return i;
            }
        }
        return -1;
    }

    [Fact]
    public void Finds_the_first_non_finite_value_at_every_position()
    {
        var r = new Random(5);
        float[] specials = { float.NaN, float.PositiveInfinity, float.NegativeInfinity, BitConverter.Int32BitsToSingle(unchecked((int)0xFFC00001)) };
        for (int n = 0; n <= 256; n++)
        {
            using var g = new GuardedBuffer(n);
            for (int i = 0; i < n; i++)
            {
                g.Span[i] = (r.NextSingle() - 0.5f) * 1e30f;
            }
            // Largest finite, smallest subnormal and negative zero are finite.
            if (n > 2)
            {
                g.Span[0] = float.MaxValue;
                g.Span[1] = -float.Epsilon;
                g.Span[2] = -0f;
            }
            Assert.Equal(-1, FiniteCheck.IndexOfNonFinite(g.Span));
            for (int at = 0; at < n; at++)
            {
                float keep = g.Span[at];
                g.Span[at] = specials[at % specials.Length];
                if (at + 3 < n)
                {
                    g.Span[at + 3] = float.NaN; // a later hit must not be reported first
                }
                Assert.Equal(Scalar(g.Span), FiniteCheck.IndexOfNonFinite(g.Span));
                Assert.Equal(at, FiniteCheck.IndexOfNonFinite(g.Span));
                g.Span[at] = keep;
                if (at + 3 < n)
                {
                    g.Span[at + 3] = 1f;
                }
            }
            Assert.True(g.CanariesIntact());
        }
    }
}
