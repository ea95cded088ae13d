using System.CommandLine;
using System.Text;
using System.Text.Json;
using Kernels.Runtime.Caching;
using Kernels.Runtime.Session;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Text;
using Kernels.Runtime.Tokenization;

namespace Kernels.Cli.Commands;

/// <summary><c>kernels kv-report</c>: constrained-cache perplexity and needle retrieval for every policy and budget.</summary>
internal static class KvReportCommand
{
    internal sealed record Row(string Policy, double Budget, double Perplexity, double NeedleAccuracy, long PeakKvBytes, long DenseKvBytes, long StatisticsBytes);

    internal sealed record AblationRow(string Variant, double Budget, double Perplexity, long PeakKvBytes, long StatisticsBytes);

    /// <summary>VATP's ablations (norm, sinks, per-query-head scoring) beside its default: L1, 20 sinks, scores summed over the GQA group.</summary>
    internal static readonly (string Name, KvCacheOptions Options)[] Ablations =
    [
        ("vatp (L1, 20 sinks, group sum)", new KvCacheOptions { Policy = KvPolicyKind.Vatp }),
        ("vatp L2", new KvCacheOptions { Policy = KvPolicyKind.Vatp, ValueNorm = ValueNormKind.L2 }),
        ("vatp L-inf", new KvCacheOptions { Policy = KvPolicyKind.Vatp, ValueNorm = ValueNormKind.Max }),
        ("vatp 0 sinks", new KvCacheOptions { Policy = KvPolicyKind.Vatp, ProtectedTokens = 0 }),
        ("vatp 4 sinks", new KvCacheOptions { Policy = KvPolicyKind.Vatp, ProtectedTokens = 4 }),
        ("vatp 40 sinks", new KvCacheOptions { Policy = KvPolicyKind.Vatp, ProtectedTokens = 40 }),
        ("vatp per query head", new KvCacheOptions { Policy = KvPolicyKind.Vatp, PerQueryHead = true }),
        ("vatp 4 sinks, per query head", new KvCacheOptions { Policy = KvPolicyKind.Vatp, ProtectedTokens = 4, PerQueryHead = true }),
        ("h2o per query head", new KvCacheOptions { Policy = KvPolicyKind.H2O, PerQueryHead = true }),
        ("vatp-scissorhands 4 sinks", new KvCacheOptions { Policy = KvPolicyKind.VatpScissorhands, ProtectedTokens = 4 }),
    ];

    public static Command Create()
    {
        var common = new CommonOptions();
        var text = new Option<string>("--text") { Description = "Evaluation text", Required = true };
        var bytes = new Option<string>("--text-bytes") { Description = "Byte range of the text for perplexity", DefaultValueFactory = _ => "0:16178" };
        var context = new Option<int>("--context") { Description = "Perplexity window (the budget is a fraction of it)", DefaultValueFactory = _ => 256 }.InRange(1, 1 << 26);
        var budgets = new Option<string>("--budgets") { Description = "Budget fractions", DefaultValueFactory = _ => "0.1,0.25,0.5,0.75" };
        var policies = new Option<string>("--policies") { Description = "Policies", DefaultValueFactory = _ => "vatp,vatp-scissorhands,h2o,scissorhands,streaming" };
        var skipAblations = new Option<bool>("--skip-ablations") { Description = "Leave out VATP's norm, sink and per-query-head ablations (perplexity only)" };
        var trials = new Option<int>("--needle-trials") { Description = "Needle prompts per policy and budget", DefaultValueFactory = _ => 60 }.InRange(1, 1_000_000);
        var needleContext = new Option<int>("--needle-context") { Description = "Tokens of context before the query", DefaultValueFactory = _ => 384 }.InRange(1, 1 << 26);
        var outDir = new Option<string>("--out", "-o") { Description = "Output folder", DefaultValueFactory = _ => "kv-report" };
        var command = new Command("kv-report", "Perplexity vs KV budget and needle retrieval accuracy for every eviction policy (Markdown, JSON, PNG)")
        {
            text, bytes, context, budgets, policies, trials, needleContext, outDir, skipAblations,
        };
        common.AddTo(command);
        command.SetAction((parse, ct) =>
        {
            try
            {
                using var model = common.Load(parse);
                var tok = CommonOptions.LoadTokenizer(model, parse.GetValue(common.Tokenizer));
                using var ops = new HostOps();
                int ctx = parse.GetValue(context);
                var (s, e) = TextSource.ParseRange(parse.GetValue(bytes));
                string body = TextSource.Read(parse.GetValue(text)!, s, e, false);
                int[] tokens = tok.Encode(body, false, false);
                var needles = NeedleRetrieval.Build(tok, File.ReadAllText(parse.GetValue(text)!), parse.GetValue(trials), parse.GetValue(needleContext));
                int maxBatch = Math.Max(ctx, parse.GetValue(needleContext));
                // One session per policy and use: the perplexity cache holds a window, the needle cache a prompt and its query.
                InferenceSession Session(KvCacheOptions kv, int? capacity) => InferenceSession.Create(model, ops, new InferenceOptions { MaxBatch = maxBatch, CacheCapacity = capacity, Kv = kv });
                (ConstrainedPerplexity.Result, NeedleResult) Evaluate(KvCacheOptions kv)
                {
                    using var ppl = Session(kv, ctx);
                    using var needle = Session(kv, null);
                    return (ConstrainedPerplexity.Evaluate(ppl, tokens, ctx, tok.Bos, null, ct), NeedleRetrieval.Run(needle, needles, ct));
                }
                ConstrainedPerplexity.Result Perplexity(KvCacheOptions kv)
                {
                    using var ppl = Session(kv, ctx);
                    return ConstrainedPerplexity.Evaluate(ppl, tokens, ctx, tok.Bos, null, ct);
                }
                var rows = new List<Row>();
                var evaluated = new Dictionary<KvCacheOptions, ConstrainedPerplexity.Result>(); // the ablations' default row is a policy row
                var (dense, denseNeedle) = Evaluate(new KvCacheOptions { Policy = KvPolicyKind.None });
                rows.Add(new Row("none", 1.0, dense.Perplexity.Perplexity, denseNeedle.Accuracy, dense.PeakKvBytes, dense.DenseKvBytes, dense.PeakStatisticsBytes));
                var grid = (from p in parse.GetValue(policies)!.Split(',') from b in parse.GetValue(budgets)!.Split(',')
                            select (Policy: KvCacheOptions.ParsePolicy(p.Trim()), Budget: double.Parse(b, System.Globalization.CultureInfo.InvariantCulture))).ToList();
                CliConsole.WithProgress($"{grid.Count} policy x budget runs", progress =>
                {
                    for (int i = 0; i < grid.Count; i++)
                    {
                        var options = new KvCacheOptions { Policy = grid[i].Policy, BudgetFraction = grid[i].Budget };
                        var (r, n) = Evaluate(options);
                        evaluated[options] = r;
                        rows.Add(new Row(grid[i].Policy.ToString(), grid[i].Budget, r.Perplexity.Perplexity, n.Accuracy, r.PeakKvBytes, r.DenseKvBytes, r.PeakStatisticsBytes));
                        progress.Report((i + 1f) / grid.Count);
                    }
                    return 0;
                });
                var budgetValues = grid.Select(g => g.Budget).Distinct().ToArray();
                var ablations = parse.GetValue(skipAblations) ? [] : (from a in Ablations from b in budgetValues select (a.Name, Options: a.Options with { BudgetFraction = b }, Budget: b)).ToList();
                var ablationRows = new List<AblationRow>();
                if (ablations.Count > 0)
                {
                    CliConsole.WithProgress($"{ablations.Count} ablation runs", progress =>
                    {
                        for (int i = 0; i < ablations.Count; i++)
                        {
                            var r = evaluated.TryGetValue(ablations[i].Options, out var known) ? known : Perplexity(ablations[i].Options);
                            ablationRows.Add(new AblationRow(ablations[i].Name, ablations[i].Budget, r.Perplexity.Perplexity, r.PeakKvBytes, r.PeakStatisticsBytes));
                            progress.Report((i + 1f) / ablations.Count);
                        }
                        return 0;
                    });
                }
                string dir = parse.GetValue(outDir)!;
                Directory.CreateDirectory(dir);
                string title = $"{Path.GetFileName(parse.GetValue(common.Model))}: perplexity on {tokens.Length} tokens of {Path.GetFileName(parse.GetValue(text))} bytes {parse.GetValue(bytes)}, windows of {ctx} run token by token " +
                               $"with the cache evicted to budget x {ctx} after every step; needle: {needles.Count} prompts of ~{parse.GetValue(needleContext)} tokens, " +
                               $"{needles[0].CandidateTokens.Length} candidate answers (chance {1.0 / needles[0].CandidateTokens.Length:P0}), query decoded after eviction";
                Kernels.Runtime.IO.AtomicFile.WriteAllText(Path.Combine(dir, "kv-report.md"), Markdown(title, rows, ablationRows));
                Kernels.Runtime.IO.AtomicFile.WriteAllText(Path.Combine(dir, "kv-report.json"), JsonSerializer.Serialize(new { title, rows, ablations = ablationRows }, new JsonSerializerOptions { WriteIndented = true }));
                var budgetsList = rows.Where(r => r.Policy != "none").Select(r => r.Budget).Distinct().OrderBy(b => b).ToArray();
                Charts.Lines(Path.Combine(dir, "kv-report.png"), $"Perplexity vs KV budget (full cache {dense.Perplexity.Perplexity:F3})", "budget (fraction of context)", "perplexity",
                    rows.Where(r => r.Policy != "none").GroupBy(r => r.Policy).Select(g => (g.Key, g.Select(r => r.Budget).ToArray(), g.Select(r => r.Perplexity).ToArray())).ToList());
                Charts.Lines(Path.Combine(dir, "kv-needle.png"), $"Needle retrieval accuracy vs KV budget (full cache {denseNeedle.Accuracy:P0}, chance {denseNeedle.Chance:P0})", "budget (fraction of prompt)", "accuracy",
                    rows.Where(r => r.Policy != "none").GroupBy(r => r.Policy).Select(g => (g.Key, g.Select(r => r.Budget).ToArray(), g.Select(r => r.NeedleAccuracy).ToArray())).ToList());
                if (ablationRows.Count > 0)
                {
                    Charts.Lines(Path.Combine(dir, "kv-ablations.png"), $"VATP ablations: perplexity vs KV budget (full cache {dense.Perplexity.Perplexity:F3})", "budget (fraction of context)", "perplexity",
                        ablationRows.GroupBy(r => r.Variant).Select(g => (g.Key, g.Select(r => r.Budget).ToArray(), g.Select(r => r.Perplexity).ToArray())).ToList());
                }
                Console.Out.Write(Markdown(title, rows, ablationRows));
                return Task.FromResult(0);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                return Task.FromResult(CliConsole.Fail(ex));
            }
        });
        return command;
    }

    private static string Markdown(string title, List<Row> rows, List<AblationRow> ablations)
    {
        var sb = new StringBuilder("# KV-cache eviction report\n\n").AppendLine(title).AppendLine();
        var none = rows.First(r => r.Policy == "none");
        var budgets = rows.Where(r => r.Policy != "none").Select(r => r.Budget).Distinct().OrderBy(b => b).ToList();
        var policies = rows.Where(r => r.Policy != "none").Select(r => r.Policy).Distinct().ToList();
        void Table(string what, Func<Row, string> cell, string fullCache)
        {
            sb.AppendLine($"## {what} (full cache: {fullCache})").AppendLine();
            sb.AppendLine("| policy | " + string.Join(" | ", budgets.Select(b => $"{b:P0}")) + " |");
            sb.AppendLine("|---|" + string.Concat(budgets.Select(_ => "---:|")));
            foreach (var p in policies)
            {
                sb.AppendLine($"| {p} | " + string.Join(" | ", budgets.Select(b => rows.First(r => r.Policy == p && r.Budget == b)).Select(cell)) + " |");
            }
            sb.AppendLine();
        }
        Table("perplexity", r => r.Perplexity.ToString("F4"), none.Perplexity.ToString("F4"));
        Table("needle accuracy", r => r.NeedleAccuracy.ToString("P0"), none.NeedleAccuracy.ToString("P0"));
        Table("peak K/V bytes held / dense K/V bytes", r => $"{(double)r.PeakKvBytes / r.DenseKvBytes:F3} (+{r.StatisticsBytes} B stats)", $"{none.PeakKvBytes} B");
        if (ablations.Count > 0)
        {
            sb.AppendLine($"## VATP ablations: perplexity (full cache: {none.Perplexity:F4})").AppendLine();
            sb.AppendLine("Value norm (L1 / L2 / L-inf), attention sinks (first tokens never evicted) and scoring per query head (each head of a GQA group nominates its own tokens in turn; the KV head keeps their union inside the same budget) against the default. Statistics bytes grow with per-query-head scores.").AppendLine();
            var ablationBudgets = ablations.Select(r => r.Budget).Distinct().OrderBy(b => b).ToList();
            sb.AppendLine("| variant | " + string.Join(" | ", ablationBudgets.Select(b => $"{b:P0}")) + " | stats bytes at the largest budget |");
            sb.AppendLine("|---|" + string.Concat(ablationBudgets.Select(_ => "---:|")) + "---:|");
            foreach (var g in ablations.GroupBy(r => r.Variant))
            {
                sb.AppendLine($"| {g.Key} | " + string.Join(" | ", ablationBudgets.Select(b => g.First(r => r.Budget == b).Perplexity.ToString("F4"))) + $" | {g.MaxBy(r => r.Budget)!.StatisticsBytes} |");
            }
            sb.AppendLine();
        }
        return sb.ToString();
    }
}
