using System.Numerics;
using System.Runtime.InteropServices;

namespace Kernels.Simd;

/// <summary>
/// Top-k selection (not a sort): indices of the k largest scores, ties to the lower index, so the
/// result is deterministic; returned in ascending order (weight columns are then read front to back).
/// </summary>
/// <remarks>
/// Scores are mapped to order-preserving 32-bit keys; a bisection over the key range finds the
/// k-th largest key T with vectorized counts (32 counting passes), and one ascending scan takes
/// every key above T and the first of those equal to T. O(32·n/vector + n) with no data-dependent
/// swaps: on decode's 2048- and 5632-wide MLP inputs it replaced a quickselect that took 14 % of
/// a DIP step. NaN ranks below every number; −0 equals +0.
/// </remarks>
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
        var keys = MemoryMarshal.Cast<int, uint>(scratch[..n]);
        for (int i = 0; i < n; i++)
        {
            keys[i] = Key(scores[i]);
        }
        // Largest T with count(key ≥ T) ≥ k: the k-th largest key.
        uint lo = 0, hi = uint.MaxValue;
        while (lo < hi)
        {
            uint mid = lo + (uint)((hi - (ulong)lo + 1) / 2);
            if (CountAtLeast(keys, mid) >= k)
            {
                lo = mid;
            }
            else
            {
                hi = mid - 1;
            }
        }
        uint threshold = lo;
        // Keys equal to the threshold fill what the larger ones leave, lowest indices first.
        int ties = k - (threshold == uint.MaxValue ? 0 : CountAtLeast(keys, threshold + 1));
        int taken = 0;
        for (int i = 0; i < n && taken < k; i++)
        {
            uint key = keys[i];
            if (key > threshold || key == threshold && ties-- > 0)
            {
                indices[taken++] = i;
            }
        }
    }

    /// <summary>Order-preserving key: larger floats get larger keys; NaN the smallest; −0 as +0.</summary>
    private static uint Key(float value)
    {
        if (float.IsNaN(value))
        {
            return 0;
        }
        uint bits = BitConverter.SingleToUInt32Bits(value == 0f ? 0f : value);
        return (bits & 0x8000_0000) != 0 ? ~bits : bits | 0x8000_0000;
    }

    private static int CountAtLeast(ReadOnlySpan<uint> keys, uint threshold)
    {
        int count = 0, i = 0;
        if (Vector.IsHardwareAccelerated && keys.Length >= Vector<uint>.Count)
        {
            var t = new Vector<uint>(threshold);
            var ones = Vector<uint>.One;
            var sum = Vector<uint>.Zero;
            var vectors = MemoryMarshal.Cast<uint, Vector<uint>>(keys);
            foreach (var v in vectors)
            {
                sum += Vector.GreaterThanOrEqual(v, t) & ones;
            }
            count = (int)Vector.Sum(sum);
            i = vectors.Length * Vector<uint>.Count;
        }
        for (; i < keys.Length; i++)
        {
            count += keys[i] >= threshold ? 1 : 0;
        }
        return count;
    }
}
