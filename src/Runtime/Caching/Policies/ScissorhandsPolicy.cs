using Kernels.Runtime.Compute;

namespace Kernels.Runtime.Caching.Policies;

/// <summary>
/// Scissorhands: heavy hitters by the mean attention over the last W prompt queries (the
/// "persistence of importance" window), a fixed recent window, then H2O-style accumulation.
/// </summary>
public sealed class ScissorhandsPolicy(KvCacheOptions options) : H2OPolicy(options)
{
    protected override int RecentFor(int budget) => Math.Min(Options.ScissorhandsRecent, budget - 1);

    protected override BackendFeature RequiredFeatures => BackendFeature.KvScoreWindow;

    /// <summary>Only the last W prompt queries add to the scores.</summary>
    protected override void OnBeforePrompt(IKvMemory cache, int promptLength) =>
        cache.ScoreFromPosition = Math.Max(0, promptLength - Options.ScissorhandsWindow);

    /// <summary>Sums over the window become means over the queries each token saw.</summary>
    protected override void OnAfterPrompt(IKvMemory cache, int promptLength)
    {
        int from = cache.ScoreFromPosition;
        ForEachHead(cache, (l, g) =>
        {
            var positions = cache.Positions(l, g);
            var scores = cache.Scores(l, g).ToArray();
            for (int s = 0; s < positions.Length; s++)
            {
                int queries = promptLength - Math.Max(positions[s], from);
                scores[s] = queries > 0 ? scores[s] / queries : 0f;
            }
            cache.WriteScores(l, g, scores);
        });
        cache.ScoreFromPosition = 0;
    }
}
