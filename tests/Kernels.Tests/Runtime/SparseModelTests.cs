using Kernels.Runtime.Compute;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Sparsity;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Kernels.Tests.Simd;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>A pruned model computes the same logits dense (zeros stored) and compressed (zeros skipped).</summary>
public sealed class SparseModelTests
{
    private static readonly int[] Tokens = { 1, 403, 407, 261, 378, 260, 412, 271, 300, 289, 309, 272, 280, 400, 290, 310, 266 };

    /// <summary>Prunes every block linear of the model in place (dense zeros), along the given axis for gate/up.</summary>
    internal static void PruneInPlace(LlamaModel model, NmPattern p, NmAxis gateUpAxis)
    {
        foreach (var layer in model.Layers)
        {
            layer.Query = Prune(layer.Query, p, NmAxis.Input);
            layer.Key = Prune(layer.Key, p, NmAxis.Input);
            layer.Value = Prune(layer.Value, p, NmAxis.Input);
            layer.Output = Prune(layer.Output, p, NmAxis.Input);
            layer.Gate = Prune(layer.Gate, p, gateUpAxis);
            layer.Up = Prune(layer.Up, p, gateUpAxis);
            layer.Down = Prune(layer.Down, p, NmAxis.Input);
        }
    }

    private static WeightMatrix Prune(WeightMatrix m, NmPattern p, NmAxis axis) =>
        DenseMatrix.FromSingle(m.Name, m.Rows, m.Columns, SparseTestData.Prune(m.ToDenseArray(), m.Rows, m.Columns, p, axis));

    private static float[][] Logits(LlamaModel model, bool batched)
    {
        using var ops = new HostOps();
        var all = ModelFixtures.TeacherForcedLogits(model, ops, Tokens, Enumerable.Range(0, Tokens.Length), batched);
        return Enumerable.Range(0, Tokens.Length).Select(i => all[i]).ToArray();
    }

    [DataTheory]
    [InlineData("2:4", NmAxis.Input)]
    [InlineData("4:8", NmAxis.Input)]
    [InlineData("2:4", NmAxis.Output)]
    [InlineData("4:8", NmAxis.Output)]
    public void Compressed_model_matches_dense_model_with_the_same_zeros(string pattern, NmAxis gateUpAxis)
    {
        var p = NmPattern.Parse(pattern);
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        PruneInPlace(model, p, gateUpAxis);
        var dense = Logits(model, batched: false);
        var denseBatched = Logits(model, batched: true);
        var log = SparseCompression.CompressDetected(model, new[] { p });
        Assert.Equal(5 * 7, log.Count);
        Assert.All(model.Layers, l => Assert.IsType(gateUpAxis == NmAxis.Input ? typeof(NmSparseMatrix) : typeof(NmOutputSparseMatrix), l.Gate));
        Assert.IsType<NmSparseMatrix>(model.Layers[0].Down);
        if (p.M == 8)
        {
            // hidden_dim 172 = 21 groups of 8 + 4 dense tail columns (the documented policy).
            Assert.Equal(4, ((NmSparseMatrix)model.Layers[0].Down).TailColumns);
        }
        Assert.True(log.Sum(e => e.BytesAfter) < log.Sum(e => e.BytesBefore) * 0.6);
        var sparse = Logits(model, batched: false);
        var sparseBatched = Logits(model, batched: true);
        for (int i = 0; i < dense.Length; i++)
        {
            for (int v = 0; v < dense[i].Length; v++)
            {
                Assert.True(MathF.Abs(dense[i][v] - sparse[i][v]) <= 1e-4f, $"pos {i} logit {v}: dense {dense[i][v]} sparse {sparse[i][v]}");
                Assert.True(MathF.Abs(denseBatched[i][v] - sparseBatched[i][v]) <= 1e-4f, $"batched pos {i} logit {v}");
            }
        }
    }

    [DataFact]
    public void Dense_models_are_left_alone()
    {
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        Assert.Empty(SparseCompression.CompressDetected(model));
        Assert.All(model.Layers, l => Assert.IsType<DenseMatrix>(l.Gate));
    }

    [Fact]
    public void Synthetic_models_build_in_every_variant_and_run()
    {
        var shape = SyntheticShape.Small with { Layers = 2, Vocab = 512 };
        foreach (var type in new[] { ElementType.F32, ElementType.F16 })
        {
            foreach (var p in new NmPattern?[] { null, NmPattern.TwoFour, NmPattern.FourEight })
            {
                using var model = SyntheticModel.Create(shape, type, p);
                Assert.Equal(p is null ? typeof(DenseMatrix) : typeof(NmSparseMatrix), model.Layers[0].Gate.GetType());
                using var ops = new HostOps();
                var r = Kernels.Runtime.Benchmarking.ModelBenchmark.Run(model, ops, new Kernels.Runtime.Benchmarking.ModelBenchmarkOptions { DecodeTokens = 3, PrefillTokens = 8, PrefillRepeats = 1 });
                Assert.True(r.DecodeMsPerToken > 0 && r.PrefillTokensPerSecond > 0 && r.WeightBytes > 0);
            }
        }
    }

    [Fact]
    public void Interleaved_benchmark_gives_every_variant_its_own_steps_and_prefills()
    {
        var shape = SyntheticShape.Small with { Layers = 2, Vocab = 512 };
        using var dense = SyntheticModel.Create(shape, ElementType.F32, null);
        using var sparse = SyntheticModel.Create(shape, ElementType.F32, NmPattern.TwoFour);
        using var ops = new HostOps();
        using var a = new Kernels.Runtime.Benchmarking.ModelBenchmarkSession(dense, ops, new Kernels.Runtime.Benchmarking.ModelBenchmarkOptions { DecodeTokens = 3, PrefillTokens = 8, PrefillRepeats = 2 });
        using var b = new Kernels.Runtime.Benchmarking.ModelBenchmarkSession(sparse, ops, new Kernels.Runtime.Benchmarking.ModelBenchmarkOptions { DecodeTokens = 5, PrefillTokens = 8, PrefillRepeats = 0 });
        Kernels.Runtime.Benchmarking.ModelBenchmark.RunInterleaved(new[] { a, b });
        Assert.Equal((3, 2), a.Timed);
        Assert.Equal((5, 1), b.Timed);
        var ra = a.Result(1);
        var rb = b.Result(1);
        Assert.True(ra.DecodeMsPerToken > 0 && ra.PrefillTokensPerSecond > 0 && rb.DecodeMsPerToken > 0 && rb.PrefillTokensPerSecond > 0);
        Assert.True(rb.WeightBytes < ra.WeightBytes);
        Assert.Equal(ra.PrefillKvBytes, rb.PrefillKvBytes);
    }
}
