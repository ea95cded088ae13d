namespace Kernels.Runtime.Compute;

/// <summary>What a KV cache accumulates per slot while attending (the eviction policies' scores).</summary>
public enum KvScoring
{
    None,

    /// <summary>Σ attention probability received (H2O, Scissorhands).</summary>
    Attention,

    /// <summary>Σ p · ‖v‖₁ (VATP).</summary>
    AttentionTimesValueNorm,

    /// <summary>Σ p · ‖v‖₂ (VATP's norm ablation).</summary>
    AttentionTimesValueL2Norm,

    /// <summary>Σ p · ‖v‖∞ (VATP's norm ablation).</summary>
    AttentionTimesValueMaxNorm,
}

/// <summary>
/// The operations a KV cache owns, in the spirit of llama.cpp's <c>llama_memory_i</c>: read the
/// positions and scores of a (layer, KV head)'s slots, keep a subset (removing the rest from
/// storage), trim storage, rewrite a key (a position shift re-rotates it). Eviction policies use
/// only these; backends whose caches implement it report <see cref="BackendFeature.KvMemory"/>.
/// </summary>
public interface IKvMemory : IKvCache
{
    int Layers { get; }

    int KvHeads(int layer);

    int HeadDim { get; }

    /// <summary>Positions of the live slots of (layer, KV head), in slot order.</summary>
    ReadOnlySpan<int> Positions(int layer, int kvHead);

    /// <summary>
    /// The accumulated score of each live slot (empty while <see cref="Scoring"/> is None): [count],
    /// or with <see cref="ScorePerQueryHead"/> [count, group], one score per query head of the KV head's group.
    /// </summary>
    ReadOnlySpan<float> Scores(int layer, int kvHead);

    /// <summary>Replaces the live slots' scores (Scissorhands turns sums into means).</summary>
    void WriteScores(int layer, int kvHead, ReadOnlySpan<float> scores);

    /// <summary>Keys of the live slots, [count, headDim], after RoPE.</summary>
    ReadOnlySpan<float> Keys(int layer, int kvHead);

    /// <summary>Replaces the key of a live slot (StreamingLLM re-rotates its sinks to new positions).</summary>
    void WriteKey(int layer, int kvHead, int slot, ReadOnlySpan<float> key);

    /// <summary>Values of the live slots, [count, headDim].</summary>
    ReadOnlySpan<float> Values(int layer, int kvHead);

    KvScoring Scoring { get; set; }

    /// <summary>Keep one score per query head of the GQA group instead of their sum (needs <see cref="BackendFeature.KvScoreVariants"/>).</summary>
    bool ScorePerQueryHead { get; set; }

    /// <summary>Bytes of the per-slot positions and scores (overhead beside the K/V bytes).</summary>
    long StatisticsBytes { get; }

    /// <summary>Only queries at this position or later add to the scores (Scissorhands' window).</summary>
    int ScoreFromPosition { get; set; }

    /// <summary>Storage grows geometrically up to here (a budgeted policy sets its budget).</summary>
    int GrowthCap { get; set; }

    /// <summary>Keeps the live slots whose flag is set and removes the others from storage (slot order may change; positions travel with their slot).</summary>
    void Keep(int layer, int kvHead, ReadOnlySpan<bool> keep);

    /// <summary>Shrinks (layer, KV head)'s storage to at most <paramref name="slots"/> slots (never below the live count; never grows it).</summary>
    void Trim(int layer, int kvHead, int slots);
}
