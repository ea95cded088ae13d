using System.CommandLine;
using System.Text;
using System.Text.Json;
using Kernels.Runtime.Dip;
using Kernels.Runtime.Model;
using Kernels.Runtime.Pruning;
using Kernels.Runtime.Text;
using Kernels.Runtime.Tokenization;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary>Device options of the DRAM/flash simulator.</summary>
internal sealed class HwOptions
{
    public readonly Option<double?> DramGb = new Option<double?>("--dram-gb") { Description = "DRAM available to the model, GB (default: --dram-fraction of the model)" }.InRange(0.0, 1e6, minExclusive: true);
    public readonly Option<double> DramFraction = new Option<double>("--dram-fraction") { Description = "DRAM as a fraction of the model's weight bytes (phone preset)", DefaultValueFactory = _ => 0.5 }.InRange(0.0, 1.0);
    public readonly Option<double> DramBandwidth = new Option<double>("--dram-gbps") { Description = "DRAM bandwidth, GB/s (LPDDR5 ~50)", DefaultValueFactory = _ => 50 }.InRange(0.0, 1e5, minExclusive: true);
    public readonly Option<double> FlashBandwidth = new Option<double>("--flash-gbps") { Description = "Flash bandwidth, GB/s (UFS 4.0 ~4)", DefaultValueFactory = _ => 4 }.InRange(0.0, 1e5, minExclusive: true);
    public readonly Option<int> Bits = new Option<int>("--weight-bits") { Description = "Bits per weight on the device", DefaultValueFactory = _ => 16 }.InRange(1, 32);
    public readonly Option<bool> Serial = new("--serial-io") { Description = "DRAM and flash transfers add instead of overlapping" };
    public readonly Option<string> KvReserve = new("--kv-reserve") { Description = "DRAM the simulated KV cache holds: average (the paper's (prompt + seq)/2) | max (the full sequence, reserved up front)", DefaultValueFactory = _ => "average" };
    public readonly Option<string> Policy = new("--sim-cache") { Description = "Simulator cache policy: lru | lfu | belady", DefaultValueFactory = _ => "lru" };

    public void AddTo(Command c)
    {
        foreach (var o in new Option[] { DramGb, DramFraction, DramBandwidth, FlashBandwidth, Bits, Serial, Policy, KvReserve })
        {
            c.Options.Add(o);
        }
    }

    public HwConfig Get(ParseResult parse, LlamaConfig config, int prompt, int sequence)
    {
        int bits = parse.GetValue(Bits);
        long modelBytes = ModelBytes(config, bits);
        var hw = HwConfig.Phone(modelBytes, parse.GetValue(DramFraction)) with
        {
            DramBandwidth = parse.GetValue(DramBandwidth) * 1e9,
            FlashBandwidth = parse.GetValue(FlashBandwidth) * 1e9,
            WeightBits = bits,
            KvBits = bits,
            ConcurrentIo = !parse.GetValue(Serial),
            Policy = DipOptions.ParseCache(parse.GetValue(Policy)!),
            PromptLength = prompt,
            SequenceLength = sequence,
            KvReservation = parse.GetValue(KvReserve)!.ToLowerInvariant() switch
            {
                "average" => KvReservation.AverageLength,
                "max" => KvReservation.MaxLength,
                var other => throw new ArgumentException($"--kv-reserve: unknown '{other}' (average, max)"),
            },
        };
        return parse.GetValue(DramGb) is { } gb ? hw with { DramCapacity = (long)(gb * 1e9), Name = $"{gb} GB DRAM" } : hw;
    }

    /// <summary>Classifier + attention + MLP bytes at the device's bit width.</summary>
    public static long ModelBytes(LlamaConfig c, int bits)
    {
        double wb = bits / 8.0;
        double kv = (double)c.KvHeads / c.Heads;
        return (long)(((double)c.Dim * c.VocabSize + (2 + 2 * kv) * c.Dim * (double)c.Dim * c.Layers + 3.0 * c.Dim * c.HiddenDim * c.Layers) * wb);
    }
}

/// <summary><c>kernels simulate</c>: run DIP on real text, replay its masks through the DRAM/flash model.</summary>
internal static class SimulateCommand
{
    public static Command Create()
    {
        var common = new CommonOptions();
        var text = new Option<string>("--text") { Description = "Text the model runs on (masks come from this run)", Required = true };
        var bytes = new Option<string>("--text-bytes") { Description = "Byte range", DefaultValueFactory = _ => "0:16178" };
        var context = new Option<int>("--context") { Description = "Window length", DefaultValueFactory = _ => 256 }.InRange(1, 1 << 26);
        var dip = new DipCliOptions();
        var hwo = new HwOptions();
        var command = new Command("simulate", "Throughput, hit rate and memory of DIP on a DRAM + flash device, driven by the masks of a real run") { text, bytes, context };
        common.AddTo(command);
        dip.AddTo(command);
        hwo.AddTo(command);
        command.SetAction((parse, ct) =>
        {
            try
            {
                using var model = common.Load(parse);
                var tok = CommonOptions.LoadTokenizer(model, parse.GetValue(common.Tokenizer));
                int ctx = parse.GetValue(context);
                var hw = hwo.Get(parse, model.Config, ctx / 2, ctx);
                var (s, e) = TextSource.ParseRange(parse.GetValue(bytes));
                int[] tokens = tok.Encode(TextSource.Read(parse.GetValue(text)!, s, e, false), false, false);
                var options = dip.Get(parse) ?? new DipOptions { Keep = 0.5 };
                if (options.CacheAware)
                {
                    options = DipEvaluation.WithSimulatedCache(options, model.Config, hw);
                }
                var run = CliConsole.WithProgress("running DIP", _ => DipEvaluation.Run(model, options, tokens, ctx, tok.Bos, ct));
                var dense = HwSimulator.Simulate(model.Config, hw, MlpMode.Dense);
                var sim = HwSimulator.Simulate(model.Config, hw, MlpMode.Dynamic, run.Masks, sequenceStarts: run.SequenceStarts);
                var table = new Table().AddColumns("metric", "dense from flash", "DIP" + (options.CacheAware ? "-CA" : ""));
                table.AddRow("device", Markup.Escape(hw.Name), "");
                table.AddRow("model bytes", $"{HwOptions.ModelBytes(model.Config, hw.WeightBits)}", "");
                table.AddRow("DRAM bytes", $"{hw.DramCapacity}", "");
                table.AddRow("perplexity", "", $"{run.Perplexity.Perplexity:F4}");
                table.AddRow("tokens/s", $"{dense.TokensPerSecond:F1}", $"{sim.TokensPerSecond:F1} ({sim.TokensPerSecond / dense.TokensPerSecond:F2}x)");
                table.AddRow("time to first token (s)", $"{dense.TimeToFirstToken:E3}", $"{sim.TimeToFirstToken:E3}");
                table.AddRow("hit rate", "-", $"{sim.HitRate:P1}");
                table.AddRow("static bytes / from flash", $"{dense.StaticBytes} / {dense.StaticFromFlashBytes}", $"{sim.StaticBytes} / {sim.StaticFromFlashBytes}");
                table.AddRow("cached columns per layer (gate-up, down)", "-", $"{sim.GateUpCacheColumns}, {sim.DownCacheColumns}");
                table.AddRow("columns read per token (inputs, intermediate)", $"{model.Config.Dim}, {model.Config.HiddenDim}", $"{run.KeepInputs}, {run.KeepHidden}");
                CliConsole.Out.Write(table);
                return Task.FromResult(0);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                return Task.FromResult(CliConsole.Fail(ex));
            }
        });
        return command;
    }
}

/// <summary><c>kernels dip-report</c>: PPL vs simulated throughput for dense-from-flash, static pruning, DIP and DIP-CA; hit rate vs γ.</summary>
internal static class DipReportCommand
{
    internal sealed record Row(string Method, double Keep, double Gamma, double Perplexity, double TokensPerSecond, double HitRate, double SpeedupVsDenseFlash);

    public static Command Create()
    {
        var common = new CommonOptions();
        var text = new Option<string>("--text") { Description = "Evaluation text", Required = true };
        var bytes = new Option<string>("--text-bytes") { Description = "Byte range for evaluation", DefaultValueFactory = _ => "400000:440000" };
        var calibration = new Option<string?>("--calibration") { Description = "Calibration text for the static-pruning baselines (Wanda/DaSS 50% unstructured)" };
        var context = new Option<int>("--context") { Description = "Window", DefaultValueFactory = _ => 256 }.InRange(1, 1 << 26);
        var keeps = new Option<string>("--keeps") { Description = "Densities", DefaultValueFactory = _ => "0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0" };
        var gamma = new Option<double>("--gamma") { Description = "γ of the DIP-CA sweep over keep", DefaultValueFactory = _ => 0.5 }.InRange(0.0, 1.0);
        var gammas = new Option<string>("--gammas") { Description = "γ values of the hit-rate sweep (at keep 0.5)", DefaultValueFactory = _ => "1,0.8,0.6,0.4,0.2,0.1" };
        var outDir = new Option<string>("--out", "-o") { Description = "Output folder", DefaultValueFactory = _ => "dip-report" };
        var hwo = new HwOptions();
        var command = new Command("dip-report", "DIP sweep: perplexity vs simulated throughput (dense from flash, static pruning, DIP, DIP-CA) and hit rate vs γ")
        {
            text, bytes, calibration, context, keeps, gamma, gammas, outDir,
        };
        common.AddTo(command);
        hwo.AddTo(command);
        command.SetAction((parse, ct) =>
        {
            try
            {
                string modelPath = parse.GetValue(common.Model)!;
                using var model = common.Load(parse);
                var tok = CommonOptions.LoadTokenizer(model, parse.GetValue(common.Tokenizer));
                int ctx = parse.GetValue(context);
                var hw = hwo.Get(parse, model.Config, ctx / 2, ctx);
                var (s, e) = TextSource.ParseRange(parse.GetValue(bytes));
                int[] tokens = tok.Encode(TextSource.Read(parse.GetValue(text)!, s, e, true), false, false);
                var dense = HwSimulator.Simulate(model.Config, hw, MlpMode.Dense);
                var rows = new List<Row>();
                var keepList = parse.GetValue(keeps)!.Split(',').Select(v => double.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToList();
                var gammaList = parse.GetValue(gammas)!.Split(',').Select(v => double.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToList();
                double g = parse.GetValue(gamma);
                double[] dramFractions = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
                int total = 2 * keepList.Count + gammaList.Count + 5 + dramFractions.Length;
                var policyRows = new List<Row>();
                var dramRows = new List<(double Fraction, long DramBytes, Row Dense, Row Dip, Row Static)>();
                CliConsole.WithProgress($"{total} runs", progress =>
                {
                    int done = 0;
                    void Step() => progress.Report(++done / (float)total);
                    var denseRun = DipEvaluation.Run(model, new DipOptions(), tokens, ctx, tok.Bos, ct);
                    rows.Add(new Row("dense from flash", 1, 1, denseRun.Perplexity.Perplexity, dense.TokensPerSecond, double.NaN, 1));
                    Step();
                    foreach (double k in keepList)
                    {
                        foreach (var (name, gm) in new[] { ("DIP", 1.0), ("DIP-CA", g) })
                        {
                            var o = new DipOptions { Keep = k, Gamma = gm, ForceMasked = true };
                            if (o.CacheAware)
                            {
                                o = DipEvaluation.WithSimulatedCache(o, model.Config, hw);
                            }
                            var r = DipEvaluation.Run(model, o, tokens, ctx, tok.Bos, ct);
                            var sim = HwSimulator.Simulate(model.Config, hw, MlpMode.Dynamic, r.Masks, sequenceStarts: r.SequenceStarts);
                            rows.Add(new Row(name, k, gm, r.Perplexity.Perplexity, sim.TokensPerSecond, sim.HitRate, sim.TokensPerSecond / dense.TokensPerSecond));
                            Step();
                        }
                    }
                    foreach (double gm in gammaList)
                    {
                        var o = DipEvaluation.WithSimulatedCache(new DipOptions { Keep = 0.5, Gamma = gm, ForceMasked = true }, model.Config, hw);
                        var r = DipEvaluation.Run(model, o, tokens, ctx, tok.Bos, ct);
                        var sim = HwSimulator.Simulate(model.Config, hw, MlpMode.Dynamic, r.Masks, sequenceStarts: r.SequenceStarts);
                        rows.Add(new Row("gamma sweep (keep 0.5)", 0.5, gm, r.Perplexity.Perplexity, sim.TokensPerSecond, sim.HitRate, sim.TokensPerSecond / dense.TokensPerSecond));
                        Step();
                    }
                    if (parse.GetValue(calibration) is { } calibPath)
                    {
                        var data = CalibrationSet.FromText(tok, TextSource.Read(calibPath, 0, 300000, true), 32, 256);
                        foreach (var method in new[] { PruneMethod.Wanda, PruneMethod.Dass })
                        {
                            using var pruned = Kernels.Runtime.IO.ModelLoader.Load(modelPath);
                            SequentialPruner.Prune(pruned, data, new PruneSpec { Method = method, Sparsity = Sparsity.Parse("0.5") });
                            var r = DipEvaluation.Run(pruned, new DipOptions(), tokens, ctx, tok.Bos, ct);
                            // Unstructured 50 %: the kept values plus a bitmap (1 bit per original weight) to find them.
                            var sim = HwSimulator.Simulate(model.Config, hw, MlpMode.StaticPruned, staticDensity: 0.5, staticIndexBitsPerWeight: 1);
                            rows.Add(new Row($"static {method} 50% (+1-bit index)", 0.5, 1, r.Perplexity.Perplexity, sim.TokensPerSecond, double.NaN, sim.TokensPerSecond / dense.TokensPerSecond));
                            Step();
                        }
                    }
                    // The same DIP-CA masks (keep 0.5, live LRU cache) through the simulator's three column policies,
                    // at the report's DRAM size and with DRAM as large as the model (where the cache outgrows a mask).
                    foreach (var (label, h) in new[] { ("report DRAM", hw), ("DRAM = model", hw with { DramCapacity = HwOptions.ModelBytes(model.Config, hw.WeightBits) }) })
                    {
                        var o = DipEvaluation.WithSimulatedCache(new DipOptions { Keep = 0.5, Gamma = g, ForceMasked = true }, model.Config, h);
                        var r = DipEvaluation.Run(model, o, tokens, ctx, tok.Bos, ct);
                        foreach (var policy in new[] { ColumnCachePolicy.Lru, ColumnCachePolicy.Lfu, ColumnCachePolicy.Belady })
                        {
                            var sim = HwSimulator.Simulate(model.Config, h with { Policy = policy }, MlpMode.Dynamic, r.Masks, sequenceStarts: r.SequenceStarts);
                            policyRows.Add(new Row($"{label}, cache {policy} ({sim.GateUpCacheColumns}/{model.Config.Dim} gate-up, {sim.DownCacheColumns}/{model.Config.HiddenDim} down columns)", 0.5, g,
                                r.Perplexity.Perplexity, sim.TokensPerSecond, sim.HitRate, sim.TokensPerSecond / dense.TokensPerSecond));
                        }
                        Step();
                    }
                    // DRAM size sweep: dense from flash, DIP-CA keep 0.5 (live cache sized by each split), static 50 % with its index.
                    long modelBytes = HwOptions.ModelBytes(model.Config, hw.WeightBits);
                    foreach (double f in dramFractions)
                    {
                        var hf = hw with { DramCapacity = (long)(modelBytes * f), Name = $"DRAM {f:P0}" };
                        var d = HwSimulator.Simulate(model.Config, hf, MlpMode.Dense);
                        var o = DipEvaluation.WithSimulatedCache(new DipOptions { Keep = 0.5, Gamma = g, ForceMasked = true }, model.Config, hf);
                        var r = DipEvaluation.Run(model, o, tokens, ctx, tok.Bos, ct);
                        var sim = HwSimulator.Simulate(model.Config, hf, MlpMode.Dynamic, r.Masks, sequenceStarts: r.SequenceStarts);
                        var st = HwSimulator.Simulate(model.Config, hf, MlpMode.StaticPruned, staticDensity: 0.5, staticIndexBitsPerWeight: 1);
                        dramRows.Add((f, hf.DramCapacity,
                            new Row("dense", 1, 1, rows[0].Perplexity, d.TokensPerSecond, double.NaN, d.TokensPerSecond / dense.TokensPerSecond),
                            new Row("DIP-CA", 0.5, g, r.Perplexity.Perplexity, sim.TokensPerSecond, sim.HitRate, sim.TokensPerSecond / dense.TokensPerSecond),
                            new Row("static 50%", 0.5, 1, double.NaN, st.TokensPerSecond, double.NaN, st.TokensPerSecond / dense.TokensPerSecond)));
                        Step();
                    }
                    return 0;
                });
                string dir = parse.GetValue(outDir)!;
                Directory.CreateDirectory(dir);
                string title = $"{Path.GetFileName(modelPath)} on {tokens.Length} tokens of {Path.GetFileName(parse.GetValue(text))} bytes {parse.GetValue(bytes)} (context {ctx}); device: {hw.Name}, " +
                               $"{hw.WeightBits}-bit weights, {(hw.ConcurrentIo ? "concurrent" : "serial")} DRAM/flash I/O, simulator cache {hw.Policy}; DIP-CA live cache LRU sized by the same DRAM split";
                var md = new StringBuilder("# Dynamic input pruning report\n\n").AppendLine(title).AppendLine();
                md.AppendLine("| method | keep | γ | perplexity | simulated tok/s | speed-up vs dense from flash | hit rate |");
                md.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
                foreach (var r in rows)
                {
                    md.AppendLine($"| {r.Method} | {r.Keep:0.##} | {r.Gamma:0.##} | {r.Perplexity:F3} | {r.TokensPerSecond:F1} | {r.SpeedupVsDenseFlash:F2}x | {(double.IsNaN(r.HitRate) ? "-" : r.HitRate.ToString("P1"))} |");
                }
                md.AppendLine().AppendLine($"## Simulator column policy (DIP-CA keep 0.5, γ {g}: the same masks)").AppendLine();
                md.AppendLine("A mask at least as large as the cache leaves no choice (every other column goes), so the policies only differ where the cache outgrows the mask.").AppendLine();
                md.AppendLine("| DRAM, simulator cache | simulated tok/s | speed-up | hit rate |").AppendLine("|---|---:|---:|---:|");
                foreach (var r in policyRows)
                {
                    md.AppendLine($"| {r.Method} | {r.TokensPerSecond:F1} | {r.SpeedupVsDenseFlash:F2}x | {r.HitRate:P1} |");
                }
                md.AppendLine().AppendLine("## DRAM size sweep (memory vs throughput; speed-up against dense at the report's DRAM size)").AppendLine();
                md.AppendLine("| DRAM / model | DRAM bytes | dense tok/s | DIP-CA tok/s | DIP-CA perplexity | DIP-CA hit rate | static 50 % tok/s |").AppendLine("|---:|---:|---:|---:|---:|---:|---:|");
                foreach (var (f, bytesDram, d, dip, st) in dramRows)
                {
                    md.AppendLine($"| {f:P0} | {bytesDram} | {d.TokensPerSecond:F1} | {dip.TokensPerSecond:F1} | {dip.Perplexity:F3} | {dip.HitRate:P1} | {st.TokensPerSecond:F1} |");
                }
                Kernels.Runtime.IO.AtomicFile.WriteAllText(Path.Combine(dir, "dip-report.md"), md.ToString());
                Kernels.Runtime.IO.AtomicFile.WriteAllText(Path.Combine(dir, "dip-report.json"), JsonSerializer.Serialize(new { title, rows, policyRows, dram = dramRows.Select(x => new { fraction = x.Fraction, dram_bytes = x.DramBytes, dense = x.Dense, dip_ca = x.Dip, static_pruned = x.Static }) }, new JsonSerializerOptions
                {
                    WriteIndented = true,
                    // Rows without a hit rate (dense, static pruning) hold NaN: written as the string "NaN".
                    NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
                }));
                Charts.Lines(Path.Combine(dir, "dip-report.png"), "Perplexity vs simulated decode throughput", "simulated tokens/s", "perplexity",
                    rows.Where(r => r.Method is "DIP" or "DIP-CA").GroupBy(r => r.Method).Select(gr => (gr.Key, gr.Select(r => r.TokensPerSecond).ToArray(), gr.Select(r => r.Perplexity).ToArray()))
                        .Concat(rows.Where(r => r.Method.StartsWith("static") || r.Method.StartsWith("dense")).Select(r => (r.Method, new[] { r.TokensPerSecond }, new[] { r.Perplexity }))).ToList(), logY: true);
                Charts.Lines(Path.Combine(dir, "dip-hitrate.png"), "Hit rate and perplexity vs γ (keep 0.5)", "γ", "hit rate (%) / perplexity",
                    new[]
                    {
                        ("hit rate %", rows.Where(r => r.Method.StartsWith("gamma")).Select(r => r.Gamma).ToArray(), rows.Where(r => r.Method.StartsWith("gamma")).Select(r => 100 * r.HitRate).ToArray()),
                        ("perplexity", rows.Where(r => r.Method.StartsWith("gamma")).Select(r => r.Gamma).ToArray(), rows.Where(r => r.Method.StartsWith("gamma")).Select(r => r.Perplexity).ToArray()),
                    });
                Charts.Lines(Path.Combine(dir, "dip-dram.png"), "Simulated decode throughput vs DRAM size", "DRAM / model size", "simulated tokens/s",
                    new[]
                    {
                        ("dense", dramRows.Select(x => x.Fraction).ToArray(), dramRows.Select(x => x.Dense.TokensPerSecond).ToArray()),
                        ($"DIP-CA keep 0.5 γ {g}", dramRows.Select(x => x.Fraction).ToArray(), dramRows.Select(x => x.Dip.TokensPerSecond).ToArray()),
                        ("static 50 % (+index)", dramRows.Select(x => x.Fraction).ToArray(), dramRows.Select(x => x.Static.TokensPerSecond).ToArray()),
                    });
                Console.Out.Write(md.ToString());
                return Task.FromResult(0);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                return Task.FromResult(CliConsole.Fail(ex));
            }
        });
        return command;
    }
}
