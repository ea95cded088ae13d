using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kernels.Simd.Vectors;

/// <summary>
/// Decodes the N:M index metadata of one step of kept values (one vector's worth) and gathers
/// the matching activations from a window of 2·Count consecutive input columns, held in two
/// registers: no memory gathers, one two-source permute.
/// </summary>
/// <typeparam name="TVec">Float vector of the tier.</typeparam>
/// <typeparam name="TIdx">Integer index vector of the tier.</typeparam>
internal unsafe interface ISparseGather<TVec, TIdx> where TVec : unmanaged where TIdx : unmanaged
{
    /// <summary>Group size (4 or 8); N = M / 2.</summary>
    static abstract int M { get; }

    /// <summary>Window positions (0 .. 2·Count-1) of kept values [step·Count, step·Count + Count) of a row.</summary>
    static abstract TIdx Decode(byte* rowMeta, int step);

    /// <summary>window[idx] for each lane, where window = lo ++ hi.</summary>
    static abstract TVec Gather(TVec lo, TVec hi, TIdx idx);

    /// <summary>Decoded indices as absolute positions 0 .. 2·Count-1 in the window (for column arithmetic).</summary>
    static abstract TIdx WindowPositions(TIdx idx);

    /// <summary>Stores windowStart + position for every lane as one byte each (input columns relative to a block, below 256).</summary>
    static abstract void StoreColumns(TIdx idx, int windowStart, byte* destination);
}

/// <summary>Narrowing shared by the 256-bit gathers.</summary>
file static class SparseGatherColumns
{
    /// <summary>Stores the low byte of each of the 8 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Store8(Vector256<int> columns, byte* destination)
    {
        Vector128<short> words = Vector128.Narrow(columns.GetLower(), columns.GetUpper());
        *(ulong*)destination = Vector128.Narrow(words, words).AsUInt64().ToScalar();
    }
}

/// <summary>vpternlogd control byte for (A AND B) OR C.</summary>
file static class Ternary
{
    public const byte AndOr = 0xEA;
}

/// <summary>AVX-512, 2:4: 16 kept values span 8 groups = 32 columns; index = 4·(lane/2) + 2-bit field.</summary>
internal readonly unsafe struct Gather512TwoFour : ISparseGather<Vector512<float>, Vector512<int>>
{
    public static int M => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> Decode(byte* rowMeta, int step)
    {
        Vector512<int> bits = Avx512F.ShiftRightLogicalVariable(Vector512.Create(*(int*)(rowMeta + 4 * step)),
            Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30).AsUInt32());
        return Avx512F.TernaryLogic(bits, Vector512.Create(3), Vector512.Create(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28), Ternary.AndOr);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Gather(Vector512<float> lo, Vector512<float> hi, Vector512<int> idx) =>
        Avx512F.PermuteVar16x32x2(lo, idx, hi);

    public static Vector512<int> WindowPositions(Vector512<int> idx) => idx;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreColumns(Vector512<int> idx, int windowStart, byte* destination) =>
        Avx512F.ConvertToVector128Byte(idx + Vector512.Create(windowStart)).Store(destination);
}

/// <summary>
/// AVX-512, 4:8: 16 kept values span 4 groups = 32 columns; index = 8·(lane/4) + the 3-bit field
/// at bits 3·lane of the block's 48 bits. With VBMI one vpmultishiftqb moves every field to the
/// low byte of its lane; without it a byte shuffle (vpshufb) and a variable shift do the same.
/// </summary>
internal readonly unsafe struct Gather512FourEight : ISparseGather<Vector512<float>, Vector512<int>>
{
    public static int M => 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> Decode(byte* rowMeta, int step)
    {
        Vector512<ulong> bits = Vector512.Create(*(ulong*)(rowMeta + 6 * step));
        Vector512<int> fields;
        if (Avx512Vbmi.IsSupported)
        {
            // Per qword q (lanes 2q, 2q+1): byte 0 <- bits 6q.., byte 4 <- bits 6q+3.. (others unused).
            fields = Avx512Vbmi.MultiShift(Vector512.Create(
                (byte)0, 0, 0, 0, 3, 0, 0, 0, 6, 0, 0, 0, 9, 0, 0, 0, 12, 0, 0, 0, 15, 0, 0, 0, 18, 0, 0, 0, 21, 0, 0, 0,
                24, 0, 0, 0, 27, 0, 0, 0, 30, 0, 0, 0, 33, 0, 0, 0, 36, 0, 0, 0, 39, 0, 0, 0, 42, 0, 0, 0, 45, 0, 0, 0), bits).AsInt32();
        }
        else
        {
            // Lane j takes bytes 3j/8 and 3j/8 + 1 (every 128-bit lane holds the whole 8-byte
            // broadcast), then shifts right by 3j mod 8.
            Vector512<byte> pairs = Avx512BW.Shuffle(bits.AsByte(), Vector512.Create(
                (byte)0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 2, 0, 0, 1, 2, 0, 0, 1, 2, 0, 0, 2, 3, 0, 0, 2, 3, 0, 0,
                3, 4, 0, 0, 3, 4, 0, 0, 3, 4, 0, 0, 4, 5, 0, 0, 4, 5, 0, 0, 4, 5, 0, 0, 5, 6, 0, 0, 5, 6, 0, 0));
            fields = Avx512F.ShiftRightLogicalVariable(pairs.AsInt32(),
                Vector512.Create(0u, 3, 6, 1, 4, 7, 2, 5, 0, 3, 6, 1, 4, 7, 2, 5)).AsInt32();
        }
        return Avx512F.TernaryLogic(fields, Vector512.Create(7), Vector512.Create(0, 0, 0, 0, 8, 8, 8, 8, 16, 16, 16, 16, 24, 24, 24, 24), Ternary.AndOr);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Gather(Vector512<float> lo, Vector512<float> hi, Vector512<int> idx) =>
        Avx512F.PermuteVar16x32x2(lo, idx, hi);

    public static Vector512<int> WindowPositions(Vector512<int> idx) => idx;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreColumns(Vector512<int> idx, int windowStart, byte* destination) =>
        Avx512F.ConvertToVector128Byte(idx + Vector512.Create(windowStart)).Store(destination);
}

/// <summary>
/// AVX2, 2:4: 8 kept values span 16 columns; lanes 0-3 come from the low 8 columns, lanes 4-7
/// from the high 8 (two one-source permutes and a blend); indices are relative to each half.
/// </summary>
internal readonly unsafe struct Gather256TwoFour : ISparseGather<Vector256<float>, Vector256<int>>
{
    public static int M => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Decode(byte* rowMeta, int step)
    {
        int word = *(int*)(rowMeta + 4 * (step >> 1)) >> (16 * (step & 1));
        Vector256<int> bits = Avx2.ShiftRightLogicalVariable(Vector256.Create(word), Vector256.Create(0, 2, 4, 6, 8, 10, 12, 14).AsUInt32());
        return (bits & Vector256.Create(3)) | Vector256.Create(0, 0, 4, 4, 0, 0, 4, 4);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Gather(Vector256<float> lo, Vector256<float> hi, Vector256<int> idx) =>
        Avx.Blend(Avx2.PermuteVar8x32(lo, idx), Avx2.PermuteVar8x32(hi, idx), 0xF0);

    // Lanes 4-7 index the high half of the window.
    public static Vector256<int> WindowPositions(Vector256<int> idx) => idx + Vector256.Create(0, 0, 0, 0, 8, 8, 8, 8);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreColumns(Vector256<int> idx, int windowStart, byte* destination) =>
        SparseGatherColumns.Store8(WindowPositions(idx) + Vector256.Create(windowStart), destination);
}

/// <summary>AVX2, 4:8: 8 kept values = 2 groups of 8 columns; lanes 0-3 from the low group, 4-7 from the high one.</summary>
internal readonly unsafe struct Gather256FourEight : ISparseGather<Vector256<float>, Vector256<int>>
{
    public static int M => 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Decode(byte* rowMeta, int step)
    {
        // Kept values [8·step, 8·step + 8): 24 bits starting at bit 24·step of the 48-bit blocks.
        int word = *(int*)(rowMeta + 6 * (step >> 1) + 3 * (step & 1));
        return Avx2.ShiftRightLogicalVariable(Vector256.Create(word), Vector256.Create(0, 3, 6, 9, 12, 15, 18, 21).AsUInt32()) & Vector256.Create(7);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Gather(Vector256<float> lo, Vector256<float> hi, Vector256<int> idx) =>
        Avx.Blend(Avx2.PermuteVar8x32(lo, idx), Avx2.PermuteVar8x32(hi, idx), 0xF0);

    // Lanes 4-7 index the high half of the window.
    public static Vector256<int> WindowPositions(Vector256<int> idx) => idx + Vector256.Create(0, 0, 0, 0, 8, 8, 8, 8);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreColumns(Vector256<int> idx, int windowStart, byte* destination) =>
        SparseGatherColumns.Store8(WindowPositions(idx) + Vector256.Create(windowStart), destination);
}
