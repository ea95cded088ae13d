using Kernels.Simd;
using Xunit;
using Xunit.Abstractions;

namespace Kernels.Tests.Simd;

/// <summary>Prints which SIMD tier this test run exercises (CI reruns the suite under each knob).</summary>
public sealed class SimdTierReport(ITestOutputHelper output)
{
    [Fact]
    public void Reports_active_tier()
    {
        output.WriteLine(SimdInfo.Describe());
        Console.WriteLine("[simd] " + SimdInfo.Describe());
        string? expected = Environment.GetEnvironmentVariable("KERNELS_EXPECT_TIER");
        if (expected is not null)
        {
            Assert.Equal(expected, SimdInfo.Tier.ToString());
        }
    }
}
