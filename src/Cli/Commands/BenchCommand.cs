using System.CommandLine;
using System.Text.Json;
using Kernels.Runtime.Benchmarking;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Model;
using Kernels.Runtime.Simplification;
using Kernels.Simd;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary>
/// <c>kernels bench</c>: the main job. Builds a synthetic Llama-shaped model in memory for every
/// variant (dense, 2:4, 4:8 × F32, F16), times decode and prefill, prints a table and writes
/// JSON and a PNG chart.
/// </summary>
internal static class BenchCommand
{
    /// <summary>One model to time: synthetic (built from the shape) or a file (<see cref="ModelPath"/>; type and sparsity known after loading).</summary>
    internal sealed record Variant(string Name, ElementType Type, NmPattern? Sparsity, Kernels.Runtime.Caching.KvCacheOptions? Kv = null,
        TokenPruneOptions? Tokens = null, string? KvShare = null, string? ModelPath = null);

    /// <summary>How model files are loaded: weights in huge pages or mapped (--mmap); linears holding an N:M pattern compressed (--sparse auto).</summary>
    internal sealed record FileLoading(Kernels.Runtime.IO.WeightMemory Memory, bool CompressDetected);

    public static Command Create()
    {
        var shapeOptions = new ShapeOptions();
        var models = new Option<string[]>("--model", "-m") { Description = "Time these model files (GGUF, HF folder, llama2.c .bin; repeatable, timed round-robin) instead of synthetic models", AllowMultipleArgumentsPerToken = false };
        var sparse = new Option<string>("--sparse") { Description = "For --model: auto stores linears that hold a 2:4 / 4:8 pattern compressed; off keeps them dense", DefaultValueFactory = _ => "auto" };
        var mmap = CommonOptions.MmapOption();
        var profile = new Option<bool>("--profile") { Description = "Split each decode step and prefill into QKV, attention, output projection, gate/up, down, norms+RoPE, LM head, sampling, thread hand-off (with GB/s per matmul class)" };
        var quick = new Option<bool>("--quick") { Description = "F16 variants only, 12 decode tokens, 64-token prefill (< 60 s)" };
        var types = new Option<string?>("--types") { Description = "Value types of the synthetic models: f32,f16,bf16 (default f32,f16)" };
        var decode = new Option<int?>("--decode-tokens") { Description = "Timed decode steps per variant (default 32, quick 12)" }.InRange(1, 1 << 20);
        var prefill = new Option<int?>("--prefill-tokens") { Description = "Prompt length of the timed prefill (default 256, quick 64; 0 = decode only)" }.InRange(0, 1 << 20);
        var json = new Option<string?>("--json") { Description = "Write results as JSON" };
        var chart = new Option<string>("--chart") { Description = "PNG chart path", DefaultValueFactory = _ => "kernels-bench.png" };
        var kvPolicy = new Option<string?>("--kv-policy") { Description = "Compare decode with a full KV cache against this eviction policy (dense weights), after --context tokens" };
        var kvBudget = new Option<string>("--kv-budget") { Description = "Budget for --kv-policy", DefaultValueFactory = _ => "0.5" };
        var device = new Option<string>("--device") { Description = "Backend: cpu | ilgpu-cpu | cuda | opencl | auto", DefaultValueFactory = _ => "cpu" };
        var contextTokens = new Option<int>("--context") { Description = "Tokens in the cache before the timed decode steps", DefaultValueFactory = _ => 16 }.InRange(1, 1 << 26);
        var tokenPrune = new Option<string?>("--token-prune") { Description = "Compare dense prefill against SDTP token pruning with these per-stage keep ratios r (comma list, e.g. 0.9,0.8)" };
        var tokenStages = new Option<string?>("--token-prune-layers") { Description = "Stage layers for --token-prune (default: every 3 layers from layer 4)" };
        var kvShare = new Option<string?>("--kv-share") { Description = "Compare against cross-layer KV sharing: every:S (CLA-style) or layer:source pairs such as 3:2,5:4" };
        var sequential = new Option<bool>("--sequential") { Description = "Build and time one variant at a time (less memory; ratios exposed to machine drift). Default on the CPU: each value type's variants timed round-robin" };
        var command = new Command("bench", "Dense vs 2:4 vs 4:8 decode/prefill on a synthetic Llama-shaped model (no downloads), or on model files (--model)")
        {
            quick, types, models, sparse, mmap, profile, decode, prefill, json, chart, kvPolicy, kvBudget, contextTokens, device, tokenPrune, tokenStages, kvShare, sequential,
        };
        shapeOptions.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            try
            {
                var s = shapeOptions.Get(parse);
                bool q = parse.GetValue(quick);
                string[] files = parse.GetValue(models) ?? Array.Empty<string>();
                var loading = new FileLoading(
                    parse.GetValue(mmap) ? Kernels.Runtime.IO.WeightMemory.Mapped : Kernels.Runtime.IO.WeightMemory.HugePages,
                    parse.GetValue(sparse) switch
                    {
                        "auto" => true,
                        "off" => false,
                        var other => throw new ArgumentException($"--sparse: unknown value '{other}' (auto, off)"),
                    });
                if (files.Length > 0 && (parse.GetValue(types) is not null || q || parse.GetResult(shapeOptions.Shape) is { Implicit: false } || parse.GetValue(shapeOptions.Layers) is not null))
                {
                    throw new ArgumentException("--model times the given files: --shape, --layers, --types and --quick describe synthetic models and cannot be combined with it");
                }
                if (q && parse.GetValue(types) is not null)
                {
                    throw new ArgumentException("--quick times F16 only: drop --types, or drop --quick to time the types given");
                }
                var valueTypes = q ? new[] { ElementType.F16 } : ShapeOptions.ParseTypes(parse.GetValue(types) ?? "f32,f16", "--types");
                int decodeTokens = parse.GetValue(decode) ?? (q ? 12 : 32), prefillTokens = parse.GetValue(prefill) ?? (q ? 64 : 256);
                var options = new ModelBenchmarkOptions
                {
                    DecodeTokens = decodeTokens,
                    PrefillTokens = prefillTokens,
                    PrefillRepeats = q ? 1 : 3,
                    DecodeContext = parse.GetValue(contextTokens),
                    Profile = parse.GetValue(profile),
                };
                var variants = files.Length > 0
                    ? files.Select(f => new Variant(Path.GetFileName(f.TrimEnd('/')), ElementType.F32, null, ModelPath: f)).ToList()
                    : valueTypes.SelectMany(t => new[]
                    {
                        new Variant($"dense {t}", t, null),
                        new Variant($"2:4 {t}", t, NmPattern.TwoFour),
                        new Variant($"4:8 {t}", t, NmPattern.FourEight),
                    }).ToList();
                if (files.Length > 0 && (parse.GetValue(kvPolicy) is not null || parse.GetValue(tokenPrune) is not null || parse.GetValue(kvShare) is not null))
                {
                    throw new ArgumentException("--kv-policy, --token-prune and --kv-share compare variants of a synthetic model; with --model use generate/perplexity for them");
                }
                if (parse.GetValue(kvPolicy) is not null || parse.GetValue(tokenPrune) is not null || parse.GetValue(kvShare) is not null)
                {
                    // Feature comparison on dense weights: the baseline, then every variant asked for
                    // (a KV policy at its budget, each token-pruning ratio, KV sharing), all in one run.
                    string? policy = parse.GetValue(kvPolicy);
                    var kvOptions = policy is null ? null
                        : new Kernels.Runtime.Caching.KvCacheOptions { Policy = Kernels.Runtime.Caching.KvCacheOptions.ParsePolicy(policy) }.WithBudget(parse.GetValue(kvBudget)!, "--kv-budget");
                    var ratios = parse.GetValue(tokenPrune)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? Array.Empty<string>();
                    string? share = parse.GetValue(kvShare);
                    bool architecture = ratios.Length > 0 || share is not null;
                    variants = valueTypes.SelectMany(t => new[] { new Variant($"dense {t}", t, null) }
                        .Concat(kvOptions is null ? Array.Empty<Variant>() : new[] { new Variant($"dense {t} {policy} {parse.GetValue(kvBudget)}", t, null, kvOptions) })
                        .Concat(ratios.Select(r => TokenPruneOptions.Parse(r, parse.GetValue(tokenStages), s.Layers))
                            .Select(o => new Variant($"dense {t} sdtp r={o.Ratio:0.###} keep {o.FinalKeep:F2}", t, null, Tokens: o)))
                        .Concat(share is null ? Array.Empty<Variant>() : new[] { new Variant($"dense {t} kv-share {share}", t, null, KvShare: share) })
                        // The baseline again last: brackets drift of a shared machine (speed-ups use the first).
                        .Concat(architecture ? new[] { new Variant($"dense {t} (repeat)", t, null) } : Array.Empty<Variant>())).ToList();
                }
                string title = files.Length > 0 ? string.Join(", ", variants.Select(v => v.Name)) : s.Name;
                var results = Run(s, variants, options, loading, parse.GetValue(device)!, parse.GetValue(sequential), cancellationToken);
                Report(title, results, options);
                if (options.Profile)
                {
                    ReportProfiles(results);
                }
                WriteChart(parse.GetValue(chart)!, title, results);
                if (parse.GetValue(json) is { } path)
                {
                    WriteJson(path, files.Length > 0 ? null : s, files, results, options);
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

    internal static List<(Variant Variant, ModelBenchmarkResult Result)> Run(SyntheticShape shape, IReadOnlyList<Variant> variants, ModelBenchmarkOptions options,
        FileLoading loading, string device, bool sequential, CancellationToken ct)
    {
        CliConsole.Err.MarkupLine($"[grey]{Markup.Escape(SimdInfo.Describe())}[/]");
        bool files = variants.Any(v => v.ModelPath is not null);
        if (!files)
        {
            CliConsole.Err.MarkupLine($"[grey]shape {Markup.Escape(shape.ToString())}[/]");
        }
        var sized = shape with { MaxSequence = Math.Max(shape.MaxSequence, Math.Max(options.PrefillTokens, options.DecodeContext + options.DecodeTokens + 1)) };
        if (sequential || device != "cpu")
        {
            if (!sequential)
            {
                CliConsole.Err.MarkupLine($"[grey]variants one after another on device {Markup.Escape(device)}[/]");
            }
            return RunSequential(sized, variants, options, loading, device, ct);
        }
        // Speed-ups compare variants of one value type: each type's group is held and timed round-robin on its own.
        var results = new List<(Variant, ModelBenchmarkResult)>();
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        // Files are one group (their types are known only once loaded).
        foreach (var group in variants.GroupBy(v => files ? ElementType.F32 : v.Type))
        {
            // Upper bound of the group's weights held at once (sparse variants take less).
            long weights = group.Sum(v => v.ModelPath is { } f ? ModelBytes(f) : (shape.Parameters.Blocks + shape.Parameters.EmbeddingAndHead) * (long)v.Type.Size());
            if (weights > available * 6 / 10)
            {
                CliConsole.Err.MarkupLine($"[grey]{(files ? "models" : group.Key + " variants")} one after another: their weights (up to {weights / 1e9:F1} GB) would not fit in 60% of {available / 1e9:F1} GB[/]");
                results.AddRange(RunSequential(sized, group.ToList(), options, loading, device, ct));
            }
            else
            {
                results.AddRange(RunInterleaved(sized, group.ToList(), options, loading, ct));
            }
        }
        return results;
    }

    /// <summary>Bytes of a model file or folder (an upper bound of its weights in memory).</summary>
    private static long ModelBytes(string path) =>
        Directory.Exists(path) ? new DirectoryInfo(path).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length)
        : File.Exists(path) ? new FileInfo(path).Length : throw new FileNotFoundException($"--model {path}: file or folder not found", path);

    /// <summary>
    /// Builds one variant's model (KV sharing applied) or loads its file; returns the variant with
    /// a file's value type and N:M pattern filled in from what was loaded.
    /// </summary>
    private static (LlamaModel Model, Variant Variant) Build(SyntheticShape shape, Variant v, FileLoading loading)
    {
        if (v.ModelPath is { } path)
        {
            var loaded = CommonOptions.LoadModel(path, loading.Memory);
            try
            {
                if (loading.CompressDetected)
                {
                    var log = Kernels.Runtime.Sparsity.SparseCompression.CompressDetected(loaded);
                    if (log.Count > 0)
                    {
                        CliConsole.Err.MarkupLine($"[grey]{Markup.Escape(v.Name)}: {log.Count} linears stored compressed ({Markup.Escape(string.Join(", ", log.Select(e => e.After).Distinct()))})[/]");
                    }
                }
                var (type, pattern, quantized) = Describe(loaded);
                string format = (quantized, pattern) switch
                {
                    ({ } qt, { } p) => $"{p} {qt}",
                    ({ } qt, null) => qt.ToString(),
                    (null, { } p) => $"{p} {type}",
                    _ => $"dense {type}",
                };
                return (loaded, v with { Name = $"{v.Name} ({format})", Type = type, Sparsity = pattern });
            }
            catch
            {
                loaded.Dispose();
                throw;
            }
        }
        var model = CliConsole.WithProgress($"building {v.Name}", p => SyntheticModel.Create(shape, v.Type, v.Sparsity, seed: 7, p));
        if (v.KvShare is not null)
        {
            KvSharer.Apply(model, KvSharer.Parse(v.KvShare, model.Layers.Count));
        }
        return (model, v);
    }

    /// <summary>Value type and N:M pattern of a loaded model, read from its MLP gate matrices (the most common format wins).</summary>
    private static (ElementType Type, NmPattern? Pattern, QuantType? Quantized) Describe(LlamaModel model) =>
        model.Layers.Select(l => l.Gate switch
            {
                DenseMatrix d => (d.ElementType, (NmPattern?)null, (QuantType?)null),
                NmSparseMatrix s => (s.ValueType, s.Pattern, null),
                NmOutputSparseMatrix o => (o.ValueType, o.Pattern, null),
                NmQuantizedMatrix nq => (ElementType.F32, nq.Pattern, nq.ValueType),
                QuantizedMatrix q => (ElementType.F32, null, q.Type),
                _ => (ElementType.F32, null, null),
            })
            .GroupBy(x => x).OrderByDescending(g => g.Count()).Select(g => g.Key).DefaultIfEmpty((model.TokenEmbedding is DenseMatrix e ? e.ElementType : ElementType.F32, null, null)).First();

    private static ModelBenchmarkOptions For(ModelBenchmarkOptions options, Variant v) => options with { Kv = v.Kv, TokenPruning = v.Tokens };

    private static void Print(Variant v, ModelBenchmarkResult r) =>
        CliConsole.Err.MarkupLine($"  {Markup.Escape(v.Name),-10} decode {r.DecodeMsPerToken,8:F2} ms/token ({r.DecodeTokensPerSecond:F2} tok/s, {r.DecodeWeightGBps:F1} GB/s of weights), prefill {r.PrefillTokensPerSecond:F1} tok/s" +
                                  $" (KV after prefill {r.PrefillKvBytes / 1e6:F1} MB, layer-token work {r.LayerTokenFraction:P0})");

    /// <summary>One model at a time (any device; bounded memory); peak RSS is each variant's own.</summary>
    private static List<(Variant, ModelBenchmarkResult)> RunSequential(SyntheticShape shape, IReadOnlyList<Variant> variants, ModelBenchmarkOptions options,
        FileLoading loading, string device, CancellationToken ct)
    {
        var results = new List<(Variant, ModelBenchmarkResult)>();
        foreach (var variant in variants)
        {
            var v = variant;
            ct.ThrowIfCancellationRequested();
            GC.Collect();
            GC.WaitForPendingFinalizers();
            PeakMemory.Reset();
            var (model, resolved) = Build(shape, v, loading);
            using var disposeModel = model;
            v = resolved;
            using var ops = Kernels.Runtime.Compute.Backends.Create(device);
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
    private static List<(Variant, ModelBenchmarkResult)> RunInterleaved(SyntheticShape shape, IReadOnlyList<Variant> variants, ModelBenchmarkOptions options,
        FileLoading loading, CancellationToken ct)
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
            var resolved = new List<Variant>();
            foreach (var variant in variants)
            {
                ct.ThrowIfCancellationRequested();
                long before = PeakMemory.CurrentResidentBytes();
                var (model, v) = Build(shape, variant, loading);
                models.Add(model);
                resolved.Add(v);
                sessions.Add(CliConsole.WithProgress($"warming {v.Name}", _ => new ModelBenchmarkSession(model, ops, For(options, v), ct)));
                resident.Add(baseline + PeakMemory.CurrentResidentBytes() - before);
            }
            variants = resolved;
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

    private static void Report(string title, List<(Variant Variant, ModelBenchmarkResult Result)> results, ModelBenchmarkOptions o)
    {
        var table = new Table().Title($"{title}: decode ({o.DecodeTokens} steps, median) and prefill ({o.PrefillTokens} tokens)");
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

    /// <summary>Per variant: one table per profiled phase (decode step, prefill) with each part's share and GB/s.</summary>
    private static void ReportProfiles(List<(Variant Variant, ModelBenchmarkResult Result)> results)
    {
        foreach (var (v, r) in results)
        {
            if (r.Profile is not { } profiler)
            {
                continue;
            }
            foreach (var phase in new[] { profiler.Decode, profiler.Prefill })
            {
                if (phase.Steps > 0)
                {
                    CliConsole.Out.Write(ProfileTable.Create($"{v.Name}: {phase.Name}", phase));
                }
            }
        }
    }

    private static void WriteChart(string path, string title, List<(Variant Variant, ModelBenchmarkResult Result)> results)
    {
        var groups = results.Select(r => r.Variant.Name).ToList();
        Charts.Bars(path, $"{title}, {SimdInfo.Tier}, {Kernels.Simd.Threading.WorkerPool.Shared.ThreadCount} threads", "tokens/s",
            groups, new[]
            {
                ("decode tok/s", results.Select(r => r.Result.DecodeTokensPerSecond).ToArray()),
                ("prefill tok/s / 10", results.Select(r => r.Result.PrefillTokensPerSecond / 10).ToArray()),
            });
        CliConsole.Err.MarkupLine($"chart: {Markup.Escape(Path.GetFullPath(path))}");
    }

    private static void WriteJson(string path, SyntheticShape? shape, IReadOnlyList<string> files, List<(Variant Variant, ModelBenchmarkResult Result)> results, ModelBenchmarkOptions o)
    {
        var doc = new Dictionary<string, object?>
        {
            ["shape"] = shape,
            ["models"] = files.Count > 0 ? files.Select(Path.GetFullPath).ToArray() : null,
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
                    ["model"] = x.Variant.ModelPath is { } f ? Path.GetFullPath(f) : null,
                    ["tokens_per_s"] = x.Result.DecodeTokensPerSecond,
                    ["tokens_per_s_mean"] = x.Result.DecodeTokensPerSecondMean,
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
                    ["profile"] = x.Result.Profile is { } p ? ProfileTable.Json(p) : null,
                };
            }).ToList(),
        };
        Kernels.Runtime.IO.AtomicFile.WriteAllText(path, JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
        CliConsole.Err.MarkupLine($"json: {Markup.Escape(Path.GetFullPath(path))}");
    }
}
