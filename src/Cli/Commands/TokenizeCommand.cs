using System.CommandLine;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Tokenization;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary><c>kernels tokenize</c>: text to token ids with a model's or a vocabulary file's tokenizer, without loading weights.</summary>
internal static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m") { Description = "Model whose tokenizer to use: .gguf (embedded vocabulary), HF folder (tokenizer.json or tokenizer.model), or a llama2.c .bin (with --vocab tokenizer.bin)" };
        var vocab = new Option<string?>("--vocab") { Description = "Tokenizer file: vocabulary GGUF, tokenizer.json, SentencePiece .model, or llama2.c tokenizer .bin (needs --model for its size)" };
        var text = new Option<string?>("--text", "-t") { Description = "Text to tokenize" };
        var file = new Option<string?>("--file", "-f") { Description = "UTF-8 file to tokenize" };
        var noBos = new Option<bool>("--no-bos") { Description = "Do not add BOS (default: add it when the vocabulary asks for it)" };
        var noParseSpecial = new Option<bool>("--no-parse-special") { Description = "Treat control-token text such as <|im_start|> as plain text" };
        var json = new Option<bool>("--json") { Description = "Print {\"ids\": [...], \"pieces\": [...]} as JSON" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Print each id with its piece" };
        var command = new Command("tokenize", "Print the token ids of a text (llama.cpp's llama-tokenize)") { model, vocab, text, file, noBos, noParseSpecial, json, verbose };
        command.Validators.Add(r =>
        {
            if (r.GetValue(model) is null && r.GetValue(vocab) is null)
            {
                r.AddError("give --model or --vocab");
            }
            if (r.GetValue(text) is null == (r.GetValue(file) is null))
            {
                r.AddError("give exactly one of --text and --file");
            }
        });
        command.SetAction(parse =>
        {
            try
            {
                var tokenizer = Open(parse.GetValue(model), parse.GetValue(vocab));
                string input = parse.GetValue(text) ?? File.ReadAllText(parse.GetValue(file)!, Encoding.UTF8);
                bool addBos = !parse.GetValue(noBos) && tokenizer.AddBosByDefault;
                int[] ids = tokenizer.Encode(input, addBos, false, parseSpecial: !parse.GetValue(noParseSpecial));
                var pieces = ids.Select(tokenizer.Spelling).ToArray();
                if (parse.GetValue(json))
                {
                    Console.Out.WriteLine(JsonSerializer.Serialize(new { tokenizer = tokenizer.Description, ids, pieces }, Readable));
                }
                else if (parse.GetValue(verbose))
                {
                    CliConsole.Out.MarkupLine(Markup.Escape(tokenizer.Description));
                    var table = new Table().AddColumns("#", "id", "piece");
                    for (int i = 0; i < ids.Length; i++)
                    {
                        table.AddRow(i.ToString(), ids[i].ToString(), Markup.Escape(JsonSerializer.Serialize(pieces[i], Readable)));
                    }
                    CliConsole.Out.Write(table);
                }
                else
                {
                    Console.Out.WriteLine(string.Join(' ', ids));
                }
                return 0;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return CliConsole.Fail(e);
            }
        });
        return command;
    }

    /// <summary>Non-ASCII text stays readable (UTF-8 output); quotes and control characters are escaped.</summary>
    private static readonly JsonSerializerOptions Readable = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static ITokenizer Open(string? model, string? vocab)
    {
        if (vocab is not null)
        {
            int? size = model is not null && ModelLoader.Detect(model) == ModelFormat.Llama2c ? Llama2cVocabSize(model) : null;
            return TokenizerLoader.Open(vocab, size);
        }
        if (Directory.Exists(model))
        {
            foreach (string name in new[] { "tokenizer.json", "tokenizer.model" })
            {
                if (File.Exists(Path.Combine(model, name)))
                {
                    return TokenizerLoader.Open(Path.Combine(model, name));
                }
            }
            throw new ModelFormatException(model, "the folder has no tokenizer.json or tokenizer.model");
        }
        if (ModelLoader.Detect(model!) == ModelFormat.Llama2c)
        {
            throw new ModelFormatException(model!, "a llama2.c checkpoint has no vocabulary: add --vocab tokenizer.bin");
        }
        return TokenizerLoader.Open(model!);
    }

    private static int Llama2cVocabSize(string path)
    {
        var header = new byte[Llama2cCheckpoint.HeaderBytes];
        using (var s = File.OpenRead(path))
        {
            s.ReadExactly(header);
        }
        return Llama2cCheckpoint.ReadConfig(header, path, out _).VocabSize;
    }
}
