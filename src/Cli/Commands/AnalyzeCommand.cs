using System.CommandLine;
using System.Text.Json;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;
using Kernels.Runtime.Pruning;
using Kernels.Runtime.Simplification;
using Kernels.Runtime.Tokenization;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary><c>kernels analyze heads|layers|kv-share</c>: calibration-text analyses behind architecture simplification (tables, JSON, PNG heat maps).</summary>
internal static class AnalyzeCommand
{
    public static Command Create()
    {
        var command = new Command("analyze", "Head importance, layer redundancy and cross-layer KV similarity on calibration text");
        command.Subcommands.Add(Sub("heads", "Per-head importance: mean ‖Att_h·W_O^h‖ and perplexity increase when the head alone is masked", Heads));
        command.Subcommands.Add(Sub("layers", "ShortGPT block influence and Gromov angular distance between layers", Layers));
        var target = new Option<int>("--target") { Description = "Layers to share (KVSharer search)", DefaultValueFactory = _ => 2 }.InRange(1, 1024);
        var threshold = new Option<double>("--threshold") { Description = "Accept a share when cos(final hidden states) stays ≥ this", DefaultValueFactory = _ => 0.9 }.InRange(-1.0, 1.0);
        command.Subcommands.Add(Sub("kv-share", "KVSharer: layer-pair K/V dissimilarity and a greedy search for shareable layers", (ctx, parse) => KvShare(ctx, parse.GetValue(target), parse.GetValue(threshold)), target, threshold));
        return command;
    }

    internal sealed record Context(LlamaModel Model, ITokenizer Tokenizer, CalibrationSet Data, Transformer Transformer, string OutDir, string Title);

    private static Command Sub(string name, string description, Func<Context, ParseResult, int> run, params Option[] extra)
    {
        var outDir = new Option<string>("--out", "-o") { Description = "Folder for JSON and PNG heat maps", DefaultValueFactory = _ => "analysis" };
        return CalibratedModelCommand.Create(name, description, "Model to analyze", "Tokenizer (default: the model's vocabulary)", outDir, (c, parse, _) =>
        {
            using var transformer = new Transformer(c.Model, c.Ops, maxBatch: c.Data.Windows.Max(w => w.Length));
            string dir = parse.GetValue(outDir)!;
            Directory.CreateDirectory(dir);
            string title = $"{Path.GetFileName(c.ModelPath.TrimEnd('/'))}, {c.Data.Windows.Count} calibration windows x {c.Data.Windows[0].Length} tokens";
            return run(new Context(c.Model, c.Tokenizer, c.Data, transformer, dir, title), parse);
        }, extra);
    }

    private static int Heads(Context c, ParseResult parse)
    {
        var norms = CliConsole.WithProgress("output norms", _ => HeadImportance.OutputNorm(c.Transformer, c.Data));
        double basePpl = 0;
        var ppl = CliConsole.WithProgress("masking each head", p => HeadImportance.PerplexityIncrease(c.Transformer, c.Data, out basePpl, p));
        var table = new Table().Title(Markup.Escape($"{c.Title}: head importance (mean ‖Att_h W_O^h‖ / PPL increase when masked; base PPL {basePpl:F3})"));
        int maxHeads = c.Model.Layers.Max(l => l.Heads);
        table.AddColumn("layer");
        for (int h = 0; h < maxHeads; h++)
        {
            table.AddColumn($"head {h}");
        }
        for (int l = 0; l < norms.Length; l++)
        {
            table.AddRow(new[] { l.ToString() }.Concat(Enumerable.Range(0, maxHeads).Select(h => h < norms[l].Length ? $"{norms[l][h]:F3} / {ppl[l][h]:+0.000;-0.000}" : "")).ToArray());
        }
        CliConsole.Out.Write(table);
        var units = HeadPruner.Groups(c.Model, ppl).OrderBy(g => g.Score).ToList();
        CliConsole.Out.WriteLine($"pruning units (KV head + its {c.Model.Layers[0].Heads / c.Model.Layers[0].KvHeads} query heads), least important first by PPL increase: " +
                                 string.Join(" ", units.Select(u => $"L{u.Layer}/kv{u.KvHead}")));
        Charts.Heatmap(Path.Combine(c.OutDir, "heads-output-norm.png"), "mean ‖Att_h W_O^h‖ (layer x head)", Grid(norms, maxHeads), "head", "layer");
        Charts.Heatmap(Path.Combine(c.OutDir, "heads-ppl-increase.png"), $"PPL increase when the head alone is masked (base {basePpl:F3})", Grid(ppl, maxHeads), "head", "layer");
        Kernels.Runtime.IO.AtomicFile.WriteAllText(Path.Combine(c.OutDir, "heads.json"), JsonSerializer.Serialize(new { c.Title, base_perplexity = basePpl, output_norm = norms, perplexity_increase = ppl }, Json));
        CliConsole.Err.MarkupLine($"wrote {Markup.Escape(c.OutDir)}/heads.json, heads-output-norm.png, heads-ppl-increase.png");
        return 0;
    }

    private static int Layers(Context c, ParseResult parse)
    {
        var scores = CliConsole.WithProgress("layer boundaries", _ => LayerRemoval.Measure(c.Transformer, c.Data));
        int layers = scores.Layers;
        var table = new Table().Title(Markup.Escape($"{c.Title}: layer redundancy")).AddColumns("layer", "block influence", "angular d(l, 1)");
        for (int l = 0; l < layers; l++)
        {
            table.AddRow(l.ToString(), scores.BlockInfluence[l].ToString("F4"), scores.AngularDistance[l, l + 1].ToString("F4"));
        }
        CliConsole.Out.Write(table);
        var picks = new Table().AddColumns("remove n", "ShortGPT (lowest BI)", "Gromov (block with smallest d(l, n))");
        for (int n = 1; n < layers; n++)
        {
            picks.AddRow(n.ToString(), string.Join(",", scores.LowestInfluence(n)), string.Join(",", scores.MostRedundantBlock(n)));
        }
        CliConsole.Out.Write(picks);
        var grid = new double[layers, layers];
        for (int l = 0; l < layers; l++)
        {
            for (int n = 1; n <= layers; n++)
            {
                grid[l, n - 1] = l + n <= layers ? scores.AngularDistance[l, l + n] : double.NaN;
            }
        }
        Charts.Heatmap(Path.Combine(c.OutDir, "layers-angular.png"), "angular distance d(l, n) on the last token (row l, column n-1)", grid, "n - 1 (layers spanned - 1)", "first layer l");
        Kernels.Runtime.IO.AtomicFile.WriteAllText(Path.Combine(c.OutDir, "layers.json"), JsonSerializer.Serialize(new
        {
            c.Title,
            block_influence = scores.BlockInfluence,
            angular_distance = Enumerable.Range(0, layers).Select(l => Enumerable.Range(1, layers - l).Select(n => scores.AngularDistance[l, l + n]).ToArray()).ToArray(),
        }, Json));
        CliConsole.Err.MarkupLine($"wrote {Markup.Escape(c.OutDir)}/layers.json, layers-angular.png");
        return 0;
    }

    private static int KvShare(Context c, int target, double threshold)
    {
        var result = CliConsole.WithProgress("KVSharer search", p => KvSharer.Search(c.Transformer, c.Data, target, threshold, p));
        int layers = c.Model.Layers.Count;
        var table = new Table().Title(Markup.Escape($"{c.Title}: KVSharer trials (most dissimilar first, threshold {threshold})")).AddColumns("layer", "reads cache of", "dissimilarity", "cos(final states)", "accepted");
        foreach (var t in result.Trials)
        {
            table.AddRow(t.Layer.ToString(), t.Source.ToString(), t.Dissimilarity.ToString("F3"), t.Cosine.ToString("F4"), t.Accepted ? "yes" : "no");
        }
        CliConsole.Out.Write(table);
        string spec = result.Shares.Count == 0 ? "none" : string.Join(",", result.Shares.OrderBy(s => s.Key).Select(s => $"{s.Key}:{s.Value}"));
        CliConsole.Out.WriteLine($"--kv-share {spec}   ({result.Shares.Count} of {layers} layers share; KV cache {(layers - result.Shares.Count) / (double)layers:P0} of dense)");
        Charts.Heatmap(Path.Combine(c.OutDir, "kv-dissimilarity.png"), "KVSharer dissimilarity D(i, j) of mean K/V", result.Dissimilarity, "layer j", "layer i");
        Kernels.Runtime.IO.AtomicFile.WriteAllText(Path.Combine(c.OutDir, "kv-share.json"), JsonSerializer.Serialize(new
        {
            c.Title,
            threshold,
            spec,
            dissimilarity = Enumerable.Range(0, layers).Select(i => Enumerable.Range(0, layers).Select(j => result.Dissimilarity[i, j]).ToArray()).ToArray(),
            trials = result.Trials,
        }, Json));
        CliConsole.Err.MarkupLine($"wrote {Markup.Escape(c.OutDir)}/kv-share.json, kv-dissimilarity.png");
        return 0;
    }

    internal static double[,] Grid(double[][] rows, int columns)
    {
        var g = new double[rows.Length, columns];
        for (int r = 0; r < rows.Length; r++)
        {
            for (int col = 0; col < columns; col++)
            {
                g[r, col] = col < rows[r].Length ? rows[r][col] : double.NaN;
            }
        }
        return g;
    }

    internal static readonly JsonSerializerOptions Json = new() { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
}
