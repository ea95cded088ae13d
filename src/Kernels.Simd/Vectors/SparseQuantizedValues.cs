using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;

namespace Kernels.Simd.Vectors;

/// <summary>
/// Kept values of an N:M row stored as a ggml Q8_0 row of the kept values (blocks of 32 kept
/// values: an F16 scale, then 32 int8), in kept order. A pair (2·Count values) never straddles a
/// block: it is the whole block at 512 bits and half of one at 256. The scale is applied to the
/// widened weights, so the permute kernels are otherwise those of the float formats.
/// </summary>
internal readonly unsafe struct SparseQ8Values : ISparseValues
{
    public static ElementType Type => ElementType.F32;

    public static float InputScale => 1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPair<TTier, TVec>(byte* values, nint index, out TVec first, out TVec second)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        byte* block = values + (index >> 5) * 34;
        TVec scale = TTier.Broadcast(QuantizedScales.Computed(block));
        sbyte* q = (sbyte*)block + 2 + (index & 31);
        Vector128<sbyte> bytes = Vector128.Load(q);
        first = TTier.Multiply(TTier.ConvertSBytes(bytes, 0), scale);
        second = TTier.Multiply(TTier.Count == 16 ? TTier.ConvertSBytes(Vector128.Load(q + 16), 0) : TTier.ConvertSBytes(bytes, TTier.Count), scale);
    }

    // Kept order, like F32.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int FirstKept(int index) => SparseF32Values.FirstKept(index);

    public static int SecondOffset<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => SparseF32Values.SecondOffset<TTier, TVec>();

    public static int PairedKept<TTier, TVec>(int kept) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
        SparseF32Values.PairedKept<TTier, TVec>(kept);

    public static float LoadKept(byte* rowValues, int k, int kept) => Dequantization.Element(QuantType.Q8_0, rowValues, k);

    public static long RowBytes(int valueStride) => QuantType.Q8_0.RowBytes(valueStride);
}

/// <summary>
/// Kept values stored as a ggml Q4_0 row of the kept values (blocks of 32: an F16 scale, then 16
/// bytes whose low nibbles are values 0-15 and high nibbles 16-31, each minus 8).
/// </summary>
internal readonly unsafe struct SparseQ4Values : ISparseValues
{
    public static ElementType Type => ElementType.F32;

    public static float InputScale => 1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPair<TTier, TVec>(byte* values, nint index, out TVec first, out TVec second)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        byte* block = values + (index >> 5) * 18;
        TVec scale = TTier.Broadcast(QuantizedScales.Scale(block));
        Vector128<byte> packed = Vector128.Load(block + 2);
        Vector128<sbyte> eight = Vector128.Create((sbyte)8);
        if (TTier.Count == 16)
        {
            first = TTier.Multiply(TTier.ConvertSBytes((packed & Vector128.Create((byte)0x0F)).AsSByte() - eight, 0), scale);
            second = TTier.Multiply(TTier.ConvertSBytes(Vector128.ShiftRightLogical(packed, 4).AsSByte() - eight, 0), scale);
            return;
        }
        // Narrower tiers: a pair is half a block or less; its nibbles all sit on one side of the bytes.
        Vector128<sbyte> nibbles = ((index & 16) == 0 ? packed & Vector128.Create((byte)0x0F) : Vector128.ShiftRightLogical(packed, 4)).AsSByte() - eight;
        int start = TTier.Count == 8 ? 0 : (int)(index & 15);
        first = TTier.Multiply(TTier.ConvertSBytes(nibbles, start), scale);
        second = TTier.Multiply(TTier.ConvertSBytes(nibbles, start + TTier.Count), scale);
    }

    // Kept order, like F32.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int FirstKept(int index) => SparseF32Values.FirstKept(index);

    public static int SecondOffset<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => SparseF32Values.SecondOffset<TTier, TVec>();

    public static int PairedKept<TTier, TVec>(int kept) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
        SparseF32Values.PairedKept<TTier, TVec>(kept);

    public static float LoadKept(byte* rowValues, int k, int kept) => Dequantization.Element(QuantType.Q4_0, rowValues, k);

    public static long RowBytes(int valueStride) => QuantType.Q4_0.RowBytes(valueStride);
}
