using System.CommandLine;
using Kernels.Runtime.Compute;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Tokenization;

namespace Kernels.Cli.Commands;

/// <summary>Options shared by the model-running commands.</summary>
internal sealed class CommonOptions
{
    public readonly Option<string> Model = new("--model", "-m") { Description = "Model: llama2.c .bin, .gguf, or HF folder (config.json + safetensors)", Required = true };
    public readonly Option<string?> Tokenizer = new("--tokenizer", "-z") { Description = "Tokenizer: llama2.c tokenizer .bin or SentencePiece .model (default: the model's embedded vocabulary)" };
    public readonly Option<string> Device = new("--device") { Description = "Backend: cpu (SIMD kernels), reference (scalar)", DefaultValueFactory = _ => "cpu" };

    public void AddTo(Command command)
    {
        command.Options.Add(Model);
        command.Options.Add(Tokenizer);
        command.Options.Add(Device);
    }

    public static ITransformerOps CreateOps(string device) => device switch
    {
        "cpu" => new HostOps(),
        "reference" => new ReferenceOps(),
        _ => throw new ArgumentException($"unknown --device '{device}' (cpu, reference)"),
    };

    public static LlamaModel LoadModel(string path) =>
        CliConsole.WithProgress($"loading {Path.GetFileName(path.TrimEnd('/'))}", p => ModelLoader.Load(path, p));

    public static ITokenizer LoadTokenizer(LlamaModel model, string? path) => TokenizerLoader.Load(model, path);
}
