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
    static abstract TIdx Decode(byte* rowMeta, int blocks, int step);

    /// <summary>window[idx] for each lane, where window = lo ++ hi.</summary>
    static abstract TVec Gather(TVec lo, TVec hi, TIdx idx);

    /// <summary>Decoded indices as absolute positions 0 .. 2·Count-1 in the window (for column arithmetic).</summary>
    static abstract TIdx WindowPositions(TIdx idx);

    /// <summary>Stores (windowStart + position) &lt;&lt; shift for every lane: row offsets into a transposed X.</summary>
    static abstract void StoreOffsets(TIdx idx, int windowStart, int shift, int* destination);
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
    public static Vector512<int> Decode(byte* rowMeta, int blocks, int step)
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
    public static void StoreOffsets(Vector512<int> idx, int windowStart, int shift, int* destination) =>
        ((idx + Vector512.Create(windowStart)) << shift).Store(destination);
}

/// <summary>AVX-512, 4:8: 16 kept values span 4 groups = 32 columns; index = 8·(lane/4) + 3-bit field (2 low bits + 1 high bit).</summary>
internal readonly unsafe struct Gather512FourEight : ISparseGather<Vector512<float>, Vector512<int>>
{
    public static int M => 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> Decode(byte* rowMeta, int blocks, int step)
    {
        Vector512<int> low = Avx512F.ShiftRightLogicalVariable(Vector512.Create(*(int*)(rowMeta + 4 * step)),
            Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30).AsUInt32());
        // High bits: bit j of the uint16 moved to bit 2 of lane j ((h << 2) >> j).
        Vector512<int> high = Avx512F.ShiftRightLogicalVariable(Vector512.Create(*(int*)(rowMeta + 4 * blocks + 2 * step) << 2),
            Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15).AsUInt32());
        Vector512<int> idx = Avx512F.TernaryLogic(low, Vector512.Create(3), Vector512.Create(0, 0, 0, 0, 8, 8, 8, 8, 16, 16, 16, 16, 24, 24, 24, 24), Ternary.AndOr);
        return Avx512F.TernaryLogic(high, Vector512.Create(4), idx, Ternary.AndOr);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Gather(Vector512<float> lo, Vector512<float> hi, Vector512<int> idx) =>
        Avx512F.PermuteVar16x32x2(lo, idx, hi);

    public static Vector512<int> WindowPositions(Vector512<int> idx) => idx;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreOffsets(Vector512<int> idx, int windowStart, int shift, int* destination) =>
        ((idx + Vector512.Create(windowStart)) << shift).Store(destination);
}

/// <summary>
/// AVX2, 2:4: 8 kept values span 16 columns; lanes 0-3 come from the low 8 columns, lanes 4-7
/// from the high 8 (two one-source permutes and a blend); indices are relative to each half.
/// </summary>
internal readonly unsafe struct Gather256TwoFour : ISparseGather<Vector256<float>, Vector256<int>>
{
    public static int M => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Decode(byte* rowMeta, int blocks, int step)
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
    public static void StoreOffsets(Vector256<int> idx, int windowStart, int shift, int* destination) =>
        ((WindowPositions(idx) + Vector256.Create(windowStart)) << shift).Store(destination);
}

/// <summary>AVX2, 4:8: 8 kept values = 2 groups of 8 columns; lanes 0-3 from the low group, 4-7 from the high one.</summary>
internal readonly unsafe struct Gather256FourEight : ISparseGather<Vector256<float>, Vector256<int>>
{
    public static int M => 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Decode(byte* rowMeta, int blocks, int step)
    {
        int block = step >> 1, half = step & 1;
        int lowWord = *(int*)(rowMeta + 4 * block) >> (16 * half);
        int highWord = (*(ushort*)(rowMeta + 4 * blocks + 2 * block) >> (8 * half)) << 2;
        Vector256<int> low = Avx2.ShiftRightLogicalVariable(Vector256.Create(lowWord), Vector256.Create(0, 2, 4, 6, 8, 10, 12, 14).AsUInt32());
        Vector256<int> high = Avx2.ShiftRightLogicalVariable(Vector256.Create(highWord), Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7).AsUInt32());
        return (low & Vector256.Create(3)) | (high & Vector256.Create(4));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Gather(Vector256<float> lo, Vector256<float> hi, Vector256<int> idx) =>
        Avx.Blend(Avx2.PermuteVar8x32(lo, idx), Avx2.PermuteVar8x32(hi, idx), 0xF0);

    // Lanes 4-7 index the high half of the window.
    public static Vector256<int> WindowPositions(Vector256<int> idx) => idx + Vector256.Create(0, 0, 0, 0, 8, 8, 8, 8);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreOffsets(Vector256<int> idx, int windowStart, int shift, int* destination) =>
        ((WindowPositions(idx) + Vector256.Create(windowStart)) << shift).Store(destination);
}
