namespace Kernels.Simd.Quantized;

/// <summary>
/// llama.cpp's block-quantized weight formats (ggml type names). A row of a quantized matrix is
/// a sequence of blocks, each holding <see cref="QuantTypeExtensions.BlockElements"/> weights in
/// <see cref="QuantTypeExtensions.BlockBytes"/> bytes; the layouts are ggml's (ggml-common.h).
/// </summary>
public enum QuantType
{
    /// <summary>32 weights: F16 scale d, 32 int8; w = d·q.</summary>
    Q8_0,
    /// <summary>32 weights: F16 d, 16 bytes of nibbles (low nibbles = weights 0-15); w = d·(q - 8).</summary>
    Q4_0,
    /// <summary>32 weights: F16 d, F16 m, nibbles; w = d·q + m.</summary>
    Q4_1,
    /// <summary>32 weights: F16 d, 32 high bits, nibbles; w = d·(q - 16).</summary>
    Q5_0,
    /// <summary>32 weights: F16 d, F16 m, 32 high bits, nibbles; w = d·q + m.</summary>
    Q5_1,
    /// <summary>256 weights: 16 sub-blocks of 16 with 4-bit scales and mins, 2-bit values, F16 d and dmin.</summary>
    Q2_K,
    /// <summary>256 weights: 16 sub-blocks of 16 with 6-bit scales, 3-bit values (2 low bits + a high-bit mask), F16 d.</summary>
    Q3_K,
    /// <summary>256 weights: 8 sub-blocks of 32 with 6-bit scales and mins, 4-bit values, F16 d and dmin.</summary>
    Q4_K,
    /// <summary>256 weights: as Q4_K plus one high bit per value.</summary>
    Q5_K,
    /// <summary>256 weights: 16 sub-blocks of 16 with int8 scales, 6-bit values (4 low + 2 high bits) - 32, F16 d.</summary>
    Q6_K,
}

public static class QuantTypeExtensions
{
    /// <summary>Weights per block.</summary>
    public static int BlockElements(this QuantType type) => type switch
    {
        QuantType.Q8_0 or QuantType.Q4_0 or QuantType.Q4_1 or QuantType.Q5_0 or QuantType.Q5_1 => 32,
        QuantType.Q2_K or QuantType.Q3_K or QuantType.Q4_K or QuantType.Q5_K or QuantType.Q6_K => 256,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown quantized type."),
    };

    /// <summary>Bytes per block (ggml's block structs, packed).</summary>
    public static int BlockBytes(this QuantType type) => type switch
    {
        QuantType.Q8_0 => 34,
        QuantType.Q4_0 => 18,
        QuantType.Q4_1 => 20,
        QuantType.Q5_0 => 22,
        QuantType.Q5_1 => 24,
        QuantType.Q2_K => 84,
        QuantType.Q3_K => 110,
        QuantType.Q4_K => 144,
        QuantType.Q5_K => 176,
        QuantType.Q6_K => 210,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown quantized type."),
    };

    /// <summary>Bytes of one row of <paramref name="columns"/> weights; the row length must be a whole number of blocks.</summary>
    public static long RowBytes(this QuantType type, long columns)
    {
        int k = type.BlockElements();
        if (columns % k != 0)
        {
            ThrowHelper.Argument($"a {type} row holds whole blocks of {k} weights; {columns} is not a multiple of {k}", nameof(columns));
        }
        return columns / k * type.BlockBytes();
    }

    /// <summary>Byte offsets of the F16 scale fields (d, and dmin/m where the format has one) inside one block.</summary>
    public static ReadOnlySpan<int> ScaleOffsets(this QuantType type) => type switch
    {
        QuantType.Q8_0 or QuantType.Q4_0 or QuantType.Q5_0 => [0],
        QuantType.Q4_1 or QuantType.Q5_1 or QuantType.Q4_K or QuantType.Q5_K => [0, 2],
        QuantType.Q2_K => [80, 82],
        QuantType.Q3_K => [108],
        QuantType.Q6_K => [208],
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown quantized type."),
    };

    /// <summary>Average bits per weight (scales included).</summary>
    public static double BitsPerWeight(this QuantType type) => 8.0 * type.BlockBytes() / type.BlockElements();
}
