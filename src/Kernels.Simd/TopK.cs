namespace Kernels.Simd;

/// <summary>
/// Top-k selection (not a full sort): indices of the k largest scores in O(n) expected time by
/// quickselect on (score, index) pairs; ties go to the lower index, so the result is
/// deterministic. The selected indices are returned in ascending order (weight columns are then
/// read front to back).
/// </summary>
public static class TopK
{
    /// <summary>Writes the indices of the <paramref name="k"/> largest <paramref name="scores"/> (ascending) into <paramref name="indices"/>.</summary>
    /// <param name="scratch">At least scores.Length ints of scratch space.</param>
    public static void Select(ReadOnlySpan<float> scores, int k, Span<int> indices, Span<int> scratch)
    {
        int n = scores.Length;
        if ((uint)k > (uint)n)
        {
            ThrowHelper.OutOfRange(nameof(k), $"k = {k} is outside [0, {n}]");
        }
        if (indices.Length < k || scratch.Length < n)
        {
            ThrowHelper.DestinationTooShort();
        }
        if (k == 0)
        {
            return;
        }
        var idx = scratch[..n];
        for (int i = 0; i < n; i++)
        {
            idx[i] = i;
        }
        if (k < n)
        {
            // Partition so idx[0..k) hold the k best.
            int lo = 0, hi = n - 1;
            // Pivots from an inline xorshift (seeded by k, n: deterministic, and no Random
            // allocation on the per-token decode path).
            uint state = (uint)(k * 7919 + n) | 1u;
            while (lo < hi)
            {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                int p = Partition(scores, idx, lo, hi, lo + (int)(state % (uint)(hi - lo + 1)));
                if (p == k - 1)
                {
                    break;
                }
                if (p < k - 1)
                {
                    lo = p + 1;
                }
                else
                {
                    hi = p - 1;
                }
            }
        }
        idx[..k].CopyTo(indices);
        indices[..k].Sort();
    }

    /// <summary>a ranks before b: larger score, then lower index.</summary>
    private static bool Before(ReadOnlySpan<float> s, int a, int b) => s[a] > s[b] || s[a] == s[b] && a < b;

    private static int Partition(ReadOnlySpan<float> s, Span<int> idx, int lo, int hi, int pivotAt)
    {
        int pivot = idx[pivotAt];
        (idx[pivotAt], idx[hi]) = (idx[hi], idx[pivotAt]);
        int store = lo;
        for (int i = lo; i < hi; i++)
        {
            if (Before(s, idx[i], pivot))
            {
                (idx[i], idx[store]) = (idx[store], idx[i]);
                store++;
            }
        }
        (idx[store], idx[hi]) = (idx[hi], idx[store]);
        return store;
    }
}
