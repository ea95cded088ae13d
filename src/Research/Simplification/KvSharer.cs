using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;
using Kernels.Runtime.Pruning;

namespace Kernels.Runtime.Simplification;

/// <summary>One tried pair of a KVSharer search: layer <paramref name="Layer"/> reading <paramref name="Source"/>'s cache.</summary>
public sealed record KvShareTrial(int Layer, int Source, double Dissimilarity, double Cosine, bool Accepted);

/// <summary>Outcome of <see cref="KvSharer.Search"/>: the pair dissimilarities, every trial, and the accepted layer → source map.</summary>
public sealed record KvShareResult(double[,] Dissimilarity, IReadOnlyList<KvShareTrial> Trials, IReadOnlyDictionary<int, int> Shares);

/// <summary>
/// Training-free cross-layer KV sharing (KVSharer, Yang et al. 2024): layer pairs are ranked by
/// the dissimilarity of their mean keys/values on calibration text, the most DISSIMILAR pairs are
/// tried first, and a pair is accepted when the cosine similarity between the flattened final
/// hidden states of the shared model and the original stays above a threshold. A sharing layer
/// skips its K/V projections and stores nothing: the cache shrinks by one layer per share.
/// </summary>
public static class KvSharer
{
    /// <summary>D(i, j) = ½(mean_t ‖K̄_i[t] − K̄_j[t]‖₂ + mean_t ‖V̄_i[t] − V̄_j[t]‖₂), K̄/V̄ averaged over windows (NaN where KV widths differ).</summary>
    public static double[,] Dissimilarity(Transformer transformer, CalibrationSet data, CancellationToken cancellationToken = default)
    {
        var model = transformer.Model;
        int layers = model.Layers.Count, d = model.Config.HeadDim;
        int length = data.Windows.Min(w => w.Length);
        var meanK = model.Layers.Select(l => new double[length * l.KvHeads * d]).ToArray();
        var meanV = model.Layers.Select(l => new double[length * l.KvHeads * d]).ToArray();
        using var cache = transformer.CreateCache(data.Windows.Max(w => w.Length));
        transformer.Ops.Require(BackendFeature.KvMemory, "KV sharing analysis");
        var memory = (IKvMemory)cache; // KvMemory: this backend's caches are IKvMemory
        foreach (var window in data.Windows)
        {
            cancellationToken.ThrowIfCancellationRequested();
            cache.Reset();
            transformer.Forward(window, 0, cache, LogitsMode.None);
            for (int l = 0; l < layers; l++)
            {
                int kvHeads = model.Layers[l].KvHeads, width = kvHeads * d;
                int source = model.Layers[l].SharesKvWith >= 0 ? model.Layers[l].SharesKvWith : l;
                for (int g = 0; g < kvHeads; g++)
                {
                    var keys = memory.Keys(source, g);
                    var values = memory.Values(source, g);
                    for (int t = 0; t < length; t++)
                    {
                        for (int j = 0; j < d; j++)
                        {
                            meanK[l][t * width + g * d + j] += keys[t * d + j];
                            meanV[l][t * width + g * d + j] += values[t * d + j];
                        }
                    }
                }
            }
        }
        var result = new double[layers, layers];
        for (int i = 0; i < layers; i++)
        {
            for (int j = 0; j < layers; j++)
            {
                result[i, j] = meanK[i].Length != meanK[j].Length ? double.NaN
                    : 0.5 * (MeanRowDistance(meanK[i], meanK[j], length) + MeanRowDistance(meanV[i], meanV[j], length)) / data.Windows.Count;
            }
        }
        return result;
    }

    /// <summary>
    /// Greedy search: pairs (i &gt; j) by descending dissimilarity; a pair is tried when layer i
    /// neither shares already nor serves as a source, and j's cache is its own (chains resolve to
    /// the root); accepted when cos(final hidden states, original) ≥ <paramref name="threshold"/>.
    /// Stops after <paramref name="targetShared"/> accepted layers. The model is left with the
    /// accepted shares applied.
    /// </summary>
    public static KvShareResult Search(Transformer transformer, CalibrationSet data, int targetShared, double threshold,
        IProgress<float>? progress = null, CancellationToken cancellationToken = default)
    {
        var model = transformer.Model;
        int layers = model.Layers.Count;
        if (targetShared < 0 || targetShared >= Math.Max(1, layers))
        {
            throw new ArgumentOutOfRangeException(nameof(targetShared), $"can share 0..{layers - 1} layers of {layers} (asked {targetShared})");
        }
        var dissimilarity = Dissimilarity(transformer, data, cancellationToken);
        var reference = FinalStates(transformer, data, cancellationToken);
        var pairs = new List<(int I, int J, double D)>();
        for (int i = 0; i < layers; i++)
        {
            for (int j = 0; j < i; j++)
            {
                if (double.IsFinite(dissimilarity[i, j]))
                {
                    pairs.Add((i, j, dissimilarity[i, j]));
                }
            }
        }
        var trials = new List<KvShareTrial>();
        var shares = model.Layers.Select((l, i) => (l.SharesKvWith, i)).Where(x => x.SharesKvWith >= 0).ToDictionary(x => x.i, x => x.SharesKvWith);
        int accepted = 0;
        var tried = new HashSet<(int, int)>();
        foreach (var (i, j, dist) in pairs.OrderByDescending(p => p.D).ThenBy(p => p.I).ThenBy(p => p.J))
        {
            if (accepted == targetShared)
            {
                break;
            }
            int source = shares.TryGetValue(j, out int root) ? root : j;
            // A chain can resolve two pairs to the same (layer, root): try each once.
            if (shares.ContainsKey(i) || shares.ContainsValue(i) || model.Layers[i].KvHeads != model.Layers[source].KvHeads || !tried.Add((i, source)))
            {
                continue;
            }
            model.Layers[i].SharesKvWith = source;
            double cos = LayerRemoval.Cosine(FinalStates(transformer, data, cancellationToken), reference);
            bool ok = cos >= threshold;
            trials.Add(new KvShareTrial(i, source, dist, cos, ok));
            if (ok)
            {
                shares[i] = source;
                accepted++;
                progress?.Report(accepted / (float)Math.Max(1, targetShared));
            }
            else
            {
                model.Layers[i].SharesKvWith = -1;
            }
        }
        return new KvShareResult(dissimilarity, trials, shares);
    }

    /// <summary>Sets layer → source sharing (validated: source earlier, same KV width, not itself sharing).</summary>
    public static void Apply(LlamaModel model, IReadOnlyDictionary<int, int> shares)
    {
        foreach (var (layer, source) in shares)
        {
            if ((uint)layer >= (uint)model.Layers.Count)
            {
                throw new ArgumentOutOfRangeException(nameof(shares), $"KV sharing names layer {layer}, but the model has layers 0..{model.Layers.Count - 1}");
            }
            if (source < 0 || source >= layer)
            {
                throw new ArgumentOutOfRangeException(nameof(shares), $"layer {layer} can only share the cache of an earlier layer 0..{layer - 1} (got {source})");
            }
            if (shares.ContainsKey(source) || model.Layers[source].SharesKvWith >= 0)
            {
                throw new ArgumentException($"layer {layer} would read layer {source}'s cache, but layer {source} itself shares another layer's cache");
            }
            if (model.Layers[layer].KvHeads != model.Layers[source].KvHeads)
            {
                throw new ArgumentException($"layer {layer} has {model.Layers[layer].KvHeads} KV heads, layer {source} has {model.Layers[source].KvHeads}: cannot share");
            }
        }
        foreach (var (layer, source) in shares)
        {
            model.Layers[layer].SharesKvWith = source;
        }
    }

    /// <summary>
    /// Parses a share specification: "none", explicit pairs "3:2,4:2" (layer:source), or
    /// "every:s" (CLA-style: in each run of s layers the later s−1 read the first one's cache).
    /// </summary>
    public static Dictionary<int, int> Parse(string spec, int layers)
    {
        var result = new Dictionary<int, int>();
        spec = spec.Trim();
        if (spec is "" or "none")
        {
            return result;
        }
        if (spec.StartsWith("every:", StringComparison.Ordinal))
        {
            int s = int.Parse(spec["every:".Length..], System.Globalization.CultureInfo.InvariantCulture);
            if (s < 1)
            {
                throw new ArgumentException($"--kv-share {spec}: the sharing factor must be ≥ 1");
            }
            for (int l = 0; l < layers; l++)
            {
                if (l % s != 0)
                {
                    result[l] = l - l % s;
                }
            }
            return result;
        }
        foreach (var part in spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var ab = part.Split(':');
            if (ab.Length != 2 || !int.TryParse(ab[0], out int layer) || !int.TryParse(ab[1], out int source))
            {
                throw new ArgumentException($"--kv-share '{spec}': expected none, every:S or layer:source pairs such as 3:2,4:2");
            }
            result[layer] = source;
        }
        return result;
    }

    /// <summary>Final hidden states (before the norm) of every window, flattened.</summary>
    private static float[] FinalStates(Transformer transformer, CalibrationSet data, CancellationToken cancellationToken)
    {
        var all = new List<float>();
        int layers = transformer.Model.Layers.Count;
        WindowPerplexity.CollectBoundaries(transformer, data, (_, states) => all.AddRange(states[layers]), cancellationToken);
        return all.ToArray();
    }

    private static double MeanRowDistance(double[] a, double[] b, int rows)
    {
        int width = a.Length / rows;
        double sum = 0;
        for (int t = 0; t < rows; t++)
        {
            double s = 0;
            for (int j = 0; j < width; j++)
            {
                double e = a[t * width + j] - b[t * width + j];
                s += e * e;
            }
            sum += Math.Sqrt(s);
        }
        return sum / rows;
    }
}
