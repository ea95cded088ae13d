using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Tokenization;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

public sealed class TokenizerTests
{
    private static BpeTokenizer Llama2Bin() => new(Llama2cTokenizerFile.Read(TestData.File_("tokenizer.bin"), 32000));

    [DataTheory]
    [InlineData("enc_llama2_once.txt", null, 0)]
    [InlineData("enc_llama2_wikitext2.txt", "wikitext2_test.txt", 7770)]
    [InlineData("enc_llama2_tinystories.txt", "tinystories_valid_sample.txt", 16178)]
    public void Llama2_tokenizer_bin_reproduces_runc_encode(string reference, string? file, int bytes)
    {
        string text = file is null ? "Once upon a time" : System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(TestData.File_(file)), 0, bytes);
        Assert.Equal(TestData.ReadInts(TestData.Reference(reference)), Llama2Bin().Encode(text, addBos: true, addEos: false));
    }

    [DataFact]
    public void Gguf_vocabularies_encode_like_the_bin_tokenizers()
    {
        string text = System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(TestData.File_("tinystories_valid_sample.txt")), 0, 16178);
        using (var model = ModelLoader.Load(TestData.Stories260KGguf))
        {
            Assert.Equal(TestData.ReadInts(TestData.Reference("ppl_tinystories_tokens.txt")), TokenizerLoader.Load(model, null).Encode(text, false, false));
        }
        using var tiny = ModelLoader.Load(TestData.File_("llama-2-tiny-random.gguf"));
        Assert.Equal(TestData.ReadInts(TestData.Reference("enc_llama2_tinystories.txt")), TokenizerLoader.Load(tiny, null).Encode(text, true, false));
    }

    /// <summary>
    /// Microsoft.ML.Tokenizers' LlamaTokenizer (real SentencePiece on tokenizer.model) as an oracle.
    /// llama2.c's encoder merges across whitespace, SentencePiece does not: they agree on ordinary
    /// prose; this checks agreement on every TinyStories paragraph and counts disagreements elsewhere.
    /// </summary>
    [DataFact]
    public void SentencePiece_oracle_agrees_on_prose()
    {
        var sp = new SentencePieceModelTokenizer(TestData.File_("tokenizer.model"));
        var bpe = Llama2Bin();
        var paragraphs = File.ReadAllText(TestData.File_("tinystories_valid_sample.txt")).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Take(300).ToList();
        int agree = paragraphs.Count(p => sp.Encode(p, true, false).SequenceEqual(bpe.Encode(p, true, false)));
        Assert.Equal(paragraphs.Count, agree);
        Assert.Equal(new[] { 1, 9038, 2501, 263, 931 }, sp.Encode("Once upon a time", true, false));
    }

    [DataFact]
    public void Decode_round_trips_and_strips_space_after_bos()
    {
        var bpe = Llama2Bin();
        const string text = "Hello world! Ünïcödé text, 日本語 and emoji 🙂.";
        int[] ids = bpe.Encode(text, addBos: true, addEos: false);
        Assert.Equal(text, bpe.Decode(ids.Skip(1), previous: ids[0]));
        var sp = new SentencePieceModelTokenizer(TestData.File_("tokenizer.model"));
        int[] ids2 = sp.Encode(text, addBos: true, addEos: false);
        Assert.Equal(text, sp.Decode(ids2.Skip(1), previous: ids2[0]));
    }

    [Fact]
    public void Encoding_empty_text_gives_only_bos()
    {
        var vocab = new Vocabulary(new[] { "<unk>"u8.ToArray(), "<s>"u8.ToArray(), "</s>"u8.ToArray(), " "u8.ToArray(), "a"u8.ToArray(), " a"u8.ToArray() },
            new float[] { 0, 0, 0, -1, -2, -0.5f }, null, 1, 2, 0, "test");
        var t = new BpeTokenizer(vocab);
        Assert.Equal(new[] { 1 }, t.Encode("", true, false));
        Assert.Equal(new[] { 1, 5, 5 }, t.Encode("a a", true, false));
        Assert.Equal(new[] { 5, 5, 2 }, t.Encode("a a", false, true));
    }

    [DataFact]
    public void Tokenizer_with_wrong_vocabulary_size_is_rejected()
    {
        var e = Assert.Throws<ModelFormatException>(() => Llama2cTokenizerFile.Read(TestData.File_("tokenizer.bin"), 512));
        Assert.Contains("tokenizer.bin", e.Message);
        Assert.Throws<ModelFormatException>(() => Llama2cTokenizerFile.Read(TestData.Tok512, 32000));
    }
}
