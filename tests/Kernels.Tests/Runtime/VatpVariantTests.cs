using Kernels.Runtime.Caching;
using Kernels.Runtime.Caching.Policies;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Session;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>VATP's second setting (inside Scissorhands) and its ablations: value norm, per-query-head scoring.</summary>
public sealed class VatpVariantTests
{
    /// <summary>GQA: 4 query heads share 2 KV heads (groups of 2).</summary>
    private static readonly SyntheticShape Gqa = SyntheticShape.Small with { Name = "gqa", Dim = 32, Hidden = 48, Layers = 2, Heads = 4, KvHeads = 2, Vocab = 40, MaxSequence = 96 };

    private static readonly SyntheticShape Mha = Gqa with { Name = "mha", KvHeads = 4 };

    private static readonly int[] Prompt = Enumerable.Range(0, 40).Select(i => (i * 7 + 3) % 40).ToArray();

    /// <summary>Prompt, then decode steps; returns kept positions of every (layer, KV head) and the last logits.</summary>
    private static (List<int[]> Kept, float[] Logits, HostKvCache Cache) Run(LlamaModel model, KvCacheOptions options, int steps = 12) =>
        Run(model, options, Prompt, Enumerable.Range(0, steps).Select(i => (i * 5 + 1) % 40).ToArray());

    private static (List<int[]> Kept, float[] Logits, HostKvCache Cache) Run(LlamaModel model, KvCacheOptions options, int[] prompt, int[] decode)
    {
        using var ops = new HostOps();
        var transformer = new Transformer(model, ops, maxBatch: prompt.Length);
        var policy = KvEvictionPolicy.Create(options);
        var cache = (HostKvCache)policy.CreateCache(transformer, prompt.Length + decode.Length + 1);
        policy.BeforePrompt(cache, prompt.Length);
        transformer.Forward(prompt, 0, cache, LogitsMode.Last);
        policy.AfterPrompt(cache, prompt.Length);
        for (int i = 0; i < decode.Length; i++)
        {
            transformer.Forward([decode[i]], prompt.Length + i, cache, LogitsMode.Last);
            policy.AfterStep(cache);
        }
        var logits = new float[model.Config.VocabSize];
        transformer.ReadLogits(0, logits);
        var kept = new List<int[]>();
        for (int l = 0; l < cache.Layers; l++)
        {
            for (int g = 0; g < cache.KvHeads(l); g++)
            {
                kept.Add(cache.Positions(l, g).ToArray().Order().ToArray());
            }
        }
        return (kept, logits, cache);
    }

    [Fact]
    public void Vatp_in_scissorhands_with_unit_norms_and_no_sinks_is_scissorhands()
    {
        using var model = SyntheticModel.Create(Gqa, ElementType.F32, null, seed: 3);
        var baseline = new KvCacheOptions { Policy = KvPolicyKind.Scissorhands, BudgetTokens = 12, ScissorhandsWindow = 16, ScissorhandsRecent = 3 };
        var scissorhands = Run(model, baseline);
        var vatp = Run(model, baseline with { Policy = KvPolicyKind.VatpScissorhands, UnitValueNorms = true, ProtectedTokens = 0 });
        Assert.Equal(scissorhands.Kept, vatp.Kept);
        Assert.Equal(scissorhands.Logits, vatp.Logits);
        // With real value norms the choice differs somewhere: the equality above is not vacuous.
        var weighted = Run(model, baseline with { Policy = KvPolicyKind.VatpScissorhands, ProtectedTokens = 0 });
        Assert.NotEqual(scissorhands.Kept, weighted.Kept);
    }

    [Fact]
    public void Vatp_in_scissorhands_never_evicts_its_sinks()
    {
        using var model = SyntheticModel.Create(Gqa, ElementType.F32, null, seed: 3);
        var run = Run(model, new KvCacheOptions { Policy = KvPolicyKind.VatpScissorhands, BudgetTokens = 12, ScissorhandsWindow = 16, ScissorhandsRecent = 3, ProtectedTokens = 5 });
        Assert.All(run.Kept, kept => Assert.Equal([0, 1, 2, 3, 4], kept.Take(5)));
        Assert.All(run.Kept, kept => Assert.Equal(11, kept.Length));
    }

    [Fact]
    public void Per_query_head_scores_add_up_to_the_group_sum()
    {
        using var model = SyntheticModel.Create(Gqa, ElementType.F32, null, seed: 5);
        // A budget above the sequence: nothing is evicted, so both caches saw the same queries.
        var summed = Run(model, new KvCacheOptions { Policy = KvPolicyKind.Vatp, BudgetTokens = 80, ProtectedTokens = 0 });
        var split = Run(model, new KvCacheOptions { Policy = KvPolicyKind.Vatp, BudgetTokens = 80, ProtectedTokens = 0, PerQueryHead = true });
        for (int l = 0; l < summed.Cache.Layers; l++)
        {
            for (int g = 0; g < summed.Cache.KvHeads(l); g++)
            {
                var total = summed.Cache.Scores(l, g).ToArray();
                var rows = split.Cache.Scores(l, g).ToArray();
                Assert.Equal(total.Length * 2, rows.Length);
                for (int s = 0; s < total.Length; s++)
                {
                    Assert.Equal(total[s], rows[2 * s] + rows[2 * s + 1], 4);
                    Assert.True(rows[2 * s] >= 0 && rows[2 * s + 1] >= 0);
                }
            }
        }
        Assert.Equal(summed.Logits, split.Logits);
    }

    [Fact]
    public void Per_query_head_scoring_equals_the_group_sum_on_an_mha_model()
    {
        using var model = SyntheticModel.Create(Mha, ElementType.F32, null, seed: 5);
        var options = new KvCacheOptions { Policy = KvPolicyKind.Vatp, BudgetTokens = 10, ProtectedTokens = 2 };
        var summed = Run(model, options);
        var split = Run(model, options with { PerQueryHead = true });
        Assert.Equal(summed.Kept, split.Kept);
        Assert.Equal(summed.Logits, split.Logits);
    }

    /// <summary>stories260K (8 query heads on 4 KV heads) on real text: the heads disagree, so the kept sets differ.</summary>
    [DataFact]
    public void Per_query_head_scoring_chooses_differently_on_a_gqa_model()
    {
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        var tokens = TestData.ReadInts(TestData.Reference("logits_once_tokens.txt"));
        var options = new KvCacheOptions { Policy = KvPolicyKind.H2O, BudgetTokens = 24 };
        var summed = Run(model, options, tokens[..120], tokens[120..160]);
        var split = Run(model, options with { PerQueryHead = true }, tokens[..120], tokens[120..160]);
        Assert.NotEqual(summed.Kept, split.Kept);
        Assert.All(split.Kept, kept => Assert.Equal(23, kept.Length));
    }

    /// <summary>
    /// One KV head, two query heads, 7 prompt tokens, budget 5 (recent 2: the newest token and the next one's slot, so 3 older slots). Hand-set
    /// per-head scores: head 0 ranks 0 > 1 > 2 > ..., head 1 ranks 5 > 4 > 3 > ...; turns go head 0
    /// (token 0), head 1 (token 5), head 0 (token 1). The summed score would keep tokens 2, 3 and 4.
    /// </summary>
    [Fact]
    public void Query_heads_nominate_their_best_tokens_in_turn()
    {
        var shape = SyntheticShape.Small with { Name = "one-kv", Dim = 16, Hidden = 32, Layers = 1, Heads = 2, KvHeads = 1, Vocab = 32, MaxSequence = 64 };
        using var model = SyntheticModel.Create(shape, ElementType.F32, null, seed: 1);
        using var ops = new HostOps();
        var kv = new KvCacheOptions { Policy = KvPolicyKind.H2O, BudgetTokens = 5, RecentFraction = 0.4, PerQueryHead = true };
        using var session = InferenceSession.Create(model, ops, new InferenceOptions { Kv = kv, CacheCapacity = 16 });
        var memory = (IKvMemory)session.Cache;
        Assert.True(memory.ScorePerQueryHead);
        session.Policy!.BeforePrompt(memory, 7);
        session.Transformer.Forward([1, 2, 3, 4, 5, 6, 7], 0, session.Cache, LogitsMode.Last);
        //                    token:   0          1          2          3          4          5          6
        memory.WriteScores(0, 0, [9f, 0f, 8f, 0f, 7f, 6.5f, 6f, 7f, 6.5f, 8f, 0f, 9f, 0f, 0f]);
        session.Policy.AfterPrompt(memory, 7);
        Assert.Equal([0, 1, 5, 6], memory.Positions(0, 0).ToArray().Order());
        var summed = new KvCacheOptions { Policy = KvPolicyKind.H2O, BudgetTokens = 5, RecentFraction = 0.4 };
        using var plain = InferenceSession.Create(model, ops, new InferenceOptions { Kv = summed, CacheCapacity = 16 });
        var plainMemory = (IKvMemory)plain.Cache;
        plain.Policy!.BeforePrompt(plainMemory, 7);
        plain.Transformer.Forward([1, 2, 3, 4, 5, 6, 7], 0, plain.Cache, LogitsMode.Last);
        plainMemory.WriteScores(0, 0, [9f, 8f, 13.5f, 13f, 14.5f, 9f, 0f]);
        plain.Policy.AfterPrompt(plainMemory, 7);
        Assert.Equal([2, 3, 4, 6], plainMemory.Positions(0, 0).ToArray().Order());
    }

    [Theory]
    [InlineData(KvScoring.AttentionTimesValueNorm, 10f)]
    [InlineData(KvScoring.AttentionTimesValueL2Norm, 5.477226f)]
    [InlineData(KvScoring.AttentionTimesValueMaxNorm, 4f)]
    public void Value_norms_are_the_named_norm(KvScoring scoring, float expected)
    {
        using var model = SyntheticModel.Create(Gqa, ElementType.F32, null, seed: 1);
        using var cache = new HostKvCache(model, 8) { Scoring = scoring };
        Assert.Equal(expected, cache.ValueNorm([1f, -2f, 3f, -4f]), 5);
        Assert.Equal(0f, cache.ValueNorm([]));
    }

    [Theory]
    [InlineData(ValueNormKind.L1)]
    [InlineData(ValueNormKind.L2)]
    [InlineData(ValueNormKind.Max)]
    public void The_cache_accumulates_attention_times_the_chosen_norm(ValueNormKind norm)
    {
        using var model = SyntheticModel.Create(Gqa, ElementType.F32, null, seed: 2);
        var attention = Run(model, new KvCacheOptions { Policy = KvPolicyKind.H2O, BudgetTokens = 80 }, steps: 0).Cache;
        var weighted = Run(model, new KvCacheOptions { Policy = KvPolicyKind.Vatp, BudgetTokens = 80, ValueNorm = norm }, steps: 0).Cache;
        for (int g = 0; g < 2; g++)
        {
            var values = weighted.Values(1, g).ToArray();
            var plain = attention.Scores(1, g).ToArray();
            var scores = weighted.Scores(1, g).ToArray();
            for (int s = 0; s < scores.Length; s++)
            {
                var v = values.AsSpan(s * weighted.HeadDim, weighted.HeadDim);
                float n = norm switch
                {
                    ValueNormKind.L1 => v.ToArray().Sum(MathF.Abs),
                    ValueNormKind.L2 => MathF.Sqrt(v.ToArray().Sum(x => x * x)),
                    _ => v.ToArray().Max(MathF.Abs),
                };
                Assert.True(MathF.Abs(plain[s] * n - scores[s]) <= 1e-5f * MathF.Max(1f, scores[s]), $"slot {s}: {plain[s]} x {n} vs {scores[s]}");
            }
        }
    }

    [Fact]
    public void Names_and_features()
    {
        Assert.Equal(KvPolicyKind.VatpScissorhands, KvCacheOptions.ParsePolicy("vatp-scissorhands"));
        Assert.Equal("vatp-scissorhands", KvCacheOptions.PolicyName(KvPolicyKind.VatpScissorhands));
        Assert.Equal(ValueNormKind.Max, KvCacheOptions.ParseValueNorm("linf"));
        Assert.Contains("l1, l2, linf", Assert.Throws<ArgumentException>(() => KvCacheOptions.ParseValueNorm("l3")).Message);
        var vatp = new KvCacheOptions { Policy = KvPolicyKind.Vatp };
        Assert.Equal(BackendFeature.KvMemory, vatp.RequiredFeatures);
        Assert.Equal(BackendFeature.KvMemory | BackendFeature.KvScoreVariants, (vatp with { ValueNorm = ValueNormKind.L2 }).RequiredFeatures);
        Assert.Equal(BackendFeature.KvMemory | BackendFeature.KvScoreVariants, (vatp with { PerQueryHead = true }).RequiredFeatures);
        Assert.Equal(BackendFeature.KvMemory | BackendFeature.KvScoreWindow, (vatp with { Policy = KvPolicyKind.VatpScissorhands }).RequiredFeatures);
        // Settings a policy would ignore are refused, naming the option.
        Assert.Contains("--kv-norm", Assert.Throws<ArgumentException>(() => new KvCacheOptions { Policy = KvPolicyKind.H2O, ValueNorm = ValueNormKind.L2 }.Validated()).Message);
        Assert.Contains("--kv-per-query-head", Assert.Throws<ArgumentException>(() => new KvCacheOptions { Policy = KvPolicyKind.Streaming, PerQueryHead = true }.Validated()).Message);
        Assert.Same(vatp, vatp.Validated());
        using var model = SyntheticModel.Create(Gqa, ElementType.F32, null, seed: 1);
        using var ops = new HostOps();
        Assert.Throws<ArgumentException>(() => InferenceSession.Create(model, ops, new InferenceOptions { Kv = new KvCacheOptions { Policy = KvPolicyKind.H2O, ValueNorm = ValueNormKind.Max } }));
    }
}
