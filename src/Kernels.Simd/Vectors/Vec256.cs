using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kernels.Simd.Vectors;

/// <summary>The AVX2 + FMA tier (8 floats).</summary>
internal readonly unsafe struct Vec256 : IFloatVector<Vector256<float>>
{
    public static int Count => 8;

    public static Vector256<float> Zero => Vector256<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Broadcast(float value) => Vector256.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(float* source) => Vector256.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(float* destination, Vector256<float> value) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadHalf(ushort* source) =>
        WidenHalf(Avx2.ConvertToVector256Int32(source).AsUInt32());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadHalfFinite(ushort* source)
    {
        Vector256<int> t = Avx2.ConvertToVector256Int32((short*)source) << 13;
        return (t & Vector256.Create(HalfBits.FiniteHalfMask)).AsSingle() * Vector256.Create(HalfBits.HalfRebias);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadHalfPairInterleaved(ushort* source, bool rebias, out Vector256<float> first, out Vector256<float> second)
    {
        Vector256<int> raw = Vector256.Load((int*)source);
        Vector256<int> mask = Vector256.Create(HalfBits.FiniteHalfMask);
        first = (Vector256.ShiftRightArithmetic(raw << 16, 3) & mask).AsSingle();
        second = (Vector256.ShiftRightArithmetic(raw, 3) & mask).AsSingle();
        if (rebias)
        {
            first *= Vector256.Create(HalfBits.HalfRebias);
            second *= Vector256.Create(HalfBits.HalfRebias);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadBFloat16PairInterleaved(ushort* source, out Vector256<float> first, out Vector256<float> second)
    {
        Vector256<int> raw = Vector256.Load((int*)source);
        first = (raw << 16).AsSingle();
        second = (raw & Vector256.Create(unchecked((int)0xFFFF_0000))).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadBFloat16(ushort* source) =>
        Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(source), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> WidenHalf(Vector256<uint> h)
    {
        Vector256<uint> em = h & Vector256.Create(HalfBits.HalfExponentMantissaMask);
        Vector256<uint> sign = (h ^ em) << 16;
        Vector256<uint> shifted = em << 13;
        Vector256<float> finite = shifted.AsSingle() * Vector256.Create(HalfBits.HalfRebias);
        Vector256<uint> special = shifted | Vector256.Create(HalfBits.SingleExponentMask);
        Vector256<uint> isSpecial = Vector256.GreaterThan(em.AsInt32(), Vector256.Create((int)HalfBits.HalfInfinityBits - 1)).AsUInt32();
        return (Vector256.ConditionalSelect(isSpecial, special, finite.AsUInt32()) | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ConvertSBytes(Vector128<sbyte> bytes, int start) =>
        Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(start == 0 ? bytes : Sse2.ShiftRightLogical128BitLane(bytes, 8)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.MultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Subtract(Vector256<float> a, Vector256<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Divide(Vector256<float> a, Vector256<float> b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Abs(Vector256<float> a) => Vector256.Abs(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> a) => Vector256.Exp(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector256<float> value) => Vec128.Sum(value.GetLower() + value.GetUpper());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector256<float> value) =>
        Vec128.MaxAcross(Vector128.Max(value.GetLower(), value.GetUpper()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> KeepLast(Vector256<float> value, int count)
    {
        Vector256<int> keep = Vector256.GreaterThanOrEqual(Vector256<int>.Indices, Vector256.Create(8 - count));
        return value & keep.AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyNonFinite(Vector256<float> value)
    {
        var exponent = Vector256.Create(0x7F80_0000u);
        return Vector256.EqualsAny(value.AsUInt32() & exponent, exponent);
    }
}
