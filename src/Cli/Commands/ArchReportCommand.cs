using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Evaluation;
using Kernels.Runtime.Inference;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Simplification;
using Kernels.Runtime.Text;
using Kernels.Runtime.Tokenization;

namespace Kernels.Cli.Commands;

/// <summary>
/// <c>kernels arch-report</c>: perplexity of a real model vs fraction of heads removed, layers
/// removed, layers sharing KV, and SDTP cumulative keep (Markdown, JSON, PNG). Every point is a
/// fresh load of the model with one simplification applied, evaluated on a span disjoint from
/// the calibration span.
/// </summary>
internal static class ArchReportCommand
{
    internal sealed record Row(string Study, string Method, double X, double Perplexity, long WeightBytes, double KvFraction, string Detail);

    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "Model", Required = true };
        var tokenizer = new Option<string?>("--tokenizer", "-z") { Description = "Tokenizer" };
        var eval = new Option<string>("--eval") { Description = "Evaluation text", Required = true };
        var evalBytes = new Option<string>("--eval-bytes") { Description = "Byte range of the evaluation file (disjoint from --calibration-bytes)", DefaultValueFactory = _ => "400000:460000" };
        var context = new Option<int>("--context") { Description = "Perplexity window", DefaultValueFactory = _ => 256 }.InRange(1, 1 << 26);
        var fractions = new Option<string>("--head-fractions") { Description = "Fractions of head units removed", DefaultValueFactory = _ => "0.1,0.2,0.3,0.4,0.5" };
        var keeps = new Option<string>("--token-keeps") { Description = "SDTP cumulative keep ratios", DefaultValueFactory = _ => "0.9,0.8,0.65,0.5,0.35" };
        var promptFraction = new Option<double>("--prompt-fraction") { Description = "SDTP: each window's first fraction is the pruned prompt; the rest is scored", DefaultValueFactory = _ => 0.75 }.InRange(0.0, 1.0, maxExclusive: true);
        var thresholds = new Option<string>("--kv-thresholds") { Description = "KVSharer acceptance thresholds", DefaultValueFactory = _ => "0.5,0.9" };
        var outDir = new Option<string>("--out", "-o") { Description = "Output folder", DefaultValueFactory = _ => "arch-report" };
        var sdtpWindows = new Option<int>("--sdtp-train-windows") { Description = "Calibration windows (from the calibration span) the SDTP saliency predictors are trained on", DefaultValueFactory = _ => 200 }.InRange(1, 1 << 20);
        var calib = new CalibrationOptions();
        var command = new Command("arch-report", "Perplexity vs heads removed, layers removed, KV-shared layers and SDTP token keep ratio (Markdown, JSON, PNG)")
        {
            model, tokenizer, eval, evalBytes, context, fractions, keeps, promptFraction, thresholds, outDir, sdtpWindows,
        };
        calib.AddTo(command, alpha: false);
        command.SetAction((parse, ct) =>
        {
            try
            {
                string path = parse.GetValue(model)!;
                using var probe = ModelLoader.Load(path);
                var tok = TokenizerLoader.Load(probe, parse.GetValue(tokenizer));
                var data = calib.Require(parse, tok, "arch-report");
                int ctx = parse.GetValue(context);
                var (es, ee) = TextSource.ParseRange(parse.GetValue(evalBytes));
                int[] tokens = tok.Encode(TextSource.Read(parse.GetValue(eval)!, es, ee, true), false, false);
                int layers = probe.Layers.Count;
                var rows = new List<Row>();
                var sdtpCost = new List<StageCostRow>();
                var sdtpReports = new List<(string Name, IReadOnlyList<SaliencyStageReport> Stages, long PredictorMacs, long ModelMacs)>();
                string dir = parse.GetValue(outDir)!;
                Directory.CreateDirectory(dir);

                // One evaluation: a fresh model, an edit, perplexity (optionally prompt-pruned), KV bytes of one full window.
                Row Measure(string study, string method, double x, Func<LlamaModel, string> edit, TokenPruneOptions? pruning = null, double prompt = 0)
                {
                    using var m = ModelLoader.Load(path);
                    string detail = edit(m);
                    using var ops = new HostOps();
                    using var t = new Transformer(m, ops, maxBatch: ctx) { Plan = new ForwardPlan { TokenPruning = pruning is { } o ? new PromptTokenPruner(o) : null } };
                    var r = new PerplexityEvaluator(t) { PromptFraction = prompt }.Evaluate(tokens, ctx, tok.Bos, null, ct);
                    // KV bytes after one full-length prompt (pruned prompts leave fewer tokens in later layers).
                    using var cache = t.CreateCache(ctx);
                    int window = Math.Min(ctx, tokens.Length);
                    long start = System.Diagnostics.Stopwatch.GetTimestamp();
                    t.Forward(tokens.AsSpan(0, window), 0, cache, LogitsMode.Last);
                    double prefill = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                    long dense = probe.Layers.Sum(l => (long)l.KvHeads) * window * 2L * probe.Config.HeadDim * sizeof(float);
                    if (t.LastTokenPruning is { } trace)
                    {
                        detail += $"; tokens per layer {string.Join(",", trace.TokensPerLayer)} of {trace.PromptTokens} ({trace.LayerTokenFraction:P0} layer-token work); " +
                                  $"stages {trace.SaliencySeconds * 1e3:F2} ms of a {prefill:F1} ms prefill";
                    }
                    var row = new Row(study, method, x, r.Perplexity, m.WeightBytes, cache.BytesUsed / (double)dense, detail);
                    rows.Add(row);
                    return row;
                }

                CliConsole.WithProgress("arch-report", progress =>
                {
                    using var ops = new HostOps();
                    var baseline = Measure("dense", "dense", 0, _ => "");
                    double[][] pplScores, normScores;
                    LayerScores layerScores;
                    using (var t = new Transformer(probe, ops, maxBatch: data.Windows.Max(w => w.Length)))
                    {
                        pplScores = HeadImportance.PerplexityIncrease(t, data, out _, null, ct);
                        normScores = HeadImportance.OutputNorm(t, data, ct);
                        layerScores = LayerRemoval.Measure(t, data, ct);
                    }
                    var rng = new Random(5);
                    var randomScores = probe.Layers.Select(l => Enumerable.Range(0, l.Heads).Select(_ => rng.NextDouble()).ToArray()).ToArray();
                    progress.Report(0.1f);

                    // Heads: PPL vs fraction of (KV head + query group) units removed.
                    var fr = Parse(parse.GetValue(fractions)!);
                    foreach (var (name, scores) in new[] { ("ppl-increase", pplScores), ("output-norm", normScores), ("random", randomScores) })
                    {
                        foreach (double f in fr)
                        {
                            Measure("heads", name, f, m =>
                            {
                                var chosen = HeadPruner.SelectLeastImportant(m, scores, f);
                                HeadPruner.Remove(m, chosen.Select(g => (g.Layer, g.KvHead)));
                                return string.Join(" ", chosen.Select(g => $"L{g.Layer}/kv{g.KvHead}"));
                            });
                        }
                    }
                    // Iterative: re-score the pruned model after each step (the one-shot rows above score once).
                    foreach (var (name, metric) in new (string, Func<Transformer, double[][]>)[]
                    {
                        ("ppl-increase iterative", t => HeadImportance.PerplexityIncrease(t, data, out _, null, ct)),
                        ("output-norm iterative", t => HeadImportance.OutputNorm(t, data, ct)),
                    })
                    {
                        using var working = ModelLoader.Load(path);
                        var steps = HeadPruner.Iterative(working, fr, m =>
                        {
                            using var t = new Transformer(m, ops, maxBatch: data.Windows.Max(w => w.Length));
                            return metric(t);
                        });
                        for (int i = 0; i < fr.Length; i++)
                        {
                            var units = steps[i];
                            Measure("heads", name, fr[i], m =>
                            {
                                HeadPruner.Remove(m, units);
                                return string.Join(" ", units.OrderBy(u => u.Layer).ThenBy(u => u.KvHead).Select(u => $"L{u.Layer}/kv{u.KvHead}"));
                            });
                        }
                    }
                    progress.Report(0.35f);

                    // Layers: PPL vs layers removed.
                    for (int n = 1; n < layers; n++)
                    {
                        foreach (var (name, pick) in new (string, Func<int, int[]>)[]
                        {
                            ("shortgpt-bi", layerScores.LowestInfluence),
                            ("gromov-angular", layerScores.MostRedundantBlock),
                            ("last-layers", k => Enumerable.Range(layers - 1 - k, k).ToArray()),
                        })
                        {
                            var chosen = pick(n);
                            Measure("layers", name, n, m =>
                            {
                                LayerRemoval.Remove(m, chosen);
                                return string.Join(",", chosen);
                            });
                        }
                    }
                    progress.Report(0.55f);

                    // KV sharing: KVSharer at each threshold (accepted pairs in order), plus CLA-style every:2.
                    foreach (double threshold in Parse(parse.GetValue(thresholds)!))
                    {
                        KvShareResult search;
                        using (var m = ModelLoader.Load(path))
                        using (var t = new Transformer(m, ops, maxBatch: data.Windows.Max(w => w.Length)))
                        {
                            search = KvSharer.Search(t, data, layers - 1, threshold, null, ct);
                        }
                        var accepted = search.Trials.Where(x => x.Accepted).ToList();
                        for (int k = 1; k <= accepted.Count; k++)
                        {
                            var prefix = accepted.Take(k).ToDictionary(x => x.Layer, x => x.Source);
                            Measure("kv-share", $"kvsharer T={threshold}", k, m =>
                            {
                                KvSharer.Apply(m, prefix);
                                return string.Join(",", prefix.OrderBy(p => p.Key).Select(p => $"{p.Key}:{p.Value}"));
                            });
                        }
                    }
                    var cla = KvSharer.Parse("every:2", layers);
                    Measure("kv-share", "cla every:2 (untrained)", cla.Count, m =>
                    {
                        KvSharer.Apply(m, cla);
                        return "every:2";
                    });
                    progress.Report(0.75f);

                    // SDTP: continuation perplexity after a pruned prompt.
                    double pf = parse.GetValue(promptFraction);
                    var stages = TokenPruneOptions.DefaultStages(layers);
                    Measure("sdtp", "no pruning", 1.0, _ => "", null, pf);
                    // SDTP's learned predictor, trained on its own (larger) calibration set from the calibration span, with either teacher.
                    var sdtpData = calib.Load(parse, tok, windows: parse.GetValue(sdtpWindows))!;
                    var predictors = new List<(string Name, SaliencyPredictor Predictor)>();
                    using (var m = ModelLoader.Load(path))
                    {
                        var trained = new CalibratedModel(m, tok, sdtpData, ops, path);
                        foreach (var (name, teacher) in new[] { ("predictor (later queries)", SaliencyTeacher.LaterQueries), ("predictor (all queries)", SaliencyTeacher.AllQueries) })
                        {
                            var (predictor, reports) = TrainSdtpCommand.Train(trained, stages, new SaliencyTrainingOptions(), teacher, 1 - pf, ct);
                            predictors.Add((name, predictor));
                            sdtpReports.Add((name, reports, predictor.MacsPerToken(stages[0]), TrainSdtpCommand.LinearMacsPerToken(m)));
                            if (teacher == SaliencyTeacher.LaterQueries)
                            {
                                TrainSdtpCommand.Save(predictor, reports, trained, Path.Combine(dir, "sdtp-predictor.gguf"));
                            }
                        }
                    }
                    var kinds = new List<(string Name, TokenSaliencyKind Kind, SaliencyPredictor? Predictor)>
                    {
                        ("Attention", TokenSaliencyKind.Attention, null), ("AttentionValueNorm", TokenSaliencyKind.AttentionValueNorm, null),
                    };
                    kinds.AddRange(predictors.Select(p => (p.Name, TokenSaliencyKind.Predictor, (SaliencyPredictor?)p.Predictor)));
                    kinds.Add(("Random", TokenSaliencyKind.Random, null));
                    foreach (var (name, kind, predictor) in kinds)
                    {
                        foreach (double keep in Parse(parse.GetValue(keeps)!))
                        {
                            var o = new TokenPruneOptions { StageLayers = stages, Ratio = TokenPruneOptions.RatioForFinalKeep(keep, stages.Count), Saliency = kind, Predictor = predictor };
                            Measure("sdtp", name, keep, _ => $"r {o.Ratio:F4} at layers {string.Join(",", stages)}", o, pf);
                        }
                    }
                    sdtpCost.AddRange(StageCost(path, tokens, ctx, stages, kinds, ct));
                    progress.Report(1f);
                    return 0;
                });

                string title = $"{Path.GetFileName(path)}: perplexity on {tokens.Length} tokens of {Path.GetFileName(parse.GetValue(eval))} bytes {parse.GetValue(evalBytes)} " +
                               $"(windows of {ctx}); calibration {data.Windows.Count} x {data.Windows[0].Length} tokens of {Path.GetFileName(parse.GetValue(calib.Calibration))} bytes {parse.GetValue(calib.CalibrationBytes)}. " +
                               $"SDTP rows score only each window's continuation after a {parse.GetValue(promptFraction):P0} prompt (its own dense baseline: 'no pruning').";
                string markdown = Markdown(title, rows) + PredictorMarkdown(sdtpReports, parse.GetValue(sdtpWindows)) + CostMarkdown(sdtpCost);
                Kernels.Runtime.IO.AtomicFile.WriteAllText(Path.Combine(dir, "arch-report.md"), markdown);
                Kernels.Runtime.IO.AtomicFile.WriteAllText(Path.Combine(dir, "arch-report.json"), JsonSerializer.Serialize(new
                {
                    title, rows,
                    sdtpPredictors = sdtpReports.Select(r => new { r.Name, stages = r.Stages, r.PredictorMacs, r.ModelMacs }),
                    sdtpStageCost = sdtpCost,
                }, AnalyzeCommand.Json));
                foreach (var (study, xLabel) in new[] { ("heads", "fraction of KV-head units removed"), ("layers", "layers removed"), ("kv-share", "layers reading another layer's KV cache"), ("sdtp", "cumulative token keep ratio") })
                {
                    // SDTP scores continuations only, so its baseline is its own 'no pruning' row, not the full-window dense one.
                    string baseline = study == "sdtp"
                        ? $"continuation after the prompt; no pruning {rows.First(r => r.Study == study).Perplexity:F3}"
                        : $"dense {rows[0].Perplexity:F3}";
                    Charts.Lines(Path.Combine(dir, $"arch-{study}.png"), $"{study}: perplexity ({baseline})", xLabel, "perplexity",
                        rows.Where(r => r.Study == study).GroupBy(r => r.Method).Select(g => (g.Key, g.Select(r => r.X).ToArray(), g.Select(r => r.Perplexity).ToArray())).ToList(), logY: study == "layers");
                }
                Console.Out.Write(markdown);
                return Task.FromResult(0);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return Task.FromResult(CliConsole.Fail(e));
            }
        });
        return command;
    }

    private static double[] Parse(string list) =>
        list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray();

    internal sealed record StageCostRow(string Saliency, int Rounds, double MedianStageMs, double MedianPrefillMs, double MedianStageToProxy);

    /// <summary>
    /// What the SDTP stages cost (scoring, selection, compaction) in one pruned prefill of the first
    /// window at cumulative keep 0.5: every saliency once per round, rounds interleaved so host drift
    /// hits them alike; medians, and the median per-round ratio to the attention proxy.
    /// </summary>
    private static List<StageCostRow> StageCost(string path, int[] tokens, int ctx, IReadOnlyList<int> stages,
        List<(string Name, TokenSaliencyKind Kind, SaliencyPredictor? Predictor)> kinds, CancellationToken ct, int rounds = 9)
    {
        using var m = ModelLoader.Load(path);
        using var ops = new HostOps();
        int window = Math.Min(ctx, tokens.Length);
        var transformers = kinds.Select(k => new Transformer(m, ops, maxBatch: window)
        {
            Plan = new ForwardPlan
            {
                TokenPruning = new PromptTokenPruner(new TokenPruneOptions
                {
                    StageLayers = stages, Ratio = TokenPruneOptions.RatioForFinalKeep(0.5, stages.Count), Saliency = k.Kind, Predictor = k.Predictor,
                }),
            },
        }).ToArray();
        try
        {
            var samples = kinds.Select(_ => new List<(double Stage, double Prefill)>()).ToArray();
            for (int round = -1; round < rounds; round++) // round -1 warms up
            {
                for (int i = 0; i < kinds.Count; i++)
                {
                    ct.ThrowIfCancellationRequested();
                    using var cache = transformers[i].CreateCache(window);
                    long start = System.Diagnostics.Stopwatch.GetTimestamp();
                    transformers[i].Forward(tokens.AsSpan(0, window), 0, cache, LogitsMode.Last);
                    double prefill = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                    if (round >= 0)
                    {
                        samples[i].Add((transformers[i].LastTokenPruning!.SaliencySeconds * 1e3, prefill));
                    }
                }
            }
            static double Median(IEnumerable<double> values)
            {
                var sorted = values.Order().ToArray();
                return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
            }
            int proxy = kinds.FindIndex(k => k.Kind == TokenSaliencyKind.Attention);
            return kinds.Select((k, i) => new StageCostRow(k.Name, rounds, Median(samples[i].Select(s => s.Stage)), Median(samples[i].Select(s => s.Prefill)),
                proxy < 0 ? double.NaN : Median(samples[i].Zip(samples[proxy], (a, b) => a.Stage / b.Stage)))).ToList();
        }
        finally
        {
            foreach (var t in transformers)
            {
                t.Dispose();
            }
        }
    }

    private static string CostMarkdown(List<StageCostRow> cost)
    {
        if (cost.Count == 0)
        {
            return "";
        }
        var sb = new StringBuilder("## sdtp stage cost (interleaved rounds)\n\n");
        sb.AppendLine($"One pruned prefill of the first evaluation window at cumulative keep 0.5 per saliency and round, {cost[0].Rounds} rounds interleaved after a warm-up; medians. Stage time is scoring, selection and row compaction.").AppendLine();
        sb.AppendLine("| saliency | stage ms | prefill ms | stage share | stage time / attention proxy's (median of rounds) |");
        sb.AppendLine("|---|---:|---:|---:|---:|");
        foreach (var c in cost)
        {
            sb.AppendLine($"| {c.Saliency} | {c.MedianStageMs:F2} | {c.MedianPrefillMs:F1} | {c.MedianStageMs / c.MedianPrefillMs:P0} | {c.MedianStageToProxy:F2} |");
        }
        return sb.AppendLine().ToString();
    }

    private static string PredictorMarkdown(List<(string Name, IReadOnlyList<SaliencyStageReport> Stages, long PredictorMacs, long ModelMacs)> reports, int windows)
    {
        if (reports.Count == 0)
        {
            return "";
        }
        var sb = new StringBuilder("## sdtp predictors\n\n");
        sb.AppendLine($"Trained on {windows} calibration windows (every 5th held out); pairwise agreement with the teacher among the tokens that compete (after the sinks, before the recent share).").AppendLine();
        sb.AppendLine("| predictor | stage layer | hidden | final loss | train pairs | held-out pairs | MACs / token | share of the model's linear MACs |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var (name, stages, macs, model) in reports)
        {
            foreach (var s in stages)
            {
                sb.AppendLine($"| {name} | {s.Layer} | {s.Hidden} | {s.FinalLoss:F4} | {s.TrainPairAccuracy:P1} | {s.HeldOutPairAccuracy:P1} | {macs} | {macs / (double)model:P2} |");
            }
        }
        return sb.AppendLine().ToString();
    }

    private static string Markdown(string title, List<Row> rows)
    {
        var sb = new StringBuilder("# Architecture simplification and token pruning report\n\n").AppendLine(title).AppendLine();
        foreach (var study in rows.Select(r => r.Study).Distinct())
        {
            sb.AppendLine($"## {study}").AppendLine();
            sb.AppendLine("| method | x | perplexity | weights (MB) | KV bytes / dense | detail |");
            sb.AppendLine("|---|---:|---:|---:|---:|---|");
            foreach (var r in rows.Where(r => r.Study == study))
            {
                sb.AppendLine($"| {r.Method} | {r.X:0.###} | {r.Perplexity:F4} | {r.WeightBytes / 1e6:F3} | {r.KvFraction:F3} | {r.Detail} |");
            }
            sb.AppendLine();
        }
        return sb.ToString();
    }
}
