using System.Runtime.Intrinsics.X86;
using Kernels.Simd;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;
using Kernels.Simd.Vectors;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Simd;

/// <summary>
/// Quantized GEMV/GEMM (every format, every byte dot product this CPU has) against references
/// built from the block dequantization, with guard pages; and the activation quantizer's SIMD
/// and scalar forms against each other.
/// </summary>
public sealed unsafe class QuantizedMatMulTests
{
    public static readonly QuantType[] AllTypes = Enum.GetValues<QuantType>();

    internal static QuantizedMatrix RandomMatrix(QuantType type, int rows, int columns, int seed) =>
        Kernels.Runtime.Model.SyntheticModel.RandomQuantized("w", type, rows, columns, seed);

    private static float[] RandomVector(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (r.NextSingle() * 2 - 1) * (r.Next(8) == 0 ? 8 : 1)).ToArray();
    }

    public static IEnumerable<object[]> Shapes()
    {
        foreach (var type in AllTypes)
        {
            int k = type.BlockElements();
            foreach (int blocks in new[] { 0, 1, 2, 3, 5, 8, 19 })
            {
                foreach (int rows in new[] { 1, 3, 17, 64 })
                {
                    yield return new object[] { type, rows, blocks * k };
                }
            }
        }
    }

    public static IEnumerable<Int8DotKind> Kinds()
    {
        yield return Int8DotKind.Scalar;
        if (SimdInfo.Tier >= SimdTier.Vector256 && Avx2.IsSupported && Fma.IsSupported)
        {
            yield return Int8DotKind.Madd;
        }
    }

    /// <summary>Σ w·x in double over the dequantized row, Σ|w·x|, and the bound on what quantizing x to int8 may change.</summary>
    private static (double Exact, double Magnitude, double XRounding) Reference(QuantizedMatrix w, int row, float[] x, int token)
    {
        var wr = new float[w.Columns];
        w.CopyRow(row, wr);
        double sum = 0, mag = 0, rounding = 0;
        for (int b = 0; b < w.Columns / 32; b++)
        {
            double amax = 0;
            for (int j = 0; j < 32; j++)
            {
                amax = Math.Max(amax, Math.Abs(x[token * w.Columns + 32 * b + j]));
            }
            for (int j = 0; j < 32; j++)
            {
                int c = 32 * b + j;
                double p = (double)wr[c] * x[token * w.Columns + c];
                sum += p;
                mag += Math.Abs(p);
                rounding += Math.Abs(wr[c]) * (amax / 127 / 2);
            }
        }
        return (sum, mag, rounding);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Matches_the_dequantized_product(QuantType type, int rows, int columns)
    {
        using var w = RandomMatrix(type, rows, columns, rows * 7919 + columns + (int)type);
        foreach (int n in new[] { 1, 2, 5, QuantizedMatMul.PanelTokens + 1 })
        {
            var x = RandomVector(n * columns, columns + n);
            var expected = new (double Exact, double Magnitude, double XRounding)[n * rows];
            for (int t = 0; t < n; t++)
            {
                for (int r = 0; r < rows; r++)
                {
                    expected[t * rows + r] = Reference(w, r, x, t);
                }
            }
            var scalar = new float[n * rows];
            var kinds = Kinds().ToList();
            if (n == 1 && type is QuantType.Q8_0 or QuantType.Q4_0 && WideningRowDots.IsSupported)
            {
                kinds.Add(Int8DotKind.Widened);
            }
            foreach (var kind in kinds)
            {
                using var gx = new GuardedBuffer(x.Length);
                using var gy = new GuardedBuffer(n * rows);
                x.CopyTo(gx.Span);
                QuantizedMatMul.Multiply(w, gx.Pointer, gy.Pointer, n, kind);
                Assert.True(gx.CanariesIntact() && gy.CanariesIntact(), $"{type} {kind}: canary overwritten");
                for (int i = 0; i < n * rows; i++)
                {
                    var e = expected[i];
                    // Integer kernels see x rounded to int8 per block; the others (widening, the
                    // dequantized panels of long batches, the generic formats) see x exactly.
                    bool panels = n >= QuantizedMatMul.PanelTokens && kind != Int8DotKind.Scalar;
                    bool integer = Int8RowDots.Supports(type) && kind != Int8DotKind.Widened && !panels;
                    double bound = (integer ? e.XRounding : 0) + 1e-5 * e.Magnitude + 1e-6;
                    Assert.True(Math.Abs(gy.Span[i] - e.Exact) <= bound,
                        $"{type} {kind} {rows}x{columns} n={n} y[{i}]: {gy.Span[i]:R} vs {e.Exact:R} (bound {bound:E3})");
                    if (kind == Int8DotKind.Scalar)
                    {
                        scalar[i] = gy.Span[i];
                    }
                    else if (integer)
                    {
                        // Same integers as the scalar twin; only the float summation order differs.
                        Tolerance.Close(scalar[i], gy.Span[i], 2e-6f, (float)e.Magnitude, 1e-6f, $"{type} {kind} vs scalar y[{i}]");
                    }
                }
            }
        }
    }

    [Fact]
    public void Large_rows_multithreaded_match_single_rows()
    {
        // Pieces of rows are handed to threads by timing; a row's sum must not depend on them.
        foreach (var type in new[] { QuantType.Q8_0, QuantType.Q4_0, QuantType.Q4_K, QuantType.Q6_K, QuantType.Q5_1 })
        {
            using var w = RandomMatrix(type, 1031, 1024, 5);
            var x = RandomVector(1024, 6);
            var all = new float[w.Rows];
            fixed (float* px = x, py = all)
            {
                QuantizedMatMul.Multiply(w, px, py, 1);
            }
            for (int r = 0; r < w.Rows; r += 97)
            {
                using var one = new QuantizedMatrix("row", 1, w.Columns, type, w.Row(r), w);
                var y = new float[1];
                one.Multiply(x, y, 1);
                Assert.Equal(y[0], all[r]);
            }
        }
    }

    [Fact]
    public void Shared_input_gemv_of_mixed_formats_equals_one_matrix_at_a_time()
    {
        // Q4_K_M files mix Q4_K and Q6_K among the matrices that share an input; a dequantizing
        // format in the set sends all of them one by one.
        foreach (var types in new[] { new[] { QuantType.Q4_K, QuantType.Q4_K, QuantType.Q6_K }, new[] { QuantType.Q8_0, QuantType.Q4_0 }, new[] { QuantType.Q4_0, QuantType.Q5_0, QuantType.Q6_K, QuantType.Q4_K } })
        {
            var ws = types.Select((t, i) => RandomMatrix(t, 37 + 50 * i, 512, i + 1)).ToArray();
            var x = RandomVector(512, 9);
            var expected = ws.Select(w => { var y = new float[w.Rows]; w.Multiply(x, y, 1); return y; }).ToArray();
            var actual = ws.Select(w => new float[w.Rows]).ToArray();
            var handles = actual.Select(a => System.Runtime.InteropServices.GCHandle.Alloc(a, System.Runtime.InteropServices.GCHandleType.Pinned)).ToArray();
            try
            {
                fixed (float* px = x)
                {
                    QuantizedMatMul.MultiplyMany(ws, px, handles.Select(h => h.AddrOfPinnedObject()).ToArray());
                }
            }
            finally
            {
                foreach (var h in handles)
                {
                    h.Free();
                }
            }
            for (int i = 0; i < ws.Length; i++)
            {
                Assert.True(expected[i].AsSpan().SequenceEqual(actual[i]), $"{string.Join('+', types)}: matrix {i} ({types[i]}) differs");
                ws[i].Dispose();
            }
        }
        Assert.Throws<ArgumentException>(() =>
        {
            using var a = RandomMatrix(QuantType.Q8_0, 2, 64, 1);
            using var b = RandomMatrix(QuantType.Q8_0, 2, 96, 1);
            var x = new float[96];
            fixed (float* px = x)
            {
                QuantizedMatMul.MultiplyMany(new[] { a, b }, px, new nint[] { 1, 1 });
            }
        });
    }

    [Fact]
    public void Non_finite_scales_propagate_instead_of_reading_as_large_numbers()
    {
        foreach (var type in AllTypes)
        {
            using var w = RandomMatrix(type, 2, type.BlockElements(), 3);
            *(ushort*)(w.Data + type.ScaleOffsets()[0]) = 0x7E00; // NaN scale in row 0
            var x = RandomVector(w.Columns, 4);
            foreach (int n in new[] { 1, 3, QuantizedMatMul.PanelTokens })
            {
                var xs = Enumerable.Range(0, n).SelectMany(_ => x).ToArray();
                var y = new float[2 * n];
                w.Multiply(xs, y, n);
                for (int t = 0; t < n; t++)
                {
                    Assert.True(float.IsNaN(y[2 * t]), $"{type}, {n} tokens: row with a NaN scale gave {y[2 * t]}");
                    Assert.True(float.IsFinite(y[2 * t + 1]), $"{type}, {n} tokens: finite row gave {y[2 * t + 1]}");
                }
            }
        }
    }

    [Fact]
    public void Both_scale_conversions_are_exact_for_every_half()
    {
        ushort* h = stackalloc ushort[1];
        for (int bits = 0; bits < 65536; bits++)
        {
            *h = (ushort)bits;
            float expected = HalfBits.HalfToSingle((ushort)bits);
            float table = QuantizedScales.Scale((byte*)h), computed = QuantizedScales.Computed((byte*)h);
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(table) || float.IsNaN(expected) && float.IsNaN(table), $"table: 0x{bits:X4} -> {table}, expected {expected}");
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(computed) || float.IsNaN(expected) && float.IsNaN(computed), $"computed: 0x{bits:X4} -> {computed}, expected {expected}");
        }
    }

    [Fact]
    public void Activation_quantizer_simd_and_scalar_give_the_same_bytes()
    {
        using var a = new QuantizedInput();
        using var b = new QuantizedInput();
        for (int blocks = 0; blocks <= 8; blocks++)
        {
            var x = RandomVector(32 * blocks, blocks);
            if (blocks > 2)
            {
                x[5] = 0; x[40] = -0f; // zeros
                Array.Clear(x, 64, 32); // an all-zero block: d = 0
                x[70] = 1.5f / 127 * 3; // a tie after scaling is possible; both round half to even
            }
            fixed (float* px = x)
            {
                a.Quantize(px, x.Length, 1, simd: true);
                b.Quantize(px, x.Length, 1, simd: false);
            }
            Assert.True(new Span<sbyte>(a.Values, x.Length).SequenceEqual(new Span<sbyte>(b.Values, x.Length)), $"{blocks} blocks: values differ");
            Assert.True(new Span<float>(a.Scales, blocks).SequenceEqual(new Span<float>(b.Scales, blocks)), $"{blocks} blocks: scales differ");
            Assert.True(new Span<float>(a.Sums, blocks).SequenceEqual(new Span<float>(b.Sums, blocks)), $"{blocks} blocks: sums differ");
            for (int i = 0; i < x.Length; i++)
            {
                Assert.True(Math.Abs(a.Values[i] * a.Scales[i / 32] - x[i]) <= a.Scales[i / 32] / 2 * 1.0001f + 1e-30f, $"x[{i}] = {x[i]} quantized to {a.Values[i]}·{a.Scales[i / 32]}");
            }
        }
    }

    [Fact]
    public void Rows_that_are_not_whole_blocks_are_refused()
    {
        var e = Assert.Throws<ArgumentException>(() => new QuantizedMatrix("blk.0.ffn_down.weight", 2, 48, QuantType.Q4_0));
        Assert.Contains("blk.0.ffn_down.weight", e.Message);
        Assert.Contains("32", e.Message);
        Assert.Throws<ArgumentException>(() => new QuantizedMatrix("w", 1, 128, QuantType.Q4_K));
    }
}
