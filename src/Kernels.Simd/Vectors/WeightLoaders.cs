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

internal readonly unsafe struct BF16Loader : IWeightLoader
{
    public static ElementType Type => ElementType.BF16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Load<TTier, TVec>(byte* data, nint index)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => TTier.LoadBFloat16((ushort*)data + index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadScalar(byte* data, nint index) => HalfBits.BFloat16ToSingle(((ushort*)data)[index]);
}
