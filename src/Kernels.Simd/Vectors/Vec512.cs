using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kernels.Simd.Vectors;

/// <summary>The AVX-512 tier (16 floats).</summary>
internal readonly unsafe struct Vec512 : IFloatVector<Vector512<float>>
{
    public static int Count => 16;

    public static Vector512<float> Zero => Vector512<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Broadcast(float value) => Vector512.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(float* source) => Vector512.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(float* destination, Vector512<float> value) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadHalf(ushort* source) =>
        WidenHalf(Avx512F.ConvertToVector512UInt32(Vector256.Load(source)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadHalfFinite(ushort* source)
    {
        Vector512<int> t = Avx512F.ConvertToVector512Int32(Vector256.Load((short*)source)) << 13;
        return (t & Vector512.Create(HalfBits.FiniteHalfMask)).AsSingle() * Vector512.Create(HalfBits.HalfRebias);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadHalfPairInterleaved(ushort* source, bool rebias, out Vector512<float> first, out Vector512<float> second)
    {
        Vector512<int> raw = Vector512.Load((int*)source);
        Vector512<int> mask = Vector512.Create(HalfBits.FiniteHalfMask);
        first = (Vector512.ShiftRightArithmetic(raw << 16, 3) & mask).AsSingle();
        second = (Vector512.ShiftRightArithmetic(raw, 3) & mask).AsSingle();
        if (rebias)
        {
            first *= Vector512.Create(HalfBits.HalfRebias);
            second *= Vector512.Create(HalfBits.HalfRebias);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadBFloat16PairInterleaved(ushort* source, out Vector512<float> first, out Vector512<float> second)
    {
        Vector512<int> raw = Vector512.Load((int*)source);
        first = (raw << 16).AsSingle();
        second = (raw & Vector512.Create(unchecked((int)0xFFFF_0000))).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadBFloat16(ushort* source) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load(source)), 16).AsSingle();

    /// <summary>Software vcvtph2ps (.NET exposes no F16C intrinsic): 16-bit lanes already zero-extended.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> WidenHalf(Vector512<uint> h)
    {
        Vector512<uint> em = h & Vector512.Create(HalfBits.HalfExponentMantissaMask);
        Vector512<uint> sign = (h ^ em) << 16;
        Vector512<uint> shifted = em << 13;
        Vector512<float> finite = shifted.AsSingle() * Vector512.Create(HalfBits.HalfRebias);
        Vector512<uint> special = shifted | Vector512.Create(HalfBits.SingleExponentMask);
        Vector512<uint> isSpecial = Vector512.GreaterThanOrEqual(em, Vector512.Create(HalfBits.HalfInfinityBits));
        return (Vector512.ConditionalSelect(isSpecial, special, finite.AsUInt32()) | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ConvertSBytes(Vector128<sbyte> bytes, int start) =>
        Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(bytes));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) =>
        Avx512F.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Subtract(Vector512<float> a, Vector512<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Divide(Vector512<float> a, Vector512<float> b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Abs(Vector512<float> a) => Vector512.Abs(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> a) => Vector512.Exp(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector512<float> value) =>
        Vec256.Sum(value.GetLower() + value.GetUpper());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector512<float> value) =>
        Vec256.MaxAcross(Vector256.Max(value.GetLower(), value.GetUpper()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> KeepLast(Vector512<float> value, int count)
    {
        Vector512<int> keep = Vector512.GreaterThanOrEqual(Vector512<int>.Indices, Vector512.Create(16 - count));
        return value & keep.AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyNonFinite(Vector512<float> value)
    {
        var exponent = Vector512.Create(0x7F80_0000u);
        return Vector512.EqualsAny(value.AsUInt32() & exponent, exponent);
    }
}
