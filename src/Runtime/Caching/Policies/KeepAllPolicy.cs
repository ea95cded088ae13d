using Kernels.Runtime.Compute;

namespace Kernels.Runtime.Caching.Policies;

/// <summary>No eviction: the cache keeps every token (the dense baseline the other policies are measured against).</summary>
public sealed class KeepAllPolicy(KvCacheOptions options) : KvEvictionPolicy(options)
{
    protected override KvScoring Scoring => KvScoring.None;

    protected override int RecentFor(int budget) => budget;

    public override void BeforePrompt(IKvMemory cache, int promptLength)
    {
    }

    public override void AfterPrompt(IKvMemory cache, int promptLength)
    {
    }

    public override void AfterStep(IKvMemory cache)
    {
    }

    protected override void ChooseOlder(IKvMemory cache, int layer, int kvHead, bool[] keep, int room) => throw new InvalidOperationException("keep-all never evicts");

    protected override int ChooseVictim(IKvMemory cache, int layer, int kvHead, int windowStart) => -1;
}
