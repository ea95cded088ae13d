using System.Runtime.CompilerServices;
using Kernels.Simd.Vectors;

namespace Kernels.Simd.Quantized;

/// <summary>Fast exact conversion of the F16 block scales.</summary>
/// <remarks>The table is allocated once per process and never freed.</remarks>
internal static unsafe class QuantizedScales
{
    /// <summary>
    /// Every F16 value as float (256 KB, built once). .NET 10 has no F16C intrinsic; converting a
    /// block scale with integer operations cost five to six instructions per block, a table load
    /// is one (llama.cpp does the same where F16C is missing). Exact, Inf and NaN included.
    /// </summary>
    private static readonly float* s_halfToSingle = BuildTable();

    private static float* BuildTable()
    {
        var table = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(65536 * sizeof(float), 64);
        for (int h = 0; h < 65536; h++)
        {
            table[h] = HalfBits.HalfToSingle((ushort)h);
        }
        return table;
    }

    /// <summary>
    /// The F16 value at <paramref name="p"/> as float (exact) without a memory access: shift into
    /// float position and rebias by 2^112 (exact for finite halves, subnormals included); Inf/NaN
    /// bits are built directly and chosen by a conditional move, not a branch (a never-taken
    /// branch to the general conversion made the caller's loop spill and cost the Q8_0 GEMV about a
    /// quarter of its time, docs/reports/quantized). For Q8_0, whose kernels stream twice the
    /// bytes per block of the 4-bit formats: the table's cache misses cost it 20-30 % there,
    /// while they halve the 4-bit kernels' time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Computed(byte* p)
    {
        int h = Unsafe.ReadUnaligned<ushort>(p);
        int finite = BitConverter.SingleToInt32Bits(BitConverter.Int32BitsToSingle(((short)h << 13) & HalfBits.FiniteHalfMask) * HalfBits.HalfRebias);
        int special = (h & 0x8000) << 16 | 0x7F80_0000 | (h & 0x03FF) << 13;
        return BitConverter.Int32BitsToSingle((h & (int)HalfBits.HalfInfinityBits) == (int)HalfBits.HalfInfinityBits ? special : finite);
    }

    /// <summary>The F16 value at <paramref name="p"/> as float (exact), from the table.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scale(byte* p) => s_halfToSingle[Unsafe.ReadUnaligned<ushort>(p)];
}
