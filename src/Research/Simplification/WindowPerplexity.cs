using Kernels.Runtime.Evaluation;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Pruning;

namespace Kernels.Runtime.Simplification;

/// <summary>Perplexity over calibration windows (each BOS-first window predicts its own tokens 1..), the objective of the analyses.</summary>
public static class WindowPerplexity
{
    public static double Evaluate(Transformer transformer, CalibrationSet data, CancellationToken cancellationToken = default)
    {
        var logits = new float[transformer.Model.Config.VocabSize];
        int length = data.Windows.Max(w => w.Length);
        using var cache = transformer.CreateCache(length);
        double nll = 0;
        long count = 0;
        foreach (var window in data.Windows)
        {
            cancellationToken.ThrowIfCancellationRequested();
            cache.Reset();
            transformer.Forward(window.AsSpan(0, window.Length - 1), 0, cache, LogitsMode.All);
            for (int j = 0; j < window.Length - 1; j++)
            {
                transformer.ReadLogits(j, logits);
                nll += PerplexityEvaluator.NegativeLogLikelihood(logits, window[j + 1]);
            }
            count += window.Length - 1;
        }
        return Math.Exp(nll / count);
    }

    /// <summary>
    /// Runs every window and hands the residual stream at each block boundary to <paramref name="onWindow"/>:
    /// states[b] is [tokens, dim] entering block b (b = layers: the final output before the norm).
    /// </summary>
    public static void CollectBoundaries(Transformer transformer, CalibrationSet data, Action<int, float[][]> onWindow, CancellationToken cancellationToken = default)
    {
        int layers = transformer.Model.Layers.Count;
        int length = data.Windows.Max(w => w.Length);
        if (length > transformer.MaxBatch)
        {
            throw new ArgumentException($"calibration windows of {length} tokens exceed the transformer's batch of {transformer.MaxBatch}: boundaries are collected per whole window");
        }
        using var cache = transformer.CreateCache(length);
        var previous = transformer.Plan;
        var observer = new BoundaryObserver(transformer, layers);
        transformer.Plan = transformer.Plan with { Observer = observer };
        try
        {
            for (int i = 0; i < data.Windows.Count; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                cache.Reset();
                transformer.Forward(data.Windows[i], 0, cache, LogitsMode.None);
                onWindow(i, observer.States);
            }
        }
        finally
        {
            transformer.Plan = previous;
        }
    }

    private sealed class BoundaryObserver(Transformer transformer, int layers) : IForwardObserver
    {
        public float[][] States { get; } = new float[layers + 1][];

        public void OnBlockInput(int layer, Compute.DeviceTensor x, int n)
        {
            int count = n * transformer.Model.Config.Dim;
            if (States[layer]?.Length != count)
            {
                States[layer] = new float[count];
            }
            transformer.Ops.Download(x, 0, States[layer]);
        }

        public void OnLinearInput(int layer, LinearKind kind, Compute.DeviceTensor input, int n)
        {
        }
    }
}
