using ILGPU;
using ILGPU.Runtime;
using Kernels.Gpu;
using Kernels.Runtime.Model;
using Kernels.Simd;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;
using Kernels.Simd.Reference;

namespace Kernels.Runtime.Gpu;

/// <summary>One kernel check: GPU result against the CPU reference.</summary>
public sealed record GpuCheck(string Name, bool Passed, double MaxError, string Detail);

/// <summary>
/// The GPU kernel checks, shared by the xunit backend classes and <c>kernels gpu-selftest</c>
/// (the published bundle runs them on a GPU machine that has no .NET SDK). Every check compares
/// a kernel with the scalar reference or SIMD kernel of the CPU side on odd shapes.
/// </summary>
public static class GpuSelfTest
{
    public static IReadOnlyList<(string Name, Func<GpuDevice, GpuCheck> Run)> Checks { get; } = new (string, Func<GpuDevice, GpuCheck>)[]
    {
        ("dense gemv/gemm F32", d => Dense(d, ElementType.F32)),
        ("dense gemv/gemm F16", d => Dense(d, ElementType.F16)),
        ("sparse 2:4 F32", d => Sparse(d, NmPattern.TwoFour, ElementType.F32)),
        ("sparse 2:4 F16", d => Sparse(d, NmPattern.TwoFour, ElementType.F16)),
        ("sparse 4:8 F32", d => Sparse(d, NmPattern.FourEight, ElementType.F32)),
        ("sparse 4:8 F16", d => Sparse(d, NmPattern.FourEight, ElementType.F16)),
        ("quantized Q8_0 and Q4_0", QuantizedCheck),
        ("N:M quantized (2:4, 4:8 x Q8_0, Q4_0)", NmQuantizedCheck),
        ("rmsnorm, rope, swiglu, add, copy", Elementwise),
        ("softmax and argmax", SoftmaxArgMax),
        ("attention + value-norm-weighted accumulation (GQA)", AttentionCheck),
        ("top-k and masked swiglu", MaskedSwiGluCheck),
    };

    public static IReadOnlyList<GpuCheck> RunAll(GpuDevice device) => Checks.Select(c =>
    {
        try
        {
            return c.Run(device);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new GpuCheck(c.Name, false, double.NaN, $"{e.GetType().Name}: {e.Message}");
        }
    }).ToList();

    private static float[] Random(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
    }

    private static float[] Run(Accelerator a, float[] input, Action<ArrayView<float>, ArrayView<float>> kernel, int outputs)
    {
        using var x = a.Allocate1D(input.Length == 0 ? new float[1] : input);
        using var y = a.Allocate1D<float>(Math.Max(1, outputs));
        kernel(x.View, y.View);
        a.Synchronize();
        return y.GetAsArray1D()[..outputs];
    }

    /// <summary>max |a-b| / (1 + |scale|) with a scale-aware tolerance check.</summary>
    private static GpuCheck Compare(string name, float[] expected, float[] actual, double tolerance, Func<int, double>? scale = null)
    {
        double worst = 0;
        int at = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double s = scale?.Invoke(i) ?? 1 + Math.Abs(expected[i]);
            double e = Math.Abs(expected[i] - actual[i]) / s;
            if (!(e <= worst))
            {
                worst = double.IsNaN(e) ? double.PositiveInfinity : e;
                at = i;
            }
        }
        return new GpuCheck(name, worst <= tolerance, worst, at < 0 ? "" : $"worst at {at}: expected {expected[at]}, got {actual[at]}");
    }

    private static GpuCheck All(string name, IEnumerable<GpuCheck> parts)
    {
        var list = parts.ToList();
        var failed = list.FirstOrDefault(p => !p.Passed);
        return new GpuCheck(name, failed is null, list.Max(p => p.MaxError), failed is null ? $"{list.Count} cases" : $"{failed.Name}: {failed.Detail}");
    }

    /// <summary>Runs a launch with the lane-per-row variant switched on or off (both are checked on every device).</summary>
    private static void WithLanes(GpuDevice d, bool lanes, Action launch)
    {
        bool saved = d.Kernels.LanePerRow;
        d.Kernels.LanePerRow = lanes;
        try
        {
            launch();
            d.Accelerator.Synchronize();
        }
        finally
        {
            d.Kernels.LanePerRow = saved;
        }
    }

    private static GpuCheck Dense(GpuDevice d, ElementType type)
    {
        var cases = new List<GpuCheck>();
        foreach (var (rows, cols, n) in new[] { (1, 1, 1), (33, 17, 1), (64, 100, 3), (130, 257, 1), (70, 33, 16), (129, 65, 70), (31, 64, 2) })
        {
            var w = Random(rows * cols, rows + cols);
            using var m = DenseMatrix.FromSingle("w", rows, cols, w, type);
            var x = Random(n * cols, n);
            var expected = new float[n * rows];
            ScalarReference.MatMul(m, x, expected, n);
            using var g = new GpuMatrix(d.Accelerator, m);
            foreach (bool lanes in new[] { false, true })
            {
                var y = Run(d.Accelerator, x, (xv, yv) => WithLanes(d, lanes, () => d.Kernels.Dense(g, xv, yv, n)), n * rows);
                cases.Add(Compare($"{rows}x{cols} n={n}{(lanes ? " lanes" : "")}", expected, y, 1e-5, i => 1 + cols * 0.1));
            }
        }
        return All($"dense {type}", cases);
    }

    /// <summary>Zeroes the M − N smallest of every input group of M (a whole-group tail stays dense).</summary>
    private static float[] MagnitudeNm(float[] w, int rows, int cols, NmPattern p)
    {
        for (int r = 0; r < rows; r++)
        {
            for (int g = 0; g + p.M <= cols; g += p.M)
            {
                var order = Enumerable.Range(0, p.M).OrderBy(i => Math.Abs(w[r * cols + g + i])).ToArray();
                for (int i = 0; i < p.M - p.N; i++)
                {
                    w[r * cols + g + order[i]] = 0;
                }
            }
        }
        return w;
    }

    private static GpuCheck Sparse(GpuDevice d, NmPattern p, ElementType type)
    {
        var cases = new List<GpuCheck>();
        foreach (var (rows, cols, n) in new[] { (5, 64, 1), (33, 172, 3), (40, 260, 8), (17, 512, 40), (70, 172, 9), (65, 96, 10) })
        {
            var w = MagnitudeNm(Random(rows * cols, rows * cols), rows, cols, p);
            // Rounded through the storage type.
            using var tmp = DenseMatrix.FromSingle("w", rows, cols, w, type);
            using var dense = DenseMatrix.FromSingle("w", rows, cols, tmp.ToDenseArray());
            using var s = NmSparseMatrix.Compress(dense, p, type);
            var x = Random(n * cols, 7 * n);
            var expected = new float[n * rows];
            ScalarReference.MatMul(dense, x, expected, n);
            using var g2 = new GpuSparseMatrix(d.Accelerator, s);
            using var scratch = d.Accelerator.Allocate1D<float>((long)cols * n);
            foreach (bool lanes in new[] { false, true })
            {
                var y = Run(d.Accelerator, x, (xv, yv) => WithLanes(d, lanes, () => d.Kernels.Sparse(g2, xv, yv, n, scratch.View)), n * rows);
                cases.Add(Compare($"{rows}x{cols} n={n}{(lanes ? " lanes" : "")}", expected, y, 1e-5, i => 1 + cols * 0.1));
            }
        }
        return All($"sparse {p} {type}", cases);
    }

    /// <summary>Q8_0 / Q4_0 blocks of random bytes (every bit of the layout) against the host's dequantized reference, decode and prefill shapes.</summary>
    private static GpuCheck QuantizedCheck(GpuDevice d)
    {
        var cases = new List<GpuCheck>();
        foreach (var type in new[] { QuantType.Q8_0, QuantType.Q4_0 })
        {
            foreach (var (rows, cols, n) in new[] { (1, 32, 1), (33, 64, 1), (70, 256, 3), (65, 96, 70), (17, 160, 2) })
            {
                using var m = Kernels.Runtime.Model.SyntheticModel.RandomQuantized("w", type, rows, cols, rows * cols + n);
                var x = Random(n * cols, 3 * n);
                var expected = new float[n * rows];
                ScalarReference.MatMul(m, x, expected, n);
                using var g = new GpuQuantizedMatrix(d.Accelerator, m);
                foreach (bool lanes in new[] { false, true })
                {
                    var y = Run(d.Accelerator, x, (xv, yv) => WithLanes(d, lanes, () => d.Kernels.Quantized(g, xv, yv, n)), n * rows);
                    cases.Add(Compare($"{type} {rows}x{cols} n={n}{(lanes ? " lanes" : "")}", expected, y, 1e-5, i => 1 + cols * 0.1));
                }
            }
        }
        return All("quantized Q8_0 and Q4_0", cases);
    }

    /// <summary>N:M matrices with Q8_0 / Q4_0 kept values (a dense tail included) against the host's dequantized reference.</summary>
    private static GpuCheck NmQuantizedCheck(GpuDevice d)
    {
        var cases = new List<GpuCheck>();
        foreach (var p in new[] { NmPattern.TwoFour, NmPattern.FourEight })
        {
            foreach (var type in new[] { QuantType.Q8_0, QuantType.Q4_0 })
            {
                foreach (var (rows, cols, n) in new[] { (5, 64, 1), (33, 172, 3), (17, 512, 40), (70, 100, 9) })
                {
                    using var dense = DenseMatrix.FromSingle("w", rows, cols, MagnitudeNm(Random(rows * cols, rows * cols + 1), rows, cols, p));
                    using var m = NmQuantizedMatrix.Compress(dense, p, type);
                    var x = Random(n * cols, 5 * n);
                    var expected = new float[n * rows];
                    ScalarReference.MatMul(m, x, expected, n);
                    using var g = new GpuNmQuantizedMatrix(d.Accelerator, m);
                    foreach (bool lanes in new[] { false, true })
                    {
                        var y = Run(d.Accelerator, x, (xv, yv) => WithLanes(d, lanes, () => d.Kernels.NmQuantized(g, xv, yv, n)), n * rows);
                        cases.Add(Compare($"{p} {type} {rows}x{cols} n={n}{(lanes ? " lanes" : "")}", expected, y, 1e-5, i => 1 + cols * 0.1));
                    }
                }
            }
        }
        return All("N:M quantized", cases);
    }

    private static GpuCheck Elementwise(GpuDevice d)
    {
        var a = d.Accelerator;
        var cases = new List<GpuCheck>();
        int n = 3, dim = 70;
        var x = Random(n * dim, 1);
        var w = Random(dim, 2);
        var expected = new float[n * dim];
        ScalarReference.RmsNorm(x, w, expected, 1e-5f);
        using var wb = a.Allocate1D(w);
        cases.Add(Compare("rmsnorm", expected, Run(a, x, (xv, yv) => d.Kernels.RmsNorm(xv, wb.View, yv, n, dim, 1e-5f), n * dim), 1e-5));

        int heads = 5, headDim = 8;
        var rope = new Compute.RopeTable(headDim, 64, 10000f);
        var q = Random(n * heads * headDim, 3);
        var positions = new[] { 0, 17, 63 };
        var expectedRope = (float[])q.Clone();
        for (int t = 0; t < n; t++)
        {
            Kernels.Simd.Rope.ApplyInterleaved(expectedRope.AsSpan(t * heads * headDim, heads * headDim), headDim, rope.Cos(positions[t]), rope.Sin(positions[t]));
        }
        var (hostCos, hostSin) = rope.Rows(rope.Positions);
        using var cos = a.Allocate1D(hostCos);
        using var sin = a.Allocate1D(hostSin);
        using var pos = a.Allocate1D(positions);
        using var qb = a.Allocate1D(q);
        d.Kernels.Rope(qb.View, cos.View, sin.View, pos.View, n, heads, headDim);
        cases.Add(Compare("rope", expectedRope, qb.GetAsArray1D(), 1e-6));

        var g = Random(200, 4);
        var u = Random(200, 5);
        var h = new float[200];
        ScalarReference.SwiGlu(g, u, h);
        using var gb = a.Allocate1D(g);
        using var ub = a.Allocate1D(u);
        cases.Add(Compare("swiglu", h, Run(a, g, (_, yv) => d.Kernels.SwiGlu(gb.View, ub.View, yv, 200), 200), 1e-6));

        using var xb = a.Allocate1D((float[])g.Clone());
        d.Kernels.Add(xb.View, ub.View, 200);
        cases.Add(Compare("add", g.Zip(u, (p, r) => p + r).ToArray(), xb.GetAsArray1D(), 0));
        using var cb = a.Allocate1D<float>(50);
        d.Kernels.Copy(ub.View, 10, cb.View, 0, 50);
        cases.Add(Compare("copy", u[10..60], cb.GetAsArray1D(), 0));
        return All("elementwise", cases);
    }

    private static GpuCheck SoftmaxArgMax(GpuDevice d)
    {
        var a = d.Accelerator;
        var cases = new List<GpuCheck>();
        foreach (int n in new[] { 1, 5, 1023, 1024, 3000 })
        {
            var x = Random(n, n);
            var expected = (float[])x.Clone();
            Softmax.InPlace(expected);
            using var xb = a.Allocate1D(x);
            d.Kernels.Softmax(xb.View, 0, n);
            cases.Add(Compare($"softmax {n}", expected, xb.GetAsArray1D(), 1e-6));
        }
        using var rb = a.Allocate1D<int>(1);
        int got;
        // Ties (first wins), NaN (never wins), ±0 (equal), -inf alone, all NaN and empty (-1).
        foreach (var (name, values) in new[]
        {
            ("ties/NaN", new float[] { float.NaN, 1, 3, 3, -2, 3 }),
            ("negative ties", new float[] { -5, -1, -3, -1 }),
            ("signed zeros", new float[] { -0f, 0f, -0f }),
            ("-inf", new float[] { float.NaN, float.NegativeInfinity, float.NaN }),
            ("all NaN", new float[] { float.NaN, float.NaN }),
            ("empty", new float[] { 7f }),
        })
        {
            int count = name == "empty" ? 0 : values.Length;
            using var tb = a.Allocate1D(values);
            d.Kernels.ArgMax(tb.View, 0, count, rb.View);
            got = rb.GetAsArray1D()[0];
            int want = VectorMath.ArgMax(values.AsSpan(0, count));
            cases.Add(new GpuCheck($"argmax {name}", got == want, Math.Abs(got - want), $"got {got}, want {want}"));
        }
        var big = Random(32000, 9);
        using var bb = a.Allocate1D(big);
        d.Kernels.ArgMax(bb.View, 0, big.Length, rb.View);
        got = rb.GetAsArray1D()[0];
        cases.Add(new GpuCheck("argmax 32000", got == VectorMath.ArgMax(big), Math.Abs(got - VectorMath.ArgMax(big)), $"got {got}"));
        return All("softmax/argmax", cases);
    }

    private static GpuCheck AttentionCheck(GpuDevice d)
    {
        var a = d.Accelerator;
        int layers = 2, kvHeads = 2, heads = 6, headDim = 16, capacity = 80, layer = 1, baseCount = 37, n = 3;
        var storage = new GpuKvStorage(a, layers, kvHeads, capacity, headDim);
        using var _ = storage;
        var keys = Random((baseCount + n) * kvHeads * headDim, 11);
        var values = Random((baseCount + n) * kvHeads * headDim, 12);
        // Append all tokens in two calls (prefix, then the batch).
        using var kb = a.Allocate1D(keys);
        using var vb = a.Allocate1D(values);
        d.Kernels.AppendKv(kb.View.SubView(0, (long)baseCount * kvHeads * headDim), vb.View.SubView(0, (long)baseCount * kvHeads * headDim), storage, layer, 0, baseCount);
        d.Kernels.AppendKv(kb.View.SubView((long)baseCount * kvHeads * headDim, (long)n * kvHeads * headDim), vb.View.SubView((long)baseCount * kvHeads * headDim, (long)n * kvHeads * headDim), storage, layer, baseCount, n);
        var q = Random(n * heads * headDim, 13);
        using var qb = a.Allocate1D(q);
        using var scores = a.Allocate1D<float>((long)n * heads * capacity);
        using var ob = a.Allocate1D<float>(n * heads * headDim);
        d.Kernels.Attention(qb.View, storage, layer, heads, baseCount, n, scores.View, ob.View, track: true, weighted: true);
        var output = ob.GetAsArray1D();
        var received = storage.Received.GetAsArray1D();

        var expectedOut = new float[n * heads * headDim];
        var expectedRecv = new float[layers * kvHeads * capacity];
        int group = heads / kvHeads;
        for (int g = 0; g < kvHeads; g++)
        {
            var k = new float[(baseCount + n) * headDim];
            var v = new float[(baseCount + n) * headDim];
            var norms = new float[baseCount + n];
            for (int s = 0; s < baseCount + n; s++)
            {
                Array.Copy(keys, (s * kvHeads + g) * headDim, k, s * headDim, headDim);
                Array.Copy(values, (s * kvHeads + g) * headDim, v, s * headDim, headDim);
                norms[s] = v.Skip(s * headDim).Take(headDim).Sum(Math.Abs);
            }
            var recv = new float[baseCount + n];
            for (int t = 0; t < n; t++)
            {
                for (int j = 0; j < group; j++)
                {
                    int h = g * group + j;
                    ScalarReference.Attend(q.AsSpan((t * heads + h) * headDim, headDim), k, v, baseCount + t + 1, headDim,
                        new float[baseCount + n], expectedOut.AsSpan((t * heads + h) * headDim, headDim), recv, norms);
                }
            }
            Array.Copy(recv, 0, expectedRecv, (layer * kvHeads + g) * capacity, baseCount + n);
        }
        return All("attention", new[] { Compare("output", expectedOut, output, 1e-5), Compare("received", expectedRecv, received, 1e-5) });
    }

    private static GpuCheck MaskedSwiGluCheck(GpuDevice d)
    {
        var a = d.Accelerator;
        int dim = 70, hidden = 150, kIn = 31, kHid = 40;
        using var gate = DenseMatrix.FromSingle("g", hidden, dim, Random(hidden * dim, 21));
        using var up = DenseMatrix.FromSingle("u", hidden, dim, Random(hidden * dim, 22));
        using var down = DenseMatrix.FromSingle("d", dim, hidden, Random(dim * hidden, 23));
        using var cpu = new ColumnMajorMlp(gate, up, down, ElementType.F32);
        var x = Random(dim, 24);
        x[3] = x[5]; // a tie
        var selected = new int[kIn];
        TopK.Select(x.Select(Math.Abs).ToArray(), kIn, selected, new int[dim]);
        var h = new float[hidden];
        MaskedSwiGlu.GateUp(cpu, x, selected, h);
        var hiddenSel = new int[kHid];
        TopK.Select(h.Select(Math.Abs).ToArray(), kHid, hiddenSel, new int[hidden]);
        var y = new float[dim];
        MaskedSwiGlu.Down(cpu, h, hiddenSel, y);

        using var gT = new GpuMatrix(a, cpu.GateT);
        using var uT = new GpuMatrix(a, cpu.UpT);
        using var dT = new GpuMatrix(a, cpu.DownT);
        using var xb = a.Allocate1D(x);
        using var sel = a.Allocate1D<int>(Math.Max(dim, hidden));
        using var counter = a.Allocate1D<int>(1);
        d.Kernels.TopKAbs(xb.View, dim, kIn, sel.View, counter.View);
        var gpuSelected = sel.GetAsArray1D()[..kIn].Order().ToArray();
        using var hb = a.Allocate1D<float>(hidden);
        d.Kernels.MaskedGateUp(gT, uT, xb.View, sel.View, kIn, hb.View);
        var gpuH = hb.GetAsArray1D();
        d.Kernels.TopKAbs(hb.View, hidden, kHid, sel.View, counter.View);
        var gpuHiddenSel = sel.GetAsArray1D()[..kHid].Order().ToArray();
        using var yb = a.Allocate1D<float>(dim);
        d.Kernels.MaskedDown(dT, hb.View, sel.View, kHid, yb.View);
        bool sameSets = gpuSelected.SequenceEqual(selected) && gpuHiddenSel.SequenceEqual(hiddenSel);
        return All("masked swiglu", new[]
        {
            new GpuCheck("top-k sets", sameSets, sameSets ? 0 : 1, $"inputs {string.Join(",", gpuSelected)} vs {string.Join(",", selected)}"),
            // y is computed from the device's own h (not the host's), so h's rounding differences
            // propagate through a kHid-term FP32 sum with a different association order: 1e-4 relative.
            Compare("h", h, gpuH, 1e-5),
            Compare("y", y, yb.GetAsArray1D(), 1e-4),
        });
    }
}
