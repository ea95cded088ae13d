namespace Kernels.Runtime.Dip;

/// <summary>
/// Which columns of one masked matrix are resident in DRAM, updated after every token with the
/// token's column mask: mask columns are (re)inserted; when the cache would overflow, unused
/// columns are evicted — oldest (LRU), least used (LFU) or used farthest in the future (Belady,
/// given the future masks). If the mask alone exceeds the capacity, a deterministic pseudo-random
/// subset of its new columns is inserted. Starts empty, so the first token reads only from flash.
/// </summary>
public sealed class ColumnCache
{
    private readonly bool[] _resident;
    private readonly long[] _stamp;     // LRU: last use; LFU: use count
    private readonly ColumnCachePolicy _policy;
    private int _count;
    private long _clock;
    private ulong _rng = 0x9E3779B97F4A7C15UL;

    public ColumnCache(int columns, int capacity, ColumnCachePolicy policy)
    {
        Columns = columns;
        Capacity = Math.Clamp(capacity, 0, columns);
        _policy = policy;
        _resident = new bool[columns];
        _stamp = new long[columns];
    }

    public int Columns { get; }
    public int Capacity { get; }
    public int Count => _count;

    public bool IsResident(int column) => _resident[column];

    /// <summary>Empties the cache (a new sequence starts with nothing resident, as the reference simulates).</summary>
    public void Reset()
    {
        Array.Clear(_resident);
        Array.Clear(_stamp);
        _count = 0;
        _clock = 0;
    }

    /// <summary>|mask ∩ cache|.</summary>
    public int Hits(ReadOnlySpan<int> mask)
    {
        int h = 0;
        foreach (int c in mask)
        {
            h += _resident[c] ? 1 : 0;
        }
        return h;
    }

    /// <param name="nextUse">Belady only: for each column, the index of the next token that uses it (long.MaxValue if never).</param>
    public void Update(ReadOnlySpan<int> mask, Func<int, long>? nextUse = null)
    {
        if (_policy == ColumnCachePolicy.None || Capacity == 0)
        {
            return;
        }
        _clock++;
        var inMask = new HashSet<int>();
        foreach (int c in mask)
        {
            inMask.Add(c);
        }
        int newColumns = 0;
        foreach (int c in inMask)
        {
            if (!_resident[c])
            {
                newColumns++;
            }
        }
        int unused = _count - (inMask.Count - newColumns);
        int evict = Math.Min(unused, inMask.Count + unused - Capacity);
        if (evict > 0)
        {
            var candidates = new List<int>(unused);
            for (int c = 0; c < Columns; c++)
            {
                if (_resident[c] && !inMask.Contains(c))
                {
                    candidates.Add(c);
                }
            }
            IEnumerable<int> order = _policy switch
            {
                ColumnCachePolicy.Lru => candidates.OrderBy(c => _stamp[c]).ThenBy(c => c),
                ColumnCachePolicy.Lfu => candidates.OrderBy(c => _stamp[c]).ThenBy(c => c),
                ColumnCachePolicy.Belady => candidates.OrderByDescending(c => nextUse?.Invoke(c) ?? long.MaxValue).ThenBy(c => c),
                _ => candidates,
            };
            foreach (int c in order.Take(evict))
            {
                _resident[c] = false;
                _count--;
            }
        }
        // Insert the mask (hits refresh their stamp); if it cannot all fit, a pseudo-random subset of the new columns.
        int room = Capacity - _count;
        var fresh = new List<int>();
        foreach (int c in inMask)
        {
            if (_resident[c])
            {
                Touch(c);
            }
            else
            {
                fresh.Add(c);
            }
        }
        if (fresh.Count > room)
        {
            for (int i = fresh.Count - 1; i > 0; i--)
            {
                _rng ^= _rng << 13;
                _rng ^= _rng >> 7;
                _rng ^= _rng << 17;
                int j = (int)(_rng % (ulong)(i + 1));
                (fresh[i], fresh[j]) = (fresh[j], fresh[i]);
            }
            fresh.RemoveRange(Math.Max(0, room), fresh.Count - Math.Max(0, room));
        }
        foreach (int c in fresh)
        {
            _resident[c] = true;
            _count++;
            _stamp[c] = _policy == ColumnCachePolicy.Lfu ? 0 : 0;
            Touch(c);
        }
    }

    private void Touch(int c) => _stamp[c] = _policy == ColumnCachePolicy.Lfu ? _stamp[c] + 1 : _clock;
}
