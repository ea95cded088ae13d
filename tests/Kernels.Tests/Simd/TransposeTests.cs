using Kernels.Simd;
using Xunit;

namespace Kernels.Tests.Simd;

public sealed unsafe class TransposeTests
{
    [Theory]
    [InlineData(16, 16)]
    [InlineData(19, 23)]
    [InlineData(128, 64)]
    public void Block16x16_matches_the_definition(int srcStride, int dstStride)
    {
        var src = SparseTestData.Random(16 * srcStride, srcStride * 7 + dstStride);
        var dst = new float[16 * dstStride];
        Array.Fill(dst, float.NaN);
        fixed (float* s = src, d = dst)
        {
            Transpose.Block16x16(s, srcStride, d, dstStride);
        }
        for (int i = 0; i < 16; i++)
        {
            for (int j = 0; j < 16; j++)
            {
                Assert.Equal(src[j * srcStride + i], dst[i * dstStride + j]);
            }
            // Nothing written between the block's rows.
            for (int j = 16; j < dstStride; j++)
            {
                Assert.True(float.IsNaN(dst[i * dstStride + j]), $"dst[{i}, {j}] overwritten");
            }
        }
    }
}
