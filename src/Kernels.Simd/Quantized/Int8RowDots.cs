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
/// lanes with <c>vpmaddubsw</c> + <c>vpmaddwd</c> (no saturation: 2·128·127 &lt; 2¹⁵). AVX-VNNI's
/// <c>vpdpbusd</c> (the 256-bit VEX form is all .NET 10 exposes) measured no faster, and was
/// miscompiled with DOTNET_EnableAVX512v2=0 (wrong Q6_K sums), so it is not used
/// (docs/reports/quantized).</para>
/// </remarks>
internal static unsafe class Int8RowDots
{
    /// <summary>Dot products at the dispatched tier: 256-bit maddubs, else the scalar twin.</summary>
    public static delegate*<byte*, sbyte*, float*, float*, int, float> For(QuantType type, Int8DotKind kind) => (type, kind) switch
    {
        (QuantType.Q8_0, Int8DotKind.Madd) => &Avx<MaddDot>.Q8_0,
        (QuantType.Q8_0, _) => &Scalar.Q8_0,
        (QuantType.Q4_0, Int8DotKind.Madd) => &Avx<MaddDot>.Q4_0,
        (QuantType.Q4_0, _) => &Scalar.Q4_0,
        (QuantType.Q4_K, Int8DotKind.Madd) => &Avx<MaddDot>.Q4_K,
        (QuantType.Q4_K, _) => &Scalar.Q4_K,
        (QuantType.Q5_K, Int8DotKind.Madd) => &Avx<MaddDot>.Q5_K,
        (QuantType.Q5_K, _) => &Scalar.Q5_K,
        (QuantType.Q6_K, Int8DotKind.Madd) => &Avx<MaddDot>.Q6_K,
        (QuantType.Q6_K, _) => &Scalar.Q6_K,
        _ => null,
    };

    /// <summary>Formats with integer kernels; the others dequantize blocks and take float dot products.</summary>
    public static bool Supports(QuantType type) => type is QuantType.Q8_0 or QuantType.Q4_0 or QuantType.Q4_K or QuantType.Q5_K or QuantType.Q6_K;

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
                acc += QuantizedScales.Computed(row) * dx[b] * sum;
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
                float d = QuantizedScales.Scale(row);
                acc += d * dx[b] * sum;
                offsets += d * sx[b];
            }
            return acc - 8 * offsets;
        }

        public static float Q4_K(byte* row, sbyte* qx, float* dx, float* sx, int blocks) => K4(row, qx, dx, sx, blocks, highBits: false);

        public static float Q5_K(byte* row, sbyte* qx, float* dx, float* sx, int blocks) => K4(row, qx, dx, sx, blocks, highBits: true);

        /// <summary>Q4_K, or Q5_K (the same plus 32 bytes of high bits before the nibbles).</summary>
        private static float K4(byte* row, sbyte* qx, float* dx, float* sx, int blocks, bool highBits)
        {
            float acc = 0, mins = 0;
            int bytes = highBits ? 176 : 144;
            for (int i = 0; i < blocks / 8; i++, row += bytes)
            {
                float d = QuantizedScales.Scale(row), dmin = QuantizedScales.Scale(row + 2);
                byte* qh = row + 16;
                byte* qs = row + (highBits ? 48 : 16);
                for (int j = 0; j < 8; j++)
                {
                    int xb = 8 * i + j;
                    Dequantization.ScaleMinK4(j, row + 4, out int sc, out int m);
                    byte* q = qs + 32 * (j / 2);
                    int shift = 4 * (j & 1);
                    sbyte* x = qx + 32 * xb;
                    int sum = 0;
                    for (int l = 0; l < 32; l++)
                    {
                        int v = ((q[l] >> shift) & 0xF) + (highBits ? ((qh[l] >> j) & 1) << 4 : 0);
                        sum += v * x[l];
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
                float d = QuantizedScales.Scale(row + 208);
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

    /// <summary>
    /// 256-bit kernels, generic over the unsigned·signed byte dot product; each format is a loop
    /// over one step (two blocks, or one 256-weight super-block).
    /// </summary>
    internal static class Avx<TDot> where TDot : struct, IByteDot
    {
        /// <summary>Running sums of one row: two vector chains (even/odd steps) and a scalar for offsets and mins.</summary>
        internal struct Sums
        {
            public Vector256<float> Even;
            public Vector256<float> Odd;
            public Vector256<float> Mins;
            public float Scalar;

            public readonly float Total(float scalarFactor) => Vector256.Sum(Even + Odd) - scalarFactor * Scalar - Vector256.Sum(Mins);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<int> SignedDot(Vector256<sbyte> w, Vector256<sbyte> x) => TDot.Dot(Avx2.Abs(w), Avx2.Sign(x, w));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<float> Scaled(Vector256<int> sums, float scale, Vector256<float> acc) =>
            Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), Vector256.Create(scale), acc);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<float> Scaled(Vector256<int> sums, Vector256<float> scale, Vector256<float> acc) =>
            Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), scale, acc);

        // ---- Q8_0: blocks b and b+1 (or b alone at the end of an odd row)

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Q8_0Step(byte* blk, sbyte* qx, float* dx, int b, bool both, ref Sums s)
        {
            s.Even = Scaled(SignedDot(Vector256.Load((sbyte*)(blk + 2)), Vector256.Load(qx + 32 * b)), QuantizedScales.Computed(blk) * dx[b], s.Even);
            if (both)
            {
                s.Odd = Scaled(SignedDot(Vector256.Load((sbyte*)(blk + 36)), Vector256.Load(qx + 32 * b + 32)), QuantizedScales.Computed(blk + 34) * dx[b + 1], s.Odd);
            }
        }

        public static float Q8_0(byte* row, sbyte* qx, float* dx, float* sx, int blocks)
        {
            Sums s = default;
            for (int b = 0; b < blocks; b += 2)
            {
                Q8_0Step(row + 34 * b, qx, dx, b, b + 1 < blocks, ref s);
            }
            return s.Total(0);
        }

        // ---- Q4_0: Σ d·(q−8)·x = d·Σq·x − 8·d·s, the −8 through the block sums

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<byte> Nibbles16(byte* qs)
        {
            var v = Vector128.Load(qs);
            var mask = Vector128.Create((byte)0x0F);
            return Vector256.Create(v & mask, Vector128.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Q4_0Step(byte* blk, sbyte* qx, float* dx, float* sx, int b, bool both, ref Sums s)
        {
            float d0 = QuantizedScales.Scale(blk);
            s.Even = Scaled(TDot.Dot(Nibbles16(blk + 2), Vector256.Load(qx + 32 * b)), d0 * dx[b], s.Even);
            if (both)
            {
                float d1 = QuantizedScales.Scale(blk + 18);
                s.Odd = Scaled(TDot.Dot(Nibbles16(blk + 20), Vector256.Load(qx + 32 * b + 32)), d1 * dx[b + 1], s.Odd);
                s.Scalar += d0 * sx[b] + d1 * sx[b + 1];
            }
            else
            {
                s.Scalar += d0 * sx[b];
            }
        }

        public static float Q4_0(byte* row, sbyte* qx, float* dx, float* sx, int blocks)
        {
            Sums s = default;
            for (int b = 0; b < blocks; b += 2)
            {
                Q4_0Step(row + 18 * b, qx, dx, sx, b, b + 1 < blocks, ref s);
            }
            return s.Total(8);
        }

        // ---- Q4_K and Q5_K: super-block i (8 blocks of 32 with 6-bit scales and mins)

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void K4Step(byte* sb, sbyte* qx, float* dx, float* sx, int i, bool highBits, ref Sums s)
        {
            var mask = Vector256.Create((byte)0x0F);
            float d = QuantizedScales.Scale(sb), dmin = QuantizedScales.Scale(sb + 2);
            ScalesMinsK4(sb + 4, out ulong scales, out ulong mins);
            int xb = 8 * i;
            // The eight sub-block scales times their blocks' activation scales, and the mins
            // against the blocks' sums, as vectors: the scalar unpacking was the bottleneck.
            var scale = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Vector128.CreateScalar(scales).AsByte())) * (Vector256.Load(dx + xb) * d);
            var min = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Vector128.CreateScalar(mins).AsByte())) * dmin;
            s.Mins = Fma.MultiplyAdd(min, Vector256.Load(sx + xb), s.Mins);
            byte* qs = sb + (highBits ? 48 : 16);
            var qh = highBits ? Vector256.Load(sb + 16).AsUInt16() : default;
            var bit4 = Vector256.Create((byte)0x10);
            for (int p = 0; p < 4; p++, xb += 2)
            {
                var v = Vector256.Load(qs + 32 * p);
                var lo = v & mask;
                var hi = Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask;
                if (highBits)
                {
                    // Q5_K: bit j of qh[l] is the fifth bit of sub-block j's value l; moved to bit 4
                    // (16-bit shifts: the mask keeps only bits that stayed in their byte).
                    int j = 2 * p;
                    lo |= (j <= 4 ? Vector256.ShiftLeft(qh, 4 - j) : Vector256.ShiftRightLogical(qh, j - 4)).AsByte() & bit4;
                    hi |= (j + 1 <= 4 ? Vector256.ShiftLeft(qh, 3 - j) : Vector256.ShiftRightLogical(qh, j - 3)).AsByte() & bit4;
                }
                s.Even = Scaled(TDot.Dot(lo, Vector256.Load(qx + 32 * xb)), Avx2.PermuteVar8x32(scale, Vector256.Create(2 * p)), s.Even);
                s.Odd = Scaled(TDot.Dot(hi, Vector256.Load(qx + 32 * xb + 32)), Avx2.PermuteVar8x32(scale, Vector256.Create(2 * p + 1)), s.Odd);
            }
        }

        public static float Q4_K(byte* row, sbyte* qx, float* dx, float* sx, int blocks)
        {
            Sums s = default;
            for (int i = 0; i < blocks / 8; i++)
            {
                K4Step(row + 144 * i, qx, dx, sx, i, highBits: false, ref s);
            }
            return s.Total(0);
        }

        public static float Q5_K(byte* row, sbyte* qx, float* dx, float* sx, int blocks)
        {
            Sums s = default;
            for (int i = 0; i < blocks / 8; i++)
            {
                K4Step(row + 176 * i, qx, dx, sx, i, highBits: true, ref s);
            }
            return s.Total(0);
        }

        // ---- Q6_K: super-block i (16 blocks of 16 with int8 scales, values q − 32)

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Q6_KStep(byte* sb, sbyte* qx, float* dx, int i, ref Sums s)
        {
            var low4 = Vector256.Create((byte)0x0F);
            var high2 = Vector256.Create((byte)0x30);
            var bias = Vector256.Create((sbyte)32);
            float d = QuantizedScales.Scale(sb + 208);
            // The sixteen int8 scales in one load; each half converts eight of them.
            var all = Vector128.Load((sbyte*)(sb + 192));
            for (int h = 0; h < 2; h++)
            {
                var l0 = Vector256.Load(sb + 64 * h);
                var l1 = Vector256.Load(sb + 64 * h + 32);
                var qh = Vector256.Load(sb + 128 + 32 * h).AsUInt16();
                // The half's eight int8 scales as floats times d; block k takes scales 2k and 2k+1.
                var half = h == 0 ? all : Sse2.ShiftRightLogical128BitLane(all, 8);
                var scales = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(half)) * d;
                int xb = 8 * i + 4 * h;
                // 16-bit shifts move bits across byte halves only where the masks drop them.
                var q1 = (l0 & low4) | (Vector256.ShiftLeft(qh, 4).AsByte() & high2);
                var q2 = (l1 & low4) | (Vector256.ShiftLeft(qh, 2).AsByte() & high2);
                var q3 = (Vector256.ShiftRightLogical(l0.AsUInt16(), 4).AsByte() & low4) | (qh.AsByte() & high2);
                var q4 = (Vector256.ShiftRightLogical(l1.AsUInt16(), 4).AsByte() & low4) | (Vector256.ShiftRightLogical(qh, 2).AsByte() & high2);
                s.Even = Scaled(SignedDot(q1.AsSByte() - bias, Vector256.Load(qx + 32 * xb)), Halves(scales, 0, dx[xb]), s.Even);
                s.Odd = Scaled(SignedDot(q2.AsSByte() - bias, Vector256.Load(qx + 32 * xb + 32)), Halves(scales, 1, dx[xb + 1]), s.Odd);
                s.Even = Scaled(SignedDot(q3.AsSByte() - bias, Vector256.Load(qx + 32 * xb + 64)), Halves(scales, 2, dx[xb + 2]), s.Even);
                s.Odd = Scaled(SignedDot(q4.AsSByte() - bias, Vector256.Load(qx + 32 * xb + 96)), Halves(scales, 3, dx[xb + 3]), s.Odd);
            }
        }

        public static float Q6_K(byte* row, sbyte* qx, float* dx, float* sx, int blocks)
        {
            Sums s = default;
            for (int i = 0; i < blocks / 8; i++)
            {
                Q6_KStep(row + 210 * i, qx, dx, i, ref s);
            }
            return s.Total(0);
        }

        /// <summary>Block k's lanes 0-3 (weights 0-15) scaled by scales[2k]·dx, lanes 4-7 by scales[2k+1]·dx.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<float> Halves(Vector256<float> scales, int k, float dx) =>
            Avx2.PermuteVar8x32(scales, Vector256.Create(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1)) * dx;
    }

    /// <summary>Q4_K/Q5_K: the eight 6-bit scales and the eight mins as bytes, with ggml's 32-bit mask arithmetic.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void ScalesMinsK4(byte* packed, out ulong scales, out ulong mins)
    {
        const uint kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
        uint u0 = Unsafe.ReadUnaligned<uint>(packed), u1 = Unsafe.ReadUnaligned<uint>(packed + 4), u2 = Unsafe.ReadUnaligned<uint>(packed + 8);
        scales = (u0 & kmask1) | (ulong)((u2 & kmask2) | (((u0 >> 6) & kmask3) << 4)) << 32;
        mins = (u1 & kmask1) | (ulong)(((u2 >> 4) & kmask2) | (((u1 >> 6) & kmask3) << 4)) << 32;
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
    /// <summary>No byte products: Q8_0/Q4_0 weights widened to float and multiplied with float x (AVX-512, one token).</summary>
    Widened,
}

/// <summary>Sums of four unsigned·signed byte products into int32 lanes.</summary>
internal interface IByteDot
{
    static abstract Vector256<int> Dot(Vector256<byte> unsigned, Vector256<sbyte> signed);
}

internal readonly struct MaddDot : IByteDot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<byte> unsigned, Vector256<sbyte> signed) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(unsigned, signed), Vector256.Create((short)1));
}
