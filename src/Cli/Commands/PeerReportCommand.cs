using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kernels.Runtime.IO;
using Kernels.Simd;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary>
/// <c>kernels peer-report</c>: turns the raw outputs of <c>bench/peers/llama-cpp.sh</c> (per round:
/// llama-bench JSON for tg and pp, <c>kernels bench --json</c>) into docs/reports/peers: per-round
/// numbers, medians, per-round ratios to llama.cpp and the issue's targets (Markdown, JSON, PNG).
/// </summary>
internal static class PeerReportCommand
{
    /// <summary>One measurement: tokens/s of an engine on a file in a round.</summary>
    internal sealed record Sample(int Round, string Id, string Engine, string Phase, double TokensPerSecond);

    /// <summary>A target of the form "id's phase ≥ ratio x llama.cpp on baseline id".</summary>
    internal sealed record Target(string Id, string Phase, string Versus, double Ratio);

    /// <summary>The targets of issues H and I (TinyLlama shape, 2 threads), checked wherever their files were run.</summary>
    internal static readonly Target[] Targets =
    {
        new("f16", "decode", "f16", 1.05),
        new("bf16", "decode", "bf16", 1.05),
        new("f32", "decode", "f32", 1.0),
        new("f16-2of4", "decode", "f16", 1.7),
        new("f16-4of8", "decode", "f16", 1.6),
        new("f16", "prefill", "f16", 1.0),
        new("f16-2of4", "prefill", "f16", 1.3),
        new("q8_0", "decode", "q8_0", 1.0),
        new("q4_0", "decode", "q4_0", 1.0),
        new("q4_k_m", "decode", "q4_k_m", 1.0),
        new("q8_0", "prefill", "q8_0", 1.0),
        new("q4_0", "prefill", "q4_0", 1.0),
        new("q8-2of4", "decode", "q8_0", 1.45),
        new("q4-2of4", "decode", "q4_0", 1.25),
    };

    public const string EngineKernels = "kernels";
    public const string LlamaNoMmap = "llama.cpp";
    public const string LlamaMmap = "llama.cpp (mmap)";

    public static Command Create()
    {
        var raw = new Option<string>("--raw") { Description = "Folder with r1, r2, ... of llama-<id>-tg.json, llama-<id>-pp.json, kernels-<id>-tg.json and kernels-<id>-pp.json (or one kernels-<id>.json)", Required = true };
        var manifest = new Option<string>("--manifest") { Description = "TSV: id, label, file, whether kernels ran it (1/0)", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "Report folder", Required = true };
        var title = new Option<string>("--title") { Description = "Report title", DefaultValueFactory = _ => "llama.cpp vs kernels" };
        var commandLine = new Option<string?>("--command") { Description = "The command that produced the raw outputs (printed in the report)" };
        var command = new Command("peer-report", "Report of bench/peers/llama-cpp.sh: medians and ratios to llama.cpp over interleaved rounds")
        {
            raw, manifest, output, title, commandLine,
        };
        command.SetAction(parse =>
        {
            try
            {
                var files = ReadManifest(parse.GetValue(manifest)!);
                var samples = ReadRounds(parse.GetValue(raw)!, files);
                string dir = parse.GetValue(output)!;
                Directory.CreateDirectory(dir);
                Write(dir, parse.GetValue(title)!, parse.GetValue(commandLine), files, samples);
                CliConsole.Err.MarkupLine($"report: {Markup.Escape(Path.GetFullPath(Path.Combine(dir, "README.md")))}");
                return 0;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return CliConsole.Fail(e);
            }
        });
        return command;
    }

    internal sealed record FileEntry(string Id, string Label, string Path, bool KernelsRuns);

    private static List<FileEntry> ReadManifest(string path)
    {
        var entries = new List<FileEntry>();
        int line = 0;
        foreach (string text in File.ReadLines(path))
        {
            line++;
            if (text.Length == 0)
            {
                continue;
            }
            var f = text.Split('\t');
            if (f.Length != 4 || f[3] is not ("0" or "1"))
            {
                throw new FormatException($"{path}:{line}: expected 4 tab-separated fields (id, label, file, 0/1), got '{text}'");
            }
            entries.Add(new FileEntry(f[0], f[1], f[2], f[3] == "1"));
        }
        return entries.Count > 0 ? entries : throw new FormatException($"{path}: no files listed");
    }

    /// <summary>Every sample found in r1, r2, ...: missing or failed runs are simply absent.</summary>
    internal static List<Sample> ReadRounds(string raw, IReadOnlyList<FileEntry> files)
    {
        var samples = new List<Sample>();
        var rounds = Directory.Exists(raw)
            ? Directory.GetDirectories(raw, "r*").Select(d => (Dir: d, N: int.TryParse(Path.GetFileName(d)[1..], out int n) ? n : 0)).Where(x => x.N > 0).OrderBy(x => x.N).ToList()
            : throw new DirectoryNotFoundException($"--raw {raw}: folder not found");
        foreach (var (dir, round) in rounds)
        {
            foreach (var f in files)
            {
                foreach (var phase in new[] { "tg", "pp" })
                {
                    string llama = Path.Combine(dir, $"llama-{f.Id}-{phase}.json");
                    if (File.Exists(llama) && new FileInfo(llama).Length > 0)
                    {
                        samples.AddRange(Readable(llama, () => ParseLlamaBench(llama, round, f.Id).ToList()));
                    }
                }
                // Decode from kernels-<id>-tg.json and prefill from kernels-<id>-pp.json (run next to llama-bench's tg and pp),
                // or both from one kernels-<id>.json.
                foreach (var (file, phase) in new[] { ($"kernels-{f.Id}-tg.json", "decode"), ($"kernels-{f.Id}-pp.json", "prefill"), ($"kernels-{f.Id}.json", null) })
                {
                    string kernels = Path.Combine(dir, file);
                    if (File.Exists(kernels) && new FileInfo(kernels).Length > 0)
                    {
                        samples.AddRange(Readable(kernels, () => ParseKernels(kernels, round, f.Id).Where(s => phase is null || s.Phase == phase).ToList()));
                    }
                }
            }
        }
        return samples;
    }

    /// <summary>The samples of one raw file, or none (with a warning) when it is incomplete or not what it should be: a run that died mid-write counts as not measured.</summary>
    private static List<Sample> Readable(string path, Func<List<Sample>> parse)
    {
        try
        {
            return parse();
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
        {
            CliConsole.Err.MarkupLine($"[yellow]skipped {Markup.Escape(path)}: {Markup.Escape(e.Message)}[/]");
            return new List<Sample>();
        }
    }

    /// <summary>llama-bench -o json: one entry per (mmap, test); avg_ts is the mean over repetitions of tokens/time.</summary>
    internal static IEnumerable<Sample> ParseLlamaBench(string path, int round, string id)
    {
        var root = JsonNode.Parse(File.ReadAllText(path)) as JsonArray ?? throw new FormatException($"{path}: not a llama-bench JSON array");
        foreach (var entry in root)
        {
            if (entry is null)
            {
                continue;
            }
            bool mmap = entry["use_mmap"]?.GetValue<bool>() ?? true;
            int prompt = entry["n_prompt"]?.GetValue<int>() ?? 0, gen = entry["n_gen"]?.GetValue<int>() ?? 0;
            double ts = entry["avg_ts"]?.GetValue<double>() ?? double.NaN;
            yield return new Sample(round, id, mmap ? LlamaMmap : LlamaNoMmap, gen > 0 && prompt == 0 ? "decode" : "prefill", ts);
        }
    }

    /// <summary><c>kernels bench --json</c>: decode as timed steps over their total time (as llama-bench), prefill as the median.</summary>
    internal static IEnumerable<Sample> ParseKernels(string path, int round, string id)
    {
        var root = JsonNode.Parse(File.ReadAllText(path)) ?? throw new FormatException($"{path}: empty JSON");
        var v = (root["variants"] as JsonArray)?.FirstOrDefault() ?? throw new FormatException($"{path}: no variants");
        yield return new Sample(round, id, EngineKernels, "decode", v["tokens_per_s_mean"]?.GetValue<double>() ?? double.NaN);
        double prefill = v["prefill_tokens_per_s"]?.GetValue<double>() ?? double.NaN;
        if (prefill > 0)
        {
            yield return new Sample(round, id, EngineKernels, "prefill", prefill);
        }
    }

    private static double Median(IEnumerable<double> values) =>
        Kernels.Runtime.Benchmarking.ModelBenchmark.Median(values.Where(double.IsFinite).ToList());

    /// <summary>llama.cpp's better configuration in a round (mmap on or off): the bar.</summary>
    internal static double BestLlama(IReadOnlyList<Sample> samples, int round, string id, string phase)
    {
        var s = samples.Where(x => x.Round == round && x.Id == id && x.Phase == phase && x.Engine != EngineKernels).Select(x => x.TokensPerSecond).Where(double.IsFinite).ToList();
        return s.Count == 0 ? double.NaN : s.Max();
    }

    internal static double Value(IReadOnlyList<Sample> samples, int round, string id, string engine, string phase) =>
        samples.FirstOrDefault(x => x.Round == round && x.Id == id && x.Engine == engine && x.Phase == phase)?.TokensPerSecond ?? double.NaN;

    /// <summary>Median over rounds of (kernels on id) / (best llama.cpp on versus), each ratio from one round.</summary>
    internal static (double Ratio, double[] PerRound) Ratio(IReadOnlyList<Sample> samples, string id, string versus, string phase)
    {
        var rounds = samples.Select(s => s.Round).Distinct().Order().ToList();
        var per = rounds.Select(r => Value(samples, r, id, EngineKernels, phase) / BestLlama(samples, r, versus, phase)).ToArray();
        return (Median(per), per);
    }

    /// <summary>JSON has no NaN: a missing measurement is null.</summary>
    private static double? Finite(double v) => double.IsFinite(v) ? v : null;

    private static string F(double v) => double.IsFinite(v) ? v.ToString(v >= 100 ? "F0" : "F1", CultureInfo.InvariantCulture) : "-";

    private static string R(double v) => double.IsFinite(v) ? v.ToString("F2", CultureInfo.InvariantCulture) + "x" : "-";

    private static void Write(string dir, string title, string? command, IReadOnlyList<FileEntry> files, List<Sample> samples)
    {
        var rounds = samples.Select(s => s.Round).Distinct().Order().ToList();
        var md = new StringBuilder();
        md.AppendLine($"# {title}").AppendLine();
        md.AppendLine($"Generated {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC by `kernels peer-report` from {rounds.Count} interleaved rounds.");
        if (command is not null)
        {
            md.AppendLine().AppendLine("```sh").AppendLine(command).AppendLine("```");
        }
        md.AppendLine().AppendLine($"Machine: {CpuName()}; {SimdInfo.Describe()}.").AppendLine();
        md.AppendLine("Every number is tokens/s. llama.cpp: `llama-bench -t 2 -r 3`, mmap off and on (the mean over its repetitions, as it prints);");
        md.AppendLine("kernels: `kernels bench --model` (decode: timed steps over their total time after two warm-up steps; prefill: median of 3).");
        md.AppendLine("A ratio is kernels / the faster llama.cpp configuration of the same round, then the median over rounds.").AppendLine();

        foreach (var phase in new[] { "decode", "prefill" })
        {
            md.AppendLine($"## {char.ToUpperInvariant(phase[0])}{phase[1..]} ({(phase == "decode" ? "tg" : "pp")})").AppendLine();
            md.Append("| file | engine |");
            foreach (int r in rounds)
            {
                md.Append($" round {r} |");
            }
            md.AppendLine(" median | kernels / llama.cpp |");
            md.Append("| --- | --- |").Append(string.Concat(rounds.Select(_ => " ---: |"))).AppendLine(" ---: | ---: |");
            foreach (var f in files)
            {
                foreach (var engine in new[] { LlamaNoMmap, LlamaMmap, EngineKernels })
                {
                    var values = rounds.Select(r => Value(samples, r, f.Id, engine, phase)).ToList();
                    if (engine == EngineKernels && !f.KernelsRuns)
                    {
                        md.AppendLine($"| {f.Label} | {engine} |{string.Concat(rounds.Select(_ => " |"))} not run (manifest) | |");
                        continue;
                    }
                    if (values.All(double.IsNaN))
                    {
                        continue;
                    }
                    string ratio = engine == EngineKernels ? R(Ratio(samples, f.Id, f.Id, phase).Ratio) : "";
                    md.AppendLine($"| {f.Label} | {engine} |{string.Concat(values.Select(v => $" {F(v)} |"))} {F(Median(values))} | {ratio} |");
                }
            }
            md.AppendLine();
        }

        md.AppendLine("## Targets").AppendLine();
        md.AppendLine("| target | per round | median | verdict |").AppendLine("| --- | --- | ---: | --- |");
        var targetRows = new List<object>();
        foreach (var t in Targets)
        {
            var file = files.FirstOrDefault(f => f.Id == t.Id);
            var versus = files.FirstOrDefault(f => f.Id == t.Versus);
            if (file is null || versus is null)
            {
                continue;
            }
            var (ratio, per) = Ratio(samples, t.Id, t.Versus, t.Phase);
            string verdict = !double.IsFinite(ratio) ? "not measured"
                : ratio >= t.Ratio ? "met"
                : $"missed by {100 * (t.Ratio - ratio) / t.Ratio:F0}% ({ratio:F2}x of {t.Ratio:F2}x)";
            string name = $"{t.Phase} {file.Label} ≥ {t.Ratio:F2}x llama.cpp {versus.Label}";
            md.AppendLine($"| {name} | {string.Join(", ", per.Select(R))} | {R(ratio)} | {verdict} |");
            targetRows.Add(new { target = name, id = t.Id, versus = t.Versus, phase = t.Phase, required = t.Ratio, per_round = per.Select(Finite), median = Finite(ratio), met = double.IsFinite(ratio) && ratio >= t.Ratio });
        }
        md.AppendLine().AppendLine("Charts: `decode.png`, `prefill.png` (medians). Raw samples: `results.json`.");
        AtomicFile.WriteAllText(Path.Combine(dir, "README.md"), md.ToString());

        var json = new
        {
            title,
            command,
            machine = CpuName(),
            simd = SimdInfo.Describe(),
            rounds = rounds.Count,
            files = files.Select(f => new { f.Id, f.Label, kernels = f.KernelsRuns }),
            samples = samples.Select(s => new { round = s.Round, id = s.Id, engine = s.Engine, phase = s.Phase, tokens_per_s = Finite(s.TokensPerSecond) }),
            targets = targetRows,
        };
        AtomicFile.WriteAllText(Path.Combine(dir, "results.json"), JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));

        foreach (var phase in new[] { "decode", "prefill" })
        {
            var labels = files.Select(f => f.Label).ToList();
            var series = new[] { LlamaNoMmap, LlamaMmap, EngineKernels }
                .Select(e => (e, files.Select(f => Median(rounds.Select(r => Value(samples, r, f.Id, e, phase)))).ToArray()))
                .Where(s => s.Item2.Any(double.IsFinite)).ToList();
            Charts.Bars(Path.Combine(dir, $"{phase}.png"), $"{title}: {phase} (median of {rounds.Count} rounds)", "tokens/s", labels, series);
        }
    }

    private static string CpuName()
    {
        try
        {
            string? line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            string? family = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("cpu family", StringComparison.Ordinal));
            return $"{line?.Split(':', 2)[1].Trim() ?? "unknown CPU"} (family {family?.Split(':', 2)[1].Trim() ?? "?"}), {Environment.ProcessorCount} cores";
        }
        catch (IOException)
        {
            return $"{Environment.ProcessorCount} cores";
        }
    }
}
