using System.CommandLine;
using System.CommandLine.Parsing;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Model;
using Kernels.Runtime.Pruning;
using Kernels.Runtime.Tokenization;

namespace Kernels.Cli.Commands;

/// <summary>What a calibration-driven command works on: the model, its tokenizer, the calibration windows and host ops.</summary>
internal sealed record CalibratedModel(LlamaModel Model, ITokenizer Tokenizer, CalibrationSet Data, HostOps Ops, string ModelPath);

/// <summary>
/// The shape shared by <c>analyze …</c>, <c>prune-heads</c> and <c>drop-layers</c>: --model,
/// --tokenizer, an --out option, the calibration options and any extra ones; the model, tokenizer
/// and calibration set are loaded (with clear errors) before the body runs.
/// </summary>
internal static class CalibratedModelCommand
{
    public static Command Create(string name, string description, string modelDescription, string tokenizerDescription, Option<string> output,
        Func<CalibratedModel, ParseResult, CancellationToken, int> body, params Option[] extra)
    {
        var model = new Option<string>("--model", "-m") { Description = modelDescription, Required = true };
        var tokenizer = new Option<string?>("--tokenizer", "-z") { Description = tokenizerDescription };
        var calib = new CalibrationOptions();
        var command = new Command(name, description) { model, tokenizer, output };
        calib.AddTo(command, alpha: false);
        foreach (var o in extra)
        {
            command.Options.Add(o);
        }
        command.SetAction((parse, ct) =>
        {
            try
            {
                string path = parse.GetValue(model)!;
                using var m = CommonOptions.LoadModel(path);
                var tok = TokenizerLoader.Load(m, parse.GetValue(tokenizer));
                var data = calib.Require(parse, tok, CommandPath(parse));
                using var ops = new HostOps();
                return Task.FromResult(body(new CalibratedModel(m, tok, data, ops, path), parse, ct));
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return Task.FromResult(CliConsole.Fail(e));
            }
        });
        return command;
    }

    /// <summary>"analyze heads", "drop-layers": the invoked command below the root, for error messages.</summary>
    private static string CommandPath(ParseResult parse)
    {
        var names = new List<string>();
        for (var r = parse.CommandResult; r.Parent is CommandResult parent; r = parent)
        {
            names.Insert(0, r.Command.Name);
        }
        return string.Join(" ", names);
    }
}
