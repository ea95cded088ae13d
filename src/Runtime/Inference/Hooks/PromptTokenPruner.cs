using Kernels.Runtime.Compute;
using Kernels.Runtime.Model;
using Kernels.Runtime.Simplification;

namespace Kernels.Runtime.Inference;

/// <summary>
/// SDTP-style token pruning of prompts: at each stage layer the prompt's rows are scored by the
/// previous attention layer's last-w queries and only ⌈r^stage · promptLength⌉ of them (sinks and
/// recent tokens always) go on. Applies to batches whose logits are not all needed (prefill);
/// decode steps and perplexity batches run every token. Reads attention from the host KV cache.
/// </summary>
public sealed class PromptTokenPruner(TokenPruneOptions options)
{
    public TokenPruneOptions Options { get; } = options;

    /// <summary>Checks the stages against the model (and KV sharing across stages, which would leave caches holding different tokens).</summary>
    public void Validate(LlamaModel model)
    {
        Options.Validated(model.Layers.Count);
        if (Options.Saliency == TokenSaliencyKind.Predictor)
        {
            Options.Predictor!.Validate(model, Options.StageLayers);
        }
        for (int i = 0; i < model.Layers.Count; i++)
        {
            int j = model.Layers[i].SharesKvWith;
            if (j >= 0 && Options.StageLayers.Any(s => s > j && s <= i))
            {
                throw new InvalidOperationException($"layer {i} shares the KV cache of layer {j} across token-pruning stage(s) {string.Join(",", Options.StageLayers.Where(s => s > j && s <= i))}: the caches would hold different tokens");
            }
        }
    }

    /// <summary>The state of one pruned prefill chunk.</summary>
    internal Run Start(Transformer transformer, ReadOnlySpan<int> positions, IKvCache cache)
    {
        transformer.Ops.Require(BackendFeature.TokenPruning | BackendFeature.KvMemory, "--token-prune");
        Validate(transformer.Model);
        return new Run(this, transformer, positions.ToArray(), cache);
    }

    internal sealed class Run(PromptTokenPruner pruner, Transformer transformer, int[] positions, IKvCache cache)
    {
        private readonly int[] _perLayer = new int[transformer.Model.Layers.Count];
        private readonly int _promptLength = positions.Length;
        private readonly int _promptEnd = positions[0] + positions.Length;
        private int _stage;
        private long _saliencyTicks;

        /// <summary>Positions of the rows still running, [n].</summary>
        public ReadOnlySpan<int> Positions(int n) => positions.AsSpan(0, n);

        /// <summary>Runs every stage that starts at or before <paramref name="layer"/>; returns the rows left.</summary>
        public int BeforeLayer(int layer, int n, (int CacheLayer, int Heads, int KvHeads)? last, DeviceTensor x, DeviceTensor q)
        {
            var stages = pruner.Options.StageLayers;
            while (_stage < stages.Count && stages[_stage] <= layer)
            {
                _stage++;
                long start = System.Diagnostics.Stopwatch.GetTimestamp();
                n = Prune(stages[_stage - 1], n, last, x, q);
                _saliencyTicks += System.Diagnostics.Stopwatch.GetTimestamp() - start;
            }
            return n;
        }

        public void Ran(int layer, int n) => _perLayer[layer] = n;

        public TokenPruneTrace Trace => new(_promptLength, _perLayer) { SaliencySeconds = _saliencyTicks / (double)System.Diagnostics.Stopwatch.Frequency };

        /// <summary>The stage before <paramref name="layer"/>: scores the n rows and keeps the best (copies included in the trace's saliency time).</summary>
        private int Prune(int layer, int n, (int CacheLayer, int Heads, int KvHeads)? lastAttention, DeviceTensor x, DeviceTensor q)
        {
            var options = pruner.Options;
            int target = (int)Math.Ceiling(Math.Pow(options.Ratio, _stage) * _promptLength - 1e-9);
            if (target >= n || lastAttention is not { } last)
            {
                return n;
            }
            var ops = transformer.Ops;
            int d = transformer.Model.Config.HeadDim;
            int dim = transformer.Model.Config.Dim;
            var saliency = new float[n];
            if (options.Saliency == TokenSaliencyKind.Predictor)
            {
                // The hidden states entering the stage layer, as the predictor was trained on.
                var hidden = new float[n * dim];
                ops.Download(x, 0, hidden);
                options.Predictor!.Score(layer, hidden, n, saliency);
            }
            else if (options.Saliency == TokenSaliencyKind.Random)
            {
                // Not HashCode.Combine: it is randomized per process, and the baseline must repeat.
                var rng = new Random(unchecked(options.Seed * 1_000_003 + _stage * 7_919 + n));
                for (int i = 0; i < n; i++)
                {
                    saliency[i] = rng.NextSingle();
                }
            }
            else
            {
                int w = Math.Min(options.Window, n);
                int qWidth = last.Heads * d;
                var queries = new float[w * qWidth];
                ops.Download(q, (n - w) * qWidth, queries);
                var memory = (IKvMemory)cache; // Start checked TokenPruning | KvMemory: this backend's caches are IKvMemory
                TokenSaliency.Score(memory, last.CacheLayer, queries, n, last.Heads, last.KvHeads, options.Saliency == TokenSaliencyKind.AttentionValueNorm, saliency);
            }
            var kept = TokenSaliency.SelectKept(saliency, positions.AsSpan(0, n), _promptLength, _promptEnd, target, options.SinkTokens, options.RecentFraction);
            for (int i = 0; i < kept.Length; i++)
            {
                if (kept[i] != i)
                {
                    ops.Copy(x, kept[i] * dim, x, i * dim, dim);
                    positions[i] = positions[kept[i]];
                }
            }
            return kept.Length;
        }
    }
}

/// <summary>Tokens each layer processed in a pruned prefill of <paramref name="PromptTokens"/> tokens (0 for skipped layers).</summary>
public sealed record TokenPruneTrace(int PromptTokens, IReadOnlyList<int> TokensPerLayer)
{
    /// <summary>Time spent in the stages: scoring (attention proxy, predictor or random), selection and row compaction.</summary>
    public double SaliencySeconds { get; init; }

    /// <summary>Σ tokens per layer / (layers · prompt tokens): the fraction of dense per-layer work done.</summary>
    public double LayerTokenFraction => TokensPerLayer.Count == 0 ? 1 : TokensPerLayer.Sum(t => (double)t) / (TokensPerLayer.Count * (double)PromptTokens);
}
