using System.CommandLine;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Pruning;
using Kernels.Runtime.Sparsity;
using Kernels.Runtime.Text;
using Kernels.Runtime.Tokenization;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary>Options shared by prune and prune-report.</summary>
internal sealed class CalibrationOptions
{
    public readonly Option<string?> Calibration = new("--calibration") { Description = "Calibration text file (UTF-8)" };
    public readonly Option<string?> CalibrationBytes = new("--calibration-bytes") { Description = "Byte range start:end of the calibration file (snapped to paragraphs)", DefaultValueFactory = _ => "0:300000" };
    public readonly Option<int> Windows = new Option<int>("--calibration-windows") { Description = "Calibration windows", DefaultValueFactory = _ => 32 }.InRange(1, 1 << 20);
    public readonly Option<int> Length = new Option<int>("--calibration-length") { Description = "Tokens per calibration window (BOS included)", DefaultValueFactory = _ => 256 }.InRange(2, 1 << 26);
    public readonly Option<double> Alpha = new Option<double>("--alpha") { Description = "DaSS exponent on ‖h_i‖ for gate/up", DefaultValueFactory = _ => 0.5 }.InRange(0.0, 16.0);

    public void AddTo(Command c, bool alpha = true)
    {
        c.Options.Add(Calibration);
        c.Options.Add(CalibrationBytes);
        c.Options.Add(Windows);
        c.Options.Add(Length);
        if (alpha)
        {
            c.Options.Add(Alpha);
        }
    }

    /// <summary>The calibration set, with a clear error when --calibration is missing.</summary>
    public CalibrationSet Require(ParseResult parse, ITokenizer tokenizer, string why) =>
        Load(parse, tokenizer) ?? throw new ArgumentException($"--calibration FILE is required ({why})");

    /// <param name="windows">Overrides --calibration-windows (a second, larger set from the same span).</param>
    public CalibrationSet? Load(ParseResult parse, ITokenizer tokenizer, int? windows = null)
    {
        if (parse.GetValue(Calibration) is not { } path)
        {
            return null;
        }
        var (s, e) = TextSource.ParseRange(parse.GetValue(CalibrationBytes));
        return CalibrationSet.FromText(tokenizer, TextSource.Read(path, s, e, snapToParagraphs: true), windows ?? parse.GetValue(Windows), parse.GetValue(Length));
    }

    public static PruneMethod ParseMethod(string m) => m.ToLowerInvariant() switch
    {
        "dass" => PruneMethod.Dass,
        "wanda" => PruneMethod.Wanda,
        "sparsegpt" => PruneMethod.SparseGpt,
        "magnitude" => PruneMethod.Magnitude,
        _ => throw new ArgumentException($"unknown --method '{m}' (dass, wanda, sparsegpt, magnitude)"),
    };

    public static PruneScope ParseScope(string s) => s.ToLowerInvariant() switch
    {
        "mlp" => PruneScope.Mlp,
        "all" => PruneScope.All,
        _ => throw new ArgumentException($"unknown --scope '{s}' (mlp, all)"),
    };
}

/// <summary><c>kernels prune</c>: prune a model with one method and export it as GGUF.</summary>
internal static class PruneCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "Model to prune", Required = true };
        var tokenizer = new Option<string?>("--tokenizer", "-z") { Description = "Tokenizer (for calibration text and the exported vocabulary)" };
        var method = new Option<string>("--method") { Description = "dass | wanda | sparsegpt | magnitude", Required = true };
        var pattern = new Option<string>("--pattern") { Description = "2:4 | 4:8 | unstructured ratio such as 0.5", Required = true };
        var scope = new Option<string>("--scope") { Description = "mlp (default: gate, up, down) | all (every block linear)", DefaultValueFactory = _ => "mlp" };
        var output = new Option<string>("--out", "-o") { Description = "Output GGUF file", Required = true };
        var quantize = new Option<string?>("--quantize") { Description = "q8 | q4: write the matrices as `kernels quantize --type q8_0|q4_0` does, pruned linears with one scale per 64 columns (so --sparse auto turns them into N:M blocks with int8 / 4-bit kept values without changing a value)" };
        var format = new Option<string>("--format") { Description = "standard: a GGUF llama.cpp loads (pruned weights as zeros; the runtime compresses N:M patterns at load) | nm: N:M linears stored compressed (kept values + indices, docs/formats.md), loaded without conversion; llama.cpp does not read it", DefaultValueFactory = _ => "standard" };
        var calib = new CalibrationOptions();
        var command = new Command("prune", "Prune a model (magnitude, Wanda, SparseGPT, DaSS) to N:M or unstructured sparsity and save it as GGUF")
        {
            model, tokenizer, method, pattern, scope, output, quantize, format,
        };
        calib.AddTo(command);
        command.SetAction((parse, ct) =>
        {
            try
            {
                QuantType? quantizeTo = parse.GetValue(quantize) is { } q ? QuantizePlan.ParseKeptType(q, "--quantize") : null;
                bool compact = parse.GetValue(format)!.ToLowerInvariant() switch
                {
                    "standard" => false,
                    "nm" => true,
                    var f => throw new ArgumentException($"unknown --format '{f}' (standard, nm)"),
                };
                using var m = CommonOptions.LoadModel(parse.GetValue(model)!);
                var tok = TokenizerLoader.Load(m, parse.GetValue(tokenizer));
                var spec = new PruneSpec
                {
                    Method = CalibrationOptions.ParseMethod(parse.GetValue(method)!),
                    Sparsity = Sparsity.Parse(parse.GetValue(pattern)!),
                    Scope = CalibrationOptions.ParseScope(parse.GetValue(scope)!),
                    Alpha = parse.GetValue(calib.Alpha),
                };
                var data = calib.Load(parse, tok);
                if (data is null && spec.Method != PruneMethod.Magnitude)
                {
                    throw new ArgumentException($"--calibration is required for {spec.Method}");
                }
                var result = CliConsole.WithProgress($"pruning ({spec})", p => SequentialPruner.Prune(m, data, spec, p, ct));
                var table = new Table().AddColumns("linear", "shape", "sparsity").Title(Markup.Escape(spec.ToString()));
                foreach (var l in result.Linears)
                {
                    table.AddRow(l.Name, $"{l.Rows}x{l.Columns}", $"{l.Sparsity:P1}");
                }
                CliConsole.Out.Write(table);
                m.Vocabulary ??= VocabularyOf(tok);
                string outPath = parse.GetValue(output)!;
                var type = m.Layers.Count > 0 && m.Layers[0].Gate is DenseMatrix d ? d.ElementType : ElementType.F32;
                if (compact)
                {
                    var log = SparseCompression.CompressDetected(m, keptValues: quantizeTo);
                    CliConsole.Err.MarkupLine($"--format nm: {log.Count} linears stored compressed ({Markup.Escape(string.Join(", ", log.Select(e => e.After).Distinct()))})");
                }
                var fallbacks = GgufWriter.WriteModel(m, outPath, type, new Dictionary<string, object>
                {
                    ["kernels.pruning.method"] = spec.Method.ToString(),
                    ["kernels.pruning.sparsity"] = spec.Sparsity.ToString(),
                    ["kernels.pruning.scope"] = spec.Scope.ToString(),
                }, quantizeTo is { } qt ? QuantizePlan.Like(qt) : null, compact);
                CliConsole.Err.MarkupLine($"pruned in {result.Elapsed.TotalSeconds:F2} s ({result.CalibrationTokens} calibration tokens); wrote {Markup.Escape(outPath)}" +
                                          (quantizeTo is { } written ? $" (block linears {written})" : ""));
                if (fallbacks.Count > 0)
                {
                    CliConsole.Err.MarkupLine($"[yellow]{fallbacks.Count} linears stay {type} (rows are not whole blocks of 32): {Markup.Escape(string.Join(", ", fallbacks))}[/]");
                }
                return Task.FromResult(0);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return Task.FromResult(CliConsole.Fail(e));
            }
        });
        return command;
    }

    /// <summary>The llama2.c tokenizer's vocabulary, so the exported GGUF carries its own tokenizer.</summary>
    internal static Vocabulary? VocabularyOf(ITokenizer tokenizer) => tokenizer is BpeTokenizer bpe ? bpe.Vocabulary : null;
}
