using Kernels.Runtime.IO;
using Kernels.Runtime.Model;

namespace Kernels.Runtime.Tokenization;

/// <summary>Chooses the tokenizer for a model: an explicit file, else the model's embedded vocabulary, else a tokenizer.model beside it.</summary>
public static class TokenizerLoader
{
    /// <param name="path">llama2.c tokenizer .bin, SentencePiece .model, or null to use the model's own.</param>
    public static ITokenizer Load(LlamaModel model, string? path)
    {
        if (path is not null)
        {
            if (!File.Exists(path))
            {
                throw new FileNotFoundException($"{path}: tokenizer file not found", path);
            }
            if (path.EndsWith(".model", StringComparison.OrdinalIgnoreCase))
            {
                return new SentencePieceModelTokenizer(path);
            }
            if (GgufFile.LooksLikeGguf(path))
            {
                using var g = GgufFile.Open(path);
                var v = GgufModelLoader.ReadVocabulary(g) ?? throw new ModelFormatException(path, "GGUF has no embedded tokenizer");
                return Checked(new BpeTokenizer(v), model, path);
            }
            return new BpeTokenizer(Llama2cTokenizerFile.Read(path, model.Config.VocabSize));
        }
        if (model.Vocabulary is not null)
        {
            return Checked(new BpeTokenizer(model.Vocabulary), model, model.Source);
        }
        string beside = Directory.Exists(model.Source) ? Path.Combine(model.Source, "tokenizer.model") : "";
        if (File.Exists(beside))
        {
            return Checked(new SentencePieceModelTokenizer(beside), model, beside);
        }
        throw new ModelFormatException(model.Source, "the model has no embedded vocabulary: pass --tokenizer (llama2.c tokenizer .bin or SentencePiece .model)");
    }

    private static ITokenizer Checked(ITokenizer t, LlamaModel model, string source) =>
        t.VocabSize == model.Config.VocabSize ? t
            : throw new ModelFormatException(source, $"tokenizer has {t.VocabSize} tokens but the model's vocabulary is {model.Config.VocabSize}");
}
