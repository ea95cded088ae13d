using Kernels.Simd.Vectors;

namespace Kernels.Simd.Quantized;

/// <summary>
/// Q4_K and Q6_K blocks from float rows, ported from ggml's reference quantizers
/// (<c>quantize_row_q4_K_ref</c> with <c>make_qkx2_quants</c>, <c>quantize_row_q6_K_ref</c> with
/// <c>make_qx_quants</c>): the same search over scales and mins and the same rounding
/// (<c>nearest_int</c>'s add-a-magic-constant trick). What llama-quantize writes without an
/// importance matrix; how close to its bytes is measured in docs/reports/quantized.
/// </summary>
internal static unsafe class KQuantization
{
    private const float GroupMaxEps = 1e-15f;

    /// <summary>ggml's <c>nearest_int</c>: round to nearest (ties to even) through the float mantissa.</summary>
    private static int NearestInt(float value)
    {
        float shifted = value + 12582912f;
        return (BitConverter.SingleToInt32Bits(shifted) & 0x007FFFFF) - 0x00400000;
    }

    public static void Q4_K(float* x, byte* y, int blocks)
    {
        byte* l = stackalloc byte[256];
        byte* laux = stackalloc byte[32];
        float* weights = stackalloc float[32];
        float* mins = stackalloc float[8];
        float* scales = stackalloc float[8];
        for (int i = 0; i < blocks; i++, x += 256, y += 144)
        {
            float maxScale = 0, maxMin = 0;
            for (int j = 0; j < 8; j++)
            {
                float sumX2 = 0;
                for (int k = 0; k < 32; k++)
                {
                    sumX2 += x[32 * j + k] * x[32 * j + k];
                }
                float avX = MathF.Sqrt(sumX2 / 32);
                for (int k = 0; k < 32; k++)
                {
                    weights[k] = avX + MathF.Abs(x[32 * j + k]);
                }
                scales[j] = MakeQkx2Quants(32, 15, x + 32 * j, weights, l + 32 * j, out mins[j], laux, -1f, 0.1f, 20);
                if (scales[j] > maxScale)
                {
                    maxScale = scales[j];
                }
                if (mins[j] > maxMin)
                {
                    maxMin = mins[j];
                }
            }
            float invScale = maxScale > 0 ? 63f / maxScale : 0f;
            float invMin = maxMin > 0 ? 63f / maxMin : 0f;
            byte* sc = y + 4;
            new Span<byte>(sc, 12).Clear();
            for (int j = 0; j < 8; j++)
            {
                byte ls = Math.Min((byte)63, (byte)NearestInt(invScale * scales[j]));
                byte lm = Math.Min((byte)63, (byte)NearestInt(invMin * mins[j]));
                if (j < 4)
                {
                    sc[j] = ls;
                    sc[j + 4] = lm;
                }
                else
                {
                    sc[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                    sc[j - 4] |= (byte)((ls >> 4) << 6);
                    sc[j] |= (byte)((lm >> 4) << 6);
                }
            }
            *(ushort*)y = HalfBits.SingleToHalf(maxScale / 63f);
            *(ushort*)(y + 2) = HalfBits.SingleToHalf(maxMin / 63f);
            float d0 = HalfBits.HalfToSingle(*(ushort*)y), dmin = HalfBits.HalfToSingle(*(ushort*)(y + 2));
            for (int j = 0; j < 8; j++)
            {
                var (s, m) = ScaleMin(j, sc);
                float d = d0 * s;
                if (d == 0f)
                {
                    continue;
                }
                float dm = dmin * m;
                for (int k = 0; k < 32; k++)
                {
                    l[32 * j + k] = (byte)Math.Clamp(NearestInt((x[32 * j + k] + dm) / d), 0, 15);
                }
            }
            byte* q = y + 16;
            for (int j = 0; j < 256; j += 64, q += 32)
            {
                for (int k = 0; k < 32; k++)
                {
                    q[k] = (byte)(l[j + k] | (l[j + k + 32] << 4));
                }
            }
        }
    }

    private static (int Scale, int Min) ScaleMin(int j, byte* q) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    private static float MakeQkx2Quants(int n, int nmax, float* x, float* weights, byte* l, out float theMin, byte* laux,
        float rmin, float rdelta, int nstep)
    {
        float min = x[0], max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            if (x[i] < min)
            {
                min = x[i];
            }
            if (x[i] > max)
            {
                max = x[i];
            }
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0)
        {
            min = 0;
        }
        if (max == min)
        {
            new Span<byte>(l, n).Clear();
            theMin = -min;
            return 0f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestMad = 0;
        for (int i = 0; i < n; i++)
        {
            int li = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
            l[i] = (byte)li;
            float diff = scale * l[i] + min - x[i];
            bestMad += weights[i] * (diff * diff);
        }
        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXl = 0;
            for (int i = 0; i < n; i++)
            {
                int li = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
                laux[i] = (byte)li;
                float w = weights[i];
                sumL += w * li;
                sumL2 += w * li * li;
                sumXl += w * li * x[i];
            }
            float det = sumW * sumL2 - sumL * sumL;
            if (det > 0)
            {
                float thisScale = (sumW * sumXl - sumX * sumL) / det;
                float thisMin = (sumL2 * sumX - sumL * sumXl) / det;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXl / sumL2;
                }
                float mad = 0;
                for (int i = 0; i < n; i++)
                {
                    float diff = thisScale * laux[i] + thisMin - x[i];
                    mad += weights[i] * (diff * diff);
                }
                if (mad < bestMad)
                {
                    new Span<byte>(laux, n).CopyTo(new Span<byte>(l, n));
                    bestMad = mad;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    public static void Q6_K(float* x, byte* y, int blocks)
    {
        sbyte* l = stackalloc sbyte[256];
        float* scales = stackalloc float[16];
        for (int i = 0; i < blocks; i++, x += 256, y += 210)
        {
            float maxScale = 0, maxAbsScale = 0;
            for (int ib = 0; ib < 16; ib++)
            {
                float scale = MakeQxQuants(16, 32, x + 16 * ib, l + 16 * ib);
                scales[ib] = scale;
                float abs = MathF.Abs(scale);
                if (abs > maxAbsScale)
                {
                    maxAbsScale = abs;
                    maxScale = scale;
                }
            }
            // Layout: ql[128], qh[64], scales[16] (int8), d (F16).
            byte* ql = y, qh = y + 128;
            sbyte* sc = (sbyte*)(y + 192);
            if (maxAbsScale < GroupMaxEps)
            {
                new Span<byte>(y, 210).Clear();
                continue;
            }
            float iscale = -128f / maxScale;
            *(ushort*)(y + 208) = HalfBits.SingleToHalf(1 / iscale);
            for (int ib = 0; ib < 16; ib++)
            {
                sc[ib] = (sbyte)Math.Min(127, NearestInt(iscale * scales[ib]));
            }
            float d0 = HalfBits.HalfToSingle(*(ushort*)(y + 208));
            for (int j = 0; j < 16; j++)
            {
                float d = d0 * sc[j];
                if (d == 0f)
                {
                    continue;
                }
                for (int k = 0; k < 16; k++)
                {
                    l[16 * j + k] = (sbyte)(Math.Clamp(NearestInt(x[16 * j + k] / d), -32, 31) + 32);
                }
            }
            for (int j = 0; j < 256; j += 128, ql += 64, qh += 32)
            {
                for (int k = 0; k < 32; k++)
                {
                    int q1 = l[j + k] & 0xF, q2 = l[j + k + 32] & 0xF, q3 = l[j + k + 64] & 0xF, q4 = l[j + k + 96] & 0xF;
                    ql[k] = (byte)(q1 | (q3 << 4));
                    ql[k + 32] = (byte)(q2 | (q4 << 4));
                    qh[k] = (byte)((l[j + k] >> 4) | ((l[j + k + 32] >> 4) << 2) | ((l[j + k + 64] >> 4) << 4) | ((l[j + k + 96] >> 4) << 6));
                }
            }
        }
    }

    /// <summary>ggml's <c>make_qx_quants</c> with rmse_type 1 and no importance weights (what Q6_K uses).</summary>
    private static float MakeQxQuants(int n, int nmax, float* x, sbyte* l)
    {
        float max = 0, amax = 0;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax)
            {
                amax = ax;
                max = x[i];
            }
        }
        if (amax < GroupMaxEps)
        {
            new Span<sbyte>(l, n).Clear();
            return 0f;
        }
        float iscale = -nmax / max;
        float sumLx = 0, sumL2 = 0;
        for (int i = 0; i < n; i++)
        {
            int li = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            l[i] = (sbyte)(li + nmax);
            float w = x[i] * x[i];
            sumLx += w * x[i] * li;
            sumL2 += w * li * li;
        }
        float scale = sumL2 != 0 ? sumLx / sumL2 : 0f;
        float best = scale * sumLx;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0)
            {
                continue;
            }
            iscale = -(nmax + 0.1f * step) / max;
            sumLx = sumL2 = 0;
            for (int i = 0; i < n; i++)
            {
                int li = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
                float w = x[i] * x[i];
                sumLx += w * x[i] * li;
                sumL2 += w * li * li;
            }
            if (sumL2 > 0 && sumLx * sumLx > best * sumL2)
            {
                for (int i = 0; i < n; i++)
                {
                    l[i] = (sbyte)(nmax + Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1));
                }
                scale = sumLx / sumL2;
                best = scale * sumLx;
            }
        }
        return scale;
    }
}
