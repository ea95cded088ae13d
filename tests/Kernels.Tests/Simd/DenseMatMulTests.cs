using Kernels.Simd;
using Kernels.Simd.Matrices;
using Kernels.Simd.Reference;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Simd;

/// <summary>Dense GEMV/GEMM (every kernel path, every storage type) against the scalar reference, with guard pages.</summary>
public sealed unsafe class DenseMatMulTests
{
    public static IEnumerable<object[]> Shapes()
    {
        int[] rows = { 1, 3, 4, 5, 17, 33, 64 };
        int[] cols = { 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 256, 257 };
        foreach (int r in rows)
        {
            foreach (int c in cols)
            {
                yield return new object[] { r, c };
            }
        }
    }

    internal static DenseMatrix RandomMatrix(int rows, int cols, ElementType type, int seed)
    {
        var r = new Random(seed);
        var values = Enumerable.Range(0, rows * cols).Select(_ => r.NextSingle() * 2 - 1).ToArray();
        return DenseMatrix.FromSingle("w", rows, cols, values, type);
    }

    internal static float[] RandomVector(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => r.NextSingle() * 2 - 1).ToArray();
    }

    private static void Check(WeightMatrix w, float[] x, int n, Action<nint, nint> run, string what)
    {
        var expected = new float[n * w.Rows];
        ScalarReference.MatMul(w, x, expected, n);
        using var gx = new GuardedBuffer(x.Length);
        using var gy = new GuardedBuffer(n * w.Rows);
        x.CopyTo(gx.Span);
        run((nint)gx.Pointer, (nint)gy.Pointer);
        // Summation order differs from the sequential reference: tolerance scaled by the row's Σ|w·x| ≤ cols.
        for (int i = 0; i < expected.Length; i++)
        {
            Tolerance.Close(expected[i], gy.Span[i], 2e-6f, w.Columns, 1e-5f, $"{what} y[{i}]");
        }
        Assert.True(gy.CanariesIntact() && gx.CanariesIntact(), $"{what}: canary overwritten");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Gemv_matches_reference(int rows, int cols)
    {
        foreach (var type in new[] { ElementType.F32, ElementType.F16, ElementType.BF16 })
        {
            using var w = RandomMatrix(rows, cols, type, rows * 1000 + cols);
            var x = RandomVector(cols, cols);
            Check(w, x, 1, (px, py) => DenseGemv.Multiply(w, (float*)px, (float*)py), $"gemv {type} {rows}x{cols}");
        }
    }

    [Theory]
    [InlineData(1, 1, 2)]
    [InlineData(5, 7, 3)]
    [InlineData(33, 17, 7)]
    [InlineData(64, 64, 8)]
    [InlineData(17, 100, 9)]
    [InlineData(40, 33, 24)]
    [InlineData(65, 257, 25)]
    [InlineData(31, 9, 33)]
    [InlineData(96, 300, 70)]
    public void Gemm_both_kernels_match_reference(int rows, int cols, int n)
    {
        foreach (var type in new[] { ElementType.F32, ElementType.F16, ElementType.BF16 })
        {
            using var w = RandomMatrix(rows, cols, type, rows + cols + n);
            var x = RandomVector(n * cols, n);
            foreach (var kernel in new[] { DenseGemm.GemmKernel.Dot, DenseGemm.GemmKernel.Packed, DenseGemm.GemmKernel.Auto })
            {
                Check(w, x, n, (px, py) => DenseGemm.Multiply(w, (float*)px, (float*)py, n, kernel), $"gemm {kernel} {type} {rows}x{cols} n={n}");
            }
        }
    }

    [Fact]
    public void Large_gemm_spanning_several_k_blocks_and_threads_matches_reference()
    {
        using var w = RandomMatrix(300, 700, ElementType.F16, 5);
        var x = RandomVector(40 * 700, 6);
        Check(w, x, 40, (px, py) => DenseGemm.Multiply(w, (float*)px, (float*)py, 40, DenseGemm.GemmKernel.Packed), "gemm 300x700 n=40");
    }

    [Fact]
    public void Large_gemv_runs_multithreaded_and_matches_reference()
    {
        using var w = RandomMatrix(1031, 1000, ElementType.F32, 9);
        var x = RandomVector(1000, 10);
        Check(w, x, 1, (px, py) => DenseGemv.Multiply(w, (float*)px, (float*)py), "gemv 1031x1000");
    }

    [Fact]
    public void Multiply_validates_shapes_and_overlap()
    {
        using var w = RandomMatrix(4, 8, ElementType.F32, 1);
        Assert.Throws<ArgumentException>(() => w.Multiply(new float[7], new float[4], 1));
        Assert.Throws<ArgumentException>(() => w.Multiply(new float[8], new float[3], 1));
        var buf = new float[16];
        Assert.Throws<ArgumentException>(() => w.Multiply(buf.AsSpan(0, 8), buf.AsSpan(4, 4), 1));
    }
}
