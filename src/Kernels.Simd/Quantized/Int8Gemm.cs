using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kernels.Simd.Quantized;

/// <summary>
/// Several tokens × one row of quantized weights (prefill): the row is decoded once into a
/// common form — signed int8 values, a float scale per 16 weights and a min term per 32 — and
/// then multiplied with the tokens four at a time, so the bit unpacking of Q4_0/Q4_K/Q5_K/Q6_K is paid
/// once per row instead of once per token.
/// </summary>
internal static unsafe class Int8Gemm
{
    /// <summary>A decoded row: <c>K</c> int8 values, K/32 scale vectors (lanes 0-3: first 16 weights, 4-7: second 16), K/32 mins.</summary>
    internal readonly struct DecodedRow(sbyte* values, Vector256<float>* scales, float* mins)
    {
        public readonly sbyte* Values = values;
        public readonly Vector256<float>* Scales = scales;
        public readonly float* Mins = mins;
    }

    /// <summary>Bytes of scratch a decoded row of <paramref name="columns"/> needs.</summary>
    public static int ScratchBytes(int columns) => columns + columns / 32 * (32 + 4) + 64;

    public static DecodedRow Layout(byte* scratch, int columns)
    {
        var scales = (Vector256<float>*)(((nint)scratch + 31) & ~(nint)31);
        var mins = (float*)(scales + columns / 32);
        return new DecodedRow((sbyte*)(mins + columns / 32), scales, mins);
    }

    /// <summary>Decodes one row (whole blocks) of a format with integer kernels.</summary>
    public static void Decode(QuantType type, byte* row, int columns, DecodedRow o)
    {
        int blocks = columns / 32;
        switch (type)
        {
            case QuantType.Q8_0:
                for (int b = 0; b < blocks; b++, row += 34)
                {
                    Unsafe.CopyBlockUnaligned(o.Values + 32 * b, row + 2, 32);
                    o.Scales[b] = Vector256.Create(QuantizedScales.Scale(row));
                    o.Mins[b] = 0;
                }
                break;
            case QuantType.Q4_0:
                for (int b = 0; b < blocks; b++, row += 18)
                {
                    sbyte* v = o.Values + 32 * b;
                    for (int j = 0; j < 16; j++)
                    {
                        v[j] = (sbyte)((row[2 + j] & 0xF) - 8);
                        v[j + 16] = (sbyte)((row[2 + j] >> 4) - 8);
                    }
                    o.Scales[b] = Vector256.Create(QuantizedScales.Scale(row));
                    o.Mins[b] = 0;
                }
                break;
            case QuantType.Q4_K or QuantType.Q5_K:
                bool high = type == QuantType.Q5_K;
                byte* sc = stackalloc byte[16];
                for (int i = 0; i < blocks / 8; i++, row += high ? 176 : 144)
                {
                    float d = QuantizedScales.Scale(row), dmin = QuantizedScales.Scale(row + 2);
                    Int8RowDots.UnpackScalesK4(row + 4, sc);
                    byte* qh = row + 16;
                    for (int j = 0; j < 8; j++)
                    {
                        int b = 8 * i + j;
                        byte* q = row + (high ? 48 : 16) + 32 * (j / 2);
                        int shift = 4 * (j & 1);
                        for (int l = 0; l < 32; l++)
                        {
                            o.Values[32 * b + l] = (sbyte)(((q[l] >> shift) & 0xF) | (high ? ((qh[l] >> j) & 1) << 4 : 0));
                        }
                        o.Scales[b] = Vector256.Create(d * sc[j]);
                        o.Mins[b] = dmin * sc[8 + j];
                    }
                }
                break;
            case QuantType.Q6_K:
                for (int i = 0; i < blocks / 8; i++, row += 210)
                {
                    float d = QuantizedScales.Scale(row + 208);
                    for (int h = 0; h < 2; h++)
                    {
                        byte* ql = row + 64 * h;
                        byte* qh = row + 128 + 32 * h;
                        sbyte* s = (sbyte*)(row + 192 + 8 * h);
                        for (int k = 0; k < 4; k++)
                        {
                            int b = 8 * i + 4 * h + k;
                            for (int l = 0; l < 32; l++)
                            {
                                int low = k switch { 0 => ql[l] & 0xF, 1 => ql[l + 32] & 0xF, 2 => ql[l] >> 4, _ => ql[l + 32] >> 4 };
                                o.Values[32 * b + l] = (sbyte)((low | (((qh[l] >> (2 * k)) & 3) << 4)) - 32);
                            }
                            o.Scales[b] = Vector256.Create(Vector128.Create(d * s[2 * k]), Vector128.Create(d * s[2 * k + 1]));
                            o.Mins[b] = 0;
                        }
                    }
                }
                break;
            default:
                ThrowHelper.NotSupported($"{type} has no integer kernel");
                break;
        }
    }

    /// <summary>
    /// y[t] = decoded row · token t for <paramref name="tokens"/> tokens (1-4) starting at token
    /// <paramref name="first"/> of <paramref name="x"/>.
    /// </summary>
    public static void Tile<TDot>(DecodedRow w, int blocks, QuantizedInput x, int first, int tokens, float* y, long yStride) where TDot : struct, IByteDot
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        float m0 = 0, m1 = 0, m2 = 0, m3 = 0;
        long stride = (long)x.BlocksPerToken;
        sbyte* q0 = x.Values + first * stride * 32;
        float* d0 = x.Scales + first * stride;
        float* s0 = x.Sums + first * stride;
        for (int b = 0; b < blocks; b++)
        {
            var v = Vector256.Load(w.Values + 32 * b);
            var abs = Avx2.Abs(v);
            var scale = w.Scales[b];
            float min = w.Mins[b];
            long o = b;
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(abs, Avx2.Sign(Vector256.Load(q0 + 32 * o), v))), scale * d0[o], a0);
            m0 += min * s0[o];
            if (tokens > 1)
            {
                o += stride;
                a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(abs, Avx2.Sign(Vector256.Load(q0 + 32 * o), v))), scale * d0[o], a1);
                m1 += min * s0[o];
                if (tokens > 2)
                {
                    o += stride;
                    a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(abs, Avx2.Sign(Vector256.Load(q0 + 32 * o), v))), scale * d0[o], a2);
                    m2 += min * s0[o];
                    if (tokens > 3)
                    {
                        o += stride;
                        a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(abs, Avx2.Sign(Vector256.Load(q0 + 32 * o), v))), scale * d0[o], a3);
                        m3 += min * s0[o];
                    }
                }
            }
        }
        y[0] = Vector256.Sum(a0) - m0;
        if (tokens > 1)
        {
            y[yStride] = Vector256.Sum(a1) - m1;
        }
        if (tokens > 2)
        {
            y[2 * yStride] = Vector256.Sum(a2) - m2;
        }
        if (tokens > 3)
        {
            y[3 * yStride] = Vector256.Sum(a3) - m3;
        }
    }
}
