using ILGPU.Runtime;
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Kernels.Gpu;
using Kernels.Runtime.Gpu;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary><c>kernels gpu-selftest</c> and <c>kernels gpu-bench</c>: the GPU checks and kernel timings, runnable from the published bundle.</summary>
internal static class GpuCommands
{
    private static GpuKind ParseKind(string s) => s.ToLowerInvariant() switch
    {
        "cuda" => GpuKind.Cuda,
        "opencl" => GpuKind.OpenCL,
        "ilgpu-cpu" => GpuKind.IlgpuCpu,
        _ => throw new ArgumentException($"unknown GPU device '{s}' (cuda, opencl, ilgpu-cpu)"),
    };

    private static GpuDevice Open(string kind) =>
        GpuDevice.TryCreate(ParseKind(kind), out string reason) ?? throw new InvalidOperationException(reason);

    public static Command SelfTest()
    {
        var device = new Option<string>("--device") { Description = "cuda | opencl | ilgpu-cpu", DefaultValueFactory = _ => "ilgpu-cpu" };
        var command = new Command("gpu-selftest", "Run the GPU kernel checks against the CPU references") { device };
        command.SetAction(parse =>
        {
            try
            {
                Console.WriteLine(string.Join("\n", GpuDevice.ListDevices()));
                using var d = Open(parse.GetValue(device)!);
                Console.WriteLine($"device: {d.Description}");
                var results = GpuSelfTest.RunAll(d);
                foreach (var r in results)
                {
                    Console.WriteLine($"{(r.Passed ? "PASS" : "FAIL")}  {r.Name}  (max rel. error {r.MaxError:E2}) {r.Detail}");
                }
                int failed = results.Count(r => !r.Passed);
                Console.WriteLine($"{results.Count - failed} passed, {failed} failed");
                return failed == 0 ? 0 : 1;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return CliConsole.Fail(e);
            }
        });
        return command;
    }

    public static Command Bench()
    {
        var device = new Option<string>("--device") { Description = "cuda | opencl | ilgpu-cpu", DefaultValueFactory = _ => "cuda" };
        var json = new Option<string?>("--json") { Description = "Write the results as JSON" };
        var small = new Option<bool>("--small") { Description = "Small shapes (for the CPU accelerator)" };
        var command = new Command("gpu-bench", "Dense vs 2:4 vs 4:8 GEMM/GEMV timings on the GPU backend, F32/F16 values and Q8_0/Q4_0 blocks (TFLOP/s, GB/s)") { device, json, small };
        command.SetAction(parse =>
        {
            try
            {
                using var d = Open(parse.GetValue(device)!);
                Console.WriteLine($"device: {d.Description}");
                var shapes = parse.GetValue(small)
                    ? new[] { (256, 256, 1), (256, 256, 64) }
                    : new[] { (4096, 4096, 4096), (8192, 8192, 4096), (11008, 4096, 1), (11008, 4096, 512), (4096, 11008, 1) };
                var rows = new List<Dictionary<string, object>>();
                var table = new Table().AddColumns("M x K", "n", "format", "median ms", "TFLOP/s (dense-eq)", "weight GB/s");
                // F32/F16 values dense, 2:4 and 4:8; llama.cpp's Q8_0/Q4_0 blocks dense and 2:4 (not on the 4096³ GEMM: decode and batched shapes).
                var variants = (from type in new[] { "F32", "F16" } from format in new[] { "dense", "2:4", "4:8" } select (Type: type, Format: format))
                    .Concat(from type in new[] { "Q8_0", "Q4_0" } from format in new[] { "dense", "2:4" } select (Type: type, Format: format)).ToArray();
                foreach (var (m, k, n) in shapes)
                {
                    foreach (var (type, format) in variants.Where(v => v.Type is "F32" or "F16" || n < 4096))
                    {
                        var (ms, bytes) = Time(d, m, k, n, type, format);
                        double tflops = 2.0 * m * k * n / (ms * 1e-3) / 1e12;
                        double gbps = bytes / (ms * 1e-3) / 1e9;
                        table.AddRow($"{m}x{k}", $"{n}", $"{format} {type}", $"{ms:F3}", $"{tflops:F2}", $"{gbps:F0}");
                        rows.Add(new() { ["m"] = m, ["k"] = k, ["n"] = n, ["type"] = type, ["format"] = format, ["median_ms"] = ms, ["tflops_dense_equivalent"] = tflops, ["weight_gbps"] = gbps });
                    }
                }
                CliConsole.Out.Write(table);
                if (parse.GetValue(json) is { } path)
                {
                    Kernels.Runtime.IO.AtomicFile.WriteAllText(path, JsonSerializer.Serialize(new { device = d.Description, rows }, new JsonSerializerOptions { WriteIndented = true }));
                }
                return 0;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return CliConsole.Fail(e);
            }
        });
        return command;
    }

    /// <summary>Median of timed launches (synchronised) and the weight bytes one launch reads.</summary>
    /// <param name="type">F32 or F16 values, or Q8_0 / Q4_0 blocks.</param>
    private static (double Ms, long Bytes) Time(GpuDevice d, int m, int k, int n, string type, string format)
    {
        var a = d.Accelerator;
        using var dense = SyntheticModel.RandomDense("w", m, k, ElementType.F32, format == "dense" ? null : NmPattern.Parse(format), 1);
        IDisposable weight;
        Action<ILGPU.ArrayView<float>, ILGPU.ArrayView<float>> run;
        long bytes;
        using var scratch = a.Allocate1D<float>((long)k * n);
        if (type is "Q8_0" or "Q4_0")
        {
            var quantType = type == "Q8_0" ? Kernels.Simd.Quantized.QuantType.Q8_0 : Kernels.Simd.Quantized.QuantType.Q4_0;
            if (format == "dense")
            {
                using var q = SyntheticModel.RandomQuantized("w", quantType, m, k, 1);
                var g = new GpuQuantizedMatrix(a, q);
                weight = g;
                bytes = g.Bytes;
                run = (x, y) => d.Kernels.Quantized(g, x, y, n);
            }
            else
            {
                using var q = NmQuantizedMatrix.Compress(dense, NmPattern.Parse(format), quantType);
                var g = new GpuNmQuantizedMatrix(a, q);
                weight = g;
                bytes = g.Bytes;
                run = (x, y) => d.Kernels.NmQuantized(g, x, y, n);
            }
        }
        else if (format == "dense")
        {
            var elementType = Enum.Parse<ElementType>(type);
            using var typed = elementType == ElementType.F32 ? null : DenseMatrix.FromSingle("w", m, k, dense.ToDenseArray(), elementType);
            var g = new GpuMatrix(a, typed ?? (WeightMatrix)dense);
            weight = g;
            bytes = g.Bytes;
            run = (x, y) => d.Kernels.Dense(g, x, y, n);
        }
        else
        {
            using var s = NmSparseMatrix.Compress(dense, NmPattern.Parse(format), Enum.Parse<ElementType>(type));
            var g = new GpuSparseMatrix(a, s);
            weight = g;
            bytes = g.Bytes;
            run = (x, y) => d.Kernels.Sparse(g, x, y, n, scratch.View);
        }
        using (weight)
        {
            using var x = a.Allocate1D<float>((long)n * k);
            using var y = a.Allocate1D<float>((long)n * m);
            x.MemSetToZero();
            run(x.View, y.View);
            a.Synchronize();
            var times = new List<double>();
            for (int i = 0; i < 9; i++)
            {
                var sw = Stopwatch.StartNew();
                run(x.View, y.View);
                a.Synchronize();
                times.Add(sw.Elapsed.TotalMilliseconds);
            }
            times.Sort();
            return (times[times.Count / 2], bytes);
        }
    }
}
