using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kernels.Simd;

/// <summary>Register transposes of float blocks (repacking activations for the sparse prefill kernel).</summary>
internal static unsafe class Transpose
{
    /// <summary>dst[i·dstStride + j] = src[j·srcStride + i] for i, j in [0, 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Block16x16(float* src, long srcStride, float* dst, long dstStride)
    {
        if (!Avx512F.IsSupported)
        {
            for (int i = 0; i < 16; i++)
            {
                for (int j = 0; j < 16; j++)
                {
                    dst[i * dstStride + j] = src[j * srcStride + i];
                }
            }
            return;
        }
        // Interleave 32-bit pairs, then 64-bit pairs within 128-bit lanes: u[4q + j] lane L holds
        // column 4L + j of rows 4q .. 4q+3.
        var t0 = Avx512F.UnpackLow(Vector512.Load(src), Vector512.Load(src + srcStride));
        var t1 = Avx512F.UnpackHigh(Vector512.Load(src), Vector512.Load(src + srcStride));
        var t2 = Avx512F.UnpackLow(Vector512.Load(src + 2 * srcStride), Vector512.Load(src + 3 * srcStride));
        var t3 = Avx512F.UnpackHigh(Vector512.Load(src + 2 * srcStride), Vector512.Load(src + 3 * srcStride));
        var t4 = Avx512F.UnpackLow(Vector512.Load(src + 4 * srcStride), Vector512.Load(src + 5 * srcStride));
        var t5 = Avx512F.UnpackHigh(Vector512.Load(src + 4 * srcStride), Vector512.Load(src + 5 * srcStride));
        var t6 = Avx512F.UnpackLow(Vector512.Load(src + 6 * srcStride), Vector512.Load(src + 7 * srcStride));
        var t7 = Avx512F.UnpackHigh(Vector512.Load(src + 6 * srcStride), Vector512.Load(src + 7 * srcStride));
        var t8 = Avx512F.UnpackLow(Vector512.Load(src + 8 * srcStride), Vector512.Load(src + 9 * srcStride));
        var t9 = Avx512F.UnpackHigh(Vector512.Load(src + 8 * srcStride), Vector512.Load(src + 9 * srcStride));
        var t10 = Avx512F.UnpackLow(Vector512.Load(src + 10 * srcStride), Vector512.Load(src + 11 * srcStride));
        var t11 = Avx512F.UnpackHigh(Vector512.Load(src + 10 * srcStride), Vector512.Load(src + 11 * srcStride));
        var t12 = Avx512F.UnpackLow(Vector512.Load(src + 12 * srcStride), Vector512.Load(src + 13 * srcStride));
        var t13 = Avx512F.UnpackHigh(Vector512.Load(src + 12 * srcStride), Vector512.Load(src + 13 * srcStride));
        var t14 = Avx512F.UnpackLow(Vector512.Load(src + 14 * srcStride), Vector512.Load(src + 15 * srcStride));
        var t15 = Avx512F.UnpackHigh(Vector512.Load(src + 14 * srcStride), Vector512.Load(src + 15 * srcStride));
        // Columns 4L + j of row quads 0-3, 4-7, 8-11, 12-15: j = 0, 1 from the low pairs, 2, 3 from the high ones.
        StoreColumns(Avx512F.Shuffle(t0, t2, 0x44), Avx512F.Shuffle(t4, t6, 0x44), Avx512F.Shuffle(t8, t10, 0x44), Avx512F.Shuffle(t12, t14, 0x44), dst, dstStride);
        StoreColumns(Avx512F.Shuffle(t0, t2, 0xEE), Avx512F.Shuffle(t4, t6, 0xEE), Avx512F.Shuffle(t8, t10, 0xEE), Avx512F.Shuffle(t12, t14, 0xEE), dst + dstStride, dstStride);
        StoreColumns(Avx512F.Shuffle(t1, t3, 0x44), Avx512F.Shuffle(t5, t7, 0x44), Avx512F.Shuffle(t9, t11, 0x44), Avx512F.Shuffle(t13, t15, 0x44), dst + 2 * dstStride, dstStride);
        StoreColumns(Avx512F.Shuffle(t1, t3, 0xEE), Avx512F.Shuffle(t5, t7, 0xEE), Avx512F.Shuffle(t9, t11, 0xEE), Avx512F.Shuffle(t13, t15, 0xEE), dst + 3 * dstStride, dstStride);
    }

    /// <summary>u0, u4, u8, u12: lane L holds one column (4L + j) of row quads 0-3, 4-7, 8-11, 12-15; stores rows j, 4 + j, 8 + j, 12 + j of dst.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreColumns(Vector512<float> u0, Vector512<float> u4, Vector512<float> u8, Vector512<float> u12, float* dst, long dstStride)
    {
        var v0 = Avx512F.Shuffle4x128(u0, u4, 0x88);   // u0.L0 u0.L2 u4.L0 u4.L2
        var v1 = Avx512F.Shuffle4x128(u0, u4, 0xDD);   // u0.L1 u0.L3 u4.L1 u4.L3
        var v2 = Avx512F.Shuffle4x128(u8, u12, 0x88);
        var v3 = Avx512F.Shuffle4x128(u8, u12, 0xDD);
        Avx512F.Shuffle4x128(v0, v2, 0x88).Store(dst);                  // lane 0 of each: column j
        Avx512F.Shuffle4x128(v1, v3, 0x88).Store(dst + 4 * dstStride);  // lane 1: column 4 + j
        Avx512F.Shuffle4x128(v0, v2, 0xDD).Store(dst + 8 * dstStride);  // lane 2: column 8 + j
        Avx512F.Shuffle4x128(v1, v3, 0xDD).Store(dst + 12 * dstStride); // lane 3: column 12 + j
    }
}
