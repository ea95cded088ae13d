using Kernels.Simd;
using Xunit;

namespace Kernels.Tests.Simd;

/// <summary>Top-k against its definition: larger first, ties to the lower index, NaN below every number, −0 equal to +0.</summary>
public sealed class TopKTests
{
    private static float Rank(float v) => float.IsNaN(v) ? float.NegativeInfinity : v;

    private static int[] Definition(float[] s, int k) =>
        Enumerable.Range(0, s.Length)
            .OrderByDescending(i => float.IsNaN(s[i]) ? 0 : 1).ThenByDescending(i => Rank(s[i])).ThenBy(i => i)
            .Take(k).Order().ToArray();

    [Fact]
    public void Matches_the_definition_for_every_length_and_special_values()
    {
        var rng = new Random(5);
        float[] specials = { 0f, -0f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.Epsilon, -float.Epsilon, float.MaxValue, -float.MaxValue, 1f, -1f };
        for (int n = 0; n <= 256; n++)
        {
            var s = Enumerable.Range(0, n).Select(_ => rng.Next(4) == 0 ? specials[rng.Next(specials.Length)] : (float)Math.Round(rng.NextDouble() * 8 - 4)).ToArray();
            foreach (int k in new[] { 0, 1, n / 3, n / 2, n - 1, n }.Where(k => k >= 0 && k <= n).Distinct())
            {
                var got = new int[k];
                TopK.Select(s, k, got, new int[n]);
                Assert.Equal(Definition(s, k), got);
            }
        }
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        var s = new float[4];
        Assert.Throws<ArgumentOutOfRangeException>(() => TopK.Select(s, 5, new int[5], new int[4]));
        Assert.Throws<ArgumentException>(() => TopK.Select(s, 2, new int[1], new int[4]));
        Assert.Throws<ArgumentException>(() => TopK.Select(s, 2, new int[2], new int[3]));
    }
}
