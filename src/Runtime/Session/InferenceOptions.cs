using Kernels.Runtime.Caching;
using Kernels.Runtime.Dip;
using Kernels.Runtime.Simplification;

namespace Kernels.Runtime.Session;

/// <summary>
/// Everything an <see cref="InferenceSession"/> runs besides the model and the backend: the
/// largest batch, the KV cache's size and eviction policy, dynamic input pruning and prompt
/// token pruning. One record, checked as a whole by <see cref="InferenceSession.Create"/>.
/// </summary>
public sealed record InferenceOptions
{
    /// <summary>Tokens per forward chunk (prefill); token pruning needs the whole prompt in one chunk.</summary>
    public int MaxBatch { get; init; } = 256;

    /// <summary>Tokens the cache may hold (default: the model's context).</summary>
    public int? CacheCapacity { get; init; }

    /// <summary>KV-cache eviction (VATP, H2O, Scissorhands, StreamingLLM); null keeps every token.</summary>
    public KvCacheOptions? Kv { get; init; }

    /// <summary>Dynamic input pruning of the MLP; null runs the dense MLP.</summary>
    public DipOptions? Dip { get; init; }

    /// <summary>SDTP token pruning of prompts; null runs every prompt token through every layer.</summary>
    public TokenPruneOptions? TokenPruning { get; init; }
}
