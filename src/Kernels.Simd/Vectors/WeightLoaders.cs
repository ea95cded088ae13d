using System.Runtime.CompilerServices;
using Kernels.Simd.Matrices;

namespace Kernels.Simd.Vectors;

/// <summary>Loads weights of one storage type as float vectors; the second generic axis of the matmul kernels.</summary>
internal unsafe interface IWeightLoader
{
    static abstract ElementType Type { get; }

    /// <summary>Loads <c>TTier.Count</c> elements starting at element <paramref name="index"/>.</summary>
    static abstract TVec Load<TTier, TVec>(byte* data, nint index)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged;

    static abstract float LoadScalar(byte* data, nint index);
}

internal readonly unsafe struct F32Loader : IWeightLoader
{
    public static ElementType Type => ElementType.F32;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Load<TTier, TVec>(byte* data, nint index)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => TTier.Load((float*)data + index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadScalar(byte* data, nint index) => ((float*)data)[index];
}

internal readonly unsafe struct F16Loader : IWeightLoader
{
    public static ElementType Type => ElementType.F16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Load<TTier, TVec>(byte* data, nint index)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => TTier.LoadHalf((ushort*)data + index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadScalar(byte* data, nint index) => HalfBits.HalfToSingle(((ushort*)data)[index]);
}

/// <summary>F16 weights already checked finite (<see cref="HalfBits.AllFinite"/>): the 4-operation widening.</summary>
internal readonly unsafe struct F16FiniteLoader : IWeightLoader
{
    public static ElementType Type => ElementType.F16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Load<TTier, TVec>(byte* data, nint index)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => TTier.LoadHalfFinite((ushort*)data + index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadScalar(byte* data, nint index) => HalfBits.HalfToSingle(((ushort*)data)[index]);
}

internal readonly unsafe struct BF16Loader : IWeightLoader
{
    public static ElementType Type => ElementType.BF16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Load<TTier, TVec>(byte* data, nint index)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => TTier.LoadBFloat16((ushort*)data + index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadScalar(byte* data, nint index) => HalfBits.BFloat16ToSingle(((ushort*)data)[index]);
}

/// <summary>
/// Loads the kept values of a compressed N:M row two steps (2·Count values) at a time. 16-bit
/// types store every full block of 32 kept values pairwise interleaved (k, k+16, k+1, k+17, …) so
/// both steps widen inside 32-bit lanes without shuffles; F32 is stored in order.
/// </summary>
internal unsafe interface ISparseValues
{
    static abstract ElementType Type { get; }

    /// <summary>What the activations that meet <see cref="LoadPair"/>'s vectors must be pre-multiplied by (1: none).</summary>
    static abstract float InputScale { get; }

    /// <summary>Loads stored values [index, index + 2·Count) as two vectors of kept values.</summary>
    static abstract void LoadPair<TTier, TVec>(byte* values, nint index, out TVec first, out TVec second)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged;

    /// <summary>Kept index of the first vector of the pair stored at <paramref name="index"/>; the second starts at <see cref="SecondOffset{TTier, TVec}"/> after it.</summary>
    static abstract int FirstKept(int index);

    static abstract int SecondOffset<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged;

    /// <summary>Kept values covered by whole pairs (the rest is summed in scalar code).</summary>
    static abstract int PairedKept<TTier, TVec>(int kept) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged;

    /// <summary>Kept value <paramref name="k"/> of a row of <paramref name="kept"/> as float (its true value, whatever <see cref="InputScale"/> is).</summary>
    static abstract float LoadKept(byte* rowValues, int k, int kept);

    /// <summary>Bytes a row of <paramref name="valueStride"/> stored values takes.</summary>
    static abstract long RowBytes(int valueStride);
}

/// <summary>Where 16-bit kept values sit: every full block of 32 is stored pairwise interleaved (k, k+16, k+1, k+17, …).</summary>
internal readonly unsafe struct SparseF32Values : ISparseValues
{
    public static ElementType Type => ElementType.F32;

    public static float InputScale => 1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPair<TTier, TVec>(byte* values, nint index, out TVec first, out TVec second)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        first = TTier.Load((float*)values + index);
        second = TTier.Load((float*)values + index + TTier.Count);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int FirstKept(int index) => index;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int SecondOffset<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => TTier.Count;

    public static int PairedKept<TTier, TVec>(int kept) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
        kept / (2 * TTier.Count) * (2 * TTier.Count);

    public static float LoadKept(byte* rowValues, int k, int kept) => ((float*)rowValues)[k];

    public static long RowBytes(int valueStride) => 4L * valueStride;
}

internal readonly unsafe struct SparseF16Values : ISparseValues
{
    public static ElementType Type => ElementType.F16;

    public static float InputScale => 1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPair<TTier, TVec>(byte* values, nint index, out TVec first, out TVec second)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
        TTier.LoadHalfPairInterleaved((ushort*)values + index, rebias: true, out first, out second);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int FirstKept(int index) => index - ((index & 31) >> 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int SecondOffset<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => 16;

    public static int PairedKept<TTier, TVec>(int kept) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => kept / 32 * 32;

    public static float LoadKept(byte* rowValues, int k, int kept) => HalfBits.HalfToSingle(((ushort*)rowValues)[NmLayout.StorageIndex(k, kept)]);

    public static long RowBytes(int valueStride) => 2L * valueStride;
}

/// <summary>
/// F16 values left 2⁻¹¹² times too small (no rebias multiply); the caller passes activations
/// pre-multiplied by 2¹¹², so every product is exactly the rebiased one. Decode is ALU-bound on
/// the widening: this drops 2 of ~13 vector operations per 32 kept values.
/// </summary>
internal readonly unsafe struct SparseF16ScaledInputValues : ISparseValues
{
    public static ElementType Type => ElementType.F16;

    public static float InputScale => HalfBits.HalfRebias;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPair<TTier, TVec>(byte* values, nint index, out TVec first, out TVec second)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
        TTier.LoadHalfPairInterleaved((ushort*)values + index, rebias: false, out first, out second);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int FirstKept(int index) => SparseF16Values.FirstKept(index);

    public static int SecondOffset<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
        SparseF16Values.SecondOffset<TTier, TVec>();

    public static int PairedKept<TTier, TVec>(int kept) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
        SparseF16Values.PairedKept<TTier, TVec>(kept);

    public static float LoadKept(byte* rowValues, int k, int kept) => SparseF16Values.LoadKept(rowValues, k, kept);

    public static long RowBytes(int valueStride) => 2L * valueStride;
}

internal readonly unsafe struct SparseBF16Values : ISparseValues
{
    public static ElementType Type => ElementType.BF16;

    public static float InputScale => 1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPair<TTier, TVec>(byte* values, nint index, out TVec first, out TVec second)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
        TTier.LoadBFloat16PairInterleaved((ushort*)values + index, out first, out second);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int FirstKept(int index) => index - ((index & 31) >> 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int SecondOffset<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => 16;

    public static int PairedKept<TTier, TVec>(int kept) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => kept / 32 * 32;

    public static float LoadKept(byte* rowValues, int k, int kept) => HalfBits.BFloat16ToSingle(((ushort*)rowValues)[NmLayout.StorageIndex(k, kept)]);

    public static long RowBytes(int valueStride) => 2L * valueStride;
}
