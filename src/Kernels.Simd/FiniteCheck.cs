using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kernels.Simd;

/// <summary>
/// Finds NaN and ±Inf in float data (weights scanned at load, activations checked per layer): a
/// float is non-finite exactly when its eight exponent bits are all ones, so the test is one AND
/// and one compare per vector, dispatched on <see cref="SimdInfo.Tier"/>.
/// </summary>
public static class FiniteCheck
{
    private const uint ExponentMask = 0x7F80_0000;

    /// <summary>Index of the first NaN or infinity in <paramref name="values"/>, or -1 when all are finite.</summary>
    public static int IndexOfNonFinite(ReadOnlySpan<float> values)
    {
        var bits = MemoryMarshal.Cast<float, uint>(values);
        int i = 0;
        if (SimdInfo.Use512)
        {
            var mask = Vector512.Create(ExponentMask);
            for (; i <= bits.Length - Vector512<uint>.Count; i += Vector512<uint>.Count)
            {
                if (Vector512.EqualsAny(Vector512.LoadUnsafe(ref MemoryMarshal.GetReference(bits), (nuint)i) & mask, mask))
                {
                    break;
                }
            }
        }
        else if (SimdInfo.Use256)
        {
            var mask = Vector256.Create(ExponentMask);
            for (; i <= bits.Length - Vector256<uint>.Count; i += Vector256<uint>.Count)
            {
                if (Vector256.EqualsAny(Vector256.LoadUnsafe(ref MemoryMarshal.GetReference(bits), (nuint)i) & mask, mask))
                {
                    break;
                }
            }
        }
        else if (SimdInfo.Tier != SimdTier.Scalar)
        {
            var mask = Vector128.Create(ExponentMask);
            for (; i <= bits.Length - Vector128<uint>.Count; i += Vector128<uint>.Count)
            {
                if (Vector128.EqualsAny(Vector128.LoadUnsafe(ref MemoryMarshal.GetReference(bits), (nuint)i) & mask, mask))
                {
                    break;
                }
            }
        }
        // The vector loop stops at the first vector holding a hit (or the tail): locate it exactly.
        for (; i < bits.Length; i++)
        {
            if ((bits[i] & ExponentMask) == ExponentMask)
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>True when every value is finite.</summary>
    public static bool AllFinite(ReadOnlySpan<float> values) => IndexOfNonFinite(values) < 0;
}
