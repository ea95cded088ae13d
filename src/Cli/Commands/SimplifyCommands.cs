using System.CommandLine;
using System.Globalization;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Pruning;
using Kernels.Runtime.Simplification;
using Kernels.Runtime.Tokenization;
using Kernels.Simd.Matrices;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary><c>kernels prune-heads</c> and <c>kernels drop-layers</c>: structural simplification exported as GGUF.</summary>
internal static class SimplifyCommands
{
    public static Command PruneHeads()
    {
        var fraction = new Option<double>("--fraction") { Description = "Fraction of pruning units (KV head + its query group) to remove, globally ranked", Required = true }.InRange(0.0, 1.0, maxExclusive: true);
        var metric = new Option<string>("--metric") { Description = "ppl (increase when masked) | output-norm (mean ‖Att_h W_O^h‖)", DefaultValueFactory = _ => "ppl" };
        var iterative = new Option<double?>("--iterative") { Description = "Prune in steps of this fraction of the units, scoring the pruned model again before each step (e.g. 0.1); default one-shot" }.InRange(0.0, 1.0, minExclusive: true, maxExclusive: true);
        return Create("prune-heads", "Remove the least important attention heads (rows of W_q/W_k/W_v, columns of W_o) and save the smaller model as GGUF",
            (parse, m, transformer, data) =>
            {
                string shape() => $"heads per layer now {string.Join(",", m.Layers.Select(l => l.Heads))}, KV heads {string.Join(",", m.Layers.Select(l => l.KvHeads))}";
                double target = parse.GetValue(fraction);
                if (parse.GetValue(iterative) is { } step)
                {
                    // Steps of `step` up to the target, the last one landing on it.
                    var fractions = Enumerable.Range(1, (int)Math.Ceiling(target / step - 1e-9)).Select(i => Math.Min(target, i * step)).ToArray();
                    var steps = HeadPruner.Iterative(m, fractions, pruned =>
                    {
                        using var t = new Transformer(pruned, transformer.Ops, maxBatch: data.Windows.Max(w => w.Length));
                        return HeadScores(t, data, parse.GetValue(metric)!);
                    });
                    var removed = steps[^1];
                    return $"removed {removed.Length} units in {fractions.Length} re-scored steps ({string.Join(" ", removed.Select(u => $"L{u.Layer}/kv{u.KvHead}"))}, original numbering); {shape()}";
                }
                var chosen = ChooseHeads(m, transformer, data, parse.GetValue(metric)!, target);
                HeadPruner.Remove(m, chosen.Select(g => (g.Layer, g.KvHead)));
                return $"removed {chosen.Count} units ({string.Join(" ", chosen.Select(g => $"L{g.Layer}/kv{g.KvHead}"))}); {shape()}";
            }, fraction, metric, iterative);
    }

    public static Command DropLayers()
    {
        var count = new Option<int?>("--count") { Description = "Number of layers to remove (chosen by --metric)" }.InRange(1, 1024);
        var layers = new Option<string?>("--layers") { Description = "Explicit layers to remove, e.g. 2,3 (instead of --count)" };
        var metric = new Option<string>("--metric") { Description = "bi (ShortGPT: lowest block influence) | angular (Gromov: most redundant block) | last (deepest layers, keeping the final one)", DefaultValueFactory = _ => "bi" };
        return Create("drop-layers", "Remove decoder layers (ShortGPT block influence, Gromov angular distance, or an explicit list) and save the model as GGUF",
            (parse, m, transformer, data) =>
            {
                var chosen = ChooseLayers(m, transformer, data, parse.GetValue(count), parse.GetValue(layers), parse.GetValue(metric)!);
                LayerRemoval.Remove(m, chosen);
                return $"removed layers {string.Join(",", chosen)}; {m.Layers.Count} layers left";
            }, count, layers, metric);
    }

    internal static IReadOnlyList<HeadGroup> ChooseHeads(LlamaModel m, Transformer transformer, CalibrationSet data, string metric, double fraction) =>
        HeadPruner.SelectLeastImportant(m, HeadScores(transformer, data, metric), fraction);

    private static double[][] HeadScores(Transformer transformer, CalibrationSet data, string metric) => metric switch
    {
        "ppl" => CliConsole.WithProgress("masking each head", p => HeadImportance.PerplexityIncrease(transformer, data, out _, p)),
        "output-norm" => CliConsole.WithProgress("output norms", _ => HeadImportance.OutputNorm(transformer, data)),
        _ => throw new ArgumentException($"unknown --metric '{metric}' (ppl, output-norm)"),
    };

    internal static int[] ChooseLayers(LlamaModel m, Transformer transformer, CalibrationSet? data, int? count, string? list, string metric)
    {
        if (list is not null)
        {
            return list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        }
        int n = count ?? throw new ArgumentException("give --count N or --layers LIST");
        if (metric == "last")
        {
            if (n < 0 || n >= m.Layers.Count)
            {
                throw new ArgumentOutOfRangeException(nameof(count), $"can remove 0..{m.Layers.Count - 1} of {m.Layers.Count} layers");
            }
            return Enumerable.Range(m.Layers.Count - 1 - n, n).ToArray();
        }
        var scores = LayerRemoval.Measure(transformer, data ?? throw new ArgumentException($"--calibration is required for --metric {metric}"));
        return metric switch
        {
            "bi" => scores.LowestInfluence(n),
            "angular" => scores.MostRedundantBlock(n),
            _ => throw new ArgumentException($"unknown --metric '{metric}' (bi, angular, last)"),
        };
    }

    private static Command Create(string name, string description, Func<ParseResult, LlamaModel, Transformer, CalibrationSet, string> edit, params Option[] extra)
    {
        var output = new Option<string>("--out", "-o") { Description = "Output GGUF file", Required = true };
        return CalibratedModelCommand.Create(name, description, "Model to simplify", "Tokenizer (calibration text and the exported vocabulary)", output, (c, parse, ct) =>
        {
            var (m, data) = (c.Model, c.Data);
            string summary;
            double before, after;
            using (var transformer = new Transformer(m, c.Ops, maxBatch: data.Windows.Max(w => w.Length)))
            {
                before = WindowPerplexity.Evaluate(transformer, data, ct);
                summary = edit(parse, m, transformer, data);
            }
            // A fresh transformer: the edit changed the model's shapes.
            using (var transformer = new Transformer(m, c.Ops, maxBatch: data.Windows.Max(w => w.Length)))
            {
                after = WindowPerplexity.Evaluate(transformer, data, ct);
            }
            CliConsole.Out.MarkupLine(Markup.Escape(summary));
            CliConsole.Out.MarkupLine($"calibration perplexity {before:F4} -> {after:F4}; weights {m.WeightBytes / 1e6:F3} MB");
            m.Vocabulary ??= PruneCommand.VocabularyOf(c.Tokenizer);
            string outPath = parse.GetValue(output)!;
            var type = m.Layers.Count > 0 && m.Layers[0].Gate is DenseMatrix d ? d.ElementType : ElementType.F32;
            GgufWriter.WriteModel(m, outPath, type, new Dictionary<string, object> { ["kernels.simplification"] = $"{name}: {summary}" });
            CliConsole.Err.MarkupLine($"wrote {Markup.Escape(outPath)}");
            return 0;
        }, extra);
    }
}
