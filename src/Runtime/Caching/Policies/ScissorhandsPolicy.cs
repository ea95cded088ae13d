using Kernels.Runtime.Compute;

namespace Kernels.Runtime.Caching.Policies;

/// <summary>
/// Scissorhands: heavy hitters by the mean attention over the last W prompt queries (the
/// "persistence of importance" window), a fixed recent window, then H2O-style accumulation.
/// </summary>
public class ScissorhandsPolicy(KvCacheOptions options) : H2OPolicy(options)
{
    protected override int RecentFor(int budget) => Math.Min(Options.ScissorhandsRecent, budget - 1);

    /// <summary>Only the last W prompt queries add to the scores.</summary>
    protected override void OnBeforePrompt(IKvMemory cache, int promptLength) =>
        cache.ScoreFromPosition = Math.Max(0, promptLength - Options.ScissorhandsWindow);

    /// <summary>
    /// Sums over the window become the mean over the window's queries, one divisor for every token
    /// as the reference code divides by its window (a token the causal mask hid from some of those
    /// queries got zero from them, not a smaller denominator).
    /// </summary>
    protected override void OnAfterPrompt(IKvMemory cache, int promptLength)
    {
        int queries = promptLength - cache.ScoreFromPosition;
        ForEachHead(cache, (l, g) =>
        {
            var scores = cache.Scores(l, g).ToArray();
            for (int s = 0; s < scores.Length; s++)
            {
                scores[s] = queries > 0 ? scores[s] / queries : 0f;
            }
            cache.WriteScores(l, g, scores);
        });
        cache.ScoreFromPosition = 0;
    }
}

/// <summary>
/// VATP's second setting: Scissorhands' window-mean prompt scores and 10-token recent window, with
/// attention weighted by ‖v‖ and the first tokens protected, as VATP does inside H2O.
/// </summary>
public sealed class VatpScissorhandsPolicy(KvCacheOptions options) : ScissorhandsPolicy(options)
{
    protected override KvScoring Scoring => ValueAwareScoring(Options);

    protected override int ProtectedTokens => Options.ProtectedTokens;
}
