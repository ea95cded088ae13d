using Kernels.Gpu;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Dip;
using Kernels.Runtime.Gpu;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;
using Kernels.Runtime.Session;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Kernels.Tests.Runtime;
using Xunit;

namespace Kernels.Tests.Gpu;

/// <summary>DIP's masked SwiGLU on the GPU backend (ILGPU's CPU accelerator): the same masks and tokens as the host backend.</summary>
[Collection("ilgpu-cpu")]
public sealed class GpuDipTests
{
    private static (int[] Tokens, List<TokenLayerMask[]> Masks) Generate(LlamaModel model, ITransformerOps ops, DipOptions dip, int[] prompt, int steps)
    {
        using var session = InferenceSession.Create(model, ops, new InferenceOptions { Dip = dip, CacheCapacity = prompt.Length + steps });
        session.Dip!.Masks = new();
        session.Prefill(prompt);
        var tokens = new List<int>();
        for (int i = 0; i < steps; i++)
        {
            int token = session.ArgMax();
            tokens.Add(token);
            session.Step(token);
        }
        return (tokens.ToArray(), session.Dip.Masks);
    }

    [DataTheory]
    [InlineData(0.5, 1.0)]   // DIP
    [InlineData(0.5, 0.3)]   // DIP-CA: non-resident columns' scores × γ
    public void Greedy_generation_with_dip_matches_the_host_backend(double keep, double gamma)
    {
        using var device = GpuDevice.TryCreate(GpuKind.IlgpuCpu, out string reason) ?? throw new InvalidOperationException(reason);
        var (model, tokenizer) = ModelFixtures.LoadStoriesBin();
        using (model)
        {
            var dip = new DipOptions { Keep = keep, Gamma = gamma, CacheFraction = 0.5 };
            var prompt = tokenizer.Encode("Once upon a time, there was a little girl", true, false);
            using var host = new HostOps();
            using var gpu = new GpuOps(device);
            var (hostTokens, hostMasks) = Generate(model, host, dip, prompt, 32);
            var (gpuTokens, gpuMasks) = Generate(model, gpu, dip, prompt, 32);
            Assert.Equal(hostTokens, gpuTokens);
            // The prompt runs dense; every decode step masks every layer, with the same columns on both backends.
            Assert.Equal(32, hostMasks.Count);
            for (int t = 0; t < hostMasks.Count; t++)
            {
                for (int l = 0; l < model.Layers.Count; l++)
                {
                    Assert.Equal(hostMasks[t][l].InputColumns, gpuMasks[t][l].InputColumns);
                    Assert.Equal(hostMasks[t][l].HiddenColumns, gpuMasks[t][l].HiddenColumns);
                }
            }
        }
    }

    /// <summary>F16 weights stay F16 in the device's column-major copies; a pruned prompt gives the host's logits.</summary>
    [Fact]
    public void Masked_swiglu_on_f16_weights_gives_the_host_logits()
    {
        using var device = GpuDevice.TryCreate(GpuKind.IlgpuCpu, out string reason) ?? throw new InvalidOperationException(reason);
        var shape = SyntheticShape.Small with { Dim = 128, Hidden = 344, Layers = 2, Heads = 4, KvHeads = 2, Vocab = 256, MaxSequence = 64 };
        using var model = SyntheticModel.Create(shape, ElementType.F16, null, seed: 5);
        var tokens = new[] { 1, 17, 99, 3, 250, 42, 7 };
        var dip = new DipOptions { Keep = 0.4, PrunePrompt = true };
        using var host = new HostOps();
        using var gpu = new GpuOps(device);
        var options = new InferenceOptions { Dip = dip, CacheCapacity = 16 };
        var expected = ModelFixtures.PrefillLogits(model, host, tokens, options);
        Tolerance.AllClose(expected, ModelFixtures.PrefillLogits(model, gpu, tokens, options), 0, 1e-3f * expected.Max(MathF.Abs), "pruned-prompt logits");
    }
}
