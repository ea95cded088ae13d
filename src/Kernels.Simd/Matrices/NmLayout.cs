using System.Runtime.CompilerServices;

namespace Kernels.Simd.Matrices;

/// <summary>
/// Where the kept values of an N:M row live. 16-bit value types store each full block of 32 kept
/// values pairwise interleaved (kept 0,16,1,17,...), so one 32-byte load widens into the two
/// float vectors that multiply consecutive inputs; the tail after the last full block stays in
/// order. Defined once: the SIMD kernels, the matrix's own accessors and the GPU kernels call it.
/// </summary>
public static class NmLayout
{
    /// <summary>Storage slot of kept value <paramref name="k"/> in a 16-bit row of <paramref name="kept"/> kept values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int StorageIndex(int k, int kept)
    {
        if (k >= kept / 32 * 32)
        {
            return k;
        }
        int r = k & 31;
        return (k & ~31) + (r < 16 ? 2 * r : 2 * (r - 16) + 1);
    }
}
