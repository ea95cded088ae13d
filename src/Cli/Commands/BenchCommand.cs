using System.CommandLine;
using System.Text.Json;
using Kernels.Runtime.Benchmarking;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Model;
using Kernels.Runtime.Simplification;
using Kernels.Simd;
using Kernels.Simd.Matrices;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary>
/// <c>kernels bench</c>: the main job. Builds a synthetic Llama-shaped model in memory for every
/// variant (dense, 2:4, 4:8 × F32, F16), times decode and prefill, prints a table and writes
/// JSON and a PNG chart.
/// </summary>
internal static class BenchCommand
{
    internal sealed record Variant(string Name, ElementType Type, NmPattern? Sparsity, Kernels.Runtime.Caching.KvCacheOptions? Kv = null,
        TokenPruneOptions? Tokens = null, string? KvShare = null);

    public static Command Create()
    {
        var shape = new Option<string>("--shape") { Description = "Model shape: tinyllama (default: dim 2048, hidden 5632, 22 layers, 32 heads, 4 KV heads, vocab 32000), 7b, small", DefaultValueFactory = _ => "tinyllama" };
        var layers = new Option<int?>("--layers") { Description = "Override the number of layers" };
        var quick = new Option<bool>("--quick") { Description = "F16 variants only, 12 decode tokens, 64-token prefill (< 60 s)" };
        var types = new Option<string>("--types") { Description = "Value types to run: f32,f16", DefaultValueFactory = _ => "f32,f16" };
        var decode = new Option<int?>("--decode-tokens") { Description = "Timed decode steps per variant (default 32, quick 12)" };
        var prefill = new Option<int?>("--prefill-tokens") { Description = "Prompt length of the timed prefill (default 256, quick 64)" };
        var json = new Option<string?>("--json") { Description = "Write results as JSON" };
        var chart = new Option<string>("--chart") { Description = "PNG chart path", DefaultValueFactory = _ => "kernels-bench.png" };
        var kvPolicy = new Option<string?>("--kv-policy") { Description = "Compare decode with a full KV cache against this eviction policy (dense weights), after --context tokens" };
        var kvBudget = new Option<string>("--kv-budget") { Description = "Budget for --kv-policy", DefaultValueFactory = _ => "0.5" };
        var device = new Option<string>("--device") { Description = "Backend: cpu | ilgpu-cpu | cuda | opencl | auto", DefaultValueFactory = _ => "cpu" };
        var contextTokens = new Option<int>("--context") { Description = "Tokens in the cache before the timed decode steps", DefaultValueFactory = _ => 16 };
        var tokenPrune = new Option<string?>("--token-prune") { Description = "Compare dense prefill against SDTP token pruning with these per-stage keep ratios r (comma list, e.g. 0.9,0.8)" };
        var tokenStages = new Option<string?>("--token-prune-layers") { Description = "Stage layers for --token-prune (default: every 3 layers from layer 4)" };
        var kvShare = new Option<string?>("--kv-share") { Description = "Compare against cross-layer KV sharing: every:S (CLA-style) or layer:source pairs such as 3:2,5:4" };
        var sequential = new Option<bool>("--sequential") { Description = "Build and time one variant at a time (less memory; ratios exposed to machine drift). Default on the CPU: each value type's variants timed round-robin" };
        var command = new Command("bench", "Dense vs 2:4 vs 4:8 decode/prefill on a synthetic Llama-shaped model (no downloads)")
        {
            shape, layers, quick, types, decode, prefill, json, chart, kvPolicy, kvBudget, contextTokens, device, tokenPrune, tokenStages, kvShare, sequential,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            try
            {
                var s = SyntheticShape.Parse(parse.GetValue(shape)!);
                if (parse.GetValue(layers) is { } l)
                {
                    s = s with { Layers = l, Name = $"{s.Name}-{l}L" };
                }
                bool q = parse.GetValue(quick);
                var valueTypes = q ? new[] { ElementType.F16 } : ParseTypes(parse.GetValue(types)!);
                var options = new ModelBenchmarkOptions
                {
                    DecodeTokens = parse.GetValue(decode) ?? (q ? 12 : 32),
                    PrefillTokens = parse.GetValue(prefill) ?? (q ? 64 : 256),
                    PrefillRepeats = q ? 1 : 3,
                    DecodeContext = parse.GetValue(contextTokens),
                };
                var variants = valueTypes.SelectMany(t => new[]
                {
                    new Variant($"dense {t}", t, null),
                    new Variant($"2:4 {t}", t, NmPattern.TwoFour),
                    new Variant($"4:8 {t}", t, NmPattern.FourEight),
                }).ToList();
                if (parse.GetValue(kvPolicy) is { } policy)
                {
                    // KV comparison: dense weights, full cache vs the policy's budget.
                    var kvOptions = new Kernels.Runtime.Caching.KvCacheOptions { Policy = Kernels.Runtime.Caching.KvCacheOptions.ParsePolicy(policy) }.WithBudget(parse.GetValue(kvBudget)!);
                    variants = valueTypes.SelectMany(t => new[]
                    {
                        new Variant($"dense {t}", t, null),
                        new Variant($"dense {t} {policy} {parse.GetValue(kvBudget)}", t, null, kvOptions),
                    }).ToList();
                }
                if (parse.GetValue(tokenPrune) is not null || parse.GetValue(kvShare) is not null)
                {
                    // Architecture comparison: dense weights, baseline vs each token-pruning ratio / KV sharing.
                    var ratios = parse.GetValue(tokenPrune)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? Array.Empty<string>();
                    string? share = parse.GetValue(kvShare);
                    variants = valueTypes.SelectMany(t => new[] { new Variant($"dense {t}", t, null) }
                        .Concat(ratios.Select(r => TokenPruneOptions.Parse(r, parse.GetValue(tokenStages), s.Layers))
                            .Select(o => new Variant($"dense {t} sdtp r={o.Ratio:0.###} keep {o.FinalKeep:F2}", t, null, Tokens: o)))
                        .Concat(share is null ? Array.Empty<Variant>() : new[] { new Variant($"dense {t} kv-share {share}", t, null, KvShare: share) })
                        // The baseline again last: brackets drift of a shared machine (speed-ups use the first).
                        .Append(new Variant($"dense {t} (repeat)", t, null))).ToList();
                }
                var results = Run(s, variants, options, parse.GetValue(device)!, parse.GetValue(sequential), cancellationToken);
                Report(s, results, options);
                WriteChart(parse.GetValue(chart)!, s, results);
                if (parse.GetValue(json) is { } path)
                {
                    WriteJson(path, s, results, options);
                }
                return Task.FromResult(0);
            }
            catch (OperationCanceledException)
            {
                return Task.FromResult(130);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return Task.FromResult(CliConsole.Fail(e));
            }
        });
        return command;
    }

    private static ElementType[] ParseTypes(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Select(t => t.ToLowerInvariant() switch
        {
            "f32" => ElementType.F32,
            "f16" => ElementType.F16,
            "bf16" => ElementType.BF16,
            _ => throw new ArgumentException($"unknown type '{t}' (f32, f16, bf16)"),
        }).ToArray();

    internal static List<(Variant Variant, ModelBenchmarkResult Result)> Run(SyntheticShape shape, IReadOnlyList<Variant> variants, ModelBenchmarkOptions options, string device,
        bool sequential, CancellationToken ct)
    {
        CliConsole.Err.MarkupLine($"[grey]{Markup.Escape(SimdInfo.Describe())}[/]");
        CliConsole.Err.MarkupLine($"[grey]shape {Markup.Escape(shape.ToString())}[/]");
        var sized = shape with { MaxSequence = Math.Max(shape.MaxSequence, Math.Max(options.PrefillTokens, options.DecodeContext + options.DecodeTokens + 1)) };
        if (sequential || device != "cpu")
        {
            if (!sequential)
            {
                CliConsole.Err.MarkupLine($"[grey]variants one after another on device {Markup.Escape(device)}[/]");
            }
            return RunSequential(sized, variants, options, device, ct);
        }
        // Speed-ups compare variants of one value type: each type's group is held and timed round-robin on its own.
        var results = new List<(Variant, ModelBenchmarkResult)>();
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        foreach (var group in variants.GroupBy(v => v.Type))
        {
            // Upper bound of the group's weights held at once (sparse variants take less).
            long weights = group.Sum(v => (shape.Parameters.Blocks + shape.Parameters.EmbeddingAndHead) * (long)v.Type.Size());
            if (weights > available * 6 / 10)
            {
                CliConsole.Err.MarkupLine($"[grey]{group.Key} variants one after another: their weights (up to {weights / 1e9:F1} GB) would not fit in 60% of {available / 1e9:F1} GB[/]");
                results.AddRange(RunSequential(sized, group.ToList(), options, device, ct));
            }
            else
            {
                results.AddRange(RunInterleaved(sized, group.ToList(), options, ct));
            }
        }
        return results;
    }

    /// <summary>Builds one variant's model (KV sharing applied).</summary>
    private static LlamaModel Build(SyntheticShape shape, Variant v)
    {
        var model = CliConsole.WithProgress($"building {v.Name}", p => SyntheticModel.Create(shape, v.Type, v.Sparsity, seed: 7, p));
        if (v.KvShare is not null)
        {
            KvSharer.Apply(model, KvSharer.Parse(v.KvShare, model.Layers.Count));
        }
        return model;
    }

    private static ModelBenchmarkOptions For(ModelBenchmarkOptions options, Variant v) => options with { Kv = v.Kv, TokenPruning = v.Tokens };

    private static void Print(Variant v, ModelBenchmarkResult r) =>
        CliConsole.Err.MarkupLine($"  {Markup.Escape(v.Name),-10} decode {r.DecodeMsPerToken,8:F2} ms/token ({r.DecodeTokensPerSecond:F2} tok/s, {r.DecodeWeightGBps:F1} GB/s of weights), prefill {r.PrefillTokensPerSecond:F1} tok/s" +
                                  $" (KV after prefill {r.PrefillKvBytes / 1e6:F1} MB, layer-token work {r.LayerTokenFraction:P0})");

    /// <summary>One model at a time (any device; bounded memory); peak RSS is each variant's own.</summary>
    private static List<(Variant, ModelBenchmarkResult)> RunSequential(SyntheticShape shape, IReadOnlyList<Variant> variants, ModelBenchmarkOptions options, string device, CancellationToken ct)
    {
        var results = new List<(Variant, ModelBenchmarkResult)>();
        foreach (var v in variants)
        {
            ct.ThrowIfCancellationRequested();
            GC.Collect();
            GC.WaitForPendingFinalizers();
            PeakMemory.Reset();
            using var model = Build(shape, v);
            using var ops = Kernels.Runtime.Compute.Backends.Create(device);
            if (v.Kv is not null && !Kernels.Runtime.Compute.Backends.IsHost(ops))
            {
                throw new NotSupportedException("--kv-policy runs on the host backends");
            }
            CliConsole.Err.MarkupLine($"  [grey]{Markup.Escape(ops.Name)}[/]");
            var r = CliConsole.WithProgress($"timing {v.Name}", _ => ModelBenchmark.Run(model, ops, For(options, v), ct));
            Print(v, r);
            results.Add((v, r));
        }
        return results;
    }

    /// <summary>
    /// All variants built and prepared first, then timed round-robin (<see cref="ModelBenchmark.RunInterleaved"/>):
    /// speed-ups compare steps measured side by side. Resident memory per variant is estimated as the
    /// process baseline plus what building and warming that variant added.
    /// </summary>
    private static List<(Variant, ModelBenchmarkResult)> RunInterleaved(SyntheticShape shape, IReadOnlyList<Variant> variants, ModelBenchmarkOptions options, CancellationToken ct)
    {
        var models = new List<LlamaModel>();
        var sessions = new List<ModelBenchmarkSession>();
        var resident = new List<long>();
        using var ops = Kernels.Runtime.Compute.Backends.Create("cpu");
        try
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long baseline = PeakMemory.CurrentResidentBytes();
            foreach (var v in variants)
            {
                ct.ThrowIfCancellationRequested();
                long before = PeakMemory.CurrentResidentBytes();
                models.Add(Build(shape, v));
                sessions.Add(CliConsole.WithProgress($"warming {v.Name}", _ => new ModelBenchmarkSession(models[^1], ops, For(options, v), ct)));
                resident.Add(baseline + PeakMemory.CurrentResidentBytes() - before);
            }
            CliConsole.Err.MarkupLine($"  [grey]{Markup.Escape(ops.Name)}; {variants.Count} variants timed round-robin[/]");
            CliConsole.WithProgress("timing (round-robin)", _ =>
            {
                ModelBenchmark.RunInterleaved(sessions, ct);
                return 0;
            });
            var results = new List<(Variant, ModelBenchmarkResult)>();
            for (int i = 0; i < variants.Count; i++)
            {
                var r = sessions[i].Result(resident[i]) with { ResidentIsEstimate = true };
                Print(variants[i], r);
                results.Add((variants[i], r));
            }
            return results;
        }
        finally
        {
            foreach (var s in sessions)
            {
                s.Dispose();
            }
            foreach (var m in models)
            {
                m.Dispose();
            }
        }
    }

    private static ModelBenchmarkResult? Dense(List<(Variant Variant, ModelBenchmarkResult Result)> results, ElementType t) =>
        results.FirstOrDefault(x => x.Variant.Type == t && x.Variant.Sparsity is null && x.Variant.Kv is null && x.Variant.Tokens is null && x.Variant.KvShare is null).Result;

    private static void Report(SyntheticShape shape, List<(Variant Variant, ModelBenchmarkResult Result)> results, ModelBenchmarkOptions o)
    {
        var table = new Table().Title($"{shape.Name}: decode ({o.DecodeTokens} steps, median) and prefill ({o.PrefillTokens} tokens)");
        // Round-robin runs hold every variant at once: resident memory per variant is then the process baseline plus what that variant added.
        string rss = results.Any(r => r.Result.ResidentIsEstimate) ? "RSS (own, est.)" : "peak RSS";
        table.AddColumns("variant", "decode tok/s", "ms/token", "weights GB/s", "prefill tok/s", "weight bytes", "KV after prefill", rss, "decode speed-up", "prefill speed-up");
        foreach (var (v, r) in results)
        {
            var d = Dense(results, v.Type);
            table.AddRow(v.Name, r.DecodeTokensPerSecond.ToString("F2"), r.DecodeMsPerToken.ToString("F2"), r.DecodeWeightGBps.ToString("F1"),
                r.PrefillTokensPerSecond.ToString("F1"), $"{r.WeightBytes / 1e9:F3} GB", $"{r.PrefillKvBytes / 1e6:F1} MB", $"{r.PeakResidentBytes / 1e9:F2} GB",
                d is null ? "-" : $"{d.DecodeMsPerToken / r.DecodeMsPerToken:F2}x", d is null || d.PrefillTokensPerSecond == 0 ? "-" : $"{r.PrefillTokensPerSecond / d.PrefillTokensPerSecond:F2}x");
        }
        CliConsole.Out.Write(table);
    }

    private static void WriteChart(string path, SyntheticShape shape, List<(Variant Variant, ModelBenchmarkResult Result)> results)
    {
        var groups = results.Select(r => r.Variant.Name).ToList();
        Charts.Bars(path, $"{shape.Name}, {SimdInfo.Tier}, {Kernels.Simd.Threading.WorkerPool.Shared.ThreadCount} threads", "tokens/s",
            groups, new[]
            {
                ("decode tok/s", results.Select(r => r.Result.DecodeTokensPerSecond).ToArray()),
                ("prefill tok/s / 10", results.Select(r => r.Result.PrefillTokensPerSecond / 10).ToArray()),
            });
        CliConsole.Err.MarkupLine($"chart: {Markup.Escape(Path.GetFullPath(path))}");
    }

    private static void WriteJson(string path, SyntheticShape shape, List<(Variant Variant, ModelBenchmarkResult Result)> results, ModelBenchmarkOptions o)
    {
        var doc = new Dictionary<string, object>
        {
            ["shape"] = shape,
            ["simd"] = SimdInfo.Describe(),
            ["threads"] = Kernels.Simd.Threading.WorkerPool.Shared.ThreadCount,
            ["decode_tokens"] = o.DecodeTokens,
            ["prefill_tokens"] = o.PrefillTokens,
            ["variants"] = results.Select(x =>
            {
                var d = Dense(results, x.Variant.Type);
                return new Dictionary<string, object?>
                {
                    ["name"] = x.Variant.Name,
                    ["value_type"] = x.Variant.Type.ToString(),
                    ["sparsity"] = x.Variant.Sparsity?.ToString() ?? "dense",
                    ["tokens_per_s"] = x.Result.DecodeTokensPerSecond,
                    ["ms_per_token"] = x.Result.DecodeMsPerToken,
                    ["decode_weight_gbps"] = x.Result.DecodeWeightGBps,
                    ["prefill_tokens_per_s"] = x.Result.PrefillTokensPerSecond,
                    ["weight_bytes"] = x.Result.WeightBytes,
                    ["peak_rss_bytes"] = x.Result.PeakResidentBytes,
                    ["rss_is_estimate"] = x.Result.ResidentIsEstimate,
                    ["prefill_kv_bytes"] = x.Result.PrefillKvBytes,
                    ["prefill_layer_token_fraction"] = x.Result.LayerTokenFraction,
                    ["token_prune_ratio"] = x.Variant.Tokens?.Ratio,
                    ["token_prune_final_keep"] = x.Variant.Tokens?.FinalKeep,
                    ["kv_share"] = x.Variant.KvShare,
                    ["speedup_vs_dense"] = d is null ? null : d.DecodeMsPerToken / x.Result.DecodeMsPerToken,
                    ["prefill_speedup_vs_dense"] = d is null || d.PrefillTokensPerSecond == 0 ? null : x.Result.PrefillTokensPerSecond / d.PrefillTokensPerSecond,
                };
            }).ToList(),
        };
        File.WriteAllText(path, JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
        CliConsole.Err.MarkupLine($"json: {Markup.Escape(Path.GetFullPath(path))}");
    }
}
