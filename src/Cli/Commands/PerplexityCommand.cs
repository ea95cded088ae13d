using Kernels.Runtime.Compute;
using System.CommandLine;
using System.Text;
using System.Text.Json;
using Kernels.Runtime.Evaluation;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Session;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary><c>kernels perplexity</c>: non-overlapping windows, BOS first, PPL / mean NLL / tokens/s.</summary>
internal static class PerplexityCommand
{
    public static Command Create()
    {
        var common = new CommonOptions();
        var text = new Option<string>("--text") { Description = "UTF-8 text file to score", Required = true };
        var context = new Option<int>("--context", "-c") { Description = "Window length in tokens", DefaultValueFactory = _ => 256 }.InRange(1, 1 << 26);
        var maxBytes = new Option<long?>("--max-bytes") { Description = "Score only the first N bytes of the file (e.g. 16178 = the llama2.c reference span)" }.InRange(1L, long.MaxValue);
        var json = new Option<string?>("--json") { Description = "Write {perplexity, mean_nll, tokens, tokens_per_s, ...} to this file" };
        var command = new Command("perplexity", "Perplexity of a model on a text file");
        var run = new SessionCliOptions();
        var promptFraction = new Option<double?>("--prompt-fraction") { Description = "Score only the continuation: each window's first fraction is a prompt (default 0.75 with --token-prune, else off)" }.InRange(0.0, 1.0, maxExclusive: true);
        common.AddTo(command);
        run.AddTo(command);
        command.Options.Add(promptFraction);
        command.Options.Add(text);
        command.Options.Add(context);
        command.Options.Add(maxBytes);
        command.Options.Add(json);
        command.SetAction(async (parse, cancellationToken) =>
        {
            try
            {
                using var model = common.Load(parse);
                var tokenizer = CommonOptions.LoadTokenizer(model, parse.GetValue(common.Tokenizer));
                using var ops = CommonOptions.CreateOps(parse.GetValue(common.Device)!);
                int ctx = parse.GetValue(context);
                if (ctx > model.Config.MaxSequenceLength)
                {
                    throw new ArgumentException($"--context {ctx} exceeds the model's context of {model.Config.MaxSequenceLength}");
                }
                using var session = InferenceSession.Create(model, ops, run.Build(parse, model, maxBatch: Math.Min(ctx, 512), prunedBatch: ctx, cacheCapacity: ctx));
                SessionCliOptions.Report(session);
                string body = ReadText(parse.GetValue(text)!, parse.GetValue(maxBytes));
                int[] tokens = tokenizer.Encode(body, addBos: false, addEos: false);
                if (tokens.Length == 0)
                {
                    throw new ArgumentException($"--text {parse.GetValue(text)}: no tokens to score (an empty file, or --max-bytes too small)");
                }
                PerplexityResult result;
                Dictionary<string, object>? extra = null;
                if (session.Options.Kv is { } kvOptions)
                {
                    // Constrained cache: token by token, evicting after every step.
                    var constrained = CliConsole.WithProgress($"perplexity ({kvOptions.Policy})", p =>
                        Kernels.Runtime.Caching.ConstrainedPerplexity.Evaluate(session, tokens, ctx, tokenizer.Bos, p, cancellationToken));
                    result = constrained.Perplexity;
                    extra = new Dictionary<string, object>
                    {
                        ["kv_policy"] = kvOptions.Policy.ToString(),
                        ["kv_budget"] = parse.GetValue(run.Kv.Budget)!,
                        ["kv_peak_bytes"] = constrained.PeakKvBytes,
                        ["kv_dense_bytes"] = constrained.DenseKvBytes,
                        ["kv_statistics_bytes"] = constrained.PeakStatisticsBytes,
                        ["kv_evicted"] = constrained.Evicted,
                    };
                    Console.Error.WriteLine($"kv: {kvOptions.Policy}: peak K/V storage {constrained.PeakKvBytes} bytes vs {constrained.DenseKvBytes} dense (+{constrained.PeakStatisticsBytes} bytes positions/scores), {constrained.Evicted} evictions");
                }
                else
                {
                    var evaluator = new PerplexityEvaluator(session.Transformer)
                    {
                        PromptFraction = parse.GetValue(promptFraction) ?? (session.Options.TokenPruning is null ? 0 : 0.75),
                    };
                    if (evaluator.PromptFraction > 0)
                    {
                        Console.Error.WriteLine($"scoring the continuation after the first {evaluator.PromptFraction:P0} of each window (prompt)");
                    }
                    result = CliConsole.WithProgress("perplexity", p => evaluator.Evaluate(tokens, ctx, tokenizer.Bos, p, cancellationToken));
                }
                ArchCliOptions.ReportPrefill(session.Transformer);
                Report(result, ops.Name, ctx);
                if (parse.GetValue(json) is { } path)
                {
                    WriteJson(path, result, parse.GetValue(common.Model)!, parse.GetValue(text)!, ctx, ops.Name, extra);
                }
                await Task.CompletedTask;
                return 0;
            }
            catch (OperationCanceledException)
            {
                Console.Error.WriteLine("cancelled");
                return 130;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return CliConsole.Fail(e);
            }
        });
        return command;
    }

    /// <summary>Reads the file, optionally only its first <paramref name="maxBytes"/> bytes (decoded as UTF-8).</summary>
    internal static string ReadText(string path, long? maxBytes)
    {
        byte[] bytes = File.ReadAllBytes(path);
        int n = maxBytes is { } m && m < bytes.Length ? (int)m : bytes.Length; // --max-bytes is range-checked by the parser
        return Encoding.UTF8.GetString(bytes, 0, n);
    }

    private static void Report(PerplexityResult r, string backend, int ctx)
    {
        var table = new Table().AddColumns("metric", "value");
        table.AddRow("tokens", r.Tokens.ToString());
        table.AddRow("windows", $"{r.Chunks.Count} x {ctx}");
        table.AddRow("mean NLL", r.MeanNll.ToString("F6"));
        table.AddRow("perplexity", r.Perplexity.ToString("F4"));
        table.AddRow("tokens/s", r.TokensPerSecond.ToString("F1"));
        table.AddRow("backend", Markup.Escape(backend));
        CliConsole.Out.Write(table);
    }

    internal static void WriteJson(string path, PerplexityResult r, string model, string text, int ctx, string backend, IDictionary<string, object>? extra = null)
    {
        var doc = new Dictionary<string, object>
        {
            ["perplexity"] = r.Perplexity,
            ["mean_nll"] = r.MeanNll,
            ["tokens"] = r.Tokens,
            ["tokens_per_s"] = r.TokensPerSecond,
            ["seconds"] = r.Elapsed.TotalSeconds,
            ["context"] = ctx,
            ["windows"] = r.Chunks.Count,
            ["model"] = model,
            ["text"] = text,
            ["backend"] = backend,
        };
        if (extra is not null)
        {
            foreach (var kv in extra)
            {
                doc[kv.Key] = kv.Value;
            }
        }
        Kernels.Runtime.IO.AtomicFile.WriteAllText(path, JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
    }
}
