using Kernels.Gpu;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Gpu;
using Xunit;

namespace Kernels.Tests.Gpu;

/// <summary>Head masking is one backend operation per layer: both backends zero exactly the listed heads of every token.</summary>
[Collection("ilgpu-cpu")]
public sealed class GpuHeadMaskTests
{
    [Theory]
    [InlineData(1, 1, 1, new[] { 0 })]
    [InlineData(3, 5, 7, new[] { 1, 4 })]
    [InlineData(4, 8, 16, new int[0])]
    public void ZeroHeads_zeroes_the_listed_heads_of_every_token_on_both_backends(int n, int heads, int headDim, int[] masked)
    {
        using var device = GpuDevice.TryCreate(GpuKind.IlgpuCpu, out string reason) ?? throw new InvalidOperationException(reason);
        var r = new Random(n * 31 + heads);
        var x = Enumerable.Range(0, n * heads * headDim).Select(_ => r.NextSingle() + 0.5f).ToArray();
        var expected = (float[])x.Clone();
        for (int t = 0; t < n; t++)
        {
            foreach (int h in masked)
            {
                Array.Clear(expected, (t * heads + h) * headDim, headDim);
            }
        }
        using var host = new HostOps();
        using var gpu = new GpuOps(device);
        foreach (ITransformerOps ops in new ITransformerOps[] { host, gpu })
        {
            using var tensor = ops.Allocate(x.Length);
            ops.Upload(x, tensor, 0);
            ops.ZeroHeads(tensor, n, heads, headDim, masked);
            var got = new float[x.Length];
            ops.Download(tensor, 0, got);
            Assert.Equal(expected, got);
        }
    }
}
