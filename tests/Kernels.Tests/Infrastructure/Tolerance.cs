using Xunit;

namespace Kernels.Tests.Infrastructure;

/// <summary>Magnitude-scaled float comparisons (results that differ only in summation order).</summary>
public static class Tolerance
{
    /// <summary>
    /// |a - e| ≤ abs + rel · scale, where scale is the sum of |terms| that produced the value
    /// (pass it for dot products: cancellation makes |e| a poor scale).
    /// </summary>
    public static void Close(float expected, float actual, float rel, float scale, float abs = 1e-6f, string? what = null)
    {
        float tol = abs + rel * scale;
        if (!(MathF.Abs(expected - actual) <= tol) && !(float.IsNaN(expected) && float.IsNaN(actual)))
        {
            Assert.Fail($"{what}: expected {expected:R}, got {actual:R} (|diff| {MathF.Abs(expected - actual):E3} > tol {tol:E3})");
        }
    }

    public static void AllClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float rel, float abs, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Close(expected[i], actual[i], rel, MathF.Abs(expected[i]), abs, $"{what}[{i}]");
        }
    }
}
