namespace Kernels.Runtime.Compute;

/// <summary>
/// How a KV head's slots are compacted when only the flagged ones are kept: walking holes from the
/// front, each is filled with the last kept slot (O(evicted) moves; attention does not depend on
/// slot order, and positions travel with their slot). Every cache applies the same moves, so the
/// backends attend over the same order.
/// </summary>
public static class SlotCompaction
{
    /// <summary>Moves one slot's contents (K, V, position, statistics) over another.</summary>
    public interface IMover
    {
        void Move(int from, int to);
    }

    /// <summary>Calls <paramref name="mover"/> for each slot to move and returns the live count after (a struct mover: no allocation on the decode path).</summary>
    public static int Apply<TMover>(ReadOnlySpan<bool> keep, ref TMover mover) where TMover : struct, IMover
    {
        int n = keep.Length;
        int last = n - 1;
        for (int s = 0; s <= last; s++)
        {
            if (keep[s])
            {
                continue;
            }
            while (last > s && !keep[last])
            {
                last--;
            }
            if (last > s)
            {
                mover.Move(last, s);
            }
            last--;
        }
        int count = 0;
        foreach (bool k in keep)
        {
            count += k ? 1 : 0;
        }
        return count;
    }
}
