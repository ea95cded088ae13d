using Kernels.Runtime.Caching;
using Kernels.Runtime.Caching.Policies;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Session;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

public sealed class KvCacheTests
{
    private static readonly int[] Tokens = TestData.Available ? TestData.ReadInts(TestData.Reference("logits_once_tokens.txt")) : Array.Empty<int>();

    /// <summary>Runs prompt + decode steps under a policy; returns the cache (positions per layer/head) and controller.</summary>
    private static (HostKvCache Cache, KvEvictionPolicy Controller, float[] Logits) Run(LlamaModel model, KvCacheOptions options, int prompt, int steps)
    {
        using var ops = new HostOps();
        var transformer = new Transformer(model, ops, maxBatch: prompt);
        var controller = KvEvictionPolicy.Create(options);
        var cache = (HostKvCache)controller.CreateCache(transformer, prompt + steps + 1);
        controller.BeforePrompt(cache, prompt);
        transformer.Forward(Tokens.AsSpan(0, prompt), 0, cache, LogitsMode.Last);
        controller.AfterPrompt(cache, prompt);
        for (int i = 0; i < steps; i++)
        {
            transformer.Forward(new[] { Tokens[prompt + i] }, prompt + i, cache, LogitsMode.Last);
            controller.AfterStep(cache);
        }
        var logits = new float[model.Config.VocabSize];
        transformer.ReadLogits(0, logits);
        return (cache, controller, logits);
    }

    private static List<int[]> KeptPositions(HostKvCache cache)
    {
        var sets = new List<int[]>();
        for (int l = 0; l < cache.Layers; l++)
        {
            for (int g = 0; g < cache.KvHeads(l); g++)
            {
                var h = cache.Get(l, g);
                sets.Add(h.Positions.Take(h.Count).Order().ToArray());
            }
        }
        return sets;
    }

    [DataFact]
    public void Vatp_with_unit_value_norms_and_no_protection_keeps_exactly_h2os_tokens()
    {
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        var h2o = Run(model, new KvCacheOptions { Policy = KvPolicyKind.H2O, BudgetFraction = 0.4 }, 200, 60);
        var vatp = Run(model, new KvCacheOptions { Policy = KvPolicyKind.Vatp, BudgetFraction = 0.4, ProtectedTokens = 0, UnitValueNorms = true }, 200, 60);
        Assert.Equal(KeptPositions(h2o.Cache), KeptPositions(vatp.Cache));
        Assert.Equal(h2o.Logits, vatp.Logits);
        // With real value norms (and sinks) the sets differ: the test above is not vacuous.
        var real = Run(model, new KvCacheOptions { Policy = KvPolicyKind.Vatp, BudgetFraction = 0.4 }, 200, 60);
        Assert.NotEqual(KeptPositions(h2o.Cache), KeptPositions(real.Cache));
    }

    [DataTheory]
    [InlineData(KvPolicyKind.H2O)]
    [InlineData(KvPolicyKind.Vatp)]
    [InlineData(KvPolicyKind.Scissorhands)]
    [InlineData(KvPolicyKind.Streaming)]
    public void Evicted_entries_are_really_removed_and_storage_shrinks(KvPolicyKind policy)
    {
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        var (cache, controller, logits) = Run(model, new KvCacheOptions { Policy = policy, BudgetFraction = 0.25 }, 240, 40);
        Assert.Equal(60, controller.Budget);
        long perSlot = 2L * cache.HeadDim * sizeof(float);
        for (int l = 0; l < cache.Layers; l++)
        {
            for (int g = 0; g < cache.KvHeads(l); g++)
            {
                var h = cache.Get(l, g);
                Assert.Equal(controller.Budget - 1, h.Count);
                Assert.True(h.Slots <= controller.Budget + 1, $"storage {h.Slots} slots for a budget of {controller.Budget}");
                // The most recent (recent - 1) positions are always kept.
                var positions = h.Positions.Take(h.Count).ToHashSet();
                for (int p = 279; p > 279 - (controller.Recent - 1); p--)
                {
                    Assert.Contains(p, positions);
                }
            }
        }
        long dense = cache.Layers * 4L * 280 * perSlot;
        Assert.True(cache.BytesHeld <= 0.25 * dense * (61.0 / 60) + 1, $"{cache.BytesHeld} bytes held vs dense {dense}");
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));
        if (policy == KvPolicyKind.Streaming)
        {
            // Sinks: the first 4 positions stay in every head.
            Assert.All(KeptPositions(cache), set => Assert.Equal(new[] { 0, 1, 2, 3 }, set.Take(4)));
        }
        if (policy == KvPolicyKind.Vatp)
        {
            // The first 20 tokens are protected.
            Assert.All(KeptPositions(cache), set => Assert.Equal(Enumerable.Range(0, 20), set.Take(20)));
        }
    }

    [DataFact]
    public void No_policy_and_budgets_above_the_prompt_leave_logits_unchanged()
    {
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        var none = Run(model, new KvCacheOptions { Policy = KvPolicyKind.None }, 100, 20);
        var roomy = Run(model, new KvCacheOptions { Policy = KvPolicyKind.Vatp, BudgetTokens = 200 }, 100, 20);
        var streaming = Run(model, new KvCacheOptions { Policy = KvPolicyKind.Streaming, BudgetTokens = 200 }, 100, 20);
        Assert.Equal(none.Logits, roomy.Logits);
        Assert.Equal(none.Logits, streaming.Logits);
    }

    [DataFact]
    public void Streaming_sinks_are_rerotated_to_sit_before_the_window()
    {
        // After eviction, the score of a sink key against a query depends only on (query pos - effective sink pos):
        // re-rotating a key by the delta is exact up to float rounding.
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        var (cache, controller, _) = Run(model, new KvCacheOptions { Policy = KvPolicyKind.Streaming, BudgetTokens = 40 }, 60, 30);
        var h = cache.Get(0, 0);
        var order = Enumerable.Range(0, h.Count).OrderBy(s => h.Positions[s]).ToArray();
        Assert.Equal(new[] { 0, 1, 2, 3 }, order.Take(4).Select(s => h.Positions[s]));
        int oldestWindow = h.Positions[order[4]];
        Assert.Equal(89 - (controller.Recent - 2), oldestWindow);
        // Recompute sink 0's key from scratch at its effective position and compare.
        using var ops = new HostOps();
        using var t = new Transformer(model, ops);
        using var fresh = t.CreateCache(4);
        t.Forward(Tokens.AsSpan(0, 1), 0, fresh, LogitsMode.None);
        var k0 = ((HostKvCache)fresh).Get(0, 0).Keys.AsSpan(0, cache.HeadDim).ToArray();
        int delta = oldestWindow - 4;
        var cos = t.Rope.Cos(delta);
        var sin = t.Rope.Sin(delta);
        for (int p = 0; p < cache.HeadDim; p += 2)
        {
            float e0 = k0[p] * cos[p / 2] - k0[p + 1] * sin[p / 2];
            float e1 = k0[p] * sin[p / 2] + k0[p + 1] * cos[p / 2];
            Assert.Equal(e0, h.Keys[order[0] * cache.HeadDim + p], 4);
            Assert.Equal(e1, h.Keys[order[0] * cache.HeadDim + p + 1], 4);
        }
    }

    [DataFact]
    public void Constrained_perplexity_with_a_full_budget_equals_the_dense_perplexity()
    {
        var (model, tok) = ModelFixtures.LoadStoriesBin();
        using (model)
        {
            using var ops = new HostOps();
            using var t = new Transformer(model, ops);
            int[] tokens = TestData.ReadInts(TestData.Reference("ppl_tinystories_tokens.txt"))[..1000];
            double dense = new Kernels.Runtime.Evaluation.PerplexityEvaluator(t).Evaluate(tokens, 256, 1).Perplexity;
            ConstrainedPerplexity.Result Constrained(KvCacheOptions kv)
            {
                using var session = InferenceSession.Create(model, ops, new InferenceOptions { CacheCapacity = 256, Kv = kv });
                return ConstrainedPerplexity.Evaluate(session, tokens, 256, 1);
            }
            var none = Constrained(new KvCacheOptions { Policy = KvPolicyKind.None });
            var full = Constrained(new KvCacheOptions { Policy = KvPolicyKind.H2O, BudgetFraction = 1.0 });
            Assert.Equal(dense, none.Perplexity.Perplexity, 4);
            Assert.Equal(dense, full.Perplexity.Perplexity, 4);
            var half = Constrained(new KvCacheOptions { Policy = KvPolicyKind.Vatp, BudgetFraction = 0.5 });
            Assert.True(half.PeakKvBytes <= half.DenseKvBytes / 2);
            Assert.True(half.Evicted > 0);
        }
    }

    [DataFact]
    public void Needle_trials_plant_the_fact_once_and_are_reproducible()
    {
        var (model, tok) = ModelFixtures.LoadStoriesBin();
        using (model)
        {
            string text = File.ReadAllText(TestData.File_("tinystories_valid_sample.txt"));
            var a = NeedleRetrieval.Build(tok, text, 10, 200);
            var b = NeedleRetrieval.Build(tok, text, 10, 200);
            Assert.Equal(a.Select(t => t.AnswerToken), b.Select(t => t.AnswerToken));
            Assert.All(a, t =>
            {
                Assert.Contains(t.AnswerToken, t.CandidateTokens);
                Assert.True(t.Context.Length <= 200);
                Assert.True(t.Query.Length >= 3);
            });
            Assert.True(a.Select(t => t.AnswerToken).Distinct().Count() > 1);
        }
    }

    [Fact]
    public void Budget_parsing()
    {
        Assert.Equal(0.5, new KvCacheOptions().WithBudget("0.5").BudgetFraction);
        Assert.Equal(128, new KvCacheOptions().WithBudget("128").BudgetTokens);
        Assert.Throws<FormatException>(() => new KvCacheOptions().WithBudget("-1"));
        Assert.Throws<ArgumentException>(() => KvCacheOptions.ParsePolicy("lru"));
    }

    [Fact]
    public unsafe void Value_norm_weighted_accumulation_matches_scalar()
    {
        foreach (int n in new[] { 0, 1, 7, 16, 33, 100 })
        {
            var p = Enumerable.Range(0, n).Select(i => (float)Math.Sin(i)).ToArray();
            var w = Enumerable.Range(0, n).Select(i => 1f + i % 5).ToArray();
            var r = Enumerable.Range(0, n).Select(i => 0.5f * i).ToArray();
            var expected = r.Select((v, i) => v + p[i] * w[i]).ToArray();
            fixed (float* pp = p, pw = w, pr = r)
            {
                Kernels.Simd.Attention.Accumulate(pp, pw, pr, n);
            }
            Tolerance.AllClose(expected, r, 1e-6f, 1e-6f, $"n={n}");
        }
    }
}
