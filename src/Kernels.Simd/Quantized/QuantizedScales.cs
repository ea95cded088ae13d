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
    /// take a branch that is never taken in a sane file. For Q8_0, whose kernels stream twice the
    /// bytes per block of the 4-bit formats: the table's cache misses cost it 20-30 % there
    /// (docs/reports/quantized), while they halve the 4-bit kernels' time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Computed(byte* p)
    {
        ushort h = Unsafe.ReadUnaligned<ushort>(p);
        if ((h & HalfBits.HalfInfinityBits) == HalfBits.HalfInfinityBits)
        {
            return HalfBits.HalfToSingle(h);
        }
        return BitConverter.Int32BitsToSingle(((short)h << 13) & HalfBits.FiniteHalfMask) * HalfBits.HalfRebias;
    }

    /// <summary>The F16 value at <paramref name="p"/> as float (exact), from the table.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scale(byte* p) => s_halfToSingle[Unsafe.ReadUnaligned<ushort>(p)];
}
