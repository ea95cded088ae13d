using Kernels.Simd.Vectors;

namespace Kernels.Simd.Quantized;

/// <summary>
/// Float rows to llama.cpp blocks. Q8_0 and Q4_0 are bit for bit what ggml's reference quantizers
/// (<c>quantize_row_q8_0_ref</c>, <c>quantize_row_q4_0_ref</c>) write: the same float operations
/// in the same order, round-to-nearest-even half scales, <c>roundf</c> for Q8_0 and truncation of
/// <c>x·id + 8.5</c> for Q4_0. Q4_K and Q6_K are ported from their references (<see cref="KQuantization"/>).
/// </summary>
public static unsafe class Quantization
{
    /// <summary>Types the row quantizers write.</summary>
    public static bool Supports(QuantType type) => type is QuantType.Q8_0 or QuantType.Q4_0 or QuantType.Q4_K or QuantType.Q6_K;

    /// <summary>Quantizes <paramref name="x"/> (whole blocks of 32) into <paramref name="destination"/> (<c>type.RowBytes(x.Length)</c> bytes).</summary>
    public static void QuantizeRow(QuantType type, ReadOnlySpan<float> x, Span<byte> destination) =>
        QuantizeRow(type, x, destination, scaleSpan: 1);

    /// <summary>
    /// As <see cref="QuantizeRow(QuantType, ReadOnlySpan{float}, Span{byte})"/>, but every
    /// <paramref name="scaleSpan"/> consecutive blocks share one scale, computed by ggml's rule
    /// over all their values. A pruned row quantized with <paramref name="scaleSpan"/> = 2 keeps
    /// the scale of each 64-column span, which is where an N:M row keeps 32 values (half density):
    /// the standard file and the compressed N:M blocks then hold exactly the same numbers.
    /// </summary>
    public static void QuantizeRow(QuantType type, ReadOnlySpan<float> x, Span<byte> destination, int scaleSpan)
    {
        if (!Supports(type))
        {
            ThrowHelper.NotSupported($"quantizing to {type} is not supported (Q8_0, Q4_0, Q4_K and Q6_K are)");
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(scaleSpan, 1);
        int k = type.BlockElements();
        if (x.Length % k != 0)
        {
            ThrowHelper.Argument($"{type} rows hold whole blocks of {k} values; {x.Length} is not a multiple", nameof(x));
        }
        if (destination.Length < type.RowBytes(x.Length))
        {
            ThrowHelper.DestinationTooShort();
        }
        if (type is QuantType.Q4_K or QuantType.Q6_K)
        {
            if (scaleSpan != 1)
            {
                ThrowHelper.Argument($"{type} blocks carry their own sub-block scales; a shared scale span applies to Q8_0 and Q4_0 only", nameof(scaleSpan));
            }
            fixed (float* kx = x)
            fixed (byte* kd = destination)
            {
                if (type == QuantType.Q4_K)
                {
                    KQuantization.Q4_K(kx, kd, x.Length / k);
                }
                else
                {
                    KQuantization.Q6_K(kx, kd, x.Length / k);
                }
            }
            return;
        }
        int blocks = x.Length / 32, blockBytes = type.BlockBytes();
        fixed (float* px = x)
        fixed (byte* pd = destination)
        {
            for (int b = 0; b < blocks; b += scaleSpan)
            {
                int count = Math.Min(scaleSpan, blocks - b) * 32;
                float d = type == QuantType.Q8_0 ? ScaleQ8(px + b * 32, count) : ScaleQ4(px + b * 32, count);
                for (int i = b; i < b + count / 32; i++)
                {
                    if (type == QuantType.Q8_0)
                    {
                        BlockQ8(px + i * 32, d, pd + i * blockBytes);
                    }
                    else
                    {
                        BlockQ4(px + i * 32, d, pd + i * blockBytes);
                    }
                }
            }
        }
    }

    /// <summary>amax / 127, amax taken as ggml's <c>MAX(amax, fabsf(v))</c> macro does (same comparison, same NaN behaviour).</summary>
    private static float ScaleQ8(float* x, int count)
    {
        float amax = 0f;
        for (int j = 0; j < count; j++)
        {
            float a = MathF.Abs(x[j]);
            amax = amax > a ? amax : a;
        }
        return amax / 127;
    }

    /// <summary>The value of largest magnitude (the first one on ties) divided by -8.</summary>
    private static float ScaleQ4(float* x, int count)
    {
        float amax = 0f, max = 0f;
        for (int j = 0; j < count; j++)
        {
            float v = x[j];
            if (amax < MathF.Abs(v))
            {
                amax = MathF.Abs(v);
                max = v;
            }
        }
        return max / -8;
    }

    private static void BlockQ8(float* x, float d, byte* block)
    {
        float id = d != 0f ? 1.0f / d : 0f;
        *(ushort*)block = HalfBits.SingleToHalf(d);
        sbyte* qs = (sbyte*)(block + 2);
        for (int j = 0; j < 32; j++)
        {
            // roundf: half away from zero; the C conversion to int8 of a value outside the range is
            // undefined there, here the products stay within ±127 by construction of d.
            qs[j] = (sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    private static void BlockQ4(float* x, float d, byte* block)
    {
        float id = d != 0f ? 1.0f / d : 0f;
        *(ushort*)block = HalfBits.SingleToHalf(d);
        byte* qs = block + 2;
        for (int j = 0; j < 16; j++)
        {
            int q0 = Math.Min(15, (int)(sbyte)(int)(x[j] * id + 8.5f));
            int q1 = Math.Min(15, (int)(sbyte)(int)(x[j + 16] * id + 8.5f));
            qs[j] = (byte)(q0 | q1 << 4);
        }
    }
}
