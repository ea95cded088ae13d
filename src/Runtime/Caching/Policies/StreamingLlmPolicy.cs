using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;

namespace Kernels.Runtime.Caching.Policies;

/// <summary>
/// StreamingLLM: the first few tokens (attention sinks) and a window of the most recent ones.
/// Attention depends only on relative RoPE distances, so after each eviction the sinks are
/// re-rotated to sit right before the oldest window token, as if the cache held contiguous
/// positions; each sink is re-rotated from its key as first stored, so no error accumulates.
/// </summary>
public sealed class StreamingLlmPolicy(KvCacheOptions options) : KvEvictionPolicy(options)
{
    private readonly Dictionary<(int Layer, int Head), (float[] Keys, int[] Positions)> _sinks = new();
    private RopeTable? _rope;

    protected override KvScoring Scoring => KvScoring.None;

    private int Sinks => Budget - Recent;

    protected override int RecentFor(int budget) => budget - Math.Min(Options.SinkTokens, budget - 1);

    protected override void Attach(Transformer transformer) => _rope = transformer.Rope;

    protected override void OnBeforePrompt(IKvMemory cache, int promptLength) => _sinks.Clear();

    /// <summary>Sinks: the lowest positions.</summary>
    protected override void ChooseOlder(IKvMemory cache, int layer, int kvHead, bool[] keep, int room)
    {
        var positions = cache.Positions(layer, kvHead).ToArray();
        foreach (int s in Enumerable.Range(0, positions.Length).OrderBy(s => positions[s]))
        {
            if (room == 0)
            {
                break;
            }
            if (!keep[s])
            {
                keep[s] = true;
                room--;
            }
        }
    }

    /// <summary>The oldest entry that is not one of the sinks.</summary>
    protected override int ChooseVictim(IKvMemory cache, int layer, int kvHead, int windowStart)
    {
        var positions = cache.Positions(layer, kvHead).ToArray();
        var older = Enumerable.Range(0, positions.Length).Where(s => positions[s] < windowStart).OrderBy(s => positions[s]).ToArray();
        return older.Length <= Sinks ? -1 : older[Sinks];
    }

    /// <summary>Remembers each sink's key as first rotated (later re-rotations start from it).</summary>
    protected override void BeforeKeep(IKvMemory cache, int layer, int kvHead)
    {
        if (_sinks.ContainsKey((layer, kvHead)))
        {
            return;
        }
        int d = cache.HeadDim;
        var positions = cache.Positions(layer, kvHead).ToArray();
        var slots = Enumerable.Range(0, positions.Length).OrderBy(s => positions[s]).Take(Sinks).ToArray();
        var keys = new float[slots.Length * d];
        for (int i = 0; i < slots.Length; i++)
        {
            cache.Keys(layer, kvHead).Slice(slots[i] * d, d).CopyTo(keys.AsSpan(i * d, d));
        }
        _sinks[(layer, kvHead)] = (keys, slots.Select(s => positions[s]).ToArray());
    }

    protected override void AfterKeep(IKvMemory cache, int layer, int kvHead)
    {
        var (keys, sinkPositions) = _sinks[(layer, kvHead)];
        var positions = cache.Positions(layer, kvHead);
        int oldestWindow = int.MaxValue;
        var sinkSlot = new Dictionary<int, int>();
        for (int s = 0; s < positions.Length; s++)
        {
            int idx = Array.IndexOf(sinkPositions, positions[s]);
            if (idx >= 0)
            {
                sinkSlot[idx] = s;
            }
            else
            {
                oldestWindow = Math.Min(oldestWindow, positions[s]);
            }
        }
        if (oldestWindow == int.MaxValue)
        {
            return;
        }
        int d = cache.HeadDim;
        for (int i = 0; i < sinkPositions.Length; i++)
        {
            if (!sinkSlot.TryGetValue(i, out int slot))
            {
                continue;
            }
            int delta = oldestWindow - sinkPositions.Length + i - sinkPositions[i];
            var cos = _rope!.Cos(Math.Abs(delta));
            var sin = _rope.Sin(Math.Abs(delta));
            var key = new float[d];
            for (int p = 0; p < d; p += 2)
            {
                float c = cos[p / 2], sn = delta < 0 ? -sin[p / 2] : sin[p / 2];
                float k0 = keys[i * d + p], k1 = keys[i * d + p + 1];
                key[p] = k0 * c - k1 * sn;
                key[p + 1] = k0 * sn + k1 * c;
            }
            cache.WriteKey(layer, kvHead, slot, key);
        }
    }
}
