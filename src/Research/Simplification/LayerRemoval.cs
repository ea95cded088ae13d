using System.Numerics.Tensors;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;
using Kernels.Runtime.Pruning;

namespace Kernels.Runtime.Simplification;

/// <summary>
/// Layer redundancy measured on calibration text.
/// <see cref="BlockInfluence"/>[ℓ] = 1 − mean over tokens of cos(X_ℓ, X_ℓ₊₁) (ShortGPT);
/// <see cref="AngularDistance"/>[ℓ, ℓ+n] = mean over windows of arccos(cos(x_ℓ, x_ℓ₊ₙ))/π on the
/// last token (Gromov et al.), for 0 ≤ ℓ &lt; ℓ+n ≤ layers (boundary `layers` is the final output).
/// </summary>
public sealed record LayerScores(double[] BlockInfluence, double[,] AngularDistance)
{
    public int Layers => BlockInfluence.Length;

    /// <summary>ShortGPT: the <paramref name="count"/> layers with the smallest block influence.</summary>
    public int[] LowestInfluence(int count) =>
        Enumerable.Range(0, Layers).OrderBy(l => BlockInfluence[l]).ThenBy(l => l).Take(CheckCount(count)).Order().ToArray();

    /// <summary>Gromov et al.: the block ℓ*..ℓ*+n−1 with the smallest angular distance d(ℓ, n).</summary>
    public int[] MostRedundantBlock(int count)
    {
        CheckCount(count);
        if (count == 0)
        {
            return Array.Empty<int>();
        }
        int best = Enumerable.Range(0, Layers - count + 1).OrderBy(l => AngularDistance[l, l + count]).ThenBy(l => l).First();
        return Enumerable.Range(best, count).ToArray();
    }

    private int CheckCount(int count) => count >= 0 && count < Layers ? count
        : throw new ArgumentOutOfRangeException(nameof(count), $"can remove 0..{Layers - 1} of {Layers} layers (asked {count})");
}

/// <summary>Measures layer redundancy and removes layers from a model.</summary>
public static class LayerRemoval
{
    public static LayerScores Measure(Transformer transformer, CalibrationSet data, CancellationToken cancellationToken = default)
    {
        int layers = transformer.Model.Layers.Count, dim = transformer.Model.Config.Dim;
        var cosSum = new double[layers];
        long tokens = 0;
        var angle = new double[layers + 1, layers + 1];
        WindowPerplexity.CollectBoundaries(transformer, data, (_, states) =>
        {
            int n = states[0].Length / dim;
            for (int l = 0; l < layers; l++)
            {
                for (int t = 0; t < n; t++)
                {
                    cosSum[l] += Cosine(states[l].AsSpan(t * dim, dim), states[l + 1].AsSpan(t * dim, dim));
                }
            }
            tokens += n;
            for (int a = 0; a <= layers; a++)
            {
                for (int b = a + 1; b <= layers; b++)
                {
                    double c = Math.Clamp(Cosine(states[a].AsSpan((n - 1) * dim, dim), states[b].AsSpan((n - 1) * dim, dim)), -1, 1);
                    angle[a, b] += Math.Acos(c) / Math.PI;
                }
            }
        }, cancellationToken);
        var bi = cosSum.Select(s => 1 - s / tokens).ToArray();
        for (int a = 0; a <= layers; a++)
        {
            for (int b = a + 1; b <= layers; b++)
            {
                angle[a, b] /= data.Windows.Count;
            }
        }
        return new LayerScores(bi, angle);
    }

    /// <summary>
    /// Removes the listed layers in place. Cross-layer KV sharing is re-indexed; a layer that
    /// reads a removed layer's cache is an error (share again after removal).
    /// </summary>
    public static void Remove(LlamaModel model, IEnumerable<int> layers)
    {
        var removed = layers.ToHashSet();
        if (removed.Any(l => (uint)l >= (uint)model.Layers.Count))
        {
            throw new ArgumentOutOfRangeException(nameof(layers), $"layers {string.Join(",", removed.Order())} outside 0..{model.Layers.Count - 1}");
        }
        if (removed.Count >= model.Layers.Count && model.Layers.Count > 0)
        {
            throw new InvalidOperationException("cannot remove every layer");
        }
        var newIndex = new int[model.Layers.Count];
        for (int l = 0, k = 0; l < model.Layers.Count; l++)
        {
            newIndex[l] = removed.Contains(l) ? -1 : k++;
        }
        for (int l = 0; l < model.Layers.Count; l++)
        {
            int s = model.Layers[l].SharesKvWith;
            if (!removed.Contains(l) && s >= 0 && removed.Contains(s))
            {
                throw new InvalidOperationException($"layer {l} reads the KV cache of layer {s}, which would be removed");
            }
        }
        var dropped = removed.Order().Select(l => model.Layers[l]).ToList();
        foreach (var layer in model.Layers.Where(x => x.SharesKvWith >= 0))
        {
            layer.SharesKvWith = newIndex[layer.SharesKvWith];
        }
        model.Layers.RemoveAll(dropped.Contains);
        foreach (var layer in dropped)
        {
            foreach (var (_, m) in layer.Linears())
            {
                m.Dispose();
            }
        }
        model.SyncConfig();
        model.Revalidate();
    }

    internal static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double na = TensorPrimitives.Norm(a), nb = TensorPrimitives.Norm(b);
        return na > 0 && nb > 0 ? TensorPrimitives.Dot(a, b) / (na * nb) : 0;
    }
}
