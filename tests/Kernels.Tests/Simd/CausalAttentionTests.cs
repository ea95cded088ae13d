using Kernels.Simd;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Simd;

/// <summary>The blocked prefill attention against the per-query kernel (itself tested against the scalar definition).</summary>
public sealed unsafe class CausalAttentionTests
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (int heads in new[] { 1, 3, 8 })
        {
            foreach (int d in new[] { 16, 32, 64, 128 })
            {
                foreach (int first in new[] { 0, 5, 37 })
                {
                    foreach (int n in new[] { 1, 2, 15, 16, 17, 40 })
                    {
                        yield return new object[] { heads, d, first, n };
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_per_query_attention(int heads, int d, int first, int n)
    {
        if (!CausalAttention.Supports(d))
        {
            Assert.Equal(SimdTier.Scalar, SimdInfo.Tier); // every tier with vectors takes these head sizes
            return;
        }
        var rng = new Random(heads * 1000 + d * 10 + first + n);
        float[] R(int count) => Enumerable.Range(0, count).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        int total = first + n;
        var keys = R(total * d);
        var values = R(total * d);
        var q = R(n * heads * d);
        var expected = new float[n * heads * d];
        var scores = new float[total];
        fixed (float* pk = keys, pv = values, pq = q, pe = expected, ps = scores)
        {
            for (int t = 0; t < n; t++)
            {
                for (int j = 0; j < heads; j++)
                {
                    long at = ((long)t * heads + j) * d;
                    Attention.Attend(pq + at, pk, pv, first + t + 1, d, ps, pe + at, null);
                }
            }
        }
        // Token blocks as the backend issues them (16 at a time), into a guarded output.
        using var output = new GuardedBuffer(n * heads * d);
        fixed (float* pk = keys, pv = values, pq = q)
        {
            for (int t0 = 0; t0 < n; t0 += CausalAttention.BlockTokens)
            {
                CausalAttention.Attend(pq, (long)heads * d, heads, d, pk, pv, first, t0, Math.Min(n, t0 + CausalAttention.BlockTokens), output.Pointer);
            }
        }
        for (int i = 0; i < expected.Length; i++)
        {
            // Outputs are convex combinations of values in [-1, 1]: absolute tolerance.
            Tolerance.Close(expected[i], output.Span[i], 0, 0, 2e-5f, $"heads {heads} d {d} first {first} n {n} out[{i}]");
        }
        Assert.True(output.CanariesIntact());
    }

    [Fact]
    public void Refuses_head_sizes_that_are_not_whole_vectors()
    {
        Assert.False(CausalAttention.Supports(0));
        Assert.False(CausalAttention.Supports(6));
        var buffer = new float[64];
        fixed (float* p = buffer)
        {
            float* b = p;
            Assert.Throws<NotSupportedException>(() => CausalAttention.Attend(b, 6, 1, 6, b, b, 0, 0, 1, b));
        }
    }
}
