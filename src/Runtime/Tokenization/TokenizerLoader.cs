using Kernels.Runtime.IO;
using Kernels.Runtime.Model;

namespace Kernels.Runtime.Tokenization;

/// <summary>
/// Chooses the tokenizer for a model: an explicit file, else the model's embedded vocabulary, else
/// a tokenizer.json or tokenizer.model beside it.
/// </summary>
public static class TokenizerLoader
{
    /// <param name="path">llama2.c tokenizer .bin, SentencePiece .model, HF tokenizer.json, a GGUF, or null to use the model's own.</param>
    public static ITokenizer Load(LlamaModel model, string? path)
    {
        if (path is not null)
        {
            return Checked(Open(path, model.Config.VocabSize), model, path);
        }
        if (model.ByteLevelVocabulary is not null)
        {
            return Checked(new ByteLevelBpeTokenizer(model.ByteLevelVocabulary), model, model.Source);
        }
        if (model.Vocabulary is not null)
        {
            return Checked(new BpeTokenizer(model.Vocabulary), model, model.Source);
        }
        string folder = Directory.Exists(model.Source) ? model.Source : "";
        foreach (string name in new[] { "tokenizer.json", "tokenizer.model" })
        {
            string beside = Path.Combine(folder, name);
            if (folder.Length > 0 && File.Exists(beside))
            {
                return Checked(Open(beside, model.Config.VocabSize), model, beside);
            }
        }
        throw new ModelFormatException(model.Source, "the model has no embedded vocabulary: pass --tokenizer (llama2.c tokenizer .bin, SentencePiece .model, tokenizer.json or a GGUF)");
    }

    /// <summary>
    /// A tokenizer from a file alone: SentencePiece <c>.model</c>, HF <c>tokenizer.json</c>, a GGUF
    /// with an embedded vocabulary (a model or a vocabulary-only file), or a llama2.c tokenizer .bin
    /// (which needs <paramref name="llama2cVocabSize"/>).
    /// </summary>
    public static ITokenizer Open(string path, int? llama2cVocabSize = null)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path}: tokenizer file not found", path);
        }
        if (path.EndsWith(".model", StringComparison.OrdinalIgnoreCase))
        {
            return new SentencePieceModelTokenizer(path);
        }
        if (path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            return new ByteLevelBpeTokenizer(HfTokenizerJson.Read(path));
        }
        if (GgufFile.LooksLikeGguf(path))
        {
            using var g = GgufFile.Open(path);
            if (GgufModelLoader.ReadByteLevelVocabulary(g) is { } b)
            {
                return new ByteLevelBpeTokenizer(b);
            }
            var v = GgufModelLoader.ReadVocabulary(g) ?? throw new ModelFormatException(path, "GGUF has no embedded tokenizer (tokenizer.ggml.model)");
            return new BpeTokenizer(v);
        }
        if (llama2cVocabSize is not int size)
        {
            throw new ModelFormatException(path, "a llama2.c tokenizer .bin needs its model (for the vocabulary size): pass --model too");
        }
        return new BpeTokenizer(Llama2cTokenizerFile.Read(path, size));
    }

    private static ITokenizer Checked(ITokenizer t, LlamaModel model, string source) =>
        t.VocabSize == model.Config.VocabSize ? t
            : throw new ModelFormatException(source, $"tokenizer has {t.VocabSize} tokens but the model's vocabulary is {model.Config.VocabSize}");
}
