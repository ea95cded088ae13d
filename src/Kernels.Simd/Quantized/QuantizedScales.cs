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

    /// <summary>The F16 value at <paramref name="p"/> as float (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scale(byte* p) => s_halfToSingle[Unsafe.ReadUnaligned<ushort>(p)];
}
