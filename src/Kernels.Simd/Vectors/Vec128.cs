using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Kernels.Simd.Vectors;

/// <summary>The portable 128-bit tier (SSE/NEON through Vector128); FMA is emulated as mul+add.</summary>
internal readonly unsafe struct Vec128 : IFloatVector<Vector128<float>>
{
    public static int Count => 4;

    public static Vector128<float> Zero => Vector128<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Broadcast(float value) => Vector128.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Load(float* source) => Vector128.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(float* destination, Vector128<float> value) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadHalf(ushort* source) =>
        WidenHalf(Vector128.WidenLower(Vector128.CreateScalarUnsafe(*(ulong*)source).AsUInt16()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadHalfFinite(ushort* source)
    {
        Vector128<int> t = Vector128.WidenLower(Vector128.CreateScalarUnsafe(*(long*)source).AsInt16()) << 13;
        return (t & Vector128.Create(HalfBits.FiniteHalfMask)).AsSingle() * Vector128.Create(HalfBits.HalfRebias);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadHalfPairInterleaved(ushort* source, bool rebias, out Vector128<float> first, out Vector128<float> second)
    {
        Vector128<int> raw = Vector128.Load((int*)source);
        Vector128<int> mask = Vector128.Create(HalfBits.FiniteHalfMask);
        first = (Vector128.ShiftRightArithmetic(raw << 16, 3) & mask).AsSingle();
        second = (Vector128.ShiftRightArithmetic(raw, 3) & mask).AsSingle();
        if (rebias)
        {
            first *= Vector128.Create(HalfBits.HalfRebias);
            second *= Vector128.Create(HalfBits.HalfRebias);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadBFloat16PairInterleaved(ushort* source, out Vector128<float> first, out Vector128<float> second)
    {
        Vector128<int> raw = Vector128.Load((int*)source);
        first = (raw << 16).AsSingle();
        second = (raw & Vector128.Create(unchecked((int)0xFFFF_0000))).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadBFloat16(ushort* source) =>
        (Vector128.WidenLower(Vector128.CreateScalarUnsafe(*(ulong*)source).AsUInt16()) << 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> WidenHalf(Vector128<uint> h)
    {
        Vector128<uint> em = h & Vector128.Create(HalfBits.HalfExponentMantissaMask);
        Vector128<uint> sign = (h ^ em) << 16;
        Vector128<uint> shifted = em << 13;
        Vector128<float> finite = shifted.AsSingle() * Vector128.Create(HalfBits.HalfRebias);
        Vector128<uint> special = shifted | Vector128.Create(HalfBits.SingleExponentMask);
        Vector128<uint> isSpecial = Vector128.GreaterThan(em.AsInt32(), Vector128.Create((int)HalfBits.HalfInfinityBits - 1)).AsUInt32();
        return (Vector128.ConditionalSelect(isSpecial, special, finite.AsUInt32()) | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> ConvertSBytes(Vector128<sbyte> bytes, int start) =>
        Vector128.Create((float)bytes.GetElement(start), bytes.GetElement(start + 1), bytes.GetElement(start + 2), bytes.GetElement(start + 3));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> MultiplyAdd(Vector128<float> a, Vector128<float> b, Vector128<float> c) =>
        Vector128.MultiplyAddEstimate(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Subtract(Vector128<float> a, Vector128<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Multiply(Vector128<float> a, Vector128<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Divide(Vector128<float> a, Vector128<float> b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Max(Vector128<float> a, Vector128<float> b) => Vector128.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Abs(Vector128<float> a) => Vector128.Abs(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exp(Vector128<float> a) => Vector128.Exp(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector128<float> value) => (value[0] + value[1]) + (value[2] + value[3]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector128<float> value) =>
        MathF.Max(MathF.Max(value[0], value[1]), MathF.Max(value[2], value[3]));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> KeepLast(Vector128<float> value, int count)
    {
        Vector128<int> keep = Vector128.GreaterThanOrEqual(Vector128<int>.Indices, Vector128.Create(4 - count));
        return value & keep.AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyNonFinite(Vector128<float> value)
    {
        var exponent = Vector128.Create(0x7F80_0000u);
        return Vector128.EqualsAny(value.AsUInt32() & exponent, exponent);
    }
}
