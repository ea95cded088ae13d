using Kernels.Runtime.Model;

namespace Kernels.Runtime.Simplification;

/// <summary>
/// A unit of head pruning: KV head <see cref="KvHead"/> of a layer together with the query heads
/// that read it (GQA: a KV head can only go with its whole query group; with MHA a unit is one head).
/// </summary>
public sealed record HeadGroup(int Layer, int KvHead, IReadOnlyList<int> QueryHeads, double Score);

/// <summary>
/// Physically removes attention heads: rows of W_q, W_k, W_v and the matching columns of W_o,
/// so the model and its KV cache shrink. Weights must still be dense.
/// </summary>
public static class HeadPruner
{
    /// <summary>Every prunable unit with its score = Σ of its query heads' (per-layer L2-normalized) importances.</summary>
    public static IReadOnlyList<HeadGroup> Groups(LlamaModel model, double[][] headScores)
    {
        if (headScores.Length != model.Layers.Count)
        {
            throw new ArgumentException($"{headScores.Length} layers of head scores for a {model.Layers.Count}-layer model");
        }
        var normalized = HeadImportance.NormalizePerLayer(headScores);
        var groups = new List<HeadGroup>();
        for (int l = 0; l < model.Layers.Count; l++)
        {
            var layer = model.Layers[l];
            if (normalized[l].Length != layer.Heads)
            {
                throw new ArgumentException($"layer {l}: {normalized[l].Length} head scores for {layer.Heads} heads");
            }
            int group = layer.Heads / layer.KvHeads;
            for (int g = 0; g < layer.KvHeads; g++)
            {
                var heads = Enumerable.Range(g * group, group).ToArray();
                groups.Add(new HeadGroup(l, g, heads, heads.Sum(h => normalized[l][h])));
            }
        }
        return groups;
    }

    /// <summary>
    /// The round(<paramref name="fraction"/> · units) least important units, globally ranked; every
    /// layer keeps at least one unit (a layer with no heads is layer removal, a separate method).
    /// </summary>
    public static IReadOnlyList<HeadGroup> SelectLeastImportant(LlamaModel model, double[][] headScores, double fraction)
    {
        if (!(fraction >= 0 && fraction < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(fraction), $"head fraction {fraction} must be in [0, 1)");
        }
        return SelectLeastImportant(model, headScores, (int)Math.Round(fraction * model.Layers.Sum(l => l.KvHeads)));
    }

    /// <summary>The <paramref name="count"/> least important units, globally ranked; every layer keeps at least one unit.</summary>
    public static IReadOnlyList<HeadGroup> SelectLeastImportant(LlamaModel model, double[][] headScores, int count)
    {
        var groups = Groups(model, headScores);
        int want = count;
        var left = model.Layers.Select(l => l.KvHeads).ToArray();
        var chosen = new List<HeadGroup>();
        foreach (var g in groups.OrderBy(g => g.Score).ThenBy(g => g.Layer).ThenBy(g => g.KvHead))
        {
            if (chosen.Count == want)
            {
                break;
            }
            if (left[g.Layer] > 1)
            {
                left[g.Layer]--;
                chosen.Add(g);
            }
        }
        return chosen;
    }

    /// <summary>
    /// Iterative pruning: for each cumulative fraction (of the units <paramref name="working"/> has
    /// now, ascending), scores the current model, removes the least important units up to that
    /// fraction, and re-scores before the next step, so interactions between removed units count.
    /// <paramref name="working"/> is pruned in place. Returns, per fraction, every unit removed so
    /// far in the original (layer, KV head) numbering, to apply to a fresh copy of the model.
    /// </summary>
    public static IReadOnlyList<(int Layer, int KvHead)[]> Iterative(LlamaModel working, IReadOnlyList<double> fractions, Func<LlamaModel, double[][]> score)
    {
        int units = working.Layers.Sum(l => l.KvHeads);
        // Original KV-head ids of each layer's current heads (removal renumbers the survivors).
        var original = working.Layers.Select(l => Enumerable.Range(0, l.KvHeads).ToList()).ToArray();
        var removed = new List<(int Layer, int KvHead)>();
        var steps = new List<(int, int)[]>();
        double last = 0;
        foreach (double fraction in fractions)
        {
            if (!(fraction >= last && fraction < 1))
            {
                throw new ArgumentOutOfRangeException(nameof(fractions), $"fractions must ascend in [0, 1) (got {fraction} after {last})");
            }
            last = fraction;
            int more = (int)Math.Round(fraction * units) - removed.Count;
            if (more > 0)
            {
                var chosen = SelectLeastImportant(working, score(working), more);
                var batch = chosen.Select(g => (g.Layer, original[g.Layer][g.KvHead])).ToArray();
                Remove(working, chosen.Select(g => (g.Layer, g.KvHead)));
                foreach (var byLayer in chosen.GroupBy(g => g.Layer))
                {
                    foreach (int kv in byLayer.Select(g => g.KvHead).OrderDescending())
                    {
                        original[byLayer.Key].RemoveAt(kv);
                    }
                }
                removed.AddRange(batch);
            }
            steps.Add(removed.ToArray());
        }
        return steps;
    }

    /// <summary>Removes the listed (layer, KV head) units with their query heads from the model in place.</summary>
    public static void Remove(LlamaModel model, IEnumerable<(int Layer, int KvHead)> units)
    {
        int d = model.Config.HeadDim;
        foreach (var byLayer in units.GroupBy(u => u.Layer))
        {
            int l = byLayer.Key;
            if ((uint)l >= (uint)model.Layers.Count)
            {
                throw new ArgumentOutOfRangeException(nameof(units), $"layer {l} outside 0..{model.Layers.Count - 1}");
            }
            var layer = model.Layers[l];
            var removed = byLayer.Select(u => u.KvHead).ToHashSet();
            if (removed.Any(g => (uint)g >= (uint)layer.KvHeads))
            {
                throw new ArgumentOutOfRangeException(nameof(units), $"layer {l} has KV heads 0..{layer.KvHeads - 1} (asked to remove {string.Join(",", removed)})");
            }
            if (removed.Count >= layer.KvHeads)
            {
                throw new InvalidOperationException($"layer {l}: removing all {layer.KvHeads} KV heads would leave no attention (remove the layer instead)");
            }
            if (layer.SharesKvWith >= 0 || model.Layers.Any(o => o.SharesKvWith == l))
            {
                throw new InvalidOperationException($"layer {l} takes part in cross-layer KV sharing: prune heads before sharing");
            }
            int group = layer.Heads / layer.KvHeads;
            var keptKv = Enumerable.Range(0, layer.KvHeads).Where(g => !removed.Contains(g)).ToArray();
            var keptQ = keptKv.SelectMany(g => Enumerable.Range(g * group, group)).ToArray();
            int[] Rows(IEnumerable<int> heads) => heads.SelectMany(h => Enumerable.Range(h * d, d)).ToArray();
            var qRows = Rows(keptQ);
            var kvRows = Rows(keptKv);
            var old = (layer.Query, layer.Key, layer.Value, layer.Output);
            layer.Query = MatrixSlicing.SelectRows(old.Query, qRows);
            layer.Key = MatrixSlicing.SelectRows(old.Key, kvRows);
            layer.Value = MatrixSlicing.SelectRows(old.Value, kvRows);
            layer.Output = MatrixSlicing.SelectColumns(old.Output, qRows);
            layer.QueryBias = layer.QueryBias is { } qb ? qRows.Select(r => qb[r]).ToArray() : null;
            layer.KeyBias = layer.KeyBias is { } kb ? kvRows.Select(r => kb[r]).ToArray() : null;
            layer.ValueBias = layer.ValueBias is { } vb ? kvRows.Select(r => vb[r]).ToArray() : null;
            layer.Heads = keptQ.Length;
            layer.KvHeads = keptKv.Length;
            old.Query.Dispose();
            old.Key.Dispose();
            old.Value.Dispose();
            old.Output.Dispose();
        }
        model.Revalidate();
    }
}
