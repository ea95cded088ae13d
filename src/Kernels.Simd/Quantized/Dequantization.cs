using System.Runtime.CompilerServices;
using Kernels.Simd.Vectors;

namespace Kernels.Simd.Quantized;

/// <summary>
/// Block dequantization to float32, bit-identical to ggml's <c>dequantize_row_*</c> (and to
/// gguf-py's numpy reference): every product below is computed in the same order in float32, and
/// where a product could round (Q6_K's d·scale·q) it is rounded at the same step.
/// </summary>
/// <remarks>This is the reference the quantized GEMV kernels are tested against, and the
/// path for embedding lookups, conversion and the generic GEMV of the less common types.</remarks>
public static unsafe class Dequantization
{
    /// <summary>Writes the <paramref name="columns"/> weights of one row (whole blocks) to <paramref name="y"/>.</summary>
    public static void Row(QuantType type, byte* row, float* y, int columns)
    {
        int k = type.BlockElements(), bytes = type.BlockBytes();
        if (columns % k != 0)
        {
            ThrowHelper.Argument($"a {type} row holds whole blocks of {k} weights; {columns} is not a multiple of {k}", nameof(columns));
        }
        for (int b = 0; b < columns / k; b++)
        {
            Block(type, row + (long)b * bytes, y + (long)b * k);
        }
    }

    /// <summary>Writes one block's <see cref="QuantTypeExtensions.BlockElements"/> weights to <paramref name="y"/>.</summary>
    public static void Block(QuantType type, byte* block, float* y)
    {
        switch (type)
        {
            case QuantType.Q8_0: Q8_0(block, y); break;
            case QuantType.Q4_0: Q4_0(block, y); break;
            case QuantType.Q4_1: Q4_1(block, y); break;
            case QuantType.Q5_0: Q5_0(block, y); break;
            case QuantType.Q5_1: Q5_1(block, y); break;
            case QuantType.Q2_K: Q2_K(block, y); break;
            case QuantType.Q3_K: Q3_K(block, y); break;
            case QuantType.Q4_K: Q4_K(block, y); break;
            case QuantType.Q5_K: Q5_K(block, y); break;
            case QuantType.Q6_K: Q6_K(block, y); break;
            default: ThrowHelper.NotSupported($"quantized type {type}"); break;
        }
    }

    /// <summary>Weight <paramref name="column"/> of a row (dequantizes its block; slow, for tests and references).</summary>
    public static float Element(QuantType type, byte* row, int column)
    {
        int k = type.BlockElements();
        float* block = stackalloc float[256];
        Block(type, row + (long)(column / k) * type.BlockBytes(), block);
        return block[column % k];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Half(byte* p) => HalfBits.HalfToSingle(Unsafe.ReadUnaligned<ushort>(p));

    private static void Q8_0(byte* b, float* y)
    {
        float d = Half(b);
        sbyte* q = (sbyte*)(b + 2);
        for (int j = 0; j < 32; j++)
        {
            y[j] = q[j] * d;
        }
    }

    private static void Q4_0(byte* b, float* y)
    {
        float d = Half(b);
        byte* qs = b + 2;
        for (int j = 0; j < 16; j++)
        {
            y[j] = ((qs[j] & 0x0F) - 8) * d;
            y[j + 16] = ((qs[j] >> 4) - 8) * d;
        }
    }

    private static void Q4_1(byte* b, float* y)
    {
        float d = Half(b), m = Half(b + 2);
        byte* qs = b + 4;
        for (int j = 0; j < 16; j++)
        {
            y[j] = (qs[j] & 0x0F) * d + m;
            y[j + 16] = (qs[j] >> 4) * d + m;
        }
    }

    private static void Q5_0(byte* b, float* y)
    {
        float d = Half(b);
        uint qh = Unsafe.ReadUnaligned<uint>(b + 2);
        byte* qs = b + 6;
        for (int j = 0; j < 16; j++)
        {
            int h0 = (int)((qh >> j) << 4) & 0x10;
            int h1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = (((qs[j] & 0x0F) | h0) - 16) * d;
            y[j + 16] = (((qs[j] >> 4) | h1) - 16) * d;
        }
    }

    private static void Q5_1(byte* b, float* y)
    {
        float d = Half(b), m = Half(b + 2);
        uint qh = Unsafe.ReadUnaligned<uint>(b + 4);
        byte* qs = b + 8;
        for (int j = 0; j < 16; j++)
        {
            int h0 = (int)((qh >> j) << 4) & 0x10;
            int h1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = ((qs[j] & 0x0F) | h0) * d + m;
            y[j + 16] = ((qs[j] >> 4) | h1) * d + m;
        }
    }

    // block_q2_K: scales[16], qs[64], d, dmin
    private static void Q2_K(byte* b, float* y)
    {
        byte* scales = b;
        byte* q = b + 16;
        float d = Half(b + 80), min = Half(b + 82);
        int s = 0;
        for (int n = 0; n < 256; n += 128)
        {
            for (int shift = 0; shift < 8; shift += 2)
            {
                for (int half = 0; half < 2; half++)
                {
                    byte sc = scales[s++];
                    float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    byte* ql = q + 16 * half;
                    for (int l = 0; l < 16; l++)
                    {
                        *y++ = dl * ((ql[l] >> shift) & 3) - ml;
                    }
                }
            }
            q += 32;
        }
    }

    // block_q3_K: hmask[32], qs[64], scales[12], d
    private static void Q3_K(byte* b, float* y)
    {
        byte* hm = b;
        byte* q = b + 32;
        sbyte* scales = stackalloc sbyte[16];
        Q3Scales(b + 96, scales);
        float dAll = Half(b + 108);
        int s = 0;
        byte m = 1;
        for (int n = 0; n < 256; n += 128)
        {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1)
            {
                for (int half = 0; half < 2; half++)
                {
                    float dl = dAll * (scales[s++] - 32);
                    int o = 16 * half;
                    for (int l = 0; l < 16; l++)
                    {
                        *y++ = dl * (((q[l + o] >> shift) & 3) - ((hm[l + o] & m) != 0 ? 0 : 4));
                    }
                }
            }
            q += 32;
        }
    }

    /// <summary>Unpacks Q3_K's twelve bytes of 6-bit scales into 16 values (still biased by 32).</summary>
    internal static void Q3Scales(byte* packed, sbyte* scales)
    {
        const uint kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        uint a0 = Unsafe.ReadUnaligned<uint>(packed), a1 = Unsafe.ReadUnaligned<uint>(packed + 4), tmp = Unsafe.ReadUnaligned<uint>(packed + 8);
        uint* aux = (uint*)scales;
        aux[0] = (a0 & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4);
        aux[2] = ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    }

    /// <summary>Q4_K/Q5_K: 6-bit scale and min of sub-block <paramref name="j"/> (0-7) from the 12 packed bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void ScaleMinK4(int j, byte* q, out int scale, out int min)
    {
        if (j < 4)
        {
            scale = q[j] & 63;
            min = q[j + 4] & 63;
        }
        else
        {
            scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
            min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }

    // block_q4_K: d, dmin, scales[12], qs[128]
    private static void Q4_K(byte* b, float* y)
    {
        float d = Half(b), min = Half(b + 2);
        byte* scales = b + 4;
        byte* q = b + 16;
        for (int j = 0, s = 0; j < 256; j += 64, s += 2, q += 32)
        {
            ScaleMinK4(s, scales, out int sc, out int m);
            float d1 = d * sc, m1 = min * m;
            ScaleMinK4(s + 1, scales, out sc, out m);
            float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++)
            {
                *y++ = d1 * (q[l] & 0xF) - m1;
            }
            for (int l = 0; l < 32; l++)
            {
                *y++ = d2 * (q[l] >> 4) - m2;
            }
        }
    }

    // block_q5_K: d, dmin, scales[12], qh[32], qs[128]
    private static void Q5_K(byte* b, float* y)
    {
        float d = Half(b), min = Half(b + 2);
        byte* scales = b + 4;
        byte* qh = b + 16;
        byte* ql = b + 48;
        int u1 = 1, u2 = 2;
        for (int j = 0, s = 0; j < 256; j += 64, s += 2, ql += 32, u1 <<= 2, u2 <<= 2)
        {
            ScaleMinK4(s, scales, out int sc, out int m);
            float d1 = d * sc, m1 = min * m;
            ScaleMinK4(s + 1, scales, out sc, out m);
            float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++)
            {
                *y++ = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - m1;
            }
            for (int l = 0; l < 32; l++)
            {
                *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - m2;
            }
        }
    }

    // block_q6_K: ql[128], qh[64], scales[16] (int8), d
    private static void Q6_K(byte* b, float* y)
    {
        byte* ql = b;
        byte* qh = b + 128;
        sbyte* sc = (sbyte*)(b + 192);
        float d = Half(b + 208);
        for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
        {
            for (int l = 0; l < 32; l++)
            {
                int s = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[s] * q1;
                y[l + 32] = d * sc[s + 2] * q2;
                y[l + 64] = d * sc[s + 4] * q3;
                y[l + 96] = d * sc[s + 6] * q4;
            }
        }
    }
}
