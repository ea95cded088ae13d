using Kernels.Gpu;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Gpu;
using Kernels.Runtime.Model;
using Kernels.Runtime.Session;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Kernels.Tests.Runtime;
using Xunit;

namespace Kernels.Tests.Gpu;

/// <summary>The families' differences (Qwen2's biases, Llama 3's scaled RoPE table) run on the GPU backend too: the host's logits.</summary>
[Collection("ilgpu-cpu")]
public sealed class GpuFamilyTests
{
    [Theory]
    [InlineData(ModelFamily.Qwen2)]
    [InlineData(ModelFamily.Llama3)]
    public void The_gpu_backend_gives_the_host_logits_for_the_family(ModelFamily family)
    {
        using var device = GpuDevice.TryCreate(GpuKind.IlgpuCpu, out string reason) ?? throw new InvalidOperationException(reason);
        var shape = SyntheticShape.Small with { Name = "tiny", Dim = 64, Hidden = 172, Layers = 2, Heads = 4, KvHeads = 2, Vocab = 320, MaxSequence = 128 };
        using var model = SyntheticFamilies.Create(family, shape, ElementType.F32, seed: 9);
        var tokens = Enumerable.Range(0, 40).Select(i => (i * 37 + 5) % 300).ToArray();
        using var host = new HostOps();
        using var gpu = new GpuOps(device);
        var options = new InferenceOptions { CacheCapacity = 64 };
        Tolerance.AllClose(ModelFixtures.PrefillLogits(model, host, tokens, options), ModelFixtures.PrefillLogits(model, gpu, tokens, options), 1e-3f, 1e-4f, $"{family}: GPU vs host logits");
    }
}
