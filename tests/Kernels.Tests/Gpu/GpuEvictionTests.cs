using Kernels.Gpu;
using Kernels.Runtime.Caching;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Gpu;
using Kernels.Runtime.Session;
using Kernels.Tests.Infrastructure;
using Kernels.Tests.Runtime;
using Xunit;

namespace Kernels.Tests.Gpu;

/// <summary>KV eviction on the GPU backend (ILGPU's CPU accelerator): the same tokens as the host backend for the same policy and budget.</summary>
[Collection("ilgpu-cpu")]
public sealed class GpuEvictionTests
{
    private static string Generate(Kernels.Runtime.Model.LlamaModel model, Kernels.Runtime.Tokenization.ITokenizer tokenizer, ITransformerOps ops, KvCacheOptions kv)
    {
        using var session = InferenceSession.Create(model, ops, new InferenceOptions { Kv = kv, CacheCapacity = 64 });
        var generator = new TextGenerator(session, tokenizer);
        var sb = new System.Text.StringBuilder();
        Task.Run(async () =>
        {
            await foreach (var piece in generator.GenerateAsync("Once upon a time, there was a little girl", new GenerationOptions { Steps = 48, Temperature = 0 }))
            {
                sb.Append(piece);
            }
        }).GetAwaiter().GetResult();
        Assert.True(session.Policy!.Evicted > 0, "the budget must force evictions");
        return sb.ToString();
    }

    [DataTheory]
    [InlineData(KvPolicyKind.Vatp)]
    [InlineData(KvPolicyKind.H2O)]
    [InlineData(KvPolicyKind.Streaming)]
    public void Greedy_generation_with_eviction_matches_the_host_backend(KvPolicyKind policy)
    {
        using var device = GpuDevice.TryCreate(GpuKind.IlgpuCpu, out string reason) ?? throw new InvalidOperationException(reason);
        var (model, tokenizer) = ModelFixtures.LoadStoriesBin();
        using (model)
        {
            var kv = new KvCacheOptions { Policy = policy, BudgetTokens = 10, ProtectedTokens = 2, SinkTokens = 2 };
            using var host = new HostOps();
            using var gpu = new GpuOps(device);
            Assert.Equal(Generate(model, tokenizer, host, kv), Generate(model, tokenizer, gpu, kv));
        }
    }

    /// <summary>
    /// StreamingLLM exercises every cache operation (keep and key rewrites); VATP the statistics that
    /// travel with a slot when the device compacts it (‖v‖₁-weighted received attention).
    /// </summary>
    [DataTheory]
    [InlineData(KvPolicyKind.Streaming)]
    [InlineData(KvPolicyKind.Vatp)]
    public void The_device_cache_holds_the_host_caches_tokens_keys_values_and_scores_step_by_step(KvPolicyKind policy)
    {
        using var device = GpuDevice.TryCreate(GpuKind.IlgpuCpu, out string reason) ?? throw new InvalidOperationException(reason);
        var (model, tokenizer) = ModelFixtures.LoadStoriesBin();
        using (model)
        {
            var kv = new KvCacheOptions { Policy = policy, BudgetFraction = 0.75 };
            using var host = new HostOps();
            using var gpu = new GpuOps(device);
            using var a = InferenceSession.Create(model, host, new InferenceOptions { Kv = kv, CacheCapacity = 48 });
            using var b = InferenceSession.Create(model, gpu, new InferenceOptions { Kv = kv, CacheCapacity = 48 });
            var prompt = tokenizer.Encode("Once upon a time, there was a little girl", true, false);
            a.Prefill(prompt);
            b.Prefill(prompt);
            var ma = (IKvMemory)a.Cache;
            var mb = (IKvMemory)b.Cache;
            for (int step = 0; step < 24; step++)
            {
                for (int l = 0; l < ma.Layers; l++)
                {
                    for (int g = 0; g < ma.KvHeads(l); g++)
                    {
                        Assert.Equal(ma.Positions(l, g).ToArray(), mb.Positions(l, g).ToArray());
                        Tolerance.AllClose(ma.Keys(l, g).ToArray(), mb.Keys(l, g).ToArray(), 0, 1e-3f, $"step {step} layer {l} head {g} keys");
                        Tolerance.AllClose(ma.Values(l, g).ToArray(), mb.Values(l, g).ToArray(), 0, 1e-3f, $"step {step} layer {l} head {g} values");
                        Tolerance.AllClose(ma.Scores(l, g).ToArray(), mb.Scores(l, g).ToArray(), 1e-3f, 1e-4f, $"step {step} layer {l} head {g} scores");
                    }
                }
                int token = a.ArgMax();
                Assert.Equal(token, b.ArgMax());
                a.Step(token);
                b.Step(token);
            }
        }
    }

    [DataFact]
    public void Unsupported_features_fail_once_when_the_session_is_built()
    {
        using var device = GpuDevice.TryCreate(GpuKind.IlgpuCpu, out string reason) ?? throw new InvalidOperationException(reason);
        var (model, _) = ModelFixtures.LoadStoriesBin();
        using (model)
        {
            using var gpu = new GpuOps(device);
            var e = Assert.Throws<NotSupportedException>(() => InferenceSession.Create(model, gpu, new InferenceOptions { Kv = new KvCacheOptions { Policy = KvPolicyKind.Scissorhands } }));
            Assert.Contains("KvScoreWindow", e.Message);
            e = Assert.Throws<NotSupportedException>(() => InferenceSession.Create(model, gpu, new InferenceOptions { Kv = new KvCacheOptions { Policy = KvPolicyKind.Vatp, PerQueryHead = true } }));
            Assert.Contains("KvScoreVariants", e.Message);
            e = Assert.Throws<NotSupportedException>(() => InferenceSession.Create(model, gpu, new InferenceOptions { Kv = new KvCacheOptions { Policy = KvPolicyKind.Vatp, ValueNorm = ValueNormKind.L2 } }));
            Assert.Contains("KvScoreVariants", e.Message);
            e = Assert.Throws<NotSupportedException>(() => InferenceSession.Create(model, gpu, new InferenceOptions { TokenPruning = new Kernels.Runtime.Simplification.TokenPruneOptions { StageLayers = new[] { 1 } } }));
            Assert.Contains("TokenPruning", e.Message);
        }
    }
}
