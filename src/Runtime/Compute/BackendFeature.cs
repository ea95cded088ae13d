namespace Kernels.Runtime.Compute;

/// <summary>
/// Features a backend may or may not run, asked before a run starts (as ggml's
/// <c>ggml_backend_supports_op</c>), so an unsupported combination fails once with a clear message
/// instead of deep inside a forward pass.
/// </summary>
[Flags]
public enum BackendFeature
{
    None = 0,

    /// <summary>KV caches that implement <see cref="IKvMemory"/> (host-readable keys, values, positions and scores; per-head keep/trim): eviction policies, token saliency, KV-sharing analysis.</summary>
    KvMemory = 1,

    /// <summary>Dynamic input pruning of the MLP (masked SwiGLU, DIP and DIP-CA).</summary>
    DynamicInputPruning = 2,

    /// <summary>SDTP token pruning of prompts (reads attention from the cache mid-prefill).</summary>
    TokenPruning = 4,

    /// <summary>Scores accumulated only from queries at or after a position (<see cref="IKvMemory.ScoreFromPosition"/>; Scissorhands' window).</summary>
    KvScoreWindow = 8,

    /// <summary>Scores kept per query head of a GQA group (<see cref="IKvMemory.ScorePerQueryHead"/>) and value norms other than L1 (VATP's ablations).</summary>
    KvScoreVariants = 16,
}

public static class BackendFeatures
{
    /// <summary>Throws <see cref="NotSupportedException"/> naming the backend and what it lacks, unless it supports <paramref name="needed"/>.</summary>
    public static void Require(this ITransformerOps ops, BackendFeature needed, string what)
    {
        if (!ops.Supports(needed))
        {
            throw new NotSupportedException($"{what} needs {needed & ~ops.Features()}, which the {ops.Name} backend does not run (the host backends --device cpu and reference run every feature)");
        }
    }

    /// <summary>Every feature the backend supports.</summary>
    public static BackendFeature Features(this ITransformerOps ops) =>
        Enum.GetValues<BackendFeature>().Where(f => f != BackendFeature.None && ops.Supports(f)).Aggregate(BackendFeature.None, (a, f) => a | f);
}
