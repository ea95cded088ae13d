using System.Runtime.CompilerServices;

namespace Kernels.Simd.Vectors;

/// <summary>
/// One SIMD tier (Vector512, Vector256, Vector128) seen through a common set of float
/// operations, so that each kernel is written once and instantiated per tier by the JIT.
/// </summary>
/// <typeparam name="TVec">The hardware vector type of the tier.</typeparam>
/// <remarks>
/// Implementations are empty structs whose static members the JIT inlines completely when
/// they are passed as generic arguments (the TensorPrimitives operator-struct pattern).
/// Half and BFloat16 loads widen <see cref="Count"/> 16-bit values to float.
/// </remarks>
internal unsafe interface IFloatVector<TVec> where TVec : unmanaged
{
    /// <summary>Lanes per vector.</summary>
    static abstract int Count { get; }

    static abstract TVec Zero { get; }

    static abstract TVec Broadcast(float value);

    static abstract TVec Load(float* source);

    static abstract void Store(float* destination, TVec value);

    /// <summary>Loads <see cref="Count"/> IEEE binary16 values and widens them to float (exact).</summary>
    static abstract TVec LoadHalf(ushort* source);

    /// <summary>
    /// Loads <see cref="Count"/> IEEE binary16 values known to be finite (exact for normals,
    /// subnormals and zeros; infinities and NaNs come out as ±65536·(1+m), so callers check first).
    /// </summary>
    /// <remarks>
    /// Sign-extend to 32 bits and shift left 13: sign lands in bit 31, the 5-bit exponent in bits
    /// 27..23, the mantissa in 22..13; masking bits 30..28 leaves a float whose value is the half's
    /// times 2^-112, which one multiply by 2^112 rebiases. 4 operations instead of 9 for the
    /// general conversion: that is what keeps F16 GEMV at the memory bandwidth.
    /// </remarks>
    static abstract TVec LoadHalfFinite(ushort* source);

    /// <summary>
    /// Loads 2·<see cref="Count"/> finite halves stored pairwise interleaved (a0, b0, a1, b1, …)
    /// and returns a and b. Widening in place inside 32-bit lanes needs no shuffle: the even half
    /// is (lane &lt;&lt; 16) &gt;&gt;ₐ 3, the odd one lane &gt;&gt;ₐ 3, both masked and, when
    /// <paramref name="rebias"/> (a JIT-time constant at every call site), rebiased. Without the
    /// rebias both come out exactly 2⁻¹¹² times the halves: a caller that scales the other factor
    /// by 2¹¹² gets bit-identical products and saves two multiplies per pair.
    /// </summary>
    static abstract void LoadHalfPairInterleaved(ushort* source, bool rebias, out TVec first, out TVec second);

    /// <summary>Bfloat16 counterpart of <see cref="LoadHalfPairInterleaved"/> (even = lane &lt;&lt; 16, odd = lane &amp; 0xFFFF0000).</summary>
    static abstract void LoadBFloat16PairInterleaved(ushort* source, out TVec first, out TVec second);

    /// <summary>Loads <see cref="Count"/> bfloat16 values and widens them to float (exact).</summary>
    static abstract TVec LoadBFloat16(ushort* source);

    /// <summary>
    /// Converts the signed bytes [<paramref name="start"/>, <paramref name="start"/> + Count) of
    /// <paramref name="bytes"/> to float (exact); <paramref name="start"/> is 0 or a multiple of
    /// Count below 16 (a JIT-time constant at the call sites).
    /// </summary>
    static abstract TVec ConvertSBytes(System.Runtime.Intrinsics.Vector128<sbyte> bytes, int start);

    /// <summary>a * b + c with a single rounding where the tier has FMA.</summary>
    static abstract TVec MultiplyAdd(TVec a, TVec b, TVec c);

    static abstract TVec Add(TVec a, TVec b);

    static abstract TVec Subtract(TVec a, TVec b);

    static abstract TVec Multiply(TVec a, TVec b);

    static abstract TVec Divide(TVec a, TVec b);

    static abstract TVec Max(TVec a, TVec b);

    static abstract TVec Abs(TVec a);

    static abstract TVec Exp(TVec a);

    /// <summary>Horizontal sum.</summary>
    static abstract float Sum(TVec value);

    /// <summary>Horizontal maximum.</summary>
    static abstract float MaxAcross(TVec value);

    /// <summary>Keeps the last <paramref name="count"/> lanes of <paramref name="value"/> and zeroes the others.</summary>
    /// <remarks>Used for overlapping tails of reductions: the overlap must add the identity.</remarks>
    static abstract TVec KeepLast(TVec value, int count);

    /// <summary>True when a lane holds NaN or ±infinity (all eight exponent bits set).</summary>
    static abstract bool AnyNonFinite(TVec value);
}

/// <summary>Scalar helpers shared by all tiers and the scalar references.</summary>
public static class HalfBits
{
    /// <summary>Exact IEEE binary16 to float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HalfToSingle(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>Round-to-nearest-even float to IEEE binary16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort SingleToHalf(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    /// <summary>Exact bfloat16 to float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float BFloat16ToSingle(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>Round-to-nearest-even float to bfloat16 (NaN stays NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFF) > 0x7F80_0000)
        {
            return (ushort)((bits >> 16) | 0x40);
        }
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    internal const uint HalfExponentMantissaMask = 0x7FFF;
    internal const uint HalfInfinityBits = 0x7C00;
    internal const uint SingleExponentMask = 0x7F80_0000;

    /// <summary>2^112: rebiases a half exponent shifted into float position (also exact for subnormals).</summary>
    internal const float HalfRebias = 5.192296858534828e33f;

    /// <summary>Keeps the sign, half exponent and mantissa after a sign-extended half is shifted left by 13.</summary>
    internal const int FiniteHalfMask = unchecked((int)0x8FFF_E000);

    /// <summary>True when no value is ±Inf or NaN (so <see cref="IFloatVector{TVec}.LoadHalfFinite"/> is exact).</summary>
    public static unsafe bool AllFinite(ushort* data, long count)
    {
        // Exponent bits all ones ↔ Inf/NaN. OR-reduce over 64-bit words: any word holding such a
        // half is found by the per-element check below only when the cheap test says "maybe".
        long i = 0;
        for (; i + 4 <= count; i += 4)
        {
            ulong w = *(ulong*)(data + i);
            ulong e = w & 0x7C00_7C00_7C00_7C00UL;
            // A 16-bit lane equals 0x7C00 exactly when (e ^ 0x7C00) lane is zero.
            ulong x = e ^ 0x7C00_7C00_7C00_7C00UL;
            if (((x - 0x0001_0001_0001_0001UL) & ~x & 0x8000_8000_8000_8000UL) != 0)
            {
                return false;
            }
        }
        for (; i < count; i++)
        {
            if ((data[i] & 0x7C00) == 0x7C00)
            {
                return false;
            }
        }
        return true;
    }
}
