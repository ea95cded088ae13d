using Kernels.Runtime.Model;

namespace Kernels.Runtime.Compute;

/// <summary>
/// Host KV cache: for every layer and KV head, keys and values [slots, headDim] (keys after
/// RoPE), the position of each slot, and optional per-slot statistics (attention received,
/// value L1 norm) for eviction policies. Storage grows geometrically up to the capacity and
/// can be compacted and trimmed, so an evicted entry really frees memory.
/// </summary>
public sealed class HostKvCache : IKvMemory
{
    public sealed class Head
    {
        public float[] Keys = Array.Empty<float>();      // [slots, headDim]
        public float[] Values = Array.Empty<float>();    // [slots, headDim]
        public int[] Positions = Array.Empty<int>();     // [slots]
        public float[] Received = Array.Empty<float>();  // [slots, ScoreRows] Σ attention received (when tracked)
        public float[] ValueNorms = Array.Empty<float>(); // [slots] ‖v‖ (when tracked)
        public int Count;

        /// <summary>Scores per slot: 1 (the group's sum) or the GQA group size (one per query head).</summary>
        public int ScoreRows = 1;

        /// <summary>Query heads sharing this KV head.</summary>
        public int Group = 1;
        public int Slots => Positions.Length;
    }

    private readonly Head[][] _heads;

    public HostKvCache(LlamaModel model, int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        HeadDim = model.Config.HeadDim;
        Capacity = capacity;
        _heads = model.Layers.Select(l => Enumerable.Range(0, l.KvHeads).Select(_ => new Head { Group = l.Heads / l.KvHeads }).ToArray()).ToArray();
    }

    public int HeadDim { get; }

    /// <summary>Most tokens a head may hold.</summary>
    public int Capacity { get; }

    /// <summary>Accumulate each slot's received attention (for H2O/VATP-style policies).</summary>
    public bool TrackAttention => Scoring != KvScoring.None;

    /// <summary>Accumulate p·‖v‖ instead of p (VATP).</summary>
    public bool WeightByValueNorm => Scoring is KvScoring.AttentionTimesValueNorm or KvScoring.AttentionTimesValueL2Norm or KvScoring.AttentionTimesValueMaxNorm;

    public KvScoring Scoring { get; set; }

    /// <summary>One score per query head of the group, slot-major (set while the cache is empty: it fixes the score layout).</summary>
    public bool ScorePerQueryHead
    {
        get => _scorePerQueryHead;
        set
        {
            if (_heads.Any(l => l.Any(h => h.Count > 0 || h.Received.Length > 0)))
            {
                throw new InvalidOperationException("the score layout is fixed once the cache holds tokens");
            }
            _scorePerQueryHead = value;
            foreach (var h in _heads.SelectMany(l => l))
            {
                h.ScoreRows = value ? h.Group : 1;
            }
        }
    }

    private bool _scorePerQueryHead;

    /// <summary>The value norm the scoring multiplies attention by.</summary>
    public float ValueNorm(ReadOnlySpan<float> value)
    {
        float acc = 0f;
        switch (Scoring)
        {
            case KvScoring.AttentionTimesValueL2Norm:
                foreach (float x in value)
                {
                    acc += x * x;
                }
                return MathF.Sqrt(acc);
            case KvScoring.AttentionTimesValueMaxNorm:
                foreach (float x in value)
                {
                    acc = MathF.Max(acc, MathF.Abs(x));
                }
                return acc;
            default:
                unsafe
                {
                    fixed (float* pv = value)
                    {
                        return Kernels.Simd.Attention.L1Norm(pv, value.Length);
                    }
                }
        }
    }

    /// <summary>Geometric growth stops here (a budgeted policy sets it to its budget, so storage is not over-allocated).</summary>
    public int GrowthCap { get; set; } = int.MaxValue;

    /// <summary>Only queries at this position or later add to the statistics (Scissorhands' window of the last W prompt queries).</summary>
    public int ScoreFromPosition { get; set; }

    /// <summary>Bytes of the per-slot statistics and positions (overhead beside the K/V bytes).</summary>
    public long StatisticsBytes => _heads.Sum(l => l.Sum(h => (long)(h.Positions.Length + h.Received.Length + h.ValueNorms.Length) * 4));

    public int Layers => _heads.Length;

    public Head Get(int layer, int kvHead) => _heads[layer][kvHead];

    public int KvHeads(int layer) => _heads[layer].Length;

    public int Count(int layer, int kvHead) => _heads[layer][kvHead].Count;

    public long BytesHeld => _heads.Sum(l => l.Sum(h => (long)(h.Keys.Length + h.Values.Length) * sizeof(float)));

    public long BytesUsed => _heads.Sum(l => l.Sum(h => (long)h.Count * 2 * HeadDim * sizeof(float)));

    public ReadOnlySpan<int> Positions(int layer, int kvHead)
    {
        var h = _heads[layer][kvHead];
        return h.Positions.AsSpan(0, h.Count);
    }

    public ReadOnlySpan<float> Scores(int layer, int kvHead)
    {
        var h = _heads[layer][kvHead];
        return h.Received.Length == 0 ? ReadOnlySpan<float>.Empty : h.Received.AsSpan(0, h.Count * h.ScoreRows);
    }

    public void WriteScores(int layer, int kvHead, ReadOnlySpan<float> scores)
    {
        var h = _heads[layer][kvHead];
        if (scores.Length != h.Count * h.ScoreRows || h.Received.Length == 0)
        {
            throw new ArgumentException($"{scores.Length} scores for {h.Count} live slots x {h.ScoreRows} (scoring {Scoring})", nameof(scores));
        }
        scores.CopyTo(h.Received);
    }

    public ReadOnlySpan<float> Keys(int layer, int kvHead)
    {
        var h = _heads[layer][kvHead];
        return h.Keys.AsSpan(0, h.Count * HeadDim);
    }

    public void WriteKey(int layer, int kvHead, int slot, ReadOnlySpan<float> key)
    {
        var h = _heads[layer][kvHead];
        if ((uint)slot >= (uint)h.Count || key.Length != HeadDim)
        {
            throw new ArgumentOutOfRangeException(nameof(slot), $"slot {slot} of {h.Count} live slots, key of {key.Length} floats (head dim {HeadDim})");
        }
        key.CopyTo(h.Keys.AsSpan(slot * HeadDim, HeadDim));
    }

    public ReadOnlySpan<float> Values(int layer, int kvHead)
    {
        var h = _heads[layer][kvHead];
        return h.Values.AsSpan(0, h.Count * HeadDim);
    }

    public void Trim(int layer, int kvHead, int slots)
    {
        var h = _heads[layer][kvHead];
        Resize(h, Math.Min(h.Slots, slots));
    }

    /// <summary>Makes room for <paramref name="extra"/> more slots in (layer, head).</summary>
    public void Reserve(int layer, int kvHead, int extra)
    {
        var h = _heads[layer][kvHead];
        int need = h.Count + extra;
        if (need > Capacity)
        {
            throw new InvalidOperationException($"KV cache full: layer {layer} head {kvHead} holds {h.Count} of {Capacity} tokens and {extra} more were added (context exceeded)");
        }
        if (need > h.Slots)
        {
            int grown = Math.Min(Capacity, Math.Max(need, Math.Max(16, h.Slots * 2)));
            Resize(h, Math.Max(need, Math.Min(grown, GrowthCap)));
        }
    }

    /// <summary>Reallocates a head's storage to exactly <paramref name="slots"/> slots (keeps the live entries).</summary>
    private void Resize(Head h, int slots)
    {
        slots = Math.Max(slots, h.Count);
        Array.Resize(ref h.Keys, slots * HeadDim);
        Array.Resize(ref h.Values, slots * HeadDim);
        Array.Resize(ref h.Positions, slots);
        if (TrackAttention || h.Received.Length > 0)
        {
            Array.Resize(ref h.Received, slots * h.ScoreRows);
            Array.Resize(ref h.ValueNorms, slots);
        }
    }

    /// <summary>Copies slot <paramref name="from"/> (K, V, position and score statistics) over slot <paramref name="to"/>.</summary>
    private void MoveSlot(Head h, int from, int to)
    {
        int d = HeadDim;
        Array.Copy(h.Keys, from * d, h.Keys, to * d, d);
        Array.Copy(h.Values, from * d, h.Values, to * d, d);
        h.Positions[to] = h.Positions[from];
        if (h.Received.Length > 0)
        {
            Array.Copy(h.Received, from * h.ScoreRows, h.Received, to * h.ScoreRows, h.ScoreRows);
            h.ValueNorms[to] = h.ValueNorms[from];
        }
    }

    /// <summary>
    /// Removes the slots whose <paramref name="keep"/> flag is false, moving the last live slots
    /// into the holes (O(evicted · headDim); slot order is irrelevant to attention, positions
    /// travel with their slot).
    /// </summary>
    public void Keep(int layer, int kvHead, ReadOnlySpan<bool> keep)
    {
        var h = _heads[layer][kvHead];
        var mover = new SlotMover(this, h);
        h.Count = SlotCompaction.Apply(keep[..h.Count], ref mover);
    }

    private readonly struct SlotMover(HostKvCache cache, Head head) : SlotCompaction.IMover
    {
        public void Move(int from, int to) => cache.MoveSlot(head, from, to);
    }

    /// <summary>Keeps only the slots listed (ascending) and moves them to the front, in order.</summary>
    public void Compact(int layer, int kvHead, ReadOnlySpan<int> keep)
    {
        var h = _heads[layer][kvHead];
        int w = 0;
        int last = -1;
        foreach (int s in keep)
        {
            if (s <= last || s >= h.Count)
            {
                throw new ArgumentException("keep must list valid slots in ascending order");
            }
            last = s;
            if (s != w)
            {
                MoveSlot(h, s, w);
            }
            w++;
        }
        h.Count = w;
        if (h.Received.Length > 0)
        {
            Array.Clear(h.Received, w * h.ScoreRows, h.Received.Length - w * h.ScoreRows);
        }
    }

    public void Reset()
    {
        foreach (var layer in _heads)
        {
            foreach (var h in layer)
            {
                h.Count = 0;
                if (h.Received.Length > 0)
                {
                    Array.Clear(h.Received);
                }
            }
        }
    }

    public void Dispose()
    {
    }
}
