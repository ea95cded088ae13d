using Kernels.Simd.Matrices;
using Kernels.Simd.Reference;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Simd;

/// <summary>Output-axis (DaSS gate/up) N:M matrices against the scalar reference on the same pruned dense matrix.</summary>
public sealed class OutputSparseMatMulTests
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (var p in new[] { "2:4", "4:8" })
        {
            foreach (int rows in new[] { 4, 8, 12, 16, 24, 32, 36, 64, 68, 100, 172 })
            {
                foreach (int cols in new[] { 1, 3, 16, 17, 64 })
                {
                    yield return new object[] { p, rows, cols };
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Output_sparse_matches_dense_reference(string pattern, int rows, int cols)
    {
        var p = NmPattern.Parse(pattern);
        foreach (var type in new[] { ElementType.F32, ElementType.F16, ElementType.BF16 })
        {
            var pruned = SparseTestData.RoundTo(SparseTestData.Prune(SparseTestData.Random(rows * cols, rows + 7 * cols), rows, cols, p, NmAxis.Output), type);
            using var dense = DenseMatrix.FromSingle("w", rows, cols, pruned);
            using var sparse = NmOutputSparseMatrix.Compress(dense, p, type);
            Assert.Equal(rows % p.M, sparse.TailRows);
            Assert.Equal(pruned, sparse.ToDenseArray());
            foreach (int n in new[] { 1, 2, 4, 5, 9 })
            {
                var x = SparseTestData.Random(n * cols, n * 3 + cols);
                var expected = new float[n * rows];
                ScalarReference.MatMul(dense, x, expected, n);
                using var gx = new GuardedBuffer(x.Length);
                using var gy = new GuardedBuffer(expected.Length);
                x.CopyTo(gx.Span);
                sparse.Multiply(gx.Span, gy.Span, n);
                for (int i = 0; i < expected.Length; i++)
                {
                    Tolerance.Close(expected[i], gy.Span[i], 2e-6f, cols, 1e-5f, $"{pattern} {type} {rows}x{cols} n={n} y[{i}]");
                }
                Assert.True(gx.CanariesIntact() && gy.CanariesIntact());
            }
        }
    }

    [Fact]
    public void Input_grouped_matrix_is_not_output_grouped()
    {
        int rows = 8, cols = 8;
        var w = SparseTestData.Prune(SparseTestData.Random(rows * cols, 2), rows, cols, NmPattern.TwoFour, NmAxis.Input);
        using var dense = DenseMatrix.FromSingle("blk.0.ffn_gate.weight", rows, cols, w);
        Assert.True(NmSparseMatrix.Satisfies(dense, NmPattern.TwoFour));
        if (!NmOutputSparseMatrix.Satisfies(dense, NmPattern.TwoFour))
        {
            var e = Assert.Throws<ArgumentException>(() => NmOutputSparseMatrix.Compress(dense, NmPattern.TwoFour, ElementType.F32));
            Assert.Contains("blk.0.ffn_gate.weight", e.Message);
        }
    }
}
