using BenchmarkDotNet.Attributes;
using Kernels.Runtime.Dip;
using Kernels.Runtime.Model;
using Kernels.Simd;
using Kernels.Simd.Matrices;

namespace Kernels.Bench;

/// <summary>
/// One decode step of the SwiGLU MLP at the bench model shape (TinyLlama: dim 2048, hidden 5632):
/// dense (gate, up, down GEMV + SwiGLU) against DIP's masked SwiGLU (top-k |x|, fused gate/up over
/// the kept columns, top-k |h|, down over the kept columns) at the split densities of `Keep`.
/// Each invocation runs one of 4 independent MLPs ("layers", 4x the L3 size) on a different
/// input, as decode does: no selected column is still cached from the previous call.
/// </summary>
public class MlpBenchmarks
{
    private const int Layers = 4;
    private DenseMatrix[] _gates = null!, _ups = null!, _downs = null!;
    private ColumnMajorMlp[] _maskeds = null!;
    private float[][] _xs = null!;
    private int _call;
    private DenseMatrix _gate = null!, _up = null!, _down = null!;
    private ColumnMajorMlp _masked = null!;
    private float[] _x = null!, _g = null!, _u = null!, _h = null!, _y = null!, _scores = null!;
    private int[] _inputs = null!, _hidden = null!, _scratch = null!;

    [Params(2048)]
    public int Dim { get; set; }

    [Params(5632)]
    public int Hidden { get; set; }

    [Params(ElementType.F32, ElementType.F16)]
    public ElementType Type { get; set; }

    [Params(0.5, 0.3)]
    public double Keep { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _gates = Enumerable.Range(0, Layers).Select(l => SyntheticModel.RandomDense("gate", Hidden, Dim, Type, null, 10 * l + 1)).ToArray();
        _ups = Enumerable.Range(0, Layers).Select(l => SyntheticModel.RandomDense("up", Hidden, Dim, Type, null, 10 * l + 2)).ToArray();
        _downs = Enumerable.Range(0, Layers).Select(l => SyntheticModel.RandomDense("down", Dim, Hidden, Type, null, 10 * l + 3)).ToArray();
        _maskeds = Enumerable.Range(0, Layers).Select(l => new ColumnMajorMlp(_gates[l], _ups[l], _downs[l], Type)).ToArray();
        var rng = new Random(5);
        _xs = Enumerable.Range(0, 16).Select(_ => Enumerable.Range(0, Dim).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray()).ToArray();
        Next();
        _g = new float[Hidden];
        _u = new float[Hidden];
        _h = new float[Hidden];
        _y = new float[Dim];
        _scores = new float[Hidden];
        _scratch = new int[Hidden];
        var (up, down) = DipOptions.Split(Keep);
        _inputs = new int[(int)(up * Dim)];
        _hidden = new int[(int)(down * Hidden)];
        Console.WriteLine($"// keep {Keep}: {_inputs.Length} of {Dim} inputs, {_hidden.Length} of {Hidden} intermediate; dense MLP {_gate.ByteSize + _up.ByteSize + _down.ByteSize} bytes per layer, {Layers} layers cycled");
    }

    /// <summary>Next layer and input (part of both measured methods alike).</summary>
    private void Next()
    {
        _call++;
        int l = _call % Layers;
        (_gate, _up, _down, _masked) = (_gates[l], _ups[l], _downs[l], _maskeds[l]);
        _x = _xs[_call % _xs.Length];
    }

    [Benchmark(Baseline = true)]
    public void DenseMlp()
    {
        Next();
        _gate.Multiply(_x, _g, 1);
        _up.Multiply(_x, _u, 1);
        SwiGlu.Apply(_g, _u, _h);
        _down.Multiply(_h, _y, 1);
    }

    [Benchmark]
    public void MaskedSwiGluDecode()
    {
        Next();
        for (int i = 0; i < Dim; i++)
        {
            _scores[i] = MathF.Abs(_x[i]);
        }
        TopK.Select(_scores.AsSpan(0, Dim), _inputs.Length, _inputs, _scratch);
        MaskedSwiGlu.GateUp(_masked, _x, _inputs, _h);
        for (int i = 0; i < Hidden; i++)
        {
            _scores[i] = MathF.Abs(_h[i]);
        }
        TopK.Select(_scores, _hidden.Length, _hidden, _scratch);
        MaskedSwiGlu.Down(_masked, _h, _hidden, _y);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var m in _gates.Concat(_ups).Concat(_downs))
        {
            m.Dispose();
        }
        foreach (var m in _maskeds)
        {
            m.Dispose();
        }
    }
}
