using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Pruning;
using Kernels.Runtime.Simplification;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>SDTP's learned saliency predictor: its arithmetic, its GGUF file, its training and its use in pruned prefill.</summary>
public sealed class SaliencyPredictorTests
{
    // 4 layers, 8 query heads, 4 KV heads, dim 64.
    private static readonly SyntheticShape Tiny = new("tiny", 64, 96, 4, 8, 4, 128, 256);

    private static SaliencyPredictor RandomPredictor(int dim, int hidden, int[] layers, int seed = 1)
    {
        var rng = new Random(seed);
        float R() => (float)(rng.NextDouble() * 2 - 1);
        return new SaliencyPredictor(dim, layers.Select(l => new SaliencyPredictor.Stage(l,
            Enumerable.Range(0, hidden * dim).Select(_ => R()).ToArray(), Enumerable.Range(0, hidden).Select(_ => R()).ToArray(),
            Enumerable.Range(0, hidden).Select(_ => R()).ToArray(), R())).ToArray(), "test");
    }

    /// <summary>dim 2, hidden 1: x = (3, 4), rms = √12.5, u = x / rms; z = 0.5·u₀ − 0.25·u₁ + 0.1; π = 2·GELU(z) − 1.</summary>
    [Fact]
    public void Score_is_the_mlp_on_the_rms_normalized_state()
    {
        var p = new SaliencyPredictor(2, [new SaliencyPredictor.Stage(1, [0.5f, -0.25f], [0.1f], [2f], -1f)], "test");
        float rms = MathF.Sqrt(12.5f + 1e-6f);
        float z = 0.5f * 3 / rms - 0.25f * 4 / rms + 0.1f;
        double gelu = 0.5 * z * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (z + 0.044715 * z * z * z)));
        var scores = new float[2];
        p.Score(1, [3f, 4f, 0f, 0f], 2, scores);
        Assert.Equal(2 * gelu - 1, scores[0], 5);
        Assert.Equal(2 * SaliencyPredictor.Gelu(0.1f) - 1, scores[1], 5); // a zero row normalizes to zero
        Assert.Throws<ArgumentException>(() => p.Score(2, [3f, 4f], 1, scores));
    }

    [Fact]
    public void Gelu_derivative_matches_finite_differences()
    {
        for (float z = -4f; z <= 4f; z += 0.37f)
        {
            double h = 1e-3;
            double numeric = (SaliencyPredictor.Gelu((float)(z + h)) - SaliencyPredictor.Gelu((float)(z - h))) / (2 * h);
            Assert.Equal(numeric, SaliencyPredictor.GeluDerivative(z), 2);
        }
    }

    [Fact]
    public void A_saved_predictor_loads_back_bit_for_bit()
    {
        using var tmp = new TempDir();
        var p = RandomPredictor(12, 5, [2, 5]);
        string path = Path.Combine(tmp.Path, "p.gguf");
        p.Save(path, new Dictionary<string, object> { ["kernels.sdtp.model"] = "x.bin" });
        var back = SaliencyPredictor.Load(path);
        Assert.Equal(12, back.Dim);
        Assert.Equal([2, 5], back.StageLayers);
        Assert.Equal("test", back.Teacher);
        var x = Enumerable.Range(0, 36).Select(i => MathF.Sin(i)).ToArray();
        foreach (int layer in new[] { 2, 5 })
        {
            var a = new float[3];
            var b = new float[3];
            p.Score(layer, x, 3, a);
            back.Score(layer, x, 3, b);
            Assert.Equal(a, b);
        }
    }

    [Fact]
    public void Bad_predictor_files_name_the_file_and_the_problem()
    {
        using var tmp = new TempDir();
        string text = Path.Combine(tmp.Path, "notes.gguf");
        File.WriteAllText(text, "not a gguf");
        Assert.Contains("not a GGUF", Assert.Throws<ModelFormatException>(() => SaliencyPredictor.Load(text)).Message);

        string model = Path.Combine(tmp.Path, "model.gguf");
        using (var m = SyntheticModel.Create(Tiny, ElementType.F32, null, seed: 1))
        {
            GgufWriter.WriteModel(m, model, ElementType.F32);
        }
        var e = Assert.Throws<ModelFormatException>(() => SaliencyPredictor.Load(model));
        Assert.Contains("model.gguf", e.Message);
        Assert.Contains("kernels-sdtp", e.Message);

        string nan = Path.Combine(tmp.Path, "nan.gguf");
        var p = RandomPredictor(4, 2, [1]);
        p.Stages[0].W2[1] = float.NaN;
        p.Save(nan);
        Assert.Contains("kernels.sdtp.1.fc2.weight", Assert.Throws<ModelFormatException>(() => SaliencyPredictor.Load(nan)).Message);

        string missing = Path.Combine(tmp.Path, "missing.gguf");
        new GgufWriter().Add("general.architecture", SaliencyPredictor.Architecture).Add("kernels.sdtp.dim", 4).Add("kernels.sdtp.stage_layers", new[] { 1 }).Write(missing);
        Assert.Contains("kernels.sdtp.1.fc1.weight is missing", Assert.Throws<ModelFormatException>(() => SaliencyPredictor.Load(missing)).Message);
    }

    /// <summary>A teacher the MLP can express (t = a fixed direction of u): training must rank held-out pairs almost perfectly, from a chance start.</summary>
    [Fact]
    public void Training_learns_a_ranking_it_can_express()
    {
        const int dim = 16, n = 64;
        var rng = new Random(3);
        var direction = Enumerable.Range(0, dim).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var windows = Enumerable.Range(0, 10).Select(_ =>
        {
            var inputs = new float[n * dim];
            var teacher = new float[n];
            for (int i = 0; i < n; i++)
            {
                var x = Enumerable.Range(0, dim).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                SaliencyPredictor.Normalize(x, inputs.AsSpan(i * dim, dim));
                teacher[i] = Kernels.Simd.VectorMath.Dot(direction, inputs.AsSpan(i * dim, dim));
            }
            return new SaliencyPredictorTrainer.Window(n, [inputs], [teacher]);
        }).ToList();
        var options = new SaliencyTrainingOptions { Hidden = 8, Steps = 400, LearningRate = 1e-2 };
        var (predictor, reports) = SaliencyPredictorTrainer.Train(windows, [1], dim, options, "linear");
        Assert.Equal(2, reports[0].HeldOutWindows);
        Assert.True(reports[0].HeldOutPairAccuracy > 0.95, $"held-out pair accuracy {reports[0].HeldOutPairAccuracy}");
        // The untrained start ranks near chance: the accuracy is the training's doing.
        var untrained = SaliencyPredictorTrainer.Train(windows, [1], dim, options with { Steps = 1, LearningRate = 1e-9 }, "linear");
        Assert.True(untrained.Reports[0].HeldOutPairAccuracy < 0.8, $"untrained {untrained.Reports[0].HeldOutPairAccuracy}");
        Assert.Equal("linear", predictor.Teacher);
    }

    /// <summary>
    /// All-queries teacher: each query's attention sums to 1 over the keys it sees, so
    /// Σ_i t_i·(n − i) = (layers from the stage on) · heads · n. Later-queries teacher: the tokens
    /// before P compete (the window's Length is P) and get at most all of those queries' attention.
    /// </summary>
    [Fact]
    public void Teachers_account_for_every_query_s_attention()
    {
        using var model = SyntheticModel.Create(Tiny, ElementType.F32, null, seed: 4);
        using var ops = new HostOps();
        using var t = new Transformer(model, ops, maxBatch: 40);
        var data = new CalibrationSet([Enumerable.Range(0, 40).Select(i => (i * 11 + 5) % Tiny.Vocab).ToArray()]);
        var all = SaliencyPredictorTrainer.Collect(t, data, [1, 3], SaliencyTeacher.AllQueries);
        Assert.Equal(40, all[0].Length);
        for (int s = 0; s < 2; s++)
        {
            int layersFrom = Tiny.Layers - (s == 0 ? 1 : 3);
            double total = Enumerable.Range(0, 40).Sum(i => (double)all[0].Teacher[s][i] * (40 - i));
            Assert.Equal(layersFrom * Tiny.Heads * 40.0, total, 2);
        }
        var later = SaliencyPredictorTrainer.Collect(t, data, [1, 3], SaliencyTeacher.LaterQueries, 0.25);
        Assert.Equal(30, later[0].Length);
        double mass = Enumerable.Range(0, 30).Sum(i => (double)later[0].Teacher[0][i]);
        Assert.InRange(mass, 0.1, (Tiny.Layers - 1) * Tiny.Heads * 10.0);
        Assert.Equal(40 * Tiny.Dim, later[0].Inputs[0].Length);
        Assert.Null(t.Plan.Observer); // the capture is removed afterwards
    }

    [Fact]
    public void Pruning_with_a_predictor_keeps_its_best_tokens_on_schedule()
    {
        using var model = SyntheticModel.Create(Tiny, ElementType.F32, null, seed: 2);
        using var ops = new HostOps();
        var predictor = RandomPredictor(Tiny.Dim, 8, [1, 2]);
        var options = new TokenPruneOptions { StageLayers = [1, 2], Ratio = 0.7, Saliency = TokenSaliencyKind.Predictor, Predictor = predictor };
        using var t = new Transformer(model, ops, maxBatch: 50) { Plan = new ForwardPlan { TokenPruning = new PromptTokenPruner(options) } };
        using var cache = t.CreateCache(50);
        var tokens = Enumerable.Range(0, 50).Select(i => (i * 7 + 1) % Tiny.Vocab).ToArray();
        t.Forward(tokens, 0, cache, LogitsMode.Last);
        Assert.Equal([50, 35, 25, 25], t.LastTokenPruning!.TokensPerLayer);
        Assert.True(t.LastTokenPruning.SaliencySeconds > 0);
        // Layer 1's cache holds what the predictor chose from the hidden states entering layer 1.
        var hidden = new float[50 * Tiny.Dim];
        var capture = new BlockInput(ops, 1, hidden);
        using (var dense = new Transformer(model, ops, maxBatch: 50) { Plan = new ForwardPlan { Observer = capture } })
        using (var denseCache = dense.CreateCache(50))
        {
            dense.Forward(tokens, 0, denseCache, LogitsMode.Last);
        }
        var scores = new float[50];
        predictor.Score(1, hidden, 50, scores);
        int[] positions = Enumerable.Range(0, 50).ToArray();
        var expected = TokenSaliency.SelectKept(scores, positions, 50, 50, 35, options.SinkTokens, options.RecentFraction);
        var memory = (IKvMemory)cache;
        Assert.Equal(expected, memory.Positions(1, 0).ToArray().Order().ToArray());
    }

    [Fact]
    public void A_predictor_that_does_not_fit_the_model_is_refused()
    {
        using var model = SyntheticModel.Create(Tiny, ElementType.F32, null, seed: 2);
        Assert.Contains("--token-prune-predictor", Assert.Throws<ArgumentException>(() =>
            new TokenPruneOptions { StageLayers = [1], Saliency = TokenSaliencyKind.Predictor }.Validated(4)).Message);
        var narrow = RandomPredictor(32, 4, [1]);
        Assert.Contains("dim 32", Assert.Throws<ArgumentException>(() => narrow.Validate(model, [1])).Message);
        var oneStage = RandomPredictor(Tiny.Dim, 4, [1]);
        Assert.Contains("no predictor for 2", Assert.Throws<ArgumentException>(() => oneStage.Validate(model, [1, 2])).Message);
        // The stage list defaults to the predictor's own.
        var parsed = TokenPruneOptions.Parse("0.9", null, 4, saliency: TokenSaliencyKind.Predictor, predictor: oneStage);
        Assert.Equal([1], parsed.StageLayers);
    }

    [Fact]
    public void Stage_lists_parse_or_name_the_option()
    {
        Assert.Equal([4, 7, 10], TokenPruneOptions.ParseLayers(" 4, 7,10 ", "--stages"));
        Assert.Contains("--stages: 'x' is not a layer index", Assert.Throws<ArgumentException>(() => TokenPruneOptions.ParseLayers("1,x", "--stages")).Message);
        Assert.Contains("--token-prune-layers: ',' lists no layer", Assert.Throws<ArgumentException>(() => TokenPruneOptions.ParseLayers(",", "--token-prune-layers")).Message);
        Assert.Contains("--token-prune-layers", Assert.Throws<ArgumentException>(() => TokenPruneOptions.Parse("0.9", "2,q", 4)).Message);
        using var tmp = new TempDir();
        string missing = Path.Combine(tmp.Path, "none.gguf");
        Assert.Contains(missing, Assert.Throws<FileNotFoundException>(() => SaliencyPredictor.Load(missing)).Message);
    }

    private sealed class BlockInput(ITransformerOps ops, int layer, float[] into) : IForwardObserver
    {
        public void OnBlockInput(int l, DeviceTensor x, int n)
        {
            if (l == layer)
            {
                ops.Download(x, 0, into.AsSpan(0, n * Tiny.Dim));
            }
        }

        public void OnLinearInput(int l, LinearKind kind, DeviceTensor input, int n)
        {
        }
    }
}
