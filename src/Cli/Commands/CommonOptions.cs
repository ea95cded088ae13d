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
    public readonly Option<string> Device = new("--device") { Description = "Backend: cpu (SIMD kernels) | reference (scalar) | ilgpu-cpu (GPU kernels on ILGPU's CPU accelerator) | cuda | opencl | auto (CUDA, then OpenCL, else cpu)", DefaultValueFactory = _ => "cpu" };
    public readonly Option<string> Sparse = new("--sparse") { Description = "auto: store linears that hold a 2:4 / 4:8 pattern in the compressed N:M format; off: keep them dense", DefaultValueFactory = _ => "auto" };
    public readonly Option<bool> Mmap = MmapOption();
    public readonly Option<bool> CheckTensors = new("--check-tensors") { Description = "Read every weight once at load and stop on the first NaN or infinity, naming the tensor (as llama.cpp's --check-tensors)" };

    /// <summary>--mmap: map the weights from the file instead of reading them into huge-page memory.</summary>
    public static Option<bool> MmapOption() => new("--mmap") { Description = "Map the weights from the file (lazy, shares the page cache) instead of reading them into memory backed by 2 MiB pages (default; decode streams every weight each step and runs slower on 4 KiB pages)" };

    public void AddTo(Command command)
    {
        command.Options.Add(Model);
        command.Options.Add(Tokenizer);
        command.Options.Add(Device);
        command.Options.Add(Sparse);
        command.Options.Add(Mmap);
        command.Options.Add(CheckTensors);
    }

    /// <summary>Loads the model named by the options and applies --sparse.</summary>
    public LlamaModel Load(ParseResult parse)
    {
        var model = LoadModel(parse.GetValue(Model)!, parse.GetValue(Mmap) ? WeightMemory.Mapped : WeightMemory.HugePages);
        if (parse.GetValue(CheckTensors))
        {
            try
            {
                TensorCheck.Run(model);
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        string sparse = parse.GetValue(Sparse)!;
        if (sparse == "auto")
        {
            var log = Kernels.Runtime.Sparsity.SparseCompression.CompressDetected(model);
            if (log.Count > 0)
            {
                Console.Error.WriteLine($"sparse: {log.Count} linears compressed ({string.Join(", ", log.Select(e => e.After).Distinct())}), " +
                                        $"{log.Sum(e => e.BytesBefore) / 1e6:F2} MB -> {log.Sum(e => e.BytesAfter) / 1e6:F2} MB");
            }
        }
        else if (sparse != "off")
        {
            model.Dispose();
            throw new ArgumentException($"unknown --sparse '{sparse}' (auto, off)");
        }
        return model;
    }

    /// <summary>Creates the backend and prints which one (and which device) runs.</summary>
    public static ITransformerOps CreateOps(string device)
    {
        var ops = Backends.Create(device);
        Console.Error.WriteLine($"backend: {ops.Name}");
        return ops;
    }

    public static LlamaModel LoadModel(string path, WeightMemory memory = WeightMemory.HugePages) =>
        CliConsole.WithProgress($"loading {Path.GetFileName(path.TrimEnd('/'))}", p => ModelLoader.Load(path, p, default, memory));

    public static ITokenizer LoadTokenizer(LlamaModel model, string? path) => TokenizerLoader.Load(model, path);
}
