using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;

namespace Kernels.Runtime.Caching;

/// <summary>
/// Applies a KV policy to a <see cref="HostKvCache"/>: sets its statistics flags, fixes the
/// budget from the prompt, and after every forward evicts entries — really removing them from
/// storage (and shrinking it after the prompt), not masking them. Per layer and per KV head;
/// with GQA a KV head keeps one token set for its whole query group, scored by the attention
/// summed over the group's query heads.
/// </summary>
public sealed class KvCacheController
{
    private readonly KvCacheOptions _options;
    private int _budget = int.MaxValue, _heavy, _recent;
    private Dictionary<(int Layer, int Head), (float[] Keys, int[] Positions)>? _sinks;
    private RopeTable? _rope;

    public KvCacheController(KvCacheOptions options) => _options = options;

    public KvCacheOptions Options => _options;

    /// <summary>Tokens per layer and KV head the cache may hold while attending (after the prompt).</summary>
    public int Budget => _budget;

    public int Heavy => _heavy;

    public int Recent => _recent;

    /// <summary>Entries evicted so far (all layers and heads).</summary>
    public long Evicted { get; private set; }

    public HostKvCache Create(Transformer transformer, int capacity)
    {
        var cache = transformer.CreateCache(capacity) as HostKvCache
            ?? throw new NotSupportedException("KV eviction policies run on host backends (cpu, reference)");
        _rope = transformer.Rope;
        bool scores = _options.Policy is KvPolicyKind.H2O or KvPolicyKind.Vatp or KvPolicyKind.Scissorhands;
        cache.TrackAttention = scores;
        cache.WeightByValueNorm = _options.Policy == KvPolicyKind.Vatp;
        cache.UnitValueNorms = _options.UnitValueNorms;
        return cache;
    }

    /// <summary>Fixes the budget from the prompt length; Scissorhands starts averaging only over the last W prompt queries.</summary>
    public void BeforePrompt(HostKvCache cache, int promptLength)
    {
        if (_options.Policy == KvPolicyKind.None)
        {
            return;
        }
        _budget = Math.Max(2, _options.BudgetTokens ?? (int)Math.Floor(_options.BudgetFraction * promptLength));
        switch (_options.Policy)
        {
            case KvPolicyKind.Scissorhands:
                _recent = Math.Min(_options.ScissorhandsRecent, _budget - 1);
                break;
            case KvPolicyKind.Streaming:
                _recent = _budget - Math.Min(_options.SinkTokens, _budget - 1);
                break;
            default:
                _recent = Math.Max(1, (int)Math.Round(_budget * _options.RecentFraction));
                break;
        }
        _heavy = _budget - _recent;
        cache.GrowthCap = _budget;
        cache.TrackFromPosition = _options.Policy == KvPolicyKind.Scissorhands ? Math.Max(0, promptLength - _options.ScissorhandsWindow) : 0;
        _sinks = _options.Policy == KvPolicyKind.Streaming ? new() : null;
    }

    /// <summary>After the prompt: Scissorhands turns sums into means, then the cache is evicted to the budget and its storage trimmed.</summary>
    public void AfterPrompt(HostKvCache cache, int promptLength)
    {
        if (_options.Policy == KvPolicyKind.None)
        {
            return;
        }
        if (_options.Policy == KvPolicyKind.Scissorhands)
        {
            int from = cache.TrackFromPosition;
            ForEachHead(cache, (l, g, h) =>
            {
                for (int s = 0; s < h.Count; s++)
                {
                    int queries = promptLength - Math.Max(h.Positions[s], from);
                    h.Received[s] = queries > 0 ? h.Received[s] / queries : 0f;
                }
            });
            cache.TrackFromPosition = 0;
        }
        Evict(cache);
        // Real saving: storage shrinks to the budget (+1 slot for the next token).
        ForEachHead(cache, (l, g, h) => cache.Resize(h, Math.Min(h.Slots, _budget + 1)));
    }

    /// <summary>After each decode step.</summary>
    public void AfterStep(HostKvCache cache)
    {
        if (_options.Policy != KvPolicyKind.None)
        {
            Evict(cache);
        }
    }

    /// <summary>
    /// Evicts every head to budget − 1 entries, so the next token's attention sees at most the
    /// budget: the most recent (recent − 1) positions stay, protected first tokens stay (VATP),
    /// and the highest-scoring of the rest fill the heavy-hitter share.
    /// </summary>
    private void Evict(HostKvCache cache)
    {
        int target = _budget - 1;
        ForEachHead(cache, (l, g, h) =>
        {
            int n = h.Count;
            if (n <= target)
            {
                return;
            }
            if (n == target + 1 && TryEvictOne(cache, l, g, h))
            {
                return;
            }
            var keep = new bool[n];
            // Recent: the (recent − 1) highest positions.
            var byPosition = Enumerable.Range(0, n).OrderByDescending(s => h.Positions[s]).ToArray();
            int recentKeep = Math.Max(0, _recent - 1);
            for (int i = 0; i < recentKeep && i < n; i++)
            {
                keep[byPosition[i]] = true;
            }
            int room = target - Math.Min(recentKeep, n);
            if (_options.Policy == KvPolicyKind.Streaming)
            {
                // Sinks: the lowest positions.
                for (int i = n - 1; i >= 0 && room > 0; i--)
                {
                    if (!keep[byPosition[i]])
                    {
                        keep[byPosition[i]] = true;
                        room--;
                    }
                }
            }
            else
            {
                int protect = _options.Policy == KvPolicyKind.Vatp ? _options.ProtectedTokens : 0;
                // Heavy hitters: protected positions first (score +inf), then by score, ties to the older token.
                var candidates = Enumerable.Range(0, n).Where(s => !keep[s])
                    .OrderByDescending(s => h.Positions[s] < protect ? float.PositiveInfinity : h.Received[s])
                    .ThenBy(s => h.Positions[s]);
                foreach (int s in candidates.Take(room))
                {
                    keep[s] = true;
                }
            }
            int removed = n - keep.Count(k => k);
            Evicted += removed;
            if (_options.Policy == KvPolicyKind.Streaming)
            {
                RecordSinks(l, g, h, keep, cache.HeadDim);
            }
            cache.Retain(l, g, keep);
            if (_options.Policy == KvPolicyKind.Streaming)
            {
                RepositionSinks(l, g, h, cache.HeadDim);
            }
        });
    }

    /// <summary>
    /// Decode fast path: exactly one entry must go. The recent window is the contiguous run of
    /// the newest positions; the victim is the lowest-scoring older, unprotected entry (newest on
    /// ties), or for StreamingLLM the oldest non-sink. O(n) scan, one slot moved.
    /// </summary>
    private bool TryEvictOne(HostKvCache cache, int l, int g, HostKvCache.Head h)
    {
        int n = h.Count;
        int maxPos = int.MinValue;
        for (int s = 0; s < n; s++)
        {
            maxPos = Math.Max(maxPos, h.Positions[s]);
        }
        int recentKeep = Math.Max(0, _recent - 1);
        int threshold = maxPos - recentKeep + 1;
        int inWindow = 0;
        for (int s = 0; s < n; s++)
        {
            inWindow += h.Positions[s] >= threshold ? 1 : 0;
        }
        if (inWindow != recentKeep)
        {
            return false; // window not contiguous: take the general path
        }
        int victim = -1;
        if (_options.Policy == KvPolicyKind.Streaming)
        {
            int sinks = _budget - _recent;
            // The oldest entry that is not one of the `sinks` lowest positions.
            var lowest = Enumerable.Range(0, n).Where(s => h.Positions[s] < threshold).OrderBy(s => h.Positions[s]).ToArray();
            if (lowest.Length <= sinks)
            {
                return false;
            }
            victim = lowest[sinks];
            RecordSinks(l, g, h, null!, cache.HeadDim);
        }
        else
        {
            int protect = _options.Policy == KvPolicyKind.Vatp ? _options.ProtectedTokens : 0;
            float best = float.PositiveInfinity;
            for (int s = 0; s < n; s++)
            {
                int pos = h.Positions[s];
                if (pos >= threshold || pos < protect)
                {
                    continue;
                }
                float score = h.Received[s];
                if (score < best || score == best && pos > h.Positions[victim])
                {
                    best = score;
                    victim = s;
                }
            }
            if (victim < 0)
            {
                return false;
            }
        }
        var keep = new bool[n];
        Array.Fill(keep, true);
        keep[victim] = false;
        cache.Retain(l, g, keep);
        Evicted++;
        if (_options.Policy == KvPolicyKind.Streaming)
        {
            RepositionSinks(l, g, h, cache.HeadDim);
        }
        return true;
    }

    /// <summary>Remembers each sink's key as first rotated (so later re-rotations start from the original, no drift).</summary>
    private void RecordSinks(int l, int g, HostKvCache.Head h, bool[]? keep, int d)
    {
        if (_sinks!.ContainsKey((l, g)))
        {
            return;
        }
        int sinks = _budget - _recent;
        var slots = Enumerable.Range(0, h.Count).OrderBy(s => h.Positions[s]).Take(sinks).ToArray();
        var keys = new float[slots.Length * d];
        var positions = new int[slots.Length];
        for (int i = 0; i < slots.Length; i++)
        {
            Array.Copy(h.Keys, slots[i] * d, keys, i * d, d);
            positions[i] = h.Positions[slots[i]];
        }
        _sinks[(l, g)] = (keys, positions);
    }

    /// <summary>
    /// StreamingLLM positions: attention depends only on relative RoPE distances, so the sinks are
    /// re-rotated to sit right before the oldest window token, as if the cache held contiguous
    /// positions — the query's distance to any cached token never exceeds the cache size.
    /// </summary>
    private void RepositionSinks(int l, int g, HostKvCache.Head h, int d)
    {
        var (keys, positions) = _sinks![(l, g)];
        int sinks = positions.Length;
        int oldestWindow = int.MaxValue;
        var sinkSlot = new Dictionary<int, int>();
        for (int s = 0; s < h.Count; s++)
        {
            int idx = Array.IndexOf(positions, h.Positions[s]);
            if (idx >= 0)
            {
                sinkSlot[idx] = s;
            }
            else
            {
                oldestWindow = Math.Min(oldestWindow, h.Positions[s]);
            }
        }
        if (oldestWindow == int.MaxValue)
        {
            return;
        }
        for (int i = 0; i < sinks; i++)
        {
            if (!sinkSlot.TryGetValue(i, out int slot))
            {
                continue;
            }
            int delta = oldestWindow - sinks + i - positions[i];
            var cos = _rope!.Cos(Math.Abs(delta));
            var sin = _rope.Sin(Math.Abs(delta));
            for (int p = 0; p < d; p += 2)
            {
                float c = cos[p / 2], sn = delta < 0 ? -sin[p / 2] : sin[p / 2];
                float k0 = keys[i * d + p], k1 = keys[i * d + p + 1];
                h.Keys[slot * d + p] = k0 * c - k1 * sn;
                h.Keys[slot * d + p + 1] = k0 * sn + k1 * c;
            }
        }
    }

    private static void ForEachHead(HostKvCache cache, Action<int, int, HostKvCache.Head> action)
    {
        for (int l = 0; l < cache.Layers; l++)
        {
            for (int g = 0; g < cache.KvHeads(l); g++)
            {
                action(l, g, cache.Get(l, g));
            }
        }
    }
}
