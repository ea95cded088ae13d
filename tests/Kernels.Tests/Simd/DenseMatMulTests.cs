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

    /// <summary>
    /// Odd row counts on several threads: each thread's piece is split in two halves streamed
    /// together, with a leftover row when the piece is odd.
    /// </summary>
    [Theory]
    [InlineData(ElementType.F32, 1031, 1000)]
    [InlineData(ElementType.F16, 1031, 1000)]
    [InlineData(ElementType.BF16, 1031, 1000)]
    [InlineData(ElementType.F16, 513, 2051)]
    [InlineData(ElementType.BF16, 257, 4099)]
    public void Large_gemv_of_every_type_matches_reference(ElementType type, int rows, int cols)
    {
        using var w = RandomMatrix(rows, cols, type, rows + cols);
        var x = RandomVector(cols, rows);
        Check(w, x, 1, (px, py) => DenseGemv.Multiply(w, (float*)px, (float*)py), $"gemv {type} {rows}x{cols}");
    }

    /// <summary>
    /// F16 GEMV folds the 2¹¹² rebias into the activations; activations that would overflow then
    /// (|x| ≥ 2¹⁶) take the rebiasing path and still match, as do tiny ones.
    /// </summary>
    [Theory]
    [InlineData(1e-30f)]
    [InlineData(1f)]
    [InlineData(6e4f)]
    [InlineData(1e5f)]
    [InlineData(1e30f)]
    public void F16_gemv_matches_reference_across_activation_magnitudes(float magnitude)
    {
        using var w = RandomMatrix(301, 700, ElementType.F16, 3);
        var x = RandomVector(700, 4).Select(v => v * magnitude).ToArray();
        var expected = new float[301];
        var actual = new float[301];
        ScalarReference.MatMul(w, x, expected, 1);
        w.Multiply(x, actual, 1);
        for (int i = 0; i < expected.Length; i++)
        {
            Tolerance.Close(expected[i], actual[i], 2e-6f, 700 * magnitude, 1e-5f * magnitude, $"|x|~{magnitude} y[{i}]");
        }
    }

    /// <summary>Weights holding Inf/NaN take the exact general widening: same Inf/NaN outputs as the definition.</summary>
    [Fact]
    public void F16_gemv_with_infinite_and_nan_weights_matches_reference()
    {
        var values = RandomVector(64 * 96, 5);
        values[3 * 96 + 10] = float.PositiveInfinity;
        values[7 * 96 + 95] = float.NegativeInfinity;
        values[20 * 96 + 40] = float.NaN;
        using var w = DenseMatrix.FromSingle("w", 64, 96, values, ElementType.F16);
        Assert.False(w.HalfValuesFinite);
        var x = RandomVector(96, 6);
        var expected = new float[64];
        var actual = new float[64];
        ScalarReference.MatMul(w, x, expected, 1);
        w.Multiply(x, actual, 1);
        for (int i = 0; i < 64; i++)
        {
            if (float.IsFinite(expected[i]))
            {
                Tolerance.Close(expected[i], actual[i], 2e-6f, 96, 1e-5f, $"y[{i}]");
            }
            else
            {
                Assert.Equal(expected[i], actual[i]); // ±Inf, or NaN (Assert.Equal treats NaN as equal to NaN)
            }
        }
    }

    /// <summary>Matrices sharing an input in one region give exactly what each gives alone (same kernel, same order).</summary>
    [Theory]
    [InlineData(ElementType.F32)]
    [InlineData(ElementType.F16)]
    [InlineData(ElementType.BF16)]
    public void Multiply_many_equals_each_matrix_alone(ElementType type)
    {
        int cols = 1000;
        using var a = RandomMatrix(777, cols, type, 1);
        using var b = RandomMatrix(129, cols, type, 2);
        using var c = RandomMatrix(1, cols, type, 3);
        var x = RandomVector(cols, 4);
        var together = new[] { new float[777], new float[129], new float[1] };
        var alone = new[] { new float[777], new float[129], new float[1] };
        fixed (float* px = x, ya = together[0], yb = together[1], yc = together[2])
        {
            DenseGemv.MultiplyMany(new[] { a, b, c }, px, new nint[] { (nint)ya, (nint)yb, (nint)yc });
        }
        a.Multiply(x, alone[0], 1);
        b.Multiply(x, alone[1], 1);
        c.Multiply(x, alone[2], 1);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(alone[i], together[i]);
        }
    }

    [Fact]
    public void Multiply_many_rejects_mixed_shapes_and_types()
    {
        using var a = RandomMatrix(8, 16, ElementType.F16, 1);
        using var b = RandomMatrix(8, 17, ElementType.F16, 2);
        using var c = RandomMatrix(8, 16, ElementType.F32, 3);
        var x = new float[17];
        var y = new float[8];
        fixed (float* px = x, py = y)
        {
            nint[] two = { (nint)py, (nint)py };
            float* xp = px;
            Assert.Throws<ArgumentException>(() => DenseGemv.MultiplyMany(new[] { a, b }, xp, two));
            Assert.Throws<ArgumentException>(() => DenseGemv.MultiplyMany(new[] { a, c }, xp, two));
            Assert.Throws<ArgumentException>(() => DenseGemv.MultiplyMany(new[] { a }, xp, two));
            Assert.Throws<ArgumentException>(() => DenseGemv.MultiplyMany(Array.Empty<DenseMatrix>(), xp, Array.Empty<nint>()));
        }
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
