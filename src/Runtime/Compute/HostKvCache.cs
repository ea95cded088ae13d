using Kernels.Runtime.Model;

namespace Kernels.Runtime.Compute;

/// <summary>
/// Host KV cache: for every layer and KV head, keys and values [slots, headDim] (keys after
/// RoPE), the position of each slot, and optional per-slot statistics (attention received,
/// value L1 norm) for eviction policies. Storage grows geometrically up to the capacity and
/// can be compacted and trimmed, so an evicted entry really frees memory.
/// </summary>
public sealed class HostKvCache : IKvCache
{
    public sealed class Head
    {
        public float[] Keys = Array.Empty<float>();      // [slots, headDim]
        public float[] Values = Array.Empty<float>();    // [slots, headDim]
        public int[] Positions = Array.Empty<int>();     // [slots]
        public float[] Received = Array.Empty<float>();  // [slots] Σ attention received (when tracked)
        public int Count;
        public int Slots => Positions.Length;
    }

    private readonly Head[][] _heads;

    public HostKvCache(LlamaModel model, int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        HeadDim = model.Config.HeadDim;
        Capacity = capacity;
        _heads = model.Layers.Select(l => Enumerable.Range(0, l.KvHeads).Select(_ => new Head()).ToArray()).ToArray();
    }

    public int HeadDim { get; }

    /// <summary>Most tokens a head may hold.</summary>
    public int Capacity { get; }

    /// <summary>Accumulate each slot's received attention (for H2O/VATP-style policies).</summary>
    public bool TrackAttention { get; set; }

    public int Layers => _heads.Length;

    public Head Get(int layer, int kvHead) => _heads[layer][kvHead];

    public int KvHeads(int layer) => _heads[layer].Length;

    public int Count(int layer, int kvHead) => _heads[layer][kvHead].Count;

    public long BytesHeld => _heads.Sum(l => l.Sum(h => (long)(h.Keys.Length + h.Values.Length) * sizeof(float)));

    public long BytesUsed => _heads.Sum(l => l.Sum(h => (long)h.Count * 2 * HeadDim * sizeof(float)));

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
            Resize(h, Math.Min(Capacity, Math.Max(need, Math.Max(16, h.Slots * 2))));
        }
    }

    /// <summary>Reallocates a head's storage to exactly <paramref name="slots"/> slots (keeps the live entries).</summary>
    public void Resize(Head h, int slots)
    {
        slots = Math.Max(slots, h.Count);
        Array.Resize(ref h.Keys, slots * HeadDim);
        Array.Resize(ref h.Values, slots * HeadDim);
        Array.Resize(ref h.Positions, slots);
        if (TrackAttention || h.Received.Length > 0)
        {
            Array.Resize(ref h.Received, slots);
        }
    }

    /// <summary>Keeps only the slots listed (ascending) and moves them to the front, in order.</summary>
    public void Compact(int layer, int kvHead, ReadOnlySpan<int> keep)
    {
        var h = _heads[layer][kvHead];
        int d = HeadDim;
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
                Array.Copy(h.Keys, s * d, h.Keys, w * d, d);
                Array.Copy(h.Values, s * d, h.Values, w * d, d);
                h.Positions[w] = h.Positions[s];
                if (h.Received.Length > 0)
                {
                    h.Received[w] = h.Received[s];
                }
            }
            w++;
        }
        h.Count = w;
        if (h.Received.Length > 0)
        {
            Array.Clear(h.Received, w, h.Received.Length - w);
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
