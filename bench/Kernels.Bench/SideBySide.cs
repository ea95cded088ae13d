using System.Diagnostics;
using Kernels.Runtime.Benchmarking;
using Kernels.Simd.Matrices;

namespace Kernels.Bench;

/// <summary>
/// Round-robin timing of dense / 2:4 / 4:8 for one shape and batch: every repetition runs each
/// variant once, in turn, so slow phases of this shared machine hit all variants alike (a
/// BenchmarkDotNet run measures them minutes apart). Prints medians, minima and ratios to dense.
/// Small matrices are cycled through enough copies (over 96 MB per variant) that every call
/// streams its weights from DRAM, as in decode, instead of timing an L3-resident matrix.
/// <c>dotnet run -c Release -- side-by-side 11008x4096 512 [reps] [F32,F16]</c>
/// </summary>
internal static class SideBySide
{
    public static void Run(string[] args)
    {
        int rows, cols, n, reps;
        ElementType[] types;
        try
        {
            (rows, cols) = MatrixFactory.ParseShape(args.ElementAtOrDefault(0) ?? "11008x4096");
            n = int.Parse(args.ElementAtOrDefault(1) ?? "512");
            reps = int.Parse(args.ElementAtOrDefault(2) ?? "11");
            types = (args.ElementAtOrDefault(3) ?? "F32,F16").Split(',').Select(t => Enum.Parse<ElementType>(t, ignoreCase: true)).ToArray();
        }
        catch (Exception e) when (e is FormatException or ArgumentException or IndexOutOfRangeException or OverflowException)
        {
            throw new ArgumentException($"side-by-side ROWSxCOLS N [REPS] [F32,F16,BF16]: cannot read '{string.Join(' ', args)}' ({e.Message})", e);
        }
        if (rows <= 0 || cols <= 0 || n <= 0 || reps <= 0 || cols % 8 != 0)
        {
            throw new ArgumentException($"side-by-side: rows, columns, N and REPS must be positive and columns a multiple of 8 (both 2:4 and 4:8 groups), got {rows}x{cols}, N {n}, REPS {reps}");
        }
        var formats = new[] { "dense", "2:4", "4:8" };
        var x = Enumerable.Range(0, n * cols).Select(i => (i % 17) * 0.01f - 0.08f).ToArray();
        var y = new float[(long)n * rows];
        Console.WriteLine($"{rows}x{cols}, n = {n}, {reps} round-robin repetitions (the first is warm-up and dropped)");
        // For GEMV, the 1 GiB read probe joins the rotation: percentages of bandwidth measured side by side.
        using var probe = n == 1 ? BandwidthBenchmarks.CreateBuffer() : null;
        foreach (var type in types)
        {
            var probeTimes = new List<double>();
            int copies = (int)Math.Clamp((96L << 20) / ((long)rows * cols * type.Size()) + 1, 1, 64);
            var matrices = formats.Select(f => MatrixFactory.Create(f, rows, cols, type)).ToArray();
            var copySets = formats.Select((f, i) => new[] { matrices[i] }.Concat(Enumerable.Range(1, copies - 1).Select(c => MatrixFactory.Create(f, rows, cols, type, seed: 1 + c))).ToArray()).ToArray();
            var times = matrices.Select(_ => new List<double>()).ToArray();
            for (int rep = 0; rep <= reps; rep++)
            {
                if (probe is not null)
                {
                    var sw = Stopwatch.StartNew();
                    BandwidthBenchmarks.ReadSum(probe);
                    if (rep > 0)
                    {
                        probeTimes.Add(sw.Elapsed.TotalMilliseconds);
                    }
                }
                for (int i = 0; i < matrices.Length; i++)
                {
                    var w = copySets[i][rep % copies];
                    var sw = Stopwatch.StartNew();
                    w.Multiply(x, y, n);
                    if (rep > 0)
                    {
                        times[i].Add(sw.Elapsed.TotalMilliseconds);
                    }
                }
            }
            double denseMedian = ModelBenchmark.Median(times[0]), denseMin = times[0].Min();
            double probeGBps = probeTimes.Count > 0 ? BandwidthBenchmarks.Floats * sizeof(float) / ModelBenchmark.Median(probeTimes) / 1e6 : 0;
            if (probeTimes.Count > 0)
            {
                Console.WriteLine($"{type} read probe: median {ModelBenchmark.Median(probeTimes),8:F2} ms for 1 GiB = {probeGBps:F1} GB/s");
            }
            for (int i = 0; i < matrices.Length; i++)
            {
                double median = ModelBenchmark.Median(times[i]), min = times[i].Min();
                double flops = 2.0 * rows * cols * n;
                string rate = n == 1
                    ? $"{matrices[i].ByteSize / median / 1e6,7:F1} GB/s ({matrices[i].ByteSize / median / 1e6 / probeGBps:P0} of probe)"
                    : $"{flops / median / 1e6,7:F1} GFLOP/s dense-equivalent";
                Console.WriteLine($"{type} {formats[i],-6} median {median,8:F2} ms  min {min,8:F2} ms  {rate}  speed-up median x{denseMedian / median:F2}, min x{denseMin / min:F2}");
            }
            foreach (var m in copySets.SelectMany(c => c))
            {
                m.Dispose();
            }
        }
    }
}
