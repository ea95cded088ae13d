using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using Kernels.Simd;
using Kernels.Simd.Matrices;

namespace Kernels.Bench;

/// <summary>Dense GEMV (decode) at Llama-7B shapes against TensorPrimitives.Dot per row.</summary>
public unsafe class DenseGemvBenchmarks
{
    private DenseMatrix _w = null!;
    private float[] _x = null!, _y = null!, _wArray = null!;

    [Params("11008x4096", "4096x4096", "4096x11008")]
    public string Shape { get; set; } = "11008x4096";

    [Params(ElementType.F32, ElementType.F16)]
    public ElementType Type { get; set; }

    private (int Rows, int Cols) Dims => (int.Parse(Shape.Split('x')[0]), int.Parse(Shape.Split('x')[1]));

    [GlobalSetup]
    public void Setup()
    {
        var (rows, cols) = Dims;
        var rng = new Random(1);
        _wArray = new float[(long)rows * cols];
        for (long i = 0; i < _wArray.LongLength; i++)
        {
            _wArray[i] = rng.NextSingle() - 0.5f;
        }
        _w = DenseMatrix.FromSingle("w", rows, cols, _wArray, Type);
        _x = Enumerable.Range(0, cols).Select(_ => rng.NextSingle()).ToArray();
        _y = new float[rows];
    }

    [Benchmark(Baseline = true)]
    public void Kernels() => _w.Multiply(_x, _y, 1);

    /// <summary>What a .NET user writes today (F32 only; F16 via TensorPrimitives is scalar).</summary>
    [Benchmark]
    public void TensorPrimitivesDot()
    {
        if (Type != ElementType.F32)
        {
            return;
        }
        var (rows, cols) = Dims;
        var w = _wArray;
        var x = _x;
        var y = _y;
        Parallel.For(0, rows, r => y[r] = TensorPrimitives.Dot(w.AsSpan(r * cols, cols), x));
    }

    [GlobalCleanup]
    public void Cleanup() => _w.Dispose();
}
