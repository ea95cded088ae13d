using System.CommandLine;
using Kernels.Runtime.IO;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary>
/// <c>kernels quantize IN OUT --type q8_0|q4_0|q4_k|q6_k</c>: a standard GGUF that llama.cpp loads,
/// with ggml's reference quantizers (the same bytes as <c>llama-quantize</c> for every Q8_0 / Q4_0
/// tensor). Matrices whose rows are not whole blocks stay in the float fallback type, named in the
/// output.
/// </summary>
internal static class QuantizeCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("input") { Description = "Model to quantize: .gguf, llama2.c .bin or HF folder" };
        var output = new Argument<string>("output") { Description = "GGUF file to write (written atomically)" };
        var type = new Option<string>("--type") { Description = "q8_0 | q4_0 | q4_k | q6_k", Required = true };
        var pure = new Option<bool>("--pure") { Description = "Every matrix in --type, embedding and classifier included (llama-quantize --pure); default: the classifier at higher precision (Q8_0 for q4_0, where llama.cpp writes Q6_K; Q6_K for q4_k)" };
        var fallback = new Option<string>("--fallback") { Description = "Float type of matrices whose rows are not whole blocks: f32 | f16 | bf16", DefaultValueFactory = _ => "f16" };
        var command = new Command("quantize", "Quantize a model's matrices to Q8_0, Q4_0, Q4_K or Q6_K and write a standard GGUF (Q8_0/Q4_0 tensors byte-identical to llama-quantize)")
        {
            input, output, type, pure, fallback,
        };
        command.SetAction((parse, ct) =>
        {
            try
            {
                var qt = QuantizePlan.ParseType(parse.GetValue(type)!, "--type");
                var floatType = ShapeOptions.ParseType(parse.GetValue(fallback)!, "--fallback");
                string inPath = parse.GetValue(input)!, outPath = parse.GetValue(output)!;
                if (Path.GetFullPath(inPath) == Path.GetFullPath(outPath))
                {
                    throw new ArgumentException($"output {outPath} is the input file; write to another path");
                }
                var clock = System.Diagnostics.Stopwatch.StartNew();
                using var model = CommonOptions.LoadModel(inPath, WeightMemory.Mapped);
                var plan = parse.GetValue(pure) ? new QuantizePlan(qt, qt, qt) : QuantizePlan.Like(qt);
                var fallbacks = CliConsole.WithProgress($"quantizing to {qt}", _ => GgufWriter.WriteModel(model, outPath, floatType, new Dictionary<string, object>
                {
                    ["general.quantized_by"] = "kernels quantize",
                }, plan));
                CliConsole.Err.MarkupLine($"{Markup.Escape(outPath)}: linears {plan.Linears}, token_embd {plan.TokenEmbedding}, output {(model.SharedClassifier ? "tied to token_embd" : plan.Classifier.ToString())}; " +
                                          $"{new FileInfo(outPath).Length / 1e6:F1} MB in {clock.Elapsed.TotalSeconds:F1} s");
                if (fallbacks.Count > 0)
                {
                    CliConsole.Err.MarkupLine($"[yellow]{fallbacks.Count} matrices are not {qt} (rows are not whole blocks of {qt.BlockElements()}): Q8_0 where marked, else {floatType}: {Markup.Escape(string.Join(", ", fallbacks))}[/]");
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
}
