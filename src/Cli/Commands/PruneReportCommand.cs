using System.CommandLine;
using System.Text;
using System.Text.Json;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Evaluation;
using Kernels.Runtime.Inference;
using Kernels.Runtime.IO;
using Kernels.Runtime.Pruning;
using Kernels.Runtime.Sparsity;
using Kernels.Runtime.Text;
using Kernels.Runtime.Tokenization;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary>
/// <c>kernels prune-report</c>: perplexity of the dense model and of every method × pattern ×
/// scope, on an in-domain evaluation span disjoint from the calibration span and on an
/// out-of-domain text; Markdown + JSON + PNG.
/// </summary>
internal static class PruneReportCommand
{
    internal sealed record Row(string Method, string Sparsity, string Scope, double PplInDomain, double PplOutOfDomain, double PruneSeconds);

    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "Model to prune", Required = true };
        var tokenizer = new Option<string?>("--tokenizer", "-z") { Description = "Tokenizer" };
        var eval = new Option<string>("--eval") { Description = "In-domain evaluation text", Required = true };
        var evalBytes = new Option<string>("--eval-bytes") { Description = "Byte range of the evaluation file (disjoint from --calibration-bytes)", DefaultValueFactory = _ => "400000:460000" };
        var ood = new Option<string?>("--eval-ood") { Description = "Out-of-domain evaluation text (e.g. WikiText-2)" };
        var oodBytes = new Option<string>("--eval-ood-bytes") { Description = "Byte range of the out-of-domain file", DefaultValueFactory = _ => "0:40000" };
        var context = new Option<int>("--context") { Description = "Perplexity window", DefaultValueFactory = _ => 256 }.InRange(1, 1 << 26);
        var patterns = new Option<string>("--patterns") { Description = "Sparsities to run", DefaultValueFactory = _ => "2:4,4:8,0.5" };
        var methods = new Option<string>("--methods") { Description = "Methods to run", DefaultValueFactory = _ => "magnitude,wanda,dass,sparsegpt" };
        var scopes = new Option<string>("--scopes") { Description = "Scopes to run", DefaultValueFactory = _ => "mlp,all" };
        var outDir = new Option<string>("--out", "-o") { Description = "Output folder for prune-report.md/.json/.png", DefaultValueFactory = _ => "prune-report" };
        var calib = new CalibrationOptions();
        var command = new Command("prune-report", "Perplexity table: dense and every pruning method x pattern x scope (Markdown, JSON, PNG)")
        {
            model, tokenizer, eval, evalBytes, ood, oodBytes, context, patterns, methods, scopes, outDir,
        };
        calib.AddTo(command);
        command.SetAction((parse, ct) =>
        {
            try
            {
                string modelPath = parse.GetValue(model)!;
                using var probe = ModelLoader.Load(modelPath);
                var tok = TokenizerLoader.Load(probe, parse.GetValue(tokenizer));
                var data = calib.Load(parse, tok) ?? throw new ArgumentException("--calibration is required");
                int ctx = parse.GetValue(context);
                var (es, ee) = TextSource.ParseRange(parse.GetValue(evalBytes));
                int[] inDomain = tok.Encode(TextSource.Read(parse.GetValue(eval)!, es, ee, true), false, false);
                int[]? outDomain = parse.GetValue(ood) is { } oodPath
                    ? tok.Encode(TextSource.Read(oodPath, TextSource.ParseRange(parse.GetValue(oodBytes)).Start, TextSource.ParseRange(parse.GetValue(oodBytes)).End, false), false, false)
                    : null;
                double Ppl(Kernels.Runtime.Model.LlamaModel m, int[] tokens)
                {
                    using var ops = new HostOps();
                    using var t = new Transformer(m, ops, maxBatch: ctx);
                    return new PerplexityEvaluator(t).Evaluate(tokens, ctx, tok.Bos).Perplexity;
                }

                var rows = new List<Row>();
                rows.Add(new Row("dense", "-", "-", Ppl(probe, inDomain), outDomain is null ? double.NaN : Ppl(probe, outDomain), 0));
                var specs = (from scope in parse.GetValue(scopes)!.Split(',')
                             from sp in parse.GetValue(patterns)!.Split(',')
                             from me in parse.GetValue(methods)!.Split(',')
                             select new PruneSpec
                             {
                                 Method = CalibrationOptions.ParseMethod(me.Trim()),
                                 Sparsity = Sparsity.Parse(sp.Trim()),
                                 Scope = CalibrationOptions.ParseScope(scope.Trim()),
                                 Alpha = parse.GetValue(calib.Alpha),
                             }).ToList();
                CliConsole.WithProgress($"{specs.Count} pruning runs", progress =>
                {
                    for (int i = 0; i < specs.Count; i++)
                    {
                        ct.ThrowIfCancellationRequested();
                        using var m = ModelLoader.Load(modelPath);
                        var result = SequentialPruner.Prune(m, data, specs[i], null, ct);
                        SparseCompression.CompressDetected(m);
                        rows.Add(new Row(specs[i].Method.ToString(), specs[i].Sparsity.ToString(), specs[i].Scope.ToString(),
                            Ppl(m, inDomain), outDomain is null ? double.NaN : Ppl(m, outDomain), result.Elapsed.TotalSeconds));
                        progress.Report((i + 1f) / specs.Count);
                    }
                    return 0;
                });
                string dir = parse.GetValue(outDir)!;
                Directory.CreateDirectory(dir);
                string title = $"{Path.GetFileName(modelPath)}: calibration {data.Windows.Count} x {data.Windows[0].Length} tokens from {Path.GetFileName(parse.GetValue(calib.Calibration))} bytes {parse.GetValue(calib.CalibrationBytes)}; " +
                               $"eval {inDomain.Length} tokens of {Path.GetFileName(parse.GetValue(eval))} bytes {parse.GetValue(evalBytes)}" +
                               (outDomain is null ? "" : $", OOD {outDomain.Length} tokens of {Path.GetFileName(parse.GetValue(ood))} bytes {parse.GetValue(oodBytes)}") + $", context {ctx}";
                Kernels.Runtime.IO.AtomicFile.WriteAllText(Path.Combine(dir, "prune-report.md"), Markdown(title, rows));
                Kernels.Runtime.IO.AtomicFile.WriteAllText(Path.Combine(dir, "prune-report.json"), JsonSerializer.Serialize(new { title, rows }, new JsonSerializerOptions { WriteIndented = true }));
                Chart(Path.Combine(dir, "prune-report.png"), rows);
                CliConsole.Out.Write(new Markup(Markup.Escape(Markdown(title, rows))));
                return Task.FromResult(0);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return Task.FromResult(CliConsole.Fail(e));
            }
        });
        return command;
    }

    internal static string Markdown(string title, IReadOnlyList<Row> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Pruning report").AppendLine().AppendLine(title).AppendLine();
        var dense = rows.First(r => r.Method == "dense");
        foreach (var (label, pick) in new (string, Func<Row, double>)[] { ("in-domain perplexity", r => r.PplInDomain), ("out-of-domain perplexity", r => r.PplOutOfDomain) })
        {
            if (double.IsNaN(pick(dense)))
            {
                continue;
            }
            foreach (var scope in rows.Where(r => r.Scope != "-").Select(r => r.Scope).Distinct())
            {
                var sparsities = rows.Where(r => r.Scope == scope).Select(r => r.Sparsity).Distinct().ToList();
                sb.AppendLine($"## {label}, scope {scope} (dense: {pick(dense):F3})").AppendLine();
                sb.AppendLine("| method | " + string.Join(" | ", sparsities) + " |");
                sb.AppendLine("|---|" + string.Concat(sparsities.Select(_ => "---:|")));
                foreach (var method in rows.Where(r => r.Scope == scope).Select(r => r.Method).Distinct())
                {
                    sb.AppendLine($"| {method} | " + string.Join(" | ", sparsities.Select(sp => rows.FirstOrDefault(r => r.Scope == scope && r.Method == method && r.Sparsity == sp) is { } r ? pick(r).ToString("F3") : "-")) + " |");
                }
                sb.AppendLine();
            }
        }
        return sb.ToString();
    }

    private static void Chart(string path, IReadOnlyList<Row> rows)
    {
        var groups = rows.Where(r => r.Scope != "-").Select(r => $"{r.Sparsity} {r.Scope}").Distinct().ToList();
        var methods = rows.Where(r => r.Scope != "-").Select(r => r.Method).Distinct().ToList();
        var series = methods.Select(m => (m, groups.Select(g => rows.FirstOrDefault(r => r.Method == m && $"{r.Sparsity} {r.Scope}" == g) is { } r ? r.PplInDomain : double.NaN).ToArray())).ToList();
        Charts.Bars(path, $"In-domain perplexity after pruning (dense {rows.First(r => r.Method == "dense").PplInDomain:F2})", "perplexity", groups, series);
    }
}
