using Kernels.Simd;
using Kernels.Simd.Matrices;
using Kernels.Simd.Vectors;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Simd;

public sealed unsafe class ConversionTests
{
    [Fact]
    public void Every_half_value_widens_exactly()
    {
        var bits = new ushort[65536];
        for (int i = 0; i < bits.Length; i++)
        {
            bits[i] = (ushort)i;
        }
        var result = new float[bits.Length];
        fixed (ushort* s = bits)
        fixed (float* d = result)
        {
            Conversion.ToSingle(ElementType.F16, s, d, bits.Length);
        }
        for (int i = 0; i < bits.Length; i++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)i);
            if (float.IsNaN(expected))
            {
                Assert.True(float.IsNaN(result[i]), $"half 0x{i:X4} should be NaN");
            }
            else
            {
                Assert.True(BitConverter.SingleToUInt32Bits(expected) == BitConverter.SingleToUInt32Bits(result[i]),
                    $"half 0x{i:X4}: expected {expected:R}, got {result[i]:R}");
            }
        }
    }

    [Fact]
    public void Every_bfloat16_value_widens_exactly()
    {
        var bits = new ushort[65536];
        for (int i = 0; i < bits.Length; i++)
        {
            bits[i] = (ushort)i;
        }
        var result = new float[bits.Length];
        fixed (ushort* s = bits)
        fixed (float* d = result)
        {
            Conversion.ToSingle(ElementType.BF16, s, d, bits.Length);
        }
        for (int i = 0; i < bits.Length; i++)
        {
            Assert.Equal((uint)i << 16, BitConverter.SingleToUInt32Bits(result[i]));
        }
    }

    [Fact]
    public void Conversion_handles_every_length_without_overrun()
    {
        var rng = new Random(1);
        for (int n = 0; n <= 256; n++)
        {
            var halves = Enumerable.Range(0, n).Select(_ => (Half)(rng.NextSingle() * 4 - 2)).ToArray();
            using var dst = new GuardedBuffer(n);
            Conversion.HalfToSingle(halves, dst.Span);
            for (int i = 0; i < n; i++)
            {
                Assert.Equal((float)halves[i], dst.Span[i]);
            }
            Assert.True(dst.CanariesIntact(), $"n={n}");
        }
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(1.5f)]
    [InlineData(-3.14159f)]
    [InlineData(65504f)]
    [InlineData(1e-7f)]
    public void Bfloat16_rounding_is_nearest_even(float value)
    {
        ushort b = HalfBits.SingleToBFloat16(value);
        float back = HalfBits.BFloat16ToSingle(b);
        Assert.True(MathF.Abs(back - value) <= MathF.Abs(value) * (1f / 256) + 1e-38f);
    }
}
