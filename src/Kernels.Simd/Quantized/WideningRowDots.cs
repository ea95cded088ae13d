using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kernels.Simd.Quantized;

/// <summary>
/// Q8_0/Q4_0 weights widened to float (AVX-512 <c>vpmovsxbd</c>/<c>vpmovzxbd</c> +
/// <c>vcvtdq2ps</c>) and multiplied with the float activations: the alternative the issue asked
/// to measure against the integer kernels (exact in x, no int8 rounding of the activations).
/// One-token Q4_0 products take it (<see cref="QuantizedMatMul.WidensOneToken"/>); Q8_0 is
/// selectable with <see cref="Int8DotKind.Widened"/> (measured even with the integer kernel).
/// </summary>
internal static unsafe class WideningRowDots
{
    public static bool IsSupported => Avx512F.IsSupported && Avx512BW.IsSupported;

    /// <summary>y[r] = row r · x for rows [begin, end) of a Q8_0 or Q4_0 matrix.</summary>
    public static void Rows(QuantType type, byte* data, long stride, float* x, float* y, int blocks, int begin, int end)
    {
        for (int r = begin; r < end; r++)
        {
            y[r] = type == QuantType.Q8_0 ? Q8_0(data + r * stride, x, blocks) : Q4_0(data + r * stride, x, blocks);
        }
    }

    public static float Q8_0(byte* row, float* x, int blocks)
    {
        var total = Vector512<float>.Zero;
        for (int b = 0; b < blocks; b++, row += 34, x += 32)
        {
            var w0 = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)(row + 2))));
            var w1 = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)(row + 18))));
            var d = Vector512.Create(QuantizedScales.Computed(row));
            var block = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x + 16), w0 * Vector512.Load(x));
            total = Avx512F.FusedMultiplyAdd(block, d, total);
        }
        return Vector512.Sum(total);
    }

    /// <summary>The 16 values of a Q4_0 block, q - 8 for q = 0..15, times the block's scale.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q4Values(float d) =>
        Vector512.Create(-8f, -7f, -6f, -5f, -4f, -3f, -2f, -1f, 0f, 1f, 2f, 3f, 4f, 5f, 6f, 7f) * Vector512.Create(d);

    public static float Q4_0(byte* row, float* x, int blocks)
    {
        // Each nibble selects its value d·(q - 8) from a 16-entry table with vpermps (which reads
        // only an index's low 4 bits): no masking, offset or int-to-float conversion per value.
        // Two accumulators: one FMA per block on each dependency chain.
        Vector512<float> low = Vector512<float>.Zero, high = Vector512<float>.Zero;
        for (int b = 0; b < blocks; b++, row += 18, x += 32)
        {
            var table = Q4Values(QuantizedScales.Scale(row));
            var bytes = Avx512F.ConvertToVector512Int32(Vector128.Load(row + 2));
            low = Avx512F.FusedMultiplyAdd(Avx512F.PermuteVar16x32(table, bytes), Vector512.Load(x), low);
            high = Avx512F.FusedMultiplyAdd(Avx512F.PermuteVar16x32(table, Avx512F.ShiftRightLogical(bytes, 4)), Vector512.Load(x + 16), high);
        }
        return Vector512.Sum(low + high);
    }
}
