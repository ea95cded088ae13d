using Kernels.Runtime.Compute;
using Kernels.Runtime.Dip;
using Kernels.Runtime.Inference;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Simd;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

public sealed class DipTests
{
    private static readonly int[] Tokens = { 1, 403, 407, 261, 378, 260, 412, 271, 300, 289, 309, 272, 280, 400 };

    /// <summary>Last-token logits of <see cref="Tokens"/> run as a scored batch (every token pruned, as perplexity runs them) or as a prompt.</summary>
    private static float[] Logits(LlamaModel model, ITransformerOps ops, IMlpOverride? mlp, LogitsMode mode = LogitsMode.All)
    {
        using var t = new Transformer(model, ops) { Plan = new ForwardPlan { Mlp = mlp } };
        using var cache = t.CreateCache();
        t.Forward(Tokens, 0, cache, mode);
        var l = new float[model.Config.VocabSize];
        t.ReadLogits(mode == LogitsMode.All ? Tokens.Length - 1 : 0, l);
        return l;
    }

    /// <summary>
    /// Generation's prefill runs the prompt dense (the paper prunes generated tokens; per-token masked
    /// kernels made prompts 7-8x slower), unless PrunePrompt asks for the pruned prompt.
    /// </summary>
    [DataFact]
    public void Prompts_run_dense_unless_asked_and_scored_batches_are_pruned()
    {
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        using var ops = new HostOps();
        var dense = Logits(model, ops, null, LogitsMode.Last);
        using (var dip = new DipMlp(model, ops, new DipOptions { Keep = 0.5 }) { Masks = new() })
        {
            Assert.Equal(dense, Logits(model, ops, dip, LogitsMode.Last));
            Assert.Empty(dip.Masks);
        }
        using var scored = new DipMlp(model, ops, new DipOptions { Keep = 0.5 });
        var pruned = Logits(model, ops, scored, LogitsMode.All);
        Assert.NotEqual(dense, pruned);
        using var prompt = new DipMlp(model, ops, new DipOptions { Keep = 0.5, PrunePrompt = true });
        Tolerance.AllClose(pruned, Logits(model, ops, prompt, LogitsMode.Last), 0, 1e-5f, "pruned prompt = pruned scored batch");
    }

    [DataFact]
    public void Keep_one_reproduces_dense_logits()
    {
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        using var ops = new HostOps();
        var dense = Logits(model, ops, null);
        using var keepOne = new DipMlp(model, ops, new DipOptions { Keep = 1.0 });
        Assert.Equal(dense, Logits(model, ops, keepOne));
        // The masked kernels themselves, forced at keep 1 (every column selected): same function, other summation order.
        using var forced = new DipMlp(model, ops, new DipOptions { Keep = 1.0, ForceMasked = true });
        Tolerance.AllClose(dense, Logits(model, ops, forced), 0, 1e-4f, "forced keep-1 logits");
    }

    [DataFact]
    public void Exactly_k_columns_are_selected_per_token_and_layer()
    {
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        using var ops = new HostOps();
        using var dip = new DipMlp(model, ops, new DipOptions { Keep = 0.5 }) { Masks = new() };
        Logits(model, ops, dip);
        Assert.Equal((36, 60), (dip.KeepInputs, dip.KeepHidden)); // floor(0.574·64), floor(0.351·172)
        Assert.Equal(Tokens.Length, dip.Masks.Count);
        foreach (var token in dip.Masks)
        {
            Assert.Equal(5, token.Length);
            foreach (var m in token)
            {
                Assert.Equal(36, m.InputColumns.Distinct().Count(c => c >= 0 && c < 64));
                Assert.Equal(60, m.HiddenColumns.Distinct().Count(c => c >= 0 && c < 172));
            }
        }
    }

    [Theory]
    [InlineData(0.3, 0.369, 0.161)]
    [InlineData(0.5, 0.574, 0.351)]
    [InlineData(0.7, 0.757, 0.587)]
    public void Density_split_follows_the_closed_form(double keep, double up, double down)
    {
        var (u, d) = DipOptions.Split(keep);
        Assert.Equal(up, u, 3);
        Assert.Equal(down, d, 3);
        Assert.Equal(keep, (2 * u + d) / 3, 9);
    }

    [Fact]
    public void TopK_selects_the_largest_with_ties_to_the_lower_index()
    {
        var rng = new Random(9);
        for (int n = 1; n < 300; n += 7)
        {
            var s = Enumerable.Range(0, n).Select(_ => (float)Math.Round(rng.NextDouble() * 10)).ToArray(); // many ties
            for (int k = 0; k <= n; k += Math.Max(1, n / 5))
            {
                var got = new int[k];
                TopK.Select(s, k, got, new int[n]);
                var expected = Enumerable.Range(0, n).OrderByDescending(i => s[i]).ThenBy(i => i).Take(k).Order().ToArray();
                Assert.Equal(expected, got);
            }
        }
    }

    [Fact]
    public void Simulator_first_token_is_all_flash_and_a_repeated_mask_is_all_dram()
    {
        var c = LlamaConfig.Create(64, 160, 1, 4, 4, 100, 64);
        int k = 10;
        var mask = new TokenLayerMask(Enumerable.Range(0, k).ToArray(), Enumerable.Range(0, k).ToArray());
        var hw = new HwConfig { DramBandwidth = 50e9, FlashBandwidth = 4e9, DramCapacity = 10_000_000, WeightBits = 16, ConcurrentIo = false, Policy = ColumnCachePolicy.Lru };
        var one = HwSimulator.Simulate(c, hw, MlpMode.Dynamic, new List<TokenLayerMask[]> { new[] { mask } });
        var two = HwSimulator.Simulate(c, hw, MlpMode.Dynamic, new List<TokenLayerMask[]> { new[] { mask }, new[] { mask } });
        double bytes = 2.0; // 16-bit
        double flash = (2 * k * c.HiddenDim * bytes + k * c.Dim * bytes) / hw.FlashBandwidth; // gate+up (F rows each) and down (d rows)
        double dram = (2 * k * c.HiddenDim * bytes + k * c.Dim * bytes) / hw.DramBandwidth;
        Assert.Equal(flash, one.DynamicSeconds, 12);
        Assert.Equal((flash + dram) / 2, two.DynamicSeconds, 12);
        Assert.Equal(0, one.HitRate);
        Assert.Equal(0.5, two.HitRate, 9);
        // Dense from flash with no DRAM: everything streams every token.
        var noDram = HwSimulator.Simulate(c, hw with { DramCapacity = 0 }, MlpMode.Dense);
        Assert.Equal(noDram.StaticBytes, noDram.StaticFromFlashBytes);
        Assert.Equal(noDram.StaticBytes / hw.FlashBandwidth, noDram.SecondsPerToken, 12);
    }

    /// <summary>
    /// Reserving the KV cache at the full sequence (not the paper's average length) holds
    /// (seq − avg) tokens' more K/V in DRAM, which the column caches lose; per-token reads stay at
    /// the average length, so with DRAM to spare the time is unchanged.
    /// </summary>
    [Fact]
    public void Kv_reserved_at_the_full_length_takes_dram_from_the_column_caches()
    {
        var c = LlamaConfig.Create(64, 160, 2, 4, 2, 100, 1024);
        var hw = new HwConfig { DramBandwidth = 50e9, FlashBandwidth = 4e9, DramCapacity = 200_000, WeightBits = 16, KvBits = 16, PromptLength = 128, SequenceLength = 512 };
        var masks = Enumerable.Range(0, 4).Select(t => Enumerable.Range(0, c.Layers)
            .Select(_ => new TokenLayerMask(Enumerable.Range(t, 8).ToArray(), Enumerable.Range(t, 16).ToArray())).ToArray()).ToList();
        var average = HwSimulator.Simulate(c, hw, MlpMode.Dynamic, masks);
        var max = HwSimulator.Simulate(c, hw with { KvReservation = KvReservation.MaxLength }, MlpMode.Dynamic, masks);
        double kvPerToken = c.Dim * 2.0 * c.Layers * c.KvHeads / c.Heads * 2; // K and V, 16-bit
        Assert.Equal((512 - (128 + 512) / 2.0) * kvPerToken, max.StaticBytes - average.StaticBytes, 6);
        Assert.InRange(max.DynamicCapacityBytes, average.DynamicCapacityBytes - (max.StaticBytes - average.StaticBytes) - 1, average.DynamicCapacityBytes - (max.StaticBytes - average.StaticBytes) + 1);
        Assert.True(max.GateUpCacheColumns < average.GateUpCacheColumns);
        // Everything in DRAM: reads are at the average length either way.
        var roomy = hw with { DramCapacity = 100_000_000 };
        Assert.Equal(HwSimulator.Simulate(c, roomy, MlpMode.Dense).SecondsPerToken,
            HwSimulator.Simulate(c, roomy with { KvReservation = KvReservation.MaxLength }, MlpMode.Dense).SecondsPerToken, 15);
    }

    [Fact]
    public void Column_caches_evict_by_policy()
    {
        var lru = new ColumnCache(10, 3, ColumnCachePolicy.Lru);
        lru.Update(new[] { 0, 1, 2 });
        lru.Update(new[] { 0 });
        lru.Update(new[] { 5 }); // evicts the least recently used of {1, 2}
        Assert.True(lru.IsResident(0) && lru.IsResident(5) && lru.Count == 3);
        Assert.False(lru.IsResident(1) && lru.IsResident(2));
        var lfu = new ColumnCache(10, 2, ColumnCachePolicy.Lfu);
        lfu.Update(new[] { 0, 1 });
        lfu.Update(new[] { 0 });
        lfu.Update(new[] { 0 });
        lfu.Update(new[] { 7 }); // evicts 1 (used once) rather than 0
        Assert.True(lfu.IsResident(0) && lfu.IsResident(7) && !lfu.IsResident(1));
        var belady = new ColumnCache(10, 2, ColumnCachePolicy.Belady);
        belady.Update(new[] { 0, 1 });
        belady.Update(new[] { 4 }, c => c == 0 ? 5 : 2); // 0 is needed later than 1: evict 0
        Assert.True(belady.IsResident(1) && belady.IsResident(4) && !belady.IsResident(0));
        var tiny = new ColumnCache(10, 2, ColumnCachePolicy.Lru);
        tiny.Update(new[] { 1, 2, 3, 4 }); // the mask alone exceeds the capacity: a subset fits
        Assert.Equal(2, tiny.Count);
    }

    /// <summary>
    /// As the reference: each perplexity window is a sequence whose first half is a dense prompt,
    /// left out of the accounting; only the continuation's masks are recorded, and the column
    /// caches start empty in each sequence (here and in the simulator).
    /// </summary>
    [DataFact]
    public void Evaluation_counts_generated_tokens_only_and_starts_every_sequence_with_empty_caches()
    {
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        var tok = TestData.ReadInts(TestData.Reference("ppl_tinystories_tokens.txt"))[..600];
        var options = new DipOptions { Keep = 0.5, Gamma = 0.3, CacheFraction = 0.5 };
        var run = DipEvaluation.Run(model, options, tok, 256, 1);
        // Windows of 256, 256 and 88 tokens; prompts of 128, 128 and 44.
        Assert.Equal(128 + 128 + 44, run.Masks.Count);
        Assert.Equal(new[] { 0, 128, 256 }, run.SequenceStarts);
        Assert.Equal(129 + 129 + 45, run.Perplexity.Tokens); // from the prompt's last token on

        var hw = new HwConfig { DramCapacity = 2_000_000, PromptLength = 128, SequenceLength = 256, Policy = ColumnCachePolicy.Lru };
        var reset = HwSimulator.Simulate(model.Config, hw, MlpMode.Dynamic, run.Masks, sequenceStarts: run.SequenceStarts);
        var carried = HwSimulator.Simulate(model.Config, hw, MlpMode.Dynamic, run.Masks);
        Assert.True(reset.HitRate < carried.HitRate, $"empty caches per sequence: hit rate {reset.HitRate:P2} vs {carried.HitRate:P2} carried over");
        var c = new ColumnCache(8, 4, ColumnCachePolicy.Lru);
        c.Update(new[] { 1, 2, 3 });
        c.Reset();
        Assert.Equal(0, c.Count);
        Assert.False(c.IsResident(1));
    }

    [DataFact]
    public void Cache_aware_masking_raises_the_hit_rate()
    {
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        var tok = TestData.ReadInts(TestData.Reference("ppl_tinystories_tokens.txt"))[..1024];
        var plain = DipEvaluation.Run(model, new DipOptions { Keep = 0.5, Gamma = 0.999, CacheFraction = 0.5 }, tok, 256, 1);
        var aware = DipEvaluation.Run(model, new DipOptions { Keep = 0.5, Gamma = 0.3, CacheFraction = 0.5 }, tok, 256, 1);
        Assert.True(aware.HitRate > plain.HitRate, $"hit rate {aware.HitRate:P1} (γ 0.3) vs {plain.HitRate:P1} (γ ≈ 1)");
    }
}
