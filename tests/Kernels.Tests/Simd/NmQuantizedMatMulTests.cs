using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;
using Kernels.Simd.Reference;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Simd;

/// <summary>
/// N:M matrices with int8 / 4-bit kept values (<see cref="NmQuantizedMatrix"/>): compression
/// against the ggml quantizers applied to the kept values, kernels against the scalar reference
/// on the dequantized matrix (guard pages, every shape class, every tier through the CI knobs),
/// and the exact hand-over from a standard Q8_0/Q4_0 row quantized with 64-column scales.
/// </summary>
public sealed unsafe class NmQuantizedMatMulTests
{
    public static IEnumerable<object[]> Cases()
    {
        int[] cols = { 4, 8, 12, 60, 64, 68, 100, 128, 172, 256, 260 };
        foreach (var p in new[] { "2:4", "4:8" })
        foreach (var type in new[] { QuantType.Q8_0, QuantType.Q4_0 })
        foreach (int c in cols)
        foreach (int r in new[] { 1, 2, 5, 17 })
        {
            yield return new object[] { p, type, r, c };
        }
    }

    /// <summary>What compression must store: each row's kept values through ggml's quantizer and back, at their columns.</summary>
    private static float[] ExpectedDequantized(float[] pruned, int rows, int cols, NmPattern p, QuantType type)
    {
        int groups = cols / p.M, kept = groups * p.N, stride = (kept + 31) / 32 * 32;
        var result = (float[])pruned.Clone();
        var values = new float[stride];
        var indices = new byte[kept];
        var blocks = new byte[type.RowBytes(stride)];
        var back = new float[stride];
        for (int r = 0; r < rows; r++)
        {
            Array.Clear(values);
            var row = pruned.Skip(r * cols).Take(cols).ToArray();
            // The kept positions: non-zeros first, then the first zeros of the group, in column order.
            int k = 0;
            for (int g = 0; g < groups; g++)
            {
                var chosen = Enumerable.Range(0, p.M).Where(i => row[g * p.M + i] != 0f).ToList();
                chosen.AddRange(Enumerable.Range(0, p.M).Where(i => row[g * p.M + i] == 0f).Take(p.N - chosen.Count));
                foreach (int i in chosen.Order())
                {
                    values[k] = row[g * p.M + i];
                    indices[k++] = (byte)i;
                }
            }
            Quantization.QuantizeRow(type, values, blocks);
            fixed (byte* b = blocks)
            fixed (float* o = back)
            {
                Dequantization.Row(type, b, o, stride);
            }
            for (k = 0; k < kept; k++)
            {
                result[r * cols + k / p.N * p.M + indices[k]] = back[k];
            }
        }
        return result;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Compressed_quantized_rows_match_the_reference(string pattern, QuantType type, int rows, int cols)
    {
        var p = NmPattern.Parse(pattern);
        var pruned = SparseTestData.Prune(SparseTestData.Random(rows * cols, rows * 7 + cols), rows, cols, p);
        using var source = DenseMatrix.FromSingle("w", rows, cols, pruned);
        using var sparse = NmQuantizedMatrix.Compress(source, p, type);
        var expected = ExpectedDequantized(pruned, rows, cols, p, type);
        Assert.Equal(expected, sparse.ToDenseArray());
        Assert.Equal(cols % p.M, sparse.TailColumns);
        using var dequantized = DenseMatrix.FromSingle("w", rows, cols, expected);
        foreach (int n in new[] { 1, 2, 3, 4, 5, 8, 9, 17, 61 })
        {
            var x = SparseTestData.Random(n * cols, n + cols);
            var reference = new float[n * rows];
            ScalarReference.MatMul(dequantized, x, reference, n);
            using var gx = new GuardedBuffer(x.Length);
            using var gy = new GuardedBuffer(reference.Length);
            x.CopyTo(gx.Span);
            sparse.Multiply(gx.Span, gy.Span, n);
            for (int i = 0; i < reference.Length; i++)
            {
                Tolerance.Close(reference[i], gy.Span[i], 2e-6f, cols, 1e-5f, $"{pattern} {type} {rows}x{cols} n={n} y[{i}]");
            }
            Assert.True(gx.CanariesIntact() && gy.CanariesIntact());
        }
    }

    [Fact]
    public void Large_quantized_sparse_products_use_threads_and_match()
    {
        foreach (var p in new[] { NmPattern.TwoFour, NmPattern.FourEight })
        foreach (var type in new[] { QuantType.Q8_0, QuantType.Q4_0 })
        {
            int rows = 515, cols = 2500;
            var pruned = SparseTestData.Prune(SparseTestData.Random(rows * cols, 5), rows, cols, p);
            using var source = DenseMatrix.FromSingle("w", rows, cols, pruned);
            using var sparse = NmQuantizedMatrix.Compress(source, p, type);
            using var dequantized = DenseMatrix.FromSingle("w", rows, cols, sparse.ToDenseArray());
            foreach (int n in new[] { 1, 13, 130 })
            {
                var x = SparseTestData.Random(n * cols, 6);
                var expected = new float[n * rows];
                var actual = new float[n * rows];
                ScalarReference.MatMul(dequantized, x, expected, n);
                sparse.Multiply(x, actual, n);
                for (int i = 0; i < expected.Length; i++)
                {
                    Tolerance.Close(expected[i], actual[i], 2e-6f, cols, 1e-5f, $"{p} {type} n={n} y[{i}]");
                }
            }
        }
    }

    /// <summary>
    /// A pruned row written as standard Q8_0/Q4_0 with one scale per 64 columns (what
    /// <c>prune --quantize</c> writes) compresses to N:M blocks holding exactly the same values.
    /// </summary>
    [Theory]
    [InlineData("2:4", QuantType.Q8_0)]
    [InlineData("2:4", QuantType.Q4_0)]
    [InlineData("4:8", QuantType.Q8_0)]
    [InlineData("4:8", QuantType.Q4_0)]
    public void Standard_blocks_with_64_column_scales_compress_without_changing_a_value(string pattern, QuantType type)
    {
        var p = NmPattern.Parse(pattern);
        int rows = 9, cols = 320; // 5 spans of 64
        var pruned = SparseTestData.Prune(SparseTestData.Random(rows * cols, 21).Select((v, i) => i % 97 == 0 ? v * 40 : v).ToArray(), rows, cols, p);
        using var standard = new QuantizedMatrix("w", rows, cols, type);
        for (int r = 0; r < rows; r++)
        {
            Quantization.QuantizeRow(type, pruned.AsSpan(r * cols, cols), new Span<byte>(standard.Row(r), (int)standard.RowStrideBytes), scaleSpan: 2);
        }
        using var sparse = NmQuantizedMatrix.Compress(standard, p, type);
        Assert.Equal(standard.ToDenseArray(), sparse.ToDenseArray());
    }

    [Fact]
    public void Bad_input_is_refused_with_the_tensor_named()
    {
        int rows = 2, cols = 16;
        var dense = SparseTestData.Random(rows * cols, 1); // no zeros: not 2:4
        using var source = DenseMatrix.FromSingle("blk.0.ffn_down.weight", rows, cols, dense);
        var e = Assert.Throws<ArgumentException>(() => NmQuantizedMatrix.Compress(source, NmPattern.TwoFour, QuantType.Q8_0));
        Assert.Contains("blk.0.ffn_down.weight", e.Message);
        var pruned = SparseTestData.Prune(dense, rows, cols, NmPattern.TwoFour);
        using var ok = DenseMatrix.FromSingle("w", rows, cols, pruned);
        Assert.Throws<NotSupportedException>(() => NmQuantizedMatrix.Compress(ok, NmPattern.TwoFour, QuantType.Q4_K));
    }
}

/// <summary>The ggml reference quantizers' rounding rules, on values where other rules differ.</summary>
public sealed class QuantizationRuleTests
{
    private static float[] Block(params (int Index, float Value)[] set)
    {
        var x = new float[32];
        foreach (var (i, v) in set)
        {
            x[i] = v;
        }
        return x;
    }

    [Fact]
    public void Q8_0_rounds_halves_away_from_zero_with_a_scale_of_amax_over_127()
    {
        var x = Block((0, 127f), (1, 2.5f), (2, -2.5f), (3, 0.5f), (4, -126.5f));
        var bytes = new byte[34];
        Quantization.QuantizeRow(QuantType.Q8_0, x, bytes);
        Assert.Equal((ushort)0x3C00, BitConverter.ToUInt16(bytes, 0)); // d = 1.0
        Assert.Equal(new sbyte[] { 127, 3, -3, 1, -127 }, bytes.AsSpan(2, 5).ToArray().Select(b => (sbyte)b));
    }

    [Fact]
    public void Q4_0_maps_the_first_largest_magnitude_to_minus_8_and_truncates()
    {
        // max = -8 (first of the ±8 tie) → d = 1: q = min(15, trunc(x + 8.5)).
        var x = Block((0, -8f), (1, 8f), (2, -0.5f), (3, -0.6f), (4, 6.4f), (16, 7.6f), (17, 0.49f));
        var bytes = new byte[18];
        Quantization.QuantizeRow(QuantType.Q4_0, x, bytes);
        Assert.Equal((ushort)0x3C00, BitConverter.ToUInt16(bytes, 0));
        int Q(int j) => j < 16 ? bytes[2 + j] & 15 : bytes[2 + j - 16] >> 4;
        Assert.Equal(new[] { 0, 15, 8, 7, 14 }, new[] { Q(0), Q(1), Q(2), Q(3), Q(4) });
        Assert.Equal(new[] { 15, 8 }, new[] { Q(16), Q(17) });
        // The sign of the first largest value decides the scale's sign.
        x = Block((0, 4f), (1, -4f));
        Quantization.QuantizeRow(QuantType.Q4_0, x, bytes);
        Assert.Equal(BitConverter.HalfToUInt16Bits((Half)(-0.5f)), BitConverter.ToUInt16(bytes, 0));
    }

    [Fact]
    public void All_zero_blocks_and_bad_lengths()
    {
        var bytes = new byte[34];
        Quantization.QuantizeRow(QuantType.Q8_0, new float[32], bytes);
        Assert.All(bytes, b => Assert.Equal(0, b));
        Quantization.QuantizeRow(QuantType.Q4_0, new float[32], bytes.AsSpan(0, 18));
        Assert.All(bytes.AsSpan(2, 16).ToArray(), b => Assert.Equal(0x88, b));
        Assert.Throws<ArgumentException>(() => Quantization.QuantizeRow(QuantType.Q8_0, new float[33], new byte[68]));
        Assert.Throws<ArgumentException>(() => Quantization.QuantizeRow(QuantType.Q8_0, new float[32], new byte[33]));
        Assert.Throws<NotSupportedException>(() => Quantization.QuantizeRow(QuantType.Q5_K, new float[256], new byte[176]));
        Assert.Throws<ArgumentException>(() => Quantization.QuantizeRow(QuantType.Q6_K, new float[96], new byte[210]));
    }
}
