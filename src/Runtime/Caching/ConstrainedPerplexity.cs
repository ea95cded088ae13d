using Kernels.Runtime.Compute;
using Kernels.Runtime.Evaluation;
using Kernels.Runtime.Inference;

namespace Kernels.Runtime.Caching;

/// <summary>
/// Perplexity with a really constrained cache: every window is run token by token and the
/// policy evicts after each step, so each prediction sees at most the budget (fraction × context,
/// fixed per window). The first `budget` tokens of a window are scored with a full cache, the
/// rest under eviction.
/// </summary>
public static class ConstrainedPerplexity
{
    public sealed record Result(PerplexityResult Perplexity, long PeakKvBytes, long PeakStatisticsBytes, long DenseKvBytes, long Evicted);

    public static Result Evaluate(Transformer transformer, KvCacheOptions options, IReadOnlyList<int> tokens, int context, int bos,
        IProgress<float>? progress = null, CancellationToken cancellationToken = default)
    {
        var controller = Policies.KvEvictionPolicy.Create(options);
        using var cache = controller.CreateCache(transformer, context);
        long peak = 0, peakStats = 0;
        var logits = new float[transformer.Model.Config.VocabSize];
        var evaluator = new PerplexityEvaluator(transformer)
        {
            CacheFactory = _ => new NonOwningCache(cache),
            WindowRunner = (inputs, targets, c) =>
            {
                controller.BeforePrompt(cache, inputs.Length);
                double nll = 0;
                for (int j = 0; j < inputs.Length; j++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    transformer.Forward(new[] { inputs[j] }, j, cache, LogitsMode.Last);
                    peak = Math.Max(peak, cache.BytesHeld);
                    peakStats = Math.Max(peakStats, cache.StatisticsBytes);
                    transformer.ReadLogits(0, logits);
                    nll += PerplexityEvaluator.NegativeLogLikelihood(logits, targets[j]);
                    controller.AfterStep(cache);
                }
                return nll;
            },
        };
        var result = evaluator.Evaluate(tokens, context, bos, progress, cancellationToken);
        var c = transformer.Model.Config;
        long dense = transformer.Model.Layers.Sum(l => (long)l.KvHeads) * context * 2L * c.HeadDim * sizeof(float);
        return new Result(result, peak, peakStats, dense, controller.Evicted);
    }

    /// <summary>Lets the evaluator reset and "dispose" the shared cache without freeing it.</summary>
    private sealed class NonOwningCache(IKvMemory inner) : IKvCache
    {
        public int Count(int layer, int kvHead) => inner.Count(layer, kvHead);
        public long BytesHeld => inner.BytesHeld;
        public long BytesUsed => inner.BytesUsed;
        public void Reset() => inner.Reset();
        public void Dispose()
        {
        }
    }
}
