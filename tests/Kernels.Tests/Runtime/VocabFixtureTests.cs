using System.Text;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Tokenization;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>
/// llama.cpp's tokenizer test cases (../shared/data/vocab: vocabulary-only GGUFs, each with test
/// strings and the ids llama.cpp gives them without BOS): every string must give exactly those
/// ids, and decoding must give the string back.
/// </summary>
public sealed class VocabFixtureTests
{
    public static TheoryData<string> Vocabularies => new() { "llama-spm", "phi-3", "gpt-2", "deepseek-llm", "deepseek-coder", "falcon", "starcoder" };

    private static string Fixture(string name) => Path.Combine(TestData.Folder, "vocab", $"ggml-vocab-{name}.gguf");

    /// <summary>The .inp strings (separated by __ggml_vocab_test__ lines) and the .out id lines.</summary>
    private static List<(string Text, int[] Ids)> Cases(string name)
    {
        string path = Fixture(name);
        var inputs = File.ReadAllText(path + ".inp", Encoding.UTF8).Split("\n__ggml_vocab_test__\n");
        var outputs = File.ReadAllLines(path + ".out", Encoding.UTF8);
        // The .inp ends with a separator: one more (empty) piece than there are expected lines.
        Assert.True(inputs.Length == outputs.Length + 1 && inputs[^1].Length == 0, $"{name}: {inputs.Length} inputs for {outputs.Length} outputs");
        return outputs.Select((line, i) => (inputs[i], line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray())).ToList();
    }

    [DataTheory]
    [MemberData(nameof(Vocabularies))]
    public void Every_test_string_gives_llama_cpps_ids_and_decodes_back(string name)
    {
        var tokenizer = TokenizerLoader.Open(Fixture(name));
        bool sentencePiece = tokenizer is BpeTokenizer;
        Assert.Equal(name is "llama-spm" or "phi-3", sentencePiece);
        var cases = Cases(name);
        Assert.True(cases.Count >= 40, $"{name}: only {cases.Count} cases");
        foreach (var (text, expected) in cases)
        {
            int[] ids = tokenizer.Encode(text, addBos: false, addEos: false);
            Assert.True(expected.SequenceEqual(ids), $"{name}: {Show(text)}\n  llama.cpp {string.Join(' ', expected)}\n  here      {string.Join(' ', ids)}");
            // SentencePiece adds a dummy-prefix space in front of the text.
            string decoded = tokenizer.Decode(ids);
            Assert.Equal(sentencePiece && text.Length > 0 ? " " + text : text, decoded);
        }
    }

    private static string Show(string s) => System.Text.Json.JsonSerializer.Serialize(s);

    [DataFact]
    public void Byte_level_vocabularies_read_their_special_tokens_and_pre_tokenizer()
    {
        using var g = GgufFile.Open(Fixture("deepseek-coder"));
        var v = GgufModelLoader.ReadByteLevelVocabulary(g)!;
        Assert.Equal("deepseek-coder", v.Pre.Name);
        Assert.Equal((32013, 32014, true, false), (v.Special.Bos, v.Special.Eos, v.Special.AddBos, v.Special.AddEos));
        Assert.Equal(TokenKind.UserDefined, v.Kinds[32009]); // "ü", matched as a whole even without parse_special
        var t = new ByteLevelBpeTokenizer(v);
        string bos = v.Tokens[32013];
        // Control tokens in the text are text unless parse_special; user-defined ones always match.
        Assert.DoesNotContain(32013, t.Encode("a" + bos, false, false));
        Assert.Equal(new[] { 32013, 64, 32013 }, t.Encode(bos + "a" + bos, false, false, parseSpecial: true));
        Assert.Equal(new[] { 32013, 64 }, t.Encode("a", addBos: true, addEos: false));
        Assert.Equal(bos, t.Spelling(32013));
        Assert.True(t.IsEndOfGeneration(32014) && !t.IsEndOfGeneration(32013)); // EOS (here also EOT by name) ends generation
        Assert.Equal(0, t.DecodePiece(-1, 32013).Length);
    }

    [DataFact]
    public void The_hf_tokenizer_json_form_of_a_vocabulary_tokenizes_as_its_gguf_form()
    {
        using var tmp = new TempDir();
        foreach (string name in new[] { "gpt-2", "starcoder" })
        {
            using var g = GgufFile.Open(Fixture(name));
            var v = GgufModelLoader.ReadByteLevelVocabulary(g)!;
            string json = HfTokenizerJson.Write(tmp.File(name), v);
            var hf = TokenizerLoader.Open(json);
            var gguf = new ByteLevelBpeTokenizer(v);
            Assert.Contains(name == "gpt-2" ? "gpt-2" : "smollm", hf.Description);
            foreach (var (text, expected) in Cases(name))
            {
                Assert.Equal(expected, hf.Encode(text, false, false));
                Assert.Equal(expected, gguf.Encode(text, false, false));
            }
        }
    }

    [Fact]
    public void Bad_byte_level_vocabularies_name_the_file_and_key()
    {
        using var tmp = new TempDir();
        string Write(string file, Action<GgufWriter> more)
        {
            var w = new GgufWriter().Add("tokenizer.ggml.model", "gpt2")
                .Add("tokenizer.ggml.tokens", new[] { "a", "b", "ab" })
                .Add("tokenizer.ggml.token_type", new[] { 1, 1, 1 });
            more(w);
            w.Write(tmp.File(file));
            return tmp.File(file);
        }
        ModelFormatException Fails(string path) => Assert.Throws<ModelFormatException>(() => TokenizerLoader.Open(path));

        var e = Fails(Write("pre.gguf", w => w.Add("tokenizer.ggml.merges", new[] { "a b" }).Add("tokenizer.ggml.pre", "klingon")));
        Assert.Contains("pre.gguf", e.Message);
        Assert.Contains("tokenizer.ggml.pre 'klingon'", e.Message);

        e = Fails(Write("merge.gguf", w => w.Add("tokenizer.ggml.merges", new[] { "a b", "a c" }).Add("tokenizer.ggml.pre", "gpt-2")));
        Assert.Contains("tokenizer.ggml.merges[1] = 'a c' names 'c'", e.Message);

        e = Fails(Write("nomerges.gguf", w => w.Add("tokenizer.ggml.pre", "gpt-2")));
        Assert.Contains("tokenizer.ggml.merges is missing", e.Message);

        e = Fails(Write("shape.gguf", w => w.Add("tokenizer.ggml.merges", new[] { "ab" }).Add("tokenizer.ggml.pre", "gpt-2")));
        Assert.Contains("is not two tokens", e.Message);

        e = Fails(Write("bos.gguf", w => w.Add("tokenizer.ggml.merges", new[] { "a b" }).Add("tokenizer.ggml.bos_token_id", 7u)));
        Assert.Contains("tokenizer.ggml.bos_token_id = 7", e.Message);

        new GgufWriter().Add("tokenizer.ggml.model", "bert").Add("tokenizer.ggml.tokens", new[] { "a" }).Write(tmp.File("bert.gguf"));
        Assert.Contains("tokenizer.ggml.model 'bert'", Fails(tmp.File("bert.gguf")).Message);

        File.WriteAllText(tmp.File("tokenizer.json"), """{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}, "pre_tokenizer": {"type": "ByteLevel", "use_regex": true}}""");
        e = Fails(tmp.File("tokenizer.json"));
        Assert.Contains("model.merges[0] = 'a b' makes 'ab'", e.Message);
        Assert.Contains("tokenizer.json", e.Message);
    }
}
