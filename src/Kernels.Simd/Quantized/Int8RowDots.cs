using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kernels.Simd.Quantized;

/// <summary>
/// One row of quantized weights · one token of <see cref="QuantizedInput"/>: integer dot
/// products per 32-weight block, scaled and summed in float. Signature of every row dot:
/// (row, token's int8 values, its block scales d, its block sums d·Σq, blocks of 32) → float.
/// </summary>
/// <remarks>
/// <para>Formats with an offset (Q4_0's −8) use the block sums instead of a signed product:
/// Σ d_w·(q−8)·x = d_w·Σq·x − 8·d_w·s. Formats whose values are signed (Q8_0, Q6_K's q−32)
/// use ggml's sign trick: |w| as unsigned bytes times x with w's sign.</para>
/// <para>Products of unsigned bytes and int8 activations are summed four at a time into int32
/// lanes: one AVX-VNNI <c>vpdpbusd</c> where the CPU has it (.NET exposes the 256-bit VEX form,
/// not the AVX512-VNNI one), else <c>vpmaddubsw</c> + <c>vpmaddwd</c> (no saturation: 2·128·127 &lt; 2¹⁵).</para>
/// </remarks>
internal static unsafe class Int8RowDots
{
    /// <summary>Dot products at the dispatched tier: 256-bit with VNNI or maddubs, else the scalar twin.</summary>
    public static delegate*<byte*, sbyte*, float*, float*, int, float> For(QuantType type, Int8DotKind kind) => (type, kind) switch
    {
        (QuantType.Q8_0, Int8DotKind.Vnni) => &Avx<VnniDot>.Q8_0,
        (QuantType.Q8_0, Int8DotKind.Madd) => &Avx<MaddDot>.Q8_0,
        (QuantType.Q8_0, _) => &Scalar.Q8_0,
        (QuantType.Q4_0, Int8DotKind.Vnni) => &Avx<VnniDot>.Q4_0,
        (QuantType.Q4_0, Int8DotKind.Madd) => &Avx<MaddDot>.Q4_0,
        (QuantType.Q4_0, _) => &Scalar.Q4_0,
        (QuantType.Q4_K, Int8DotKind.Vnni) => &Avx<VnniDot>.Q4_K,
        (QuantType.Q4_K, Int8DotKind.Madd) => &Avx<MaddDot>.Q4_K,
        (QuantType.Q4_K, _) => &Scalar.Q4_K,
        (QuantType.Q6_K, Int8DotKind.Vnni) => &Avx<VnniDot>.Q6_K,
        (QuantType.Q6_K, Int8DotKind.Madd) => &Avx<MaddDot>.Q6_K,
        (QuantType.Q6_K, _) => &Scalar.Q6_K,
        _ => null,
    };

    /// <summary>Formats with integer kernels; the others dequantize blocks and take float dot products.</summary>
    public static bool Supports(QuantType type) => type is QuantType.Q8_0 or QuantType.Q4_0 or QuantType.Q4_K or QuantType.Q6_K;

    /// <summary>The scalar twins: the same integer sums and float formula, summed in order.</summary>
    internal static class Scalar
    {
        public static float Q8_0(byte* row, sbyte* qx, float* dx, float* sx, int blocks)
        {
            float acc = 0;
            for (int b = 0; b < blocks; b++, row += 34, qx += 32)
            {
                sbyte* w = (sbyte*)(row + 2);
                int sum = 0;
                for (int j = 0; j < 32; j++)
                {
                    sum += w[j] * qx[j];
                }
                acc += QuantizedScales.Finite(row) * dx[b] * sum;
            }
            return acc;
        }

        public static float Q4_0(byte* row, sbyte* qx, float* dx, float* sx, int blocks)
        {
            float acc = 0, offsets = 0;
            for (int b = 0; b < blocks; b++, row += 18, qx += 32)
            {
                byte* qs = row + 2;
                int sum = 0;
                for (int j = 0; j < 16; j++)
                {
                    sum += (qs[j] & 0xF) * qx[j] + (qs[j] >> 4) * qx[j + 16];
                }
                float d = QuantizedScales.Finite(row);
                acc += d * dx[b] * sum;
                offsets += d * sx[b];
            }
            return acc - 8 * offsets;
        }

        public static float Q4_K(byte* row, sbyte* qx, float* dx, float* sx, int blocks)
        {
            float acc = 0, mins = 0;
            for (int i = 0; i < blocks / 8; i++, row += 144)
            {
                float d = QuantizedScales.Finite(row), dmin = QuantizedScales.Finite(row + 2);
                for (int j = 0; j < 8; j++)
                {
                    int xb = 8 * i + j;
                    Dequantization.ScaleMinK4(j, row + 4, out int sc, out int m);
                    byte* q = row + 16 + 32 * (j / 2);
                    int shift = 4 * (j & 1);
                    sbyte* x = qx + 32 * xb;
                    int sum = 0;
                    for (int l = 0; l < 32; l++)
                    {
                        sum += ((q[l] >> shift) & 0xF) * x[l];
                    }
                    acc += d * sc * dx[xb] * sum;
                    mins += dmin * m * sx[xb];
                }
            }
            return acc - mins;
        }

        public static float Q6_K(byte* row, sbyte* qx, float* dx, float* sx, int blocks)
        {
            float acc = 0;
            for (int i = 0; i < blocks / 8; i++, row += 210)
            {
                float d = QuantizedScales.Finite(row + 208);
                for (int h = 0; h < 2; h++)
                {
                    byte* ql = row + 64 * h;
                    byte* qh = row + 128 + 32 * h;
                    sbyte* sc = (sbyte*)(row + 192 + 8 * h);
                    for (int k = 0; k < 4; k++)
                    {
                        int xb = 8 * i + 4 * h + k;
                        sbyte* x = qx + 32 * xb;
                        for (int g = 0; g < 2; g++)
                        {
                            int sum = 0;
                            for (int l = 16 * g; l < 16 * g + 16; l++)
                            {
                                int low = k switch { 0 => ql[l] & 0xF, 1 => ql[l + 32] & 0xF, 2 => ql[l] >> 4, _ => ql[l + 32] >> 4 };
                                int q = (low | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
                                sum += q * x[l];
                            }
                            acc += d * sc[2 * k + g] * dx[xb] * sum;
                        }
                    }
                }
            }
            return acc;
        }
    }

    /// <summary>256-bit kernels, generic over the unsigned·signed byte dot product.</summary>
    internal static class Avx<TDot> where TDot : struct, IByteDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<int> SignedDot(Vector256<sbyte> w, Vector256<sbyte> x) => TDot.Dot(Avx2.Abs(w), Avx2.Sign(x, w));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<float> Scaled(Vector256<int> sums, float scale, Vector256<float> acc) =>
            Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), Vector256.Create(scale), acc);

        public static float Q8_0(byte* row, sbyte* qx, float* dx, float* sx, int blocks)
        {
            Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
            int b = 0;
            for (; b + 2 <= blocks; b += 2, row += 68, qx += 64)
            {
                var p0 = SignedDot(Vector256.Load((sbyte*)(row + 2)), Vector256.Load(qx));
                var p1 = SignedDot(Vector256.Load((sbyte*)(row + 36)), Vector256.Load(qx + 32));
                acc0 = Scaled(p0, QuantizedScales.Finite(row) * dx[b], acc0);
                acc1 = Scaled(p1, QuantizedScales.Finite(row + 34) * dx[b + 1], acc1);
            }
            if (b < blocks)
            {
                acc0 = Scaled(SignedDot(Vector256.Load((sbyte*)(row + 2)), Vector256.Load(qx)), QuantizedScales.Finite(row) * dx[b], acc0);
            }
            return Vector256.Sum(acc0 + acc1);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<byte> Nibbles16(byte* qs)
        {
            var v = Vector128.Load(qs);
            var mask = Vector128.Create((byte)0x0F);
            return Vector256.Create(v & mask, Vector128.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask);
        }

        public static float Q4_0(byte* row, sbyte* qx, float* dx, float* sx, int blocks)
        {
            Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
            float offsets = 0;
            int b = 0;
            for (; b + 2 <= blocks; b += 2, row += 36, qx += 64)
            {
                var p0 = TDot.Dot(Nibbles16(row + 2), Vector256.Load(qx));
                var p1 = TDot.Dot(Nibbles16(row + 20), Vector256.Load(qx + 32));
                float d0 = QuantizedScales.Finite(row), d1 = QuantizedScales.Finite(row + 18);
                acc0 = Scaled(p0, d0 * dx[b], acc0);
                acc1 = Scaled(p1, d1 * dx[b + 1], acc1);
                offsets += d0 * sx[b] + d1 * sx[b + 1];
            }
            if (b < blocks)
            {
                float d0 = QuantizedScales.Finite(row);
                acc0 = Scaled(TDot.Dot(Nibbles16(row + 2), Vector256.Load(qx)), d0 * dx[b], acc0);
                offsets += d0 * sx[b];
            }
            return Vector256.Sum(acc0 + acc1) - 8 * offsets;
        }

        public static float Q4_K(byte* row, sbyte* qx, float* dx, float* sx, int blocks)
        {
            Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
            var mask = Vector256.Create((byte)0x0F);
            float mins = 0;
            byte* sc = stackalloc byte[16];
            for (int i = 0; i < blocks / 8; i++, row += 144)
            {
                float d = QuantizedScales.Finite(row), dmin = QuantizedScales.Finite(row + 2);
                UnpackScalesK4(row + 4, sc);
                int xb = 8 * i;
                for (int p = 0; p < 4; p++, xb += 2)
                {
                    var v = Vector256.Load(row + 16 + 32 * p);
                    var lo = v & mask;
                    var hi = Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask;
                    acc0 = Scaled(TDot.Dot(lo, Vector256.Load(qx + 32 * xb)), d * sc[2 * p] * dx[xb], acc0);
                    acc1 = Scaled(TDot.Dot(hi, Vector256.Load(qx + 32 * xb + 32)), d * sc[2 * p + 1] * dx[xb + 1], acc1);
                    mins += dmin * (sc[8 + 2 * p] * sx[xb] + sc[9 + 2 * p] * sx[xb + 1]);
                }
            }
            return Vector256.Sum(acc0 + acc1) - mins;
        }

        public static float Q6_K(byte* row, sbyte* qx, float* dx, float* sx, int blocks)
        {
            Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
            var low4 = Vector256.Create((byte)0x0F);
            var high2 = Vector256.Create((byte)0x30);
            var bias = Vector256.Create((sbyte)32);
            for (int i = 0; i < blocks / 8; i++, row += 210)
            {
                float d = QuantizedScales.Finite(row + 208);
                for (int h = 0; h < 2; h++)
                {
                    var l0 = Vector256.Load(row + 64 * h);
                    var l1 = Vector256.Load(row + 64 * h + 32);
                    var qh = Vector256.Load(row + 128 + 32 * h).AsUInt16();
                    sbyte* sc = (sbyte*)(row + 192 + 8 * h);
                    int xb = 8 * i + 4 * h;
                    // 16-bit shifts move bits across byte halves only where the masks drop them.
                    var q1 = (l0 & low4) | (Vector256.ShiftLeft(qh, 4).AsByte() & high2);
                    var q2 = (l1 & low4) | (Vector256.ShiftLeft(qh, 2).AsByte() & high2);
                    var q3 = (Vector256.ShiftRightLogical(l0.AsUInt16(), 4).AsByte() & low4) | (qh.AsByte() & high2);
                    var q4 = (Vector256.ShiftRightLogical(l1.AsUInt16(), 4).AsByte() & low4) | (Vector256.ShiftRightLogical(qh, 2).AsByte() & high2);
                    acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(SignedDot(q1.AsSByte() - bias, Vector256.Load(qx + 32 * xb))), Halves(d * dx[xb], sc[0], sc[1]), acc0);
                    acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(SignedDot(q2.AsSByte() - bias, Vector256.Load(qx + 32 * xb + 32))), Halves(d * dx[xb + 1], sc[2], sc[3]), acc1);
                    acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(SignedDot(q3.AsSByte() - bias, Vector256.Load(qx + 32 * xb + 64))), Halves(d * dx[xb + 2], sc[4], sc[5]), acc0);
                    acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(SignedDot(q4.AsSByte() - bias, Vector256.Load(qx + 32 * xb + 96))), Halves(d * dx[xb + 3], sc[6], sc[7]), acc1);
                }
            }
            return Vector256.Sum(acc0 + acc1);
        }

        /// <summary>Lanes 0-3 (weights 0-15 of a block) scaled by s·a, lanes 4-7 by s·b.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<float> Halves(float s, sbyte a, sbyte b) => Vector256.Create(Vector128.Create(s * a), Vector128.Create(s * b));
    }

    /// <summary>Q4_K/Q5_K: the eight 6-bit scales to <paramref name="out"/>[0..7] and mins to [8..15].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void UnpackScalesK4(byte* packed, byte* @out)
    {
        for (int j = 0; j < 8; j++)
        {
            Dequantization.ScaleMinK4(j, packed, out int sc, out int m);
            @out[j] = (byte)sc;
            @out[8 + j] = (byte)m;
        }
    }
}

/// <summary>Which byte dot product the integer kernels use.</summary>
public enum Int8DotKind
{
    Scalar,
    /// <summary>vpmaddubsw + vpmaddwd (AVX2).</summary>
    Madd,
    /// <summary>vpdpbusd (AVX-VNNI, 256-bit).</summary>
    Vnni,
}

/// <summary>Sums of four unsigned·signed byte products into int32 lanes.</summary>
internal interface IByteDot
{
    static abstract Vector256<int> Dot(Vector256<byte> unsigned, Vector256<sbyte> signed);
}

internal readonly struct VnniDot : IByteDot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<byte> unsigned, Vector256<sbyte> signed) =>
        AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, unsigned, signed);
}

internal readonly struct MaddDot : IByteDot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<byte> unsigned, Vector256<sbyte> signed) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(unsigned, signed), Vector256.Create((short)1));
}
