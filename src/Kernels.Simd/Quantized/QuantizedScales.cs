using System.Runtime.CompilerServices;
using Kernels.Simd.Vectors;

namespace Kernels.Simd.Quantized;

/// <summary>Checks and fast conversion of the F16 block scales.</summary>
internal static unsafe class QuantizedScales
{
    /// <summary>True when no block scale of the <paramref name="blocks"/> blocks at <paramref name="data"/> is Inf/NaN.</summary>
    public static bool AllFinite(QuantType type, byte* data, long blocks)
    {
        var offsets = type.ScaleOffsets();
        int stride = type.BlockBytes();
        for (long b = 0; b < blocks; b++)
        {
            byte* block = data + b * stride;
            foreach (int o in offsets)
            {
                if ((Unsafe.ReadUnaligned<ushort>(block + o) & HalfBits.HalfInfinityBits) == HalfBits.HalfInfinityBits)
                {
                    return false;
                }
            }
        }
        return true;
    }

    /// <summary>Exact F16 to float for finite halves (subnormals included): shift into float position, rebias by 2^112.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Finite(byte* p) =>
        BitConverter.Int32BitsToSingle(((short)Unsafe.ReadUnaligned<ushort>(p) << 13) & HalfBits.FiniteHalfMask) * HalfBits.HalfRebias;
}
