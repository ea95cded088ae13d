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

    /// <summary>Attention × the configured value norm (VATP), or plain attention under the ‖v‖ = 1 test hook.</summary>
    protected static KvScoring ValueAwareScoring(KvCacheOptions options) =>
        options.UnitValueNorms ? KvScoring.Attention : options.ValueNorm switch
        {
            ValueNormKind.L2 => KvScoring.AttentionTimesValueL2Norm,
            ValueNormKind.Max => KvScoring.AttentionTimesValueMaxNorm,
            _ => KvScoring.AttentionTimesValueNorm,
        };

    protected override int RecentFor(int budget) => Math.Max(1, (int)Math.Round(budget * Options.RecentFraction));

    protected override void ChooseOlder(IKvMemory cache, int layer, int kvHead, bool[] keep, int room)
    {
        var positions = cache.Positions(layer, kvHead).ToArray();
        var scores = cache.Scores(layer, kvHead).ToArray();
        int rows = positions.Length == 0 ? 1 : scores.Length / positions.Length;
        int protect = ProtectedTokens;
        // Protected positions first, older first.
        foreach (int s in Enumerable.Range(0, positions.Length).Where(s => !keep[s] && positions[s] < protect).OrderBy(s => positions[s]))
        {
            if (room == 0)
            {
                return;
            }
            keep[s] = true;
            room--;
        }
        // Then by score, ties to the older token; with one score per query head, the heads nominate their best in turn.
        var rankings = Enumerable.Range(0, rows)
            .Select(j => Enumerable.Range(0, positions.Length).Where(s => !keep[s])
                .OrderByDescending(s => scores[s * rows + j]).ThenBy(s => positions[s]).ToArray())
            .ToArray();
        var next = new int[rows];
        while (room > 0)
        {
            bool any = false;
            for (int j = 0; j < rows && room > 0; j++)
            {
                var ranking = rankings[j];
                while (next[j] < ranking.Length && keep[ranking[next[j]]])
                {
                    next[j]++;
                }
                if (next[j] < ranking.Length)
                {
                    keep[ranking[next[j]++]] = true;
                    room--;
                    any = true;
                }
            }
            if (!any)
            {
                return;
            }
        }
    }

    /// <summary>The lowest-scoring unprotected entry older than the window (the newest on ties).</summary>
    protected override int ChooseVictim(IKvMemory cache, int layer, int kvHead, int windowStart)
    {
        var positions = cache.Positions(layer, kvHead);
        var scores = cache.Scores(layer, kvHead);
        if (scores.Length != positions.Length)
        {
            return -1; // one score per query head: the general path lets the heads nominate
        }
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
