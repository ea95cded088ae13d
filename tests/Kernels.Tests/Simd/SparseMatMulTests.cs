using Kernels.Simd;
using Kernels.Simd.Matrices;
using Kernels.Simd.Reference;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Simd;

/// <summary>Input-axis N:M GEMV/GEMM against the scalar reference on the same (pruned) dense matrix.</summary>
public sealed unsafe class SparseMatMulTests
{
    public static IEnumerable<object[]> Cases()
    {
        int[] cols = { 4, 8, 12, 16, 24, 28, 32, 36, 60, 64, 68, 100, 128, 172, 260 };
        int[] rows = { 1, 2, 3, 4, 5, 9, 17 };
        foreach (var p in new[] { "2:4", "4:8" })
        {
            foreach (int c in cols)
            {
                foreach (int r in rows)
                {
                    yield return new object[] { p, r, c };
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Sparse_matches_dense_reference(string pattern, int rows, int cols)
    {
        var p = NmPattern.Parse(pattern);
        foreach (var type in new[] { ElementType.F32, ElementType.F16, ElementType.BF16 })
        {
            var pruned = SparseTestData.RoundTo(SparseTestData.Prune(SparseTestData.Random(rows * cols, rows * 31 + cols), rows, cols, p), type);
            using var dense = DenseMatrix.FromSingle("w", rows, cols, pruned);
            using var sparse = NmSparseMatrix.Compress(dense, p, type);
            sparse.Validate();
            Assert.Equal(cols % p.M, sparse.TailColumns);
            Assert.Equal(pruned, sparse.ToDenseArray());
            foreach (int n in new[] { 1, 2, 3, 4, 5, 8, 9, 48, 61, 130 })
            {
                var x = SparseTestData.Random(n * cols, n + cols);
                var expected = new float[n * rows];
                ScalarReference.MatMul(dense, x, expected, n);
                // Auto through the public API, then each kernel forced (the broadcast one normally starts at 48 tokens).
                foreach (var kernel in new SparseGemm.SparseKernel?[] { null, SparseGemm.SparseKernel.Permute, SparseGemm.SparseKernel.Broadcast })
                {
                    using var gx = new GuardedBuffer(x.Length);
                    using var gy = new GuardedBuffer(expected.Length);
                    x.CopyTo(gx.Span);
                    if (kernel is { } k)
                    {
                        fixed (float* px = gx.Span, py = gy.Span)
                        {
                            SparseGemm.Multiply(sparse, px, py, n, k);
                        }
                    }
                    else
                    {
                        sparse.Multiply(gx.Span, gy.Span, n);
                    }
                    for (int i = 0; i < expected.Length; i++)
                    {
                        Tolerance.Close(expected[i], gy.Span[i], 2e-6f, cols, 1e-5f, $"{pattern} {type} {rows}x{cols} n={n} {kernel?.ToString() ?? "auto"} y[{i}]");
                    }
                    Assert.True(gx.CanariesIntact() && gy.CanariesIntact());
                }
            }
        }
    }

    [Fact]
    public void Large_sparse_gemv_and_gemm_use_threads_and_match()
    {
        foreach (var p in new[] { NmPattern.TwoFour, NmPattern.FourEight })
        foreach (var type in new[] { ElementType.F32, ElementType.F16 })
        {
            int rows = 515, cols = 2500; // several column slices, a dense tail under 4:8
            var pruned = SparseTestData.RoundTo(SparseTestData.Prune(SparseTestData.Random(rows * cols, 3), rows, cols, p), type);
            using var dense = DenseMatrix.FromSingle("w", rows, cols, pruned);
            using var sparse = NmSparseMatrix.Compress(dense, p, type);
            foreach (int n in new[] { 1, 13, 130 })
            {
                var x = SparseTestData.Random(n * cols, 4);
                var expected = new float[n * rows];
                var actual = new float[n * rows];
                ScalarReference.MatMul(dense, x, expected, n);
                sparse.Multiply(x, actual, n);
                for (int i = 0; i < expected.Length; i++)
                {
                    Tolerance.Close(expected[i], actual[i], 2e-6f, cols, 1e-5f, $"{p} n={n} y[{i}]");
                }
            }
        }
    }

    /// <summary>
    /// F16 decode folds the 2¹¹² rebias into the activations; activations that would overflow
    /// after that (|x| ≥ 2¹⁶) must take the rebiasing path and still match, as must tiny ones.
    /// </summary>
    [Theory]
    [InlineData("2:4", 1e-30f)]
    [InlineData("2:4", 1f)]
    [InlineData("2:4", 3e4f)]
    [InlineData("2:4", 1e5f)]
    [InlineData("4:8", 1e-30f)]
    [InlineData("4:8", 1e5f)]
    [InlineData("4:8", 1e30f)]
    public void F16_sparse_matches_reference_across_activation_magnitudes(string pattern, float magnitude)
    {
        var p = NmPattern.Parse(pattern);
        int rows = 37, cols = 520;
        var pruned = SparseTestData.RoundTo(SparseTestData.Prune(SparseTestData.Random(rows * cols, 11), rows, cols, p), ElementType.F16);
        using var dense = DenseMatrix.FromSingle("w", rows, cols, pruned);
        using var sparse = NmSparseMatrix.Compress(dense, p, ElementType.F16);
        foreach (int n in new[] { 1, 6 })
        {
            var x = SparseTestData.Random(n * cols, 12).Select(v => v * magnitude).ToArray();
            var expected = new float[n * rows];
            var actual = new float[n * rows];
            ScalarReference.MatMul(dense, x, expected, n);
            sparse.Multiply(x, actual, n);
            for (int i = 0; i < expected.Length; i++)
            {
                Tolerance.Close(expected[i], actual[i], 2e-6f, cols * magnitude, 1e-5f * magnitude, $"{pattern} |x|~{magnitude} n={n} y[{i}]");
            }
        }
    }

    [Fact]
    public void Scaled_input_is_exact_and_refuses_overflow_and_non_finite_values()
    {
        const float scale = 5.192296858534828e33f; // 2^112
        for (int length = 0; length <= 40; length++)
        {
            var x = SparseTestData.Random(length, length).Select((v, i) => i % 3 == 0 ? v * 1e-38f : v * 3e4f).ToArray();
            fixed (float* px = x)
            {
                float* d = Kernels.Simd.ScaledInput.TryScale(px, length, scale);
                Assert.True(d != null, $"length {length}");
                for (int i = 0; i < length; i++)
                {
                    Assert.Equal(x[i] * scale, d[i]);
                }
                if (length == 0)
                {
                    continue;
                }
                foreach (float bad in new[] { 7e4f, float.PositiveInfinity, float.NaN })
                {
                    float saved = x[length - 1];
                    x[length - 1] = bad;
                    Assert.True(Kernels.Simd.ScaledInput.TryScale(px, length, scale) == null, $"length {length}, {bad}");
                    x[length - 1] = saved;
                }
            }
        }
    }

    [Fact]
    public void Compression_rejects_groups_with_too_many_nonzeros()
    {
        var w = SparseTestData.Random(4 * 16, 1); // dense: 4 non-zeros per group
        using var dense = DenseMatrix.FromSingle("blk.0.ffn_down.weight", 4, 16, w);
        var e = Assert.Throws<ArgumentException>(() => NmSparseMatrix.Compress(dense, NmPattern.TwoFour, ElementType.F32));
        Assert.Contains("blk.0.ffn_down.weight", e.Message);
        Assert.Contains("row 0", e.Message);
        Assert.False(NmSparseMatrix.Satisfies(dense, NmPattern.TwoFour));
    }

    [Fact]
    public void Groups_with_fewer_nonzeros_keep_explicit_zeros()
    {
        var w = new float[8];
        w[5] = 3f; // one non-zero in the second group, none in the first
        using var dense = DenseMatrix.FromSingle("w", 1, 8, w);
        using var sparse = NmSparseMatrix.Compress(dense, NmPattern.TwoFour, ElementType.F32);
        sparse.Validate();
        Assert.Equal(w, sparse.ToDenseArray());
        var y = new float[1];
        sparse.Multiply(new float[] { 1, 1, 1, 1, 1, 2, 1, 1 }, y, 1);
        Assert.Equal(6f, y[0]);
    }

    [Fact]
    public void Unsupported_patterns_are_rejected()
    {
        Assert.Throws<NotSupportedException>(() => NmPattern.Parse("1:4"));
        Assert.Throws<FormatException>(() => NmPattern.Parse("2-4"));
        Assert.Equal(NmPattern.FourEight, NmPattern.Parse("4:8"));
    }

    [Fact]
    public void Byte_size_counts_values_and_index_bits()
    {
        using var dense = DenseMatrix.FromSingle("w", 8, 64, SparseTestData.Prune(SparseTestData.Random(8 * 64, 1), 8, 64, NmPattern.FourEight));
        using var s24 = NmSparseMatrix.Compress(DenseMatrix.FromSingle("w", 8, 64, SparseTestData.Prune(SparseTestData.Random(8 * 64, 1), 8, 64, NmPattern.TwoFour)), NmPattern.TwoFour, ElementType.F16);
        using var s48 = NmSparseMatrix.Compress(dense, NmPattern.FourEight, ElementType.F16);
        Assert.Equal(8 * 32 * 2 + 8 * 32 * 2 / 8, s24.ByteSize);
        Assert.Equal(8 * 32 * 2 + 8 * 32 * 3 / 8, s48.ByteSize);
    }
}
