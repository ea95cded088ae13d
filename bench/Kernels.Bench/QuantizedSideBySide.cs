using System.Diagnostics;
using Kernels.Runtime.Benchmarking;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;

namespace Kernels.Bench;

/// <summary>
/// Round-robin timing of quantized GEMV/GEMM against dense F16 on one shape: every format with
/// the integer kernels (vpmaddubsw + vpmaddwd) and,
/// for Q8_0/Q4_0 GEMV, weights widened to float instead of integer dot products. Matrices are
/// cycled through copies (over 96 MB per variant) so every call streams from DRAM.
/// <c>dotnet Kernels.Bench.dll side-by-side-quant 5632x2048 1 [reps]</c>
/// </summary>
internal static unsafe class QuantizedSideBySide
{
    private sealed record Variant(string Name, WeightMatrix[] Copies, Action<WeightMatrix, float[], float[], int> Run);

    public static void Run(string[] args)
    {
        var (rows, cols) = MatrixFactory.ParseShape(args.ElementAtOrDefault(0) ?? "5632x2048");
        int n = int.Parse(args.ElementAtOrDefault(1) ?? "1");
        int reps = int.Parse(args.ElementAtOrDefault(2) ?? "21");
        if (rows <= 0 || cols <= 0 || cols % 256 != 0 || n <= 0 || reps <= 0)
        {
            throw new ArgumentException($"side-by-side-quant ROWSxCOLS N [REPS]: columns must be a multiple of 256 (K-quant blocks), got {rows}x{cols}, N {n}, REPS {reps}");
        }
        var x = Enumerable.Range(0, n * cols).Select(i => (i % 17) * 0.01f - 0.08f).ToArray();
        var y = new float[(long)n * rows];
        WeightMatrix[] Copies(Func<int, WeightMatrix> make, long bytes) =>
            Enumerable.Range(0, (int)Math.Clamp((96L << 20) / bytes + 1, 1, 64)).Select(make).ToArray();

        var variants = new List<Variant>
        {
            new("dense F16", Copies(s => MatrixFactory.Create("dense", rows, cols, ElementType.F16, seed: 1 + s), (long)rows * cols * 2), (w, a, b, t) => w.Multiply(a, b, t)),
        };
        foreach (var type in new[] { QuantType.Q8_0, QuantType.Q4_0, QuantType.Q4_K, QuantType.Q6_K, QuantType.Q5_K })
        {
            // Every variant streams its own copies: a variant reading the matrices the previous one
            // just read would find them in L3.
            WeightMatrix[] copies() => Copies(s => MatrixFactory.RandomQuantized(type, rows, cols, seed: 1 + s), rows * type.RowBytes(cols));
            var kinds = Int8RowDots.Supports(type)
                ? new[] { Int8DotKind.Madd }
                : new[] { Int8DotKind.Scalar };
            foreach (var kind in kinds)
            {
                string label = Int8RowDots.Supports(type) ? $"{type} int8 {kind}" : $"{type} dequantized";
                variants.Add(new(label, copies(), (w, a, b, t) =>
                {
                    fixed (float* pa = a, pb = b)
                    {
                        QuantizedMatMul.Multiply((QuantizedMatrix)w, pa, pb, t, kind);
                    }
                }));
            }
            if (n == 1 && WideningRowDots.IsSupported && type is QuantType.Q8_0 or QuantType.Q4_0)
            {
                variants.Add(new($"{type} widened to float", copies(), (w, a, b, t) =>
                {
                    fixed (float* pa = a, pb = b)
                    {
                        QuantizedMatMul.Multiply((QuantizedMatrix)w, pa, pb, t, Int8DotKind.Widened);
                    }
                }));
            }
        }

        // N:M on quantized values beside the dense formats they are measured against.
        variants.Add(new("2:4 F16", Copies(s => MatrixFactory.Create("2:4", rows, cols, ElementType.F16, seed: 1 + s), (long)rows * cols), (w, a, b, t) => w.Multiply(a, b, t)));
        foreach (var pattern in new[] { NmPattern.TwoFour, NmPattern.FourEight })
        foreach (var type in new[] { QuantType.Q8_0, QuantType.Q4_0 })
        {
            long bytes = rows * type.RowBytes(cols) * 5 / 8;
            variants.Add(new($"{pattern} {type}", Copies(s => MatrixFactory.SparseQuantized(pattern, type, rows, cols, seed: 1 + s), bytes), (w, a, b, t) => w.Multiply(a, b, t)));
        }

        Console.WriteLine($"{rows}x{cols}, n = {n}, {reps} round-robin repetitions (first dropped); {Kernels.Simd.SimdInfo.Describe()}");
        var times = variants.Select(_ => new List<double>()).ToArray();
        for (int rep = 0; rep <= reps; rep++)
        {
            for (int i = 0; i < variants.Count; i++)
            {
                var v = variants[i];
                var w = v.Copies[rep % v.Copies.Length];
                var sw = Stopwatch.StartNew();
                v.Run(w, x, y, n);
                if (rep > 0)
                {
                    times[i].Add(sw.Elapsed.TotalMilliseconds);
                }
            }
        }
        double dense = ModelBenchmark.Median(times[0]);
        for (int i = 0; i < variants.Count; i++)
        {
            double median = ModelBenchmark.Median(times[i]);
            long bytes = variants[i].Copies[0].ByteSize;
            Console.WriteLine($"{variants[i].Name,-26} median {median,8:F3} ms  min {times[i].Min(),8:F3} ms  {bytes / median / 1e6,6:F1} GB/s  " +
                $"{2.0 * rows * cols * n / median / 1e6,7:F1} GFLOP/s  x{dense / median:F2} vs dense F16");
        }
        foreach (var w in variants.SelectMany(v => v.Copies).Distinct())
        {
            w.Dispose();
        }
    }
}
