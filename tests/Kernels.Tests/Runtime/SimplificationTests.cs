using Kernels.Runtime.Compute;
using Kernels.Runtime.Evaluation;
using Kernels.Runtime.Inference;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Pruning;
using Kernels.Runtime.Simplification;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>Head pruning, layer removal, cross-layer KV sharing and SDTP token pruning: invariants and exact equivalences.</summary>
public sealed class SimplificationTests
{
    // 4 layers, 8 query heads, 4 KV heads (GQA groups of 2), head dim 8.
    private static readonly SyntheticShape Tiny = new("tiny", 64, 96, 4, 8, 4, 128, 256);

    private static LlamaModel TinyModel(int seed = 3) => SyntheticModel.Create(Tiny, ElementType.F32, null, seed);

    private static int[] Tokens(int n, int vocab, int salt = 0) => Enumerable.Range(0, n).Select(i => (int)((uint)((i + salt) * 2654435761u) % (uint)vocab)).ToArray();

    /// <summary>Logits of every position (LogitsMode.All) or of the last one.</summary>
    private static float[] Logits(LlamaModel model, int[] tokens, LogitsMode mode = LogitsMode.All, Action<Transformer>? configure = null)
    {
        using var ops = new HostOps();
        using var t = new Transformer(model, ops, maxBatch: tokens.Length);
        configure?.Invoke(t);
        using var cache = t.CreateCache(tokens.Length);
        t.Forward(tokens, 0, cache, mode);
        int rows = mode == LogitsMode.All ? tokens.Length : 1;
        var result = new float[rows * model.Config.VocabSize];
        for (int r = 0; r < rows; r++)
        {
            t.ReadLogits(r, result.AsSpan(r * model.Config.VocabSize));
        }
        return result;
    }

    private static void AssertClose(float[] expected, float[] actual, float tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        float worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        }
        Assert.True(worst <= tolerance, $"max |difference| {worst} > {tolerance}");
    }

    [Fact]
    public void Removing_no_heads_no_layers_and_sharing_nothing_leave_logits_identical()
    {
        using var model = TinyModel();
        var tokens = Tokens(40, Tiny.Vocab);
        var before = Logits(model, tokens);
        HeadPruner.Remove(model, Array.Empty<(int, int)>());
        LayerRemoval.Remove(model, Array.Empty<int>());
        KvSharer.Apply(model, new Dictionary<int, int>());
        Assert.Equal(before, Logits(model, tokens));
    }

    [Fact]
    public void Removing_a_kv_group_equals_masking_its_query_heads()
    {
        var tokens = Tokens(33, Tiny.Vocab);
        using var masked = TinyModel();
        // Layer 1, KV head 2 serves query heads 4 and 5; layer 3, KV head 0 serves 0 and 1.
        var maskedLogits = Logits(masked, tokens, configure: t => t.Plan = t.Plan with { HeadMask = new HeadMask(new HashSet<(int, int)> { (1, 4), (1, 5), (3, 0), (3, 1) }) });
        using var pruned = TinyModel();
        long bytes = pruned.WeightBytes;
        HeadPruner.Remove(pruned, new[] { (1, 2), (3, 0) });
        Assert.Equal(new[] { 8, 6, 8, 6 }, pruned.Layers.Select(l => l.Heads));
        Assert.Equal(new[] { 4, 3, 4, 3 }, pruned.Layers.Select(l => l.KvHeads));
        Assert.Equal(48, pruned.Layers[1].Query.Rows);
        Assert.Equal(48, pruned.Layers[1].Output.Columns);
        Assert.True(pruned.WeightBytes < bytes);
        AssertClose(maskedLogits, Logits(pruned, tokens), 1e-5f);
        // ...and differs from the unpruned model (the heads mattered).
        using var full = TinyModel();
        Assert.NotEqual(Logits(full, tokens), maskedLogits);
        // The KV cache holds 2 fewer KV heads' worth of tokens.
        using var ops = new HostOps();
        using var t1 = new Transformer(full, ops);
        using var t2 = new Transformer(pruned, ops);
        using var c1 = t1.CreateCache(64);
        using var c2 = t2.CreateCache(64);
        t1.Forward(tokens, 0, c1, LogitsMode.None);
        t2.Forward(tokens, 0, c2, LogitsMode.None);
        Assert.Equal(c1.BytesUsed * 14 / 16, c2.BytesUsed);
    }

    [Fact]
    public void Head_pruning_selection_keeps_a_unit_per_layer_and_rejects_bad_requests()
    {
        using var model = TinyModel();
        // Layer 0's heads all score 0 (the least important), but it must keep one of its 4 units.
        var scores = model.Layers.Select((l, i) => Enumerable.Range(0, l.Heads).Select(h => i == 0 ? 0.0 : 1.0 + h).ToArray()).ToArray();
        var chosen = HeadPruner.SelectLeastImportant(model, scores, 0.5);
        Assert.Equal(8, chosen.Count);
        Assert.Equal(3, chosen.Count(g => g.Layer == 0));
        Assert.Equal(new[] { 0, 1, 2 }, chosen.Where(g => g.Layer == 0).Select(g => g.KvHead).Order());
        Assert.All(Enumerable.Range(1, 3), l => Assert.Equal(chosen.Where(g => g.Layer == l).Select(g => g.KvHead).Order(), chosen.Where(g => g.Layer == l).Select(g => g.KvHead).Order().Where(k => k <= 1)));
        Assert.Throws<InvalidOperationException>(() => HeadPruner.Remove(model, Enumerable.Range(0, 4).Select(g => (0, g))));
        Assert.Throws<ArgumentOutOfRangeException>(() => HeadPruner.Remove(model, new[] { (0, 4) }));
        Assert.Throws<ArgumentOutOfRangeException>(() => HeadPruner.SelectLeastImportant(model, scores, 1.0));
        model.Layers[2].SharesKvWith = 1;
        Assert.Throws<InvalidOperationException>(() => HeadPruner.Remove(model, new[] { (1, 0) }));
    }

    /// <summary>‖W_q rows‖² of each query head: a score that travels with a head when others are removed.</summary>
    private static double[][] QueryRowEnergy(LlamaModel model) => model.Layers.Select(layer =>
    {
        var q = (DenseMatrix)layer.Query;
        int d = model.Config.HeadDim;
        var row = new float[q.Columns];
        return Enumerable.Range(0, layer.Heads).Select(h =>
        {
            double e = 0;
            for (int r = h * d; r < (h + 1) * d; r++)
            {
                q.ReadRow(r, row);
                e += row.Sum(x => (double)x * x);
            }
            return e;
        }).ToArray();
    }).ToArray();

    /// <summary>
    /// A score that does not depend on which heads are gone makes iterative pruning pick the
    /// one-shot set, so the original-numbering bookkeeping is checked exactly: the units it returns,
    /// removed from a fresh copy, give the working model's logits. A score that does (re-scored
    /// after each step) is called once per step on the shrinking model.
    /// </summary>
    [Fact]
    public void Iterative_head_pruning_returns_original_units_and_rescores_each_step()
    {
        using var working = TinyModel();
        var calls = new List<int>();
        var steps = HeadPruner.Iterative(working, [0.25, 0.5], m =>
        {
            calls.Add(m.Layers.Sum(l => l.KvHeads));
            return QueryRowEnergy(m);
        });
        Assert.Equal([16, 12], calls); // 4 units removed per step, scored again on the pruned model
        Assert.Equal(4, steps[0].Length);
        Assert.Equal(8, steps[1].Length);
        Assert.Equal(steps[0], steps[1][..4]);
        using var fresh = TinyModel();
        var oneShot = HeadPruner.SelectLeastImportant(fresh, QueryRowEnergy(fresh), 0.5).Select(g => (g.Layer, g.KvHead)).Order().ToArray();
        Assert.Equal(oneShot, steps[1].Order().ToArray());
        HeadPruner.Remove(fresh, steps[1]);
        var tokens = Tokens(24, Tiny.Vocab);
        Assert.Equal(Logits(working, tokens), Logits(fresh, tokens));
        Assert.Throws<ArgumentOutOfRangeException>(() => HeadPruner.Iterative(TinyModel(), [0.5, 0.25], QueryRowEnergy));
    }

    [Fact]
    public void A_head_that_writes_nothing_has_zero_importance_on_both_metrics()
    {
        using var model = TinyModel();
        // Zero the W_O columns of layer 2, head 3: the head contributes nothing to the residual stream.
        var o = (DenseMatrix)model.Layers[2].Output;
        var values = new float[o.Rows * o.Columns];
        for (int r = 0; r < o.Rows; r++)
        {
            o.ReadRow(r, values.AsSpan(r * o.Columns, o.Columns));
            values.AsSpan(r * o.Columns + 3 * 8, 8).Clear();
        }
        model.Layers[2].Output = DenseMatrix.FromSingle(o.Name, o.Rows, o.Columns, values);
        o.Dispose();
        var data = new CalibrationSet(new[] { Tokens(24, Tiny.Vocab), Tokens(24, Tiny.Vocab, 99) });
        using var ops = new HostOps();
        using var t = new Transformer(model, ops, maxBatch: 32);
        var norms = HeadImportance.OutputNorm(t, data);
        var increase = HeadImportance.PerplexityIncrease(t, data, out double basePpl);
        Assert.Equal(0, norms[2][3]);
        Assert.True(norms[2][2] > 0);
        Assert.Equal(0, increase[2][3], 12);
        Assert.True(basePpl > 1);
        Assert.Equal(4, norms.Length);
        Assert.All(norms, layer => Assert.Equal(8, layer.Length));
    }

    [Fact]
    public void Removing_a_layer_equals_skipping_it_and_a_no_op_layer_has_zero_block_influence()
    {
        var tokens = Tokens(30, Tiny.Vocab);
        using var skipped = TinyModel();
        var skippedLogits = Logits(skipped, tokens, configure: t => t.Plan = t.Plan with { SkipLayers = new HashSet<int> { 2 } });
        using var removed = TinyModel();
        LayerRemoval.Remove(removed, new[] { 2 });
        Assert.Equal(3, removed.Config.Layers);
        Assert.Equal(skippedLogits, Logits(removed, tokens));

        // Layer 1 with zero W_o and W_down leaves the residual stream unchanged: BI = 0, d(1, 2) = 0.
        using var model = TinyModel();
        MakeIdentity(model, 1);
        var data = new CalibrationSet(new[] { Tokens(20, Tiny.Vocab), Tokens(20, Tiny.Vocab, 7) });
        using var ops = new HostOps();
        using var t = new Transformer(model, ops, maxBatch: 32);
        var scores = LayerRemoval.Measure(t, data);
        Assert.Equal(0, scores.BlockInfluence[1], 6);
        Assert.Equal(0, scores.AngularDistance[1, 2], 3);
        Assert.All(new[] { 0, 2, 3 }, l => Assert.True(scores.BlockInfluence[l] > 1e-4));
        Assert.Equal(new[] { 1 }, scores.LowestInfluence(1));
        Assert.Equal(new[] { 1 }, scores.MostRedundantBlock(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => scores.LowestInfluence(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => LayerRemoval.Remove(model, new[] { 4 }));
    }

    [Fact]
    public void Removing_layers_reindexes_kv_sharing_and_refuses_to_orphan_a_sharer()
    {
        using var model = TinyModel();
        KvSharer.Apply(model, new Dictionary<int, int> { [3] = 2 });
        Assert.Throws<InvalidOperationException>(() => LayerRemoval.Remove(model, new[] { 2 }));
        LayerRemoval.Remove(model, new[] { 0 });
        Assert.Equal(new[] { -1, -1, 1 }, model.Layers.Select(l => l.SharesKvWith));
    }

    [Fact]
    public void Sharing_the_kv_of_an_identical_earlier_layer_is_exact_and_stores_one_layer_less()
    {
        // Layer 0 writes nothing (zero W_o, W_down), so layer 1 sees the same input; give layer 1
        // layer 0's attention norm and K/V weights: its own K/V would equal layer 0's exactly.
        using var model = TinyModel();
        MakeIdentity(model, 0);
        var l0 = model.Layers[0];
        var l1 = model.Layers[1];
        l0.AttentionNorm.CopyTo(l1.AttentionNorm, 0);
        l1.Key = MatrixSlicing.SelectRows(l0.Key, Enumerable.Range(0, l0.Key.Rows).ToArray());
        l1.Value = MatrixSlicing.SelectRows(l0.Value, Enumerable.Range(0, l0.Value.Rows).ToArray());
        var tokens = Tokens(37, Tiny.Vocab);
        var own = Logits(model, tokens);
        using var ops = new HostOps();
        long ownBytes, sharedBytes;
        using (var t = new Transformer(model, ops))
        using (var c = t.CreateCache(64))
        {
            t.Forward(tokens, 0, c, LogitsMode.None);
            ownBytes = c.BytesUsed;
        }
        KvSharer.Apply(model, new Dictionary<int, int> { [1] = 0 });
        Assert.Equal(own, Logits(model, tokens));
        using (var t = new Transformer(model, ops))
        using (var c = t.CreateCache(64))
        {
            t.Forward(tokens, 0, c, LogitsMode.None);
            sharedBytes = c.BytesUsed;
        }
        Assert.Equal(ownBytes * 3 / 4, sharedBytes);
        // Token-by-token decode reads the shared cache the same way.
        var stepwise = new float[Tiny.Vocab];
        using (var t = new Transformer(model, ops))
        using (var c = t.CreateCache(64))
        {
            for (int i = 0; i < tokens.Length; i++)
            {
                t.Forward(new[] { tokens[i] }, i, c, LogitsMode.Last);
            }
            t.ReadLogits(0, stepwise);
        }
        AssertClose(own[^Tiny.Vocab..], stepwise, 1e-5f);
    }

    [Fact]
    public void Kv_share_specs_parse_and_validate()
    {
        Assert.Empty(KvSharer.Parse("none", 4));
        Assert.Equal(new Dictionary<int, int> { [1] = 0, [3] = 2 }, KvSharer.Parse("every:2", 4));
        Assert.Equal(new Dictionary<int, int> { [1] = 0, [2] = 0, [4] = 3 }, KvSharer.Parse("every:3", 5));
        Assert.Equal(new Dictionary<int, int> { [3] = 1, [2] = 0 }, KvSharer.Parse("3:1, 2:0", 4));
        Assert.Throws<ArgumentException>(() => KvSharer.Parse("3-1", 4));
        using var model = TinyModel();
        Assert.Contains("earlier layer", Assert.Throws<ArgumentOutOfRangeException>(() => KvSharer.Apply(model, new Dictionary<int, int> { [1] = 2 })).Message);
        Assert.Contains("has layers 0..", Assert.Throws<ArgumentOutOfRangeException>(() => KvSharer.Apply(model, new Dictionary<int, int> { [9] = 1 })).Message);
        Assert.Throws<ArgumentException>(() => KvSharer.Apply(model, new Dictionary<int, int> { [1] = 0, [2] = 1 }));
        HeadPruner.Remove(model, new[] { (2, 0) });
        Assert.Throws<ArgumentException>(() => KvSharer.Apply(model, new Dictionary<int, int> { [2] = 1 }));
    }

    [Fact]
    public void Kvsharer_dissimilarity_is_symmetric_and_the_search_respects_its_threshold()
    {
        using var model = TinyModel();
        var data = new CalibrationSet(new[] { Tokens(16, Tiny.Vocab), Tokens(16, Tiny.Vocab, 5) });
        using var ops = new HostOps();
        using var t = new Transformer(model, ops, maxBatch: 16);
        var d = KvSharer.Dissimilarity(t, data);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(0, d[i, i]);
            for (int j = 0; j < 4; j++)
            {
                Assert.Equal(d[i, j], d[j, i], 9);
                Assert.True(i == j || d[i, j] > 0);
            }
        }
        var none = KvSharer.Search(t, data, 3, threshold: 1.01);
        Assert.Empty(none.Shares);
        Assert.All(model.Layers, l => Assert.Equal(-1, l.SharesKvWith));
        Assert.All(none.Trials, x => Assert.False(x.Accepted));
        var all = KvSharer.Search(t, data, 2, threshold: -1.01);
        Assert.Equal(2, all.Shares.Count);
        // The first trial is the most dissimilar pair.
        var first = all.Trials[0];
        Assert.Equal(Enumerable.Range(0, 4).SelectMany(i => Enumerable.Range(0, i).Select(j => d[i, j])).Max(), first.Dissimilarity, 9);
        Assert.All(all.Shares, s => Assert.Equal(s.Value, model.Layers[s.Key].SharesKvWith));
    }

    [Fact]
    public void Token_pruning_with_keep_ratio_one_or_everything_protected_leaves_logits_identical()
    {
        using var model = TinyModel();
        var tokens = Tokens(120, Tiny.Vocab);
        var dense = Logits(model, tokens, LogitsMode.Last);
        Assert.Equal(dense, Logits(model, tokens, LogitsMode.Last, t => t.Plan = t.Plan with { TokenPruning = new PromptTokenPruner(new TokenPruneOptions { Ratio = 1, StageLayers = new[] { 1, 2, 3 } }) }));
        Assert.Equal(dense, Logits(model, tokens, LogitsMode.Last, t => t.Plan = t.Plan with { TokenPruning = new PromptTokenPruner(new TokenPruneOptions { Ratio = 0.5, StageLayers = new[] { 1, 2, 3 }, RecentFraction = 1 }) }));
        // All-logits batches (perplexity) are never pruned.
        Assert.Equal(Logits(model, tokens), Logits(model, tokens, LogitsMode.All, t => t.Plan = t.Plan with { TokenPruning = new PromptTokenPruner(new TokenPruneOptions { Ratio = 0.5, StageLayers = new[] { 1 } }) }));
    }

    [Fact]
    public void Token_pruning_follows_the_schedule_and_later_layers_cache_only_kept_tokens()
    {
        using var model = TinyModel();
        var tokens = Tokens(200, Tiny.Vocab);
        using var ops = new HostOps();
        using var t = new Transformer(model, ops, maxBatch: 256) { Plan = new ForwardPlan { TokenPruning = new PromptTokenPruner(new TokenPruneOptions { Ratio = 0.8, StageLayers = new[] { 1, 3 } }) } };
        using var cache = (HostKvCache)t.CreateCache(256);
        t.Forward(tokens, 0, cache, LogitsMode.Last);
        // Stage 1 keeps ⌈0.8·200⌉ = 160, stage 2 ⌈0.64·200⌉ = 128.
        Assert.Equal(new[] { 200, 160, 160, 128 }, t.LastTokenPruning!.TokensPerLayer);
        Assert.Equal((200 + 160 + 160 + 128) / 800.0, t.LastTokenPruning.LayerTokenFraction, 9);
        for (int l = 0; l < 4; l++)
        {
            Assert.Equal(t.LastTokenPruning.TokensPerLayer[l], cache.Count(l, 0));
        }
        // Sinks (positions 0..3) and the most recent 10% (positions 180..199) survive every stage.
        var kept = cache.Get(3, 0).Positions.Take(128).ToArray();
        Assert.Equal(kept.Order(), kept);
        Assert.All(Enumerable.Range(0, 4).Concat(Enumerable.Range(180, 20)), p => Assert.Contains(p, kept));
        // Later-layer caches are subsets of earlier ones, and decoding continues at the next position.
        Assert.Subset(cache.Get(1, 0).Positions.Take(160).ToHashSet(), kept.ToHashSet());
        t.Forward(new[] { 5 }, 200, cache, LogitsMode.Last);
        Assert.Equal(129, cache.Count(3, 0));
        Assert.Equal(201, cache.Count(0, 0));
        var logits = new float[Tiny.Vocab];
        t.ReadLogits(0, logits);
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void Pruned_prefill_equals_a_dense_run_of_the_kept_tokens_in_the_pruned_layers()
    {
        // One stage before the last layer: layers 0..2 see all tokens; layer 3 sees only the kept
        // ones. Equivalent: run layers 0..2 densely, then layer 3 alone on the kept rows at their
        // positions into a fresh cache — the last row's hidden state must match.
        using var model = TinyModel();
        var tokens = Tokens(64, Tiny.Vocab);
        using var ops = new HostOps();
        var options = new TokenPruneOptions { Ratio = 0.5, StageLayers = new[] { 3 }, SinkTokens = 2, RecentFraction = 0.05, Window = 8 };
        using var t = new Transformer(model, ops, maxBatch: 64) { Plan = new ForwardPlan { TokenPruning = new PromptTokenPruner(options) } };
        using var cache = (HostKvCache)t.CreateCache(64);
        t.Forward(tokens, 0, cache, LogitsMode.Last);
        var pruned = new float[Tiny.Vocab];
        t.ReadLogits(0, pruned);
        var keptPositions = cache.Get(3, 0).Positions.Take(cache.Count(3, 0)).ToArray();
        Assert.Equal(32, keptPositions.Length);

        using var reference = new Transformer(model, ops, maxBatch: 64);
        using var c2 = (HostKvCache)reference.CreateCache(64);
        var hidden = reference.Embed(tokens);
        for (int l = 0; l < 3; l++)
        {
            reference.ForwardLayer(l, hidden, 0, c2);
        }
        int dim = Tiny.Dim;
        var keptHidden = keptPositions.SelectMany(p => hidden.AsSpan(p * dim, dim).ToArray()).ToArray();
        // Layer 3 over the kept rows at their true positions, then the final norm and classifier.
        var expected = LastLayerOnRows(model, ops, keptHidden, keptPositions);
        Assert.Equal(tokens.Length - 1, keptPositions[^1]);
        AssertClose(expected, pruned, 1e-4f);

        // The kept set is the rule applied to the saliency recomputed naively from layer 2's queries and keys.
        Assert.Equal(keptPositions, ExpectedKept(model, tokens, options));
    }

    /// <summary>Logits of the last row after running layer 3 on rows at the given positions (scalar re-implementation of attention).</summary>
    private static float[] LastLayerOnRows(LlamaModel model, HostOps ops, float[] rows, int[] positions)
    {
        // Build a 1-layer view of layer 3 and run it with explicit positions through a fresh transformer:
        // positions are not contiguous, so attention is computed by a transformer fed one row at a time.
        var view = new LlamaModel(model.Config with { Layers = 1 }, model.TokenEmbedding, new[] { model.Layers[3] }, model.FinalNorm, model.Classifier, "layer-3 view");
        using var t = new Transformer(view, ops, maxBatch: 1);
        using var cache = t.CreateCache(model.Config.MaxSequenceLength);
        int dim = model.Config.Dim;
        var row = new float[dim];
        for (int i = 0; i < positions.Length; i++)
        {
            rows.AsSpan(i * dim, dim).CopyTo(row);
            t.ForwardLayer(0, row, positions[i], cache);
            row.CopyTo(rows.AsSpan(i * dim, dim));
        }
        // Final norm + classifier of the last row.
        var last = rows.AsSpan((positions.Length - 1) * dim, dim).ToArray();
        var normed = new float[dim];
        Kernels.Simd.Reference.ScalarReference.RmsNorm(last, model.FinalNorm, normed, model.Config.NormEpsilon);
        var logits = new float[model.Config.VocabSize];
        model.Classifier.Multiply(normed, logits, 1);
        return logits;
    }

    /// <summary>Kept positions by the SDTP rule with saliency recomputed naively from layer 2's queries and keys.</summary>
    private static int[] ExpectedKept(LlamaModel model, int[] tokens, TokenPruneOptions o)
    {
        using var ops = new HostOps();
        using var t = new Transformer(model, ops, maxBatch: tokens.Length);
        using var cache = (HostKvCache)t.CreateCache(tokens.Length);
        var hidden = t.Embed(tokens);
        for (int l = 0; l < 2; l++)
        {
            t.ForwardLayer(l, hidden, 0, cache);
        }
        // Queries of layer 2 = RoPE(W_q · RMSNorm(x)) for the last w rows; keys from its cache after running it.
        var layer = model.Layers[2];
        int n = tokens.Length, dim = model.Config.Dim, d = model.Config.HeadDim, heads = layer.Heads, group = heads / layer.KvHeads;
        var qAll = new float[n * heads * d];
        var normed = new float[dim];
        for (int i = 0; i < n; i++)
        {
            Kernels.Simd.Reference.ScalarReference.RmsNorm(hidden.AsSpan(i * dim, dim), layer.AttentionNorm, normed, model.Config.NormEpsilon);
            layer.Query.Multiply(normed, qAll.AsSpan(i * heads * d, heads * d), 1);
        }
        t.ForwardLayer(2, hidden, 0, cache);
        var saliency = new double[n];
        for (int i = n - o.Window; i < n; i++)
        {
            for (int h = 0; h < heads; h++)
            {
                var q = qAll.AsSpan((i * heads + h) * d, d).ToArray();
                Kernels.Simd.Rope.ApplyInterleaved(q, d, t.Rope.Cos(i), t.Rope.Sin(i));
                var head = cache.Get(2, h / group);
                var s = new double[i + 1];
                for (int j = 0; j <= i; j++)
                {
                    double dot = 0;
                    for (int c = 0; c < d; c++)
                    {
                        dot += q[c] * head.Keys[j * d + c];
                    }
                    s[j] = dot / Math.Sqrt(d);
                }
                double max = s.Max(), sum = s.Sum(v => Math.Exp(v - max));
                for (int j = 0; j <= i; j++)
                {
                    saliency[j] += Math.Exp(s[j] - max) / sum;
                }
            }
        }
        int recent = (int)Math.Ceiling(o.RecentFraction * n);
        var protectedSet = Enumerable.Range(0, n).Where(p => p < o.SinkTokens || p >= n - recent).ToList();
        int target = (int)Math.Ceiling(o.Ratio * n);
        var rest = Enumerable.Range(0, n).Except(protectedSet).OrderByDescending(p => saliency[p]).ThenBy(p => p).Take(target - protectedSet.Count);
        return protectedSet.Concat(rest).Order().ToArray();
    }

    private static void MakeIdentity(LlamaModel model, int layer)
    {
        var l = model.Layers[layer];
        var (o, down) = (l.Output, l.Down);
        l.Output = new DenseMatrix(o.Name, o.Rows, o.Columns, ElementType.F32);
        l.Down = new DenseMatrix(down.Name, down.Rows, down.Columns, ElementType.F32);
        o.Dispose();
        down.Dispose();
    }

    [Fact]
    public void Token_pruning_rejects_bad_options_and_kv_sharing_across_a_stage()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenPruneOptions { Ratio = 0, StageLayers = new[] { 1 } }.Validated(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenPruneOptions { StageLayers = new[] { 2, 2 } }.Validated(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenPruneOptions { StageLayers = new[] { 0 } }.Validated(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenPruneOptions { StageLayers = new[] { 4 } }.Validated(4));
        Assert.Equal(new[] { 4, 7, 10, 13, 16, 19 }, TokenPruneOptions.DefaultStages(22));
        Assert.Equal(new[] { 4, 7, 10, 13, 16, 19, 22, 25, 28, 31 }, TokenPruneOptions.DefaultStages(32));
        Assert.Equal(new[] { 1, 2, 3, 4 }, TokenPruneOptions.DefaultStages(5));
        Assert.Equal(0.349, Math.Pow(0.9, 10), 3);
        Assert.Equal(0.35, Math.Pow(TokenPruneOptions.RatioForFinalKeep(0.35, 6), 6), 9);
        using var model = TinyModel();
        KvSharer.Apply(model, new Dictionary<int, int> { [2] = 0 });
        using var ops = new HostOps();
        using var t = new Transformer(model, ops, maxBatch: 16) { Plan = new ForwardPlan { TokenPruning = new PromptTokenPruner(new TokenPruneOptions { StageLayers = new[] { 1 } }) } };
        using var cache = t.CreateCache(16);
        Assert.Throws<InvalidOperationException>(() => t.Forward(Tokens(16, Tiny.Vocab), 0, cache, LogitsMode.Last));
        using var small = new Transformer(model, ops, maxBatch: 8) { Plan = new ForwardPlan { TokenPruning = new PromptTokenPruner(new TokenPruneOptions { StageLayers = new[] { 3 } }) } };
        Assert.Throws<InvalidOperationException>(() => small.Forward(Tokens(16, Tiny.Vocab), 0, cache, LogitsMode.Last));
    }

    [Fact]
    public void Keep_set_rule_protects_sinks_and_recent_tokens_and_takes_the_top_scores()
    {
        var positions = Enumerable.Range(10, 20).ToArray();   // a prompt at positions 10..29 (sinks are positions 0..3: none here)
        var saliency = positions.Select(p => p == 15 ? 9f : p == 12 ? 8f : p == 20 ? 8f : 0f).ToArray();
        var kept = TokenSaliency.SelectKept(saliency, positions, promptLength: 20, promptEnd: 30, target: 5, sinkTokens: 4, recentFraction: 0.1);
        Assert.Equal(new[] { 2, 5, 10, 18, 19 }, kept);
        var withSinks = TokenSaliency.SelectKept(new float[10], Enumerable.Range(0, 10).ToArray(), 10, 10, 3, 4, 0.1);
        Assert.Equal(new[] { 0, 1, 2, 3, 9 }, withSinks);
    }

    [Fact]
    public void Prompt_fraction_scores_only_the_continuation_and_matches_the_full_window_nll()
    {
        using var model = TinyModel();
        var tokens = Tokens(300, Tiny.Vocab, 3);
        using var ops = new HostOps();
        using var t = new Transformer(model, ops, maxBatch: 128);
        var full = new PerplexityEvaluator(t).Evaluate(tokens, 100, 1);
        var cont = new PerplexityEvaluator(t) { PromptFraction = 0.75 }.Evaluate(tokens, 100, 1);
        Assert.Equal(3 * 26, cont.Tokens);
        // The continuation NLL equals the per-token NLL of the same targets in a full-window run.
        var logits = new float[Tiny.Vocab];
        double expected = 0;
        using var cache = t.CreateCache(100);
        for (int w = 0; w < 3; w++)
        {
            var inputs = new[] { 1 }.Concat(tokens.Skip(w * 100).Take(99)).ToArray();
            cache.Reset();
            t.Forward(inputs, 0, cache, LogitsMode.All);
            for (int j = 74; j < 100; j++)
            {
                t.ReadLogits(j, logits);
                expected += PerplexityEvaluator.NegativeLogLikelihood(logits, tokens[w * 100 + j]);
            }
        }
        Assert.InRange(Math.Abs(expected - cont.TotalNll), 0, 1e-3);
        Assert.Equal(300, full.Tokens);
    }

    [DataFact]
    public void Simplified_stories260K_round_trips_through_gguf_with_identical_logits()
    {
        var (model, tok) = ModelFixtures.LoadStoriesBin();
        using var _ = model;
        HeadPruner.Remove(model, new[] { (0, 1), (3, 2) });
        LayerRemoval.Remove(model, new[] { 2 });
        KvSharer.Apply(model, new Dictionary<int, int> { [3] = 1 });
        var tokens = tok.Encode("Once upon a time, there was a little girl named Lily.", true, false);
        var before = Logits(model, tokens);
        using var tmp = new TempDir();
        model.Vocabulary ??= (tok as Kernels.Runtime.Tokenization.BpeTokenizer)?.Vocabulary;
        GgufWriter.WriteModel(model, tmp.File("s.gguf"), ElementType.F32);
        using var loaded = ModelLoader.Load(tmp.File("s.gguf"));
        Assert.Equal(new[] { 6, 8, 6, 8 }, loaded.Layers.Select(l => l.Heads));
        Assert.Equal(new[] { 3, 4, 3, 4 }, loaded.Layers.Select(l => l.KvHeads));
        Assert.Equal(new[] { -1, -1, -1, 1 }, loaded.Layers.Select(l => l.SharesKvWith));
        Assert.Equal(before, Logits(loaded, tokens));
    }

    [DataFact]
    public void Sdtp_on_stories260K_prunes_the_prompt_and_keeps_continuation_perplexity_close()
    {
        var (model, tok) = ModelFixtures.LoadStoriesBin();
        using var _ = model;
        int[] tokens = tok.Encode(PerplexityText(), false, false)[..2048];
        using var ops = new HostOps();
        using var t = new Transformer(model, ops, maxBatch: 256);
        var dense = new PerplexityEvaluator(t) { PromptFraction = 0.75 }.Evaluate(tokens, 256, tok.Bos);
        t.Plan = t.Plan with { TokenPruning = new PromptTokenPruner(new TokenPruneOptions { Ratio = 0.9, StageLayers = TokenPruneOptions.DefaultStages(model.Layers.Count) }) };
        var pruned = new PerplexityEvaluator(t) { PromptFraction = 0.75 }.Evaluate(tokens, 256, tok.Bos);
        Assert.True(t.LastTokenPruning!.LayerTokenFraction < 0.85);
        Assert.InRange(pruned.Perplexity / dense.Perplexity, 0.98, 1.05);
        // One random draw can get lucky (1 of 12 seeds beat attention here): compare with the median of 5.
        var random = Enumerable.Range(1, 5).Select(seed =>
        {
            t.Plan = t.Plan with { TokenPruning = new PromptTokenPruner(t.Plan.TokenPruning!.Options with { Saliency = TokenSaliencyKind.Random, Seed = seed }) };
            return new PerplexityEvaluator(t) { PromptFraction = 0.75 }.Evaluate(tokens, 256, tok.Bos).Perplexity;
        }).Order().ToArray()[2];
        Assert.True(pruned.Perplexity < random, $"attention saliency {pruned.Perplexity} vs median random {random}");
    }

    private static string PerplexityText() => File.ReadAllText(TestData.File_("tinystories_valid_sample.txt"))[..40000];
}
