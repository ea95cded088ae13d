using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using Kernels.Simd.Matrices;

namespace Kernels.Bench;

/// <summary>
/// Decode GEMV (n = 1) at Llama-7B shapes: dense (baseline) vs 2:4 vs 4:8 (input-axis groups)
/// vs 2:4 output-axis groups, F32 and F16 storage, and TensorPrimitives.Dot per row as the
/// external .NET baseline. Bytes per call are the matrix's ByteSize (values + metadata): divide
/// by the median for GB/s.
/// </summary>
public class GemvBenchmarks
{
    private WeightMatrix _w = null!;
    private float[] _x = null!, _y = null!, _wArray = null!;

    [ParamsSource(nameof(Shapes))]
    public string Shape { get; set; } = "11008x4096";

    public static IEnumerable<string> Shapes => BenchParams.Shapes;

    [Params(ElementType.F32, ElementType.F16)]
    public ElementType Type { get; set; }

    [Params("dense", "2:4", "4:8", "2:4-out")]
    public string Format { get; set; } = "dense";

    [GlobalSetup]
    public void Setup()
    {
        var (rows, cols) = MatrixFactory.ParseShape(Shape);
        _w = MatrixFactory.Create(Format, rows, cols, Type);
        _x = Enumerable.Range(0, cols).Select(i => (i % 17) * 0.01f).ToArray();
        _y = new float[rows];
        if (Format == "dense" && Type == ElementType.F32)
        {
            _wArray = _w.ToDenseArray();
        }
        Console.WriteLine($"// {Format} {Type} {Shape}: {_w.ByteSize} bytes per GEMV ({_w.Format})");
    }

    [Benchmark]
    public void Kernel() => _w.Multiply(_x, _y, 1);

    /// <summary>TensorPrimitives.Dot per row over two threads (F32 dense only; what a .NET user writes today).</summary>
    [Benchmark]
    public void TensorPrimitivesDot()
    {
        if (_wArray is null)
        {
            return;
        }
        int rows = _y.Length, cols = _x.Length;
        var w = _wArray;
        var x = _x;
        var y = _y;
        Parallel.For(0, rows, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, r => y[r] = TensorPrimitives.Dot(w.AsSpan(r * cols, cols), x));
    }

    [GlobalCleanup]
    public void Cleanup() => _w.Dispose();
}

/// <summary>Prefill GEMM (n tokens) at Llama-7B shapes: dense vs 2:4 vs 4:8, F32 and F16. FLOPs per call = 2·rows·cols·n (dense-equivalent).</summary>
public class GemmBenchmarks
{
    private WeightMatrix _w = null!;
    private float[] _x = null!, _y = null!;

    [ParamsSource(nameof(Shapes))]
    public string Shape { get; set; } = "11008x4096";

    public static IEnumerable<string> Shapes => BenchParams.Shapes;

    [ParamsSource(nameof(Tokens))]
    public int N { get; set; }

    public static IEnumerable<int> Tokens => BenchParams.Tokens;

    [Params(ElementType.F32, ElementType.F16)]
    public ElementType Type { get; set; }

    [Params("dense", "2:4", "4:8")]
    public string Format { get; set; } = "dense";

    [GlobalSetup]
    public void Setup()
    {
        var (rows, cols) = MatrixFactory.ParseShape(Shape);
        _w = MatrixFactory.Create(Format, rows, cols, Type);
        _x = Enumerable.Range(0, cols * N).Select(i => (i % 13) * 0.01f).ToArray();
        _y = new float[rows * N];
    }

    [Benchmark]
    public void Kernel() => _w.Multiply(_x, _y, N);

    [GlobalCleanup]
    public void Cleanup() => _w.Dispose();
}

/// <summary>Parameter sets, narrowed by environment variables for shorter runs (KERNELS_BENCH_SHAPES=11008x4096, KERNELS_BENCH_TOKENS=512).</summary>
internal static class BenchParams
{
    public static IEnumerable<string> Shapes =>
        Environment.GetEnvironmentVariable("KERNELS_BENCH_SHAPES")?.Split(',') ?? new[] { "11008x4096", "4096x4096", "4096x11008" };

    public static IEnumerable<int> Tokens =>
        Environment.GetEnvironmentVariable("KERNELS_BENCH_TOKENS")?.Split(',').Select(int.Parse) ?? new[] { 8, 32, 512 };
}
