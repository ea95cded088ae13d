using Kernels.Runtime.Compute;

namespace Kernels.Runtime.Caching.Policies;

/// <summary>
/// H2O: besides the recent window, keep the heavy hitters — the entries that received the most
/// attention so far (ties to the older token). Subclasses change the score (VATP) or protect the
/// first tokens.
/// </summary>
public class H2OPolicy(KvCacheOptions options) : KvEvictionPolicy(options)
{
    protected override KvScoring Scoring => KvScoring.Attention;

    /// <summary>Positions below this are never evicted.</summary>
    protected virtual int ProtectedTokens => 0;

    protected override int RecentFor(int budget) => Math.Max(1, (int)Math.Round(budget * Options.RecentFraction));

    protected override void ChooseOlder(IKvMemory cache, int layer, int kvHead, bool[] keep, int room)
    {
        var positions = cache.Positions(layer, kvHead).ToArray();
        var scores = cache.Scores(layer, kvHead).ToArray();
        int protect = ProtectedTokens;
        // Protected positions first (score +inf), then by score, ties to the older token.
        var candidates = Enumerable.Range(0, positions.Length).Where(s => !keep[s])
            .OrderByDescending(s => positions[s] < protect ? float.PositiveInfinity : scores[s])
            .ThenBy(s => positions[s]);
        foreach (int s in candidates.Take(room))
        {
            keep[s] = true;
        }
    }

    /// <summary>The lowest-scoring unprotected entry older than the window (the newest on ties).</summary>
    protected override int ChooseVictim(IKvMemory cache, int layer, int kvHead, int windowStart)
    {
        var positions = cache.Positions(layer, kvHead);
        var scores = cache.Scores(layer, kvHead);
        int protect = ProtectedTokens;
        int victim = -1;
        float best = float.PositiveInfinity;
        for (int s = 0; s < positions.Length; s++)
        {
            int pos = positions[s];
            if (pos >= windowStart || pos < protect)
            {
                continue;
            }
            if (scores[s] < best || scores[s] == best && pos > positions[victim])
            {
                best = scores[s];
                victim = s;
            }
        }
        return victim;
    }
}
