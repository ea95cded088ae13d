using Kernels.Runtime.Compute;
using Kernels.Runtime.Evaluation;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;

namespace Kernels.Runtime.Dip;

/// <summary>Perplexity of a model under DIP, recording every token's masks for the simulator.</summary>
public static class DipEvaluation
{
    /// <param name="SequenceStarts">Indices into <paramref name="Masks"/> where each sequence (perplexity window) starts.</param>
    public sealed record Result(PerplexityResult Perplexity, List<TokenLayerMask[]> Masks, double HitRate, int KeepInputs, int KeepHidden, IReadOnlyList<int> SequenceStarts);

    /// <summary>
    /// As the reference evaluates DIP: every window is a sequence whose first
    /// <paramref name="promptFraction"/> is a prompt, run dense and left out of the accounting, and
    /// whose continuation is generated token by token under DIP (teacher-forced, scored, and the only
    /// part whose masks and cache hits count). The column caches start empty in every sequence.
    /// </summary>
    public static Result Run(LlamaModel model, DipOptions options, IReadOnlyList<int> tokens, int context, int bos, CancellationToken cancellationToken = default,
        double promptFraction = 0.5)
    {
        using var ops = new HostOps();
        using var dip = new DipMlp(model, ops, options) { Masks = new List<TokenLayerMask[]>() };
        using var transformer = new Transformer(model, ops, maxBatch: context) { Plan = new ForwardPlan { Mlp = dip } };
        var evaluator = new PerplexityEvaluator(transformer)
        {
            PromptFraction = promptFraction,
            WindowStarting = dip.StartSequence,
        };
        var ppl = evaluator.Evaluate(tokens, context, bos, null, cancellationToken);
        return new Result(ppl, dip.Masks, dip.Reads == 0 ? double.NaN : (double)dip.Hits / dip.Reads, dip.KeepInputs, dip.KeepHidden, dip.SequenceStarts);
    }

    /// <summary>The live cache sizes that match the simulator's DRAM split for <paramref name="hw"/>.</summary>
    public static DipOptions WithSimulatedCache(DipOptions options, LlamaConfig config, HwConfig hw)
    {
        // One empty token is enough to get the simulator's per-linear cache sizes.
        var dyn = HwSimulator.Simulate(config, hw, MlpMode.Dynamic, new List<TokenLayerMask[]> { Enumerable.Range(0, config.Layers).Select(_ => new TokenLayerMask(Array.Empty<int>(), Array.Empty<int>())).ToArray() });
        return options with { InputCacheColumns = dyn.GateUpCacheColumns, HiddenCacheColumns = dyn.DownCacheColumns, Cache = hw.Policy is ColumnCachePolicy.Lfu ? ColumnCachePolicy.Lfu : ColumnCachePolicy.Lru };
    }
}
