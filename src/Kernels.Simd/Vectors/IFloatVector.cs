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

    /// <summary>Loads <see cref="Count"/> bfloat16 values and widens them to float (exact).</summary>
    static abstract TVec LoadBFloat16(ushort* source);

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
}
