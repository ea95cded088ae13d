using System.CommandLine;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Simplification;

namespace Kernels.Cli.Commands;

/// <summary><c>kernels train-sdtp</c>: SDTP's per-stage saliency predictors, trained with the ranking loss and written as a GGUF of <c>kernels.sdtp.*</c> tensors.</summary>
internal static class TrainSdtpCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out", "-o") { Description = "Predictor GGUF to write (use it with --token-prune-saliency predictor --token-prune-predictor FILE)", Required = true };
        var stages = new Option<string?>("--stages") { Description = "Stage layers (default: every 3 layers from layer 4; every layer from 1 in models under 8 layers)" };
        var hidden = new Option<int?>("--hidden") { Description = "Hidden width of each stage's MLP (default dim/4, at least 8)" }.InRange(1, 1 << 16);
        var steps = new Option<int>("--steps") { Description = "Optimizer steps per stage", DefaultValueFactory = _ => 600 }.InRange(1, 1 << 24);
        var pairs = new Option<int>("--pairs") { Description = "Token pairs per step", DefaultValueFactory = _ => 256 }.InRange(1, 1 << 20);
        var rate = new Option<double>("--learning-rate") { Description = "Adam step size", DefaultValueFactory = _ => 3e-3 }.InRange(1e-9, 10.0);
        var seed = new Option<int>("--seed") { Description = "Initialization and pair sampling seed", DefaultValueFactory = _ => 1 };
        var teacher = new Option<string>("--teacher") { Description = "later (attention from the last --later-queries share of each window's queries, to the tokens before it) | all (mean attention from every query that sees the token); both in the layers a pruned token skips", DefaultValueFactory = _ => "later" };
        var later = new Option<double>("--later-queries") { Description = "Share of each calibration window whose queries teach (teacher later)", DefaultValueFactory = _ => 0.25 }.InRange(0.0, 1.0, minExclusive: true, maxExclusive: true);
        return CalibratedModelCommand.Create("train-sdtp",
            "Train SDTP's token-saliency predictors (a 2-layer MLP per pruning stage on hidden states, pairwise ranking loss against an attention-saliency teacher)",
            "Model the predictors are trained for", "Tokenizer", output,
            (c, parse, ct) =>
            {
                IReadOnlyList<int> stageLayers = parse.GetValue(stages) is { } list ? TokenPruneOptions.ParseLayers(list, "--stages") : TokenPruneOptions.DefaultStages(c.Model.Layers.Count);
                try
                {
                    new TokenPruneOptions { StageLayers = stageLayers }.Validated(c.Model.Layers.Count);
                }
                catch (ArgumentOutOfRangeException e)
                {
                    throw new ArgumentException($"--stages: {e.Message}", e);
                }
                if (stageLayers.Count == 0)
                {
                    throw new ArgumentException($"--stages: a {c.Model.Layers.Count}-layer model has no layer to prune before (stages need layers 1..{c.Model.Layers.Count - 1})");
                }
                var options = new SaliencyTrainingOptions
                {
                    Hidden = parse.GetValue(hidden), Steps = parse.GetValue(steps), PairsPerStep = parse.GetValue(pairs),
                    LearningRate = parse.GetValue(rate), Seed = parse.GetValue(seed),
                };
                var (predictor, reports) = Train(c, stageLayers, options, ParseTeacher(parse.GetValue(teacher)!), parse.GetValue(later), ct);
                string path = parse.GetValue(output)!;
                Save(predictor, reports, c, path);
                Console.Out.WriteLine($"wrote {path}: stages at layers {string.Join(",", predictor.StageLayers)}, hidden {reports[0].Hidden}, teacher: {predictor.Teacher}");
                long model = LinearMacsPerToken(c.Model);
                Console.Out.WriteLine($"| stage layer | final loss | train pair accuracy | held-out pair accuracy | MACs / token (model's linears: {model}) |");
                Console.Out.WriteLine("|---:|---:|---:|---:|---:|");
                foreach (var r in reports)
                {
                    Console.Out.WriteLine($"| {r.Layer} | {r.FinalLoss:F4} | {r.TrainPairAccuracy:P1} | {r.HeldOutPairAccuracy:P1} | {predictor.MacsPerToken(r.Layer)} ({predictor.MacsPerToken(r.Layer) / (double)model:P2}) |");
                }
                return 0;
            }, stages, hidden, steps, pairs, rate, seed, teacher, later);
    }

    /// <summary>Collects the stage inputs and teacher on the calibration windows, then trains (arch-report trains the same way).</summary>
    internal static SaliencyTeacher ParseTeacher(string s) => s.ToLowerInvariant() switch
    {
        "later" => SaliencyTeacher.LaterQueries,
        "all" => SaliencyTeacher.AllQueries,
        _ => throw new ArgumentException($"unknown --teacher '{s}' (later, all)"),
    };

    internal static (SaliencyPredictor Predictor, IReadOnlyList<SaliencyStageReport> Reports) Train(CalibratedModel c, IReadOnlyList<int> stageLayers, SaliencyTrainingOptions options,
        SaliencyTeacher teacher, double laterQueries, CancellationToken ct)
    {
        using var transformer = new Transformer(c.Model, c.Ops, maxBatch: c.Data.Windows.Max(w => w.Length));
        var windows = CliConsole.WithProgress("teacher: dense passes", _ => SaliencyPredictorTrainer.Collect(transformer, c.Data, stageLayers, teacher, laterQueries, ct));
        return CliConsole.WithProgress($"training {stageLayers.Count} stage predictors", _ =>
            SaliencyPredictorTrainer.Train(windows, stageLayers, c.Model.Config.Dim, options, SaliencyPredictorTrainer.Describe(teacher, laterQueries), ct));
    }

    /// <summary>Multiply-adds per token of the model's linear layers and classifier (attention scores excluded).</summary>
    internal static long LinearMacsPerToken(Kernels.Runtime.Model.LlamaModel m) =>
        m.Layers.Sum(l => l.Linears().Sum(x => (long)x.Matrix.Rows * x.Matrix.Columns)) + (long)m.Classifier.Rows * m.Classifier.Columns;

    internal static void Save(SaliencyPredictor predictor, IReadOnlyList<SaliencyStageReport> reports, CalibratedModel c, string path) =>
        predictor.Save(path, new Dictionary<string, object>
        {
            ["kernels.sdtp.model"] = Path.GetFileName(c.ModelPath),
            ["kernels.sdtp.calibration_tokens"] = c.Data.Tokens,
            ["kernels.sdtp.held_out_pair_accuracy"] = reports.Select(r => (float)r.HeldOutPairAccuracy).ToArray(),
        });
}
