using Kernels.Runtime.Compute;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Pruning;
using Kernels.Runtime.Sparsity;
using Kernels.Runtime.Text;
using Kernels.Runtime.Tokenization;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>The self-checks of the pruning spec (algorithms.md §1-3) on stories260K and on synthetic layers.</summary>
public sealed class PruningTests
{
    private static CalibrationSet Calibration(ITokenizer tok) =>
        CalibrationSet.FromText(tok, TextSource.Read(TestData.File_("tinystories_valid_sample.txt"), 0, 200_000, true), 8, 128);

    private static LlamaModel Pruned(PruneSpec spec, out PruneResult result)
    {
        var (model, tok) = ModelFixtures.LoadStoriesBin();
        result = SequentialPruner.Prune(model, Calibration(tok), spec);
        return model;
    }

    private static bool[] Zeros(WeightMatrix m) => m.ToDenseArray().Select(v => v == 0f).ToArray();

    [DataFact]
    public void Dass_down_mask_equals_wanda_mask_bit_for_bit_on_the_same_statistics()
    {
        // Block 0 sees identical (dense) inputs in both runs, so its statistics are the same.
        using var dass = Pruned(new PruneSpec { Method = PruneMethod.Dass, Sparsity = Sparsity.Parse("2:4") }, out _);
        using var wanda = Pruned(new PruneSpec { Method = PruneMethod.Wanda, Sparsity = Sparsity.Parse("2:4") }, out _);
        Assert.Equal(Zeros(wanda.Layers[0].Down), Zeros(dass.Layers[0].Down));
        Assert.NotEqual(Zeros(wanda.Layers[0].Gate), Zeros(dass.Layers[0].Gate));
    }

    [DataTheory]
    [InlineData(PruneMethod.Magnitude, "2:4")]
    [InlineData(PruneMethod.Wanda, "4:8")]
    [InlineData(PruneMethod.Dass, "2:4")]
    [InlineData(PruneMethod.Dass, "4:8")]
    [InlineData(PruneMethod.SparseGpt, "2:4")]
    [InlineData(PruneMethod.SparseGpt, "4:8")]
    public void Every_group_has_exactly_m_minus_n_zeros_and_tails_stay_dense(PruneMethod method, string pattern)
    {
        var p = NmPattern.Parse(pattern);
        using var model = Pruned(new PruneSpec { Method = method, Sparsity = Sparsity.Parse(pattern), Scope = PruneScope.All }, out var result);
        Assert.Equal(5 * 7, result.Linears.Count);
        foreach (var layer in model.Layers)
        {
            foreach (var (name, m) in layer.Linears())
            {
                bool outputAxis = method == PruneMethod.Dass && name is "ffn_gate" or "ffn_up";
                var w = m.ToDenseArray();
                int rows = m.Rows, cols = m.Columns;
                int groupsAlong = outputAxis ? rows / p.M : cols / p.M;
                int other = outputAxis ? cols : rows;
                for (int o = 0; o < other; o++)
                {
                    for (int g = 0; g < groupsAlong; g++)
                    {
                        int zeros = 0;
                        for (int i = 0; i < p.M; i++)
                        {
                            long idx = outputAxis ? (long)(g * p.M + i) * cols + o : (long)o * cols + g * p.M + i;
                            zeros += w[idx] == 0f ? 1 : 0;
                        }
                        Assert.True(zeros == p.M - p.N, $"{method} {name}: group {g} of {(outputAxis ? "column" : "row")} {o} has {zeros} zeros");
                    }
                    // Tail (hidden 172 under 4:8): untouched.
                    int tail = (outputAxis ? rows : cols) - groupsAlong * p.M;
                    for (int t = 0; t < tail; t++)
                    {
                        long idx = outputAxis ? (long)(groupsAlong * p.M + t) * cols + o : (long)o * cols + groupsAlong * p.M + t;
                        Assert.NotEqual(0f, w[idx]);
                    }
                }
            }
        }
    }

    [DataFact]
    public void Alpha_zero_reduces_dass_gate_up_to_column_wise_magnitude()
    {
        using var original = ModelLoader.Load(TestData.Stories260KBin);
        using var dass = Pruned(new PruneSpec { Method = PruneMethod.Dass, Sparsity = Sparsity.Parse("2:4"), Alpha = 0 }, out _);
        for (int l = 0; l < original.Layers.Count; l++)
        {
            foreach (var (orig, pruned) in new[] { (original.Layers[l].Gate, dass.Layers[l].Gate), (original.Layers[l].Up, dass.Layers[l].Up) })
            {
                var w = orig.ToDenseArray();
                var expected = PruningMasks.NmAlongColumns(w.Select(MathF.Abs).ToArray(), orig.Rows, orig.Columns, NmPattern.TwoFour);
                Assert.Equal(expected, Zeros(pruned));
            }
        }
    }

    [DataFact]
    public void Unstructured_ratio_prunes_exactly_floor_s_times_width_per_row()
    {
        using var model = Pruned(new PruneSpec { Method = PruneMethod.Wanda, Sparsity = Sparsity.Parse("0.5") }, out _);
        var down = model.Layers[2].Down.ToDenseArray();
        for (int r = 0; r < model.Layers[2].Down.Rows; r++)
        {
            Assert.Equal(86, down.Skip(r * 172).Take(172).Count(v => v == 0f)); // floor(0.5 * 172)
        }
    }

    /// <summary>Masks along rows and along columns against the definition: the lowest scores of each group/line, ties to the lower index.</summary>
    [Fact]
    public void Masks_along_either_axis_prune_the_lowest_scores_with_ties_to_the_lower_index()
    {
        int rows = 10, cols = 13; // neither divides by 4 or 8: trailing rows/columns stay dense
        var rng = new Random(3);
        var scores = Enumerable.Range(0, rows * cols).Select(_ => (float)rng.Next(4)).ToArray(); // many ties
        // Lines as index lists: rows (step 1) or columns (step cols).
        var byRow = Enumerable.Range(0, rows).Select(r => Enumerable.Range(0, cols).Select(c => r * cols + c).ToArray()).ToArray();
        var byColumn = Enumerable.Range(0, cols).Select(c => Enumerable.Range(0, rows).Select(r => r * cols + c).ToArray()).ToArray();
        bool[] Expected(int[][] lines, int group, int prune)
        {
            var mask = new bool[scores.Length];
            foreach (var line in lines)
            {
                for (int g = 0; g + group <= line.Length; g += group)
                {
                    foreach (int i in line.Skip(g).Take(group).OrderBy(i => scores[i]).ThenBy(i => i).Take(prune))
                    {
                        mask[i] = true;
                    }
                }
            }
            return mask;
        }
        foreach (var p in new[] { NmPattern.TwoFour, NmPattern.FourEight })
        {
            Assert.Equal(Expected(byRow, p.M, p.M - p.N), PruningMasks.NmAlongRows(scores, rows, cols, p));
            Assert.Equal(Expected(byColumn, p.M, p.M - p.N), PruningMasks.NmAlongColumns(scores, rows, cols, p));
        }
        Assert.Equal(Expected(byRow, cols, (int)Math.Floor(0.6 * cols)), PruningMasks.UnstructuredAlongRows(scores, rows, cols, 0.6));
        Assert.Equal(Expected(byColumn, rows, (int)Math.Floor(0.6 * rows)), PruningMasks.UnstructuredAlongColumns(scores, rows, cols, 0.6));
    }

    /// <summary>SparseGPT's reconstruction ‖WX − ŴX‖ beats Wanda's mask at the same density on correlated inputs.</summary>
    [Theory]
    [InlineData("2:4")]
    [InlineData("4:8")]
    [InlineData("0.5")]
    public void SparseGpt_reconstructs_a_layer_better_than_wanda(string sparsity)
    {
        int rows = 48, cols = 64, tokens = 600;
        var rng = new Random(5);
        var mix = Enumerable.Range(0, cols * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var x = new float[tokens * cols];
        for (int t = 0; t < tokens; t++)
        {
            var z = Enumerable.Range(0, cols).Select(j => (float)(rng.NextDouble() * 2 - 1) * (j % 7 == 0 ? 4f : 1f)).ToArray();
            for (int j = 0; j < cols; j++)
            {
                float s = 0;
                for (int k = 0; k < cols; k++)
                {
                    s += z[k] * mix[k * cols + j] * (k == j ? 3f : 0.3f);
                }
                x[t * cols + j] = s;
            }
        }
        var w = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var stats = new InputStatistics(cols, hessian: true);
        stats.Add(x, tokens);
        var sp = Sparsity.Parse(sparsity);

        var wanda = (float[])w.Clone();
        var scores = new float[w.Length];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                scores[i * cols + j] = MathF.Abs(w[i * cols + j]) * (float)stats.Norm(j);
            }
        }
        PruningMasks.Apply(wanda, sp.Pattern is { } p ? PruningMasks.NmAlongRows(scores, rows, cols, p) : PruningMasks.UnstructuredAlongRows(scores, rows, cols, sp.Ratio));
        var sgpt = (float[])w.Clone();
        SparseGpt.Prune(sgpt, rows, cols, stats.Hessian(), sp);

        double Error(float[] pruned)
        {
            double e = 0;
            for (int t = 0; t < tokens; t++)
            {
                for (int i = 0; i < rows; i++)
                {
                    double d = 0;
                    for (int j = 0; j < cols; j++)
                    {
                        d += (w[i * cols + j] - pruned[i * cols + j]) * (double)x[t * cols + j];
                    }
                    e += d * d;
                }
            }
            return Math.Sqrt(e);
        }
        // Same density (the reference's unstructured threshold "≤ sorted[floor(numel·s)]" prunes one extra per block).
        Assert.InRange(sgpt.Count(v => v == 0) - wanda.Count(v => v == 0), 0, sp.Pattern is null ? 1 : 0);
        Assert.True(Error(sgpt) < Error(wanda), $"SparseGPT {Error(sgpt):F2} vs Wanda {Error(wanda):F2}");
    }

    [Fact]
    public void SparseGpt_with_isotropic_hessian_is_magnitude_pruning()
    {
        int rows = 8, cols = 32;
        var rng = new Random(3);
        var w = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var h = new double[cols * cols];
        for (int j = 0; j < cols; j++)
        {
            h[j * cols + j] = 2.0;
        }
        var sgpt = (float[])w.Clone();
        SparseGpt.Prune(sgpt, rows, cols, h, Sparsity.Parse("2:4"));
        var magnitude = (float[])w.Clone();
        PruningMasks.Apply(magnitude, PruningMasks.NmAlongRows(w.Select(MathF.Abs).ToArray(), rows, cols, NmPattern.TwoFour));
        for (int i = 0; i < w.Length; i++)
        {
            Assert.Equal(magnitude[i], sgpt[i], 5);
        }
    }

    [Fact]
    public void Cholesky_factors_reconstruct_the_inverse()
    {
        int n = 6;
        var rng = new Random(2);
        var a = new double[n * n];
        var b = Enumerable.Range(0, n * n).Select(_ => rng.NextDouble()).ToArray();
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                for (int k = 0; k < n; k++)
                {
                    a[i * n + j] += b[i * n + k] * b[j * n + k];
                }
            }
            a[i * n + i] += 0.5;
        }
        var u = SparseGpt.InverseUpperFactor(a, n);
        // (UᵀU) · A = I
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = 0; k < n; k++)
                {
                    double hinv = 0;
                    for (int m = 0; m < n; m++)
                    {
                        hinv += u[m * n + i] * u[m * n + k];
                    }
                    s += hinv * a[k * n + j];
                }
                Assert.Equal(i == j ? 1.0 : 0.0, s, 9);
            }
            for (int j = 0; j < i; j++)
            {
                Assert.Equal(0.0, u[i * n + j]);
            }
        }
        Assert.Throws<ArithmeticException>(() => SparseGpt.Cholesky(new double[] { 1, 2, 2, 1 }, 2));
    }

    [DataFact]
    public void Pruned_model_exported_as_gguf_reloads_compressed_with_the_same_logits()
    {
        using var tmp = new TempDir();
        var (model, tok) = ModelFixtures.LoadStoriesBin();
        using (model)
        {
            SequentialPruner.Prune(model, Calibration(tok), new PruneSpec { Method = PruneMethod.Dass, Sparsity = Sparsity.Parse("4:8"), Scope = PruneScope.All });
            model.Vocabulary = ((BpeTokenizer)tok).Vocabulary;
            GgufWriter.WriteModel(model, tmp.File("p.gguf"), ElementType.F32);
            int[] tokens = { 1, 403, 407, 261, 378, 260, 412, 271 };
            using var ops = new HostOps();
            var expected = ModelFixtures.TeacherForcedLogits(model, ops, tokens, new[] { 7 }, batched: false)[7];
            using var back = ModelLoader.Load(tmp.File("p.gguf"));
            var log = SparseCompression.CompressDetected(back);
            Assert.Equal(35, log.Count);
            Assert.Contains(log, e => e.After.Contains("output groups"));
            var actual = ModelFixtures.TeacherForcedLogits(back, ops, tokens, new[] { 7 }, batched: false)[7];
            Tolerance.AllClose(expected, actual, 0, 1e-4f, "logits");
        }
    }

    [DataFact]
    public void Methods_needing_data_refuse_to_run_without_it()
    {
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        Assert.Throws<ArgumentException>(() => SequentialPruner.Prune(model, null, new PruneSpec { Method = PruneMethod.Wanda, Sparsity = Sparsity.Parse("2:4") }));
        Assert.Throws<FormatException>(() => Sparsity.Parse("1.5"));
    }
}
