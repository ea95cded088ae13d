using Kernels.Runtime.Compute;
using Kernels.Runtime.Evaluation;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Session;

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

    /// <summary>Perplexity of non-overlapping windows, each run token by token through <paramref name="session"/>, whose policy evicts after every step.</summary>
    public static Result Evaluate(InferenceSession session, IReadOnlyList<int> tokens, int context, int bos,
        IProgress<float>? progress = null, CancellationToken cancellationToken = default)
    {
        long peak = 0, peakStats = 0;
        var logits = new float[session.Model.Config.VocabSize];
        var evaluator = new PerplexityEvaluator(session.Transformer)
        {
            CacheFactory = _ => new NonOwningCache(session.Cache),
            WindowRunner = (inputs, targets, c) =>
            {
                session.StartSequence(inputs.Length);
                double nll = 0;
                for (int j = 0; j < inputs.Length; j++)
                {
                    session.Step(inputs[j], cancellationToken);
                    peak = Math.Max(peak, session.CacheBytes.KvBytes);
                    peakStats = Math.Max(peakStats, session.CacheBytes.StatisticsBytes);
                    session.ReadLogits(logits);
                    nll += PerplexityEvaluator.NegativeLogLikelihood(logits, targets[j]);
                }
                return nll;
            },
        };
        var result = evaluator.Evaluate(tokens, context, bos, progress, cancellationToken);
        var config = session.Model.Config;
        long dense = session.Model.Layers.Sum(l => (long)l.KvHeads) * context * 2L * config.HeadDim * sizeof(float);
        return new Result(result, peak, peakStats, dense, session.Policy?.Evicted ?? 0);
    }

    /// <summary>Lets the evaluator reset and "dispose" the shared cache without freeing it.</summary>
    private sealed class NonOwningCache(IKvCache inner) : IKvCache
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
