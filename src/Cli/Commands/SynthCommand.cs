using System.CommandLine;
using Kernels.Runtime.IO;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary>
/// <c>kernels synth</c>: a synthetic Llama-shaped GGUF (deterministic random weights, llama.cpp's
/// names and metadata, the Llama-2 vocabulary) that both this runtime and llama.cpp load, so the
/// two engines can be timed on the same file.
/// </summary>
internal static class SynthCommand
{
    public static Command Create()
    {
        var shape = new ShapeOptions();
        var type = new Option<string>("--type") { Description = "Matrix value type: f32 | f16 | bf16 (norms are F32)", DefaultValueFactory = _ => "f16" };
        var output = new Option<string>("--out", "-o") { Description = "GGUF file to write (written atomically)", Required = true };
        var vocab = new Option<string?>("--vocab") { Description = "Vocabulary: a GGUF with tokenizer.* metadata or a SentencePiece tokenizer.model (default: ../shared/data/vocab/ggml-vocab-llama-spm.gguf, else ../shared/data/tokenizer.model, searched upward from the current folder)" };
        var seed = new Option<int>("--seed") { Description = "Weight seed (7 = the weights of `bench`'s in-memory model)", DefaultValueFactory = _ => 7 };
        var sparse = new Option<string?>("--sparse") { Description = "2:4 | 4:8: prune every block linear by magnitude and store it compressed (compact N:M file, docs/formats.md; llama.cpp does not read it)" };
        var family = new Option<string?>("--family") { Description = "llama3 | qwen2 | smollm2 | mistral: a small fixture of that family (its RoPE, biases, tied embeddings, sliding window and a tiny vocabulary of its tokenizer kind) instead of the Llama-2-vocabulary file; with --hf DIR also as an HF folder" };
        var hf = new Option<string?>("--hf") { Description = "With --family: also write the fixture as an HF folder (config.json, model.safetensors, tokenizer.json)" };
        var quantize = new Option<string?>("--quantize") { Description = "q8 | q4: quantized kept values (with --sparse) or block linears; embedding and classifier as `kernels quantize` writes them" };
        var command = new Command("synth", "Write a synthetic Llama-shaped GGUF with random weights and the Llama-2 vocabulary (loadable by llama.cpp)");
        shape.AddTo(command);
        command.Options.Add(type);
        command.Options.Add(output);
        command.Options.Add(vocab);
        command.Options.Add(seed);
        command.Options.Add(sparse);
        command.Options.Add(quantize);
        command.Options.Add(family);
        command.Options.Add(hf);
        command.SetAction((parse, cancellationToken) =>
        {
            try
            {
                var s = shape.Get(parse);
                var t = ShapeOptions.ParseType(parse.GetValue(type)!, "--type");
                if (parse.GetValue(family) is { } name)
                {
                    return Task.FromResult(WriteFamily(name, s, t, parse.GetValue(seed), parse.GetValue(output)!, parse.GetValue(hf)));
                }
                var pattern = parse.GetValue(sparse) is { } sp ? Kernels.Simd.Matrices.NmPattern.Parse(sp) : (Kernels.Simd.Matrices.NmPattern?)null;
                var quantized = parse.GetValue(quantize) is { } qz ? QuantizePlan.ParseKeptType(qz, "--quantize") : (Kernels.Simd.Quantized.QuantType?)null;
                string vocabPath = parse.GetValue(vocab) ?? TokenizerMetadata.FindLlama2(Environment.CurrentDirectory)
                    ?? throw new ArgumentException("--vocab: no Llama-2 vocabulary found (looked for shared/data/vocab/ggml-vocab-llama-spm.gguf and shared/data/tokenizer.model above the current folder); pass --vocab FILE");
                var vocabulary = TokenizerMetadata.Read(vocabPath);
                if (s.Vocab != vocabulary.TokenCount)
                {
                    CliConsole.Err.MarkupLine($"[grey]vocabulary size {vocabulary.TokenCount} (from {Markup.Escape(vocabPath)}) replaces the shape's {s.Vocab}[/]");
                    s = s with { Vocab = vocabulary.TokenCount };
                }
                string path = parse.GetValue(output)!;
                var clock = System.Diagnostics.Stopwatch.StartNew();
                CliConsole.WithProgress($"writing {Path.GetFileName(path)}", p =>
                {
                    SyntheticGguf.Write(s, t, vocabulary, path, parse.GetValue(seed), p, cancellationToken, pattern, quantized);
                    return 0;
                });
                CliConsole.Err.MarkupLine($"{Markup.Escape(path)}: {Markup.Escape(s.Name)} (dim {s.Dim}, hidden {s.Hidden}, {s.Layers} layers, {s.Heads} heads, {s.KvHeads} KV heads, vocab {s.Vocab}), {t}, " +
                                          $"{new FileInfo(path).Length / 1e9:F3} GB in {clock.Elapsed.TotalSeconds:F1} s; vocabulary from {Markup.Escape(vocabPath)}");
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

    private static int WriteFamily(string name, Kernels.Runtime.Model.SyntheticShape shape, Kernels.Simd.Matrices.ElementType type, int seed, string path, string? hfFolder)
    {
        var family = name.ToLowerInvariant() switch
        {
            "llama3" => Kernels.Runtime.Model.ModelFamily.Llama3,
            "qwen2" => Kernels.Runtime.Model.ModelFamily.Qwen2,
            "smollm2" => Kernels.Runtime.Model.ModelFamily.SmolLM2,
            "mistral" => Kernels.Runtime.Model.ModelFamily.Mistral,
            _ => throw new ArgumentException($"--family: '{name}' is not one of llama3, qwen2, smollm2, mistral"),
        };
        using var model = Kernels.Runtime.Model.SyntheticFamilies.Create(family, shape, type, seed: seed);
        GgufWriter.WriteModel(model, path, type);
        if (hfFolder is not null)
        {
            HfFolder.Write(model, hfFolder, type);
            if (model.ByteLevelVocabulary is { } v)
            {
                HfTokenizerJson.Write(hfFolder, v);
            }
        }
        CliConsole.Err.MarkupLine($"{Markup.Escape(path)}: {family} fixture {Markup.Escape(shape.Name)} (dim {shape.Dim}, {shape.Layers} layers, vocab {shape.Vocab}), {type}{(hfFolder is null ? "" : $"; HF folder {Markup.Escape(hfFolder)}")}");
        return 0;
    }
}
