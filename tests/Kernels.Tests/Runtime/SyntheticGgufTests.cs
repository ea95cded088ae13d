using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary><c>kernels synth</c>'s file: what llama.cpp needs to load it, and the same model as the in-memory benchmark's.</summary>
public sealed class SyntheticGgufTests
{
    /// <summary>A small Llama shape with the Llama-2 vocabulary (32000), two layers: a 25 MB file in F16.</summary>
    private static readonly SyntheticShape Shape = SyntheticShape.Small with { Layers = 2, Vocab = 32000, Name = "small-2L" };

    private static string VocabularyGguf => TestData.File_("vocab/ggml-vocab-llama-spm.gguf");

    private static float[] LastLogits(LlamaModel model, int[] tokens)
    {
        using var ops = new HostOps();
        using var t = new Transformer(model, ops);
        using var cache = t.CreateCache(64);
        t.Forward(tokens, 0, cache, LogitsMode.Last);
        var logits = new float[model.Config.VocabSize];
        t.ReadLogits(0, logits);
        return logits;
    }

    [DataTheory]
    [InlineData(ElementType.F32)]
    [InlineData(ElementType.F16)]
    [InlineData(ElementType.BF16)]
    public void The_file_holds_the_in_memory_benchmark_model(ElementType type)
    {
        using var tmp = new TempDir();
        string path = tmp.File("m.gguf");
        SyntheticGguf.Write(Shape, type, TokenizerMetadata.Read(VocabularyGguf), path, seed: 7);
        using var file = ModelLoader.Load(path);
        using var memory = SyntheticModel.Create(Shape, type, null, seed: 7);
        int[] tokens = { 1, 450, 4996, 17354, 1701, 432, 17204 };
        Assert.Equal(LastLogits(memory, tokens), LastLogits(file, tokens));
        Assert.Equal(Directory.GetFiles(tmp.Path), new[] { path }); // no temporary file left behind
    }

    /// <summary><c>synth --sparse</c>: the compact file holds the in-memory sparse benchmark model, as views.</summary>
    [DataTheory]
    [InlineData("2:4")]
    [InlineData("4:8")]
    public void The_sparse_file_holds_the_in_memory_sparse_model(string pattern)
    {
        var p = NmPattern.Parse(pattern);
        using var tmp = new TempDir();
        string path = tmp.File("m.gguf");
        SyntheticGguf.Write(Shape, ElementType.F16, TokenizerMetadata.Read(VocabularyGguf), path, seed: 7, sparsity: p);
        using var file = ModelLoader.Load(path);
        using var memory = SyntheticModel.Create(Shape, ElementType.F16, p, seed: 7);
        var gate = Assert.IsType<NmSparseMatrix>(file.Layers[1].Gate);
        Assert.True(gate.Parts.Values.IsView);
        int[] tokens = { 1, 450, 4996, 17354, 1701, 432, 17204 };
        Assert.Equal(LastLogits(memory, tokens), LastLogits(file, tokens));
    }

    /// <summary><c>synth --sparse 2:4 --quantize q4</c>: kept values quantized from the same pruned weights; embedding Q4_0, classifier Q8_0.</summary>
    [DataFact]
    public void The_sparse_quantized_file_holds_quantized_kept_values_of_the_same_weights()
    {
        using var tmp = new TempDir();
        string path = tmp.File("m.gguf");
        SyntheticGguf.Write(Shape, ElementType.F16, TokenizerMetadata.Read(VocabularyGguf), path, seed: 7, sparsity: NmPattern.TwoFour, quantize: Kernels.Simd.Quantized.QuantType.Q4_0);
        using var file = ModelLoader.Load(path);
        var down = Assert.IsType<NmQuantizedMatrix>(file.Layers[1].Down);
        Assert.True(down.Parts.Values.IsView);
        Assert.Equal("Q4_0", Assert.IsType<QuantizedMatrix>(file.TokenEmbedding).Format);
        Assert.Equal("Q8_0", Assert.IsType<QuantizedMatrix>(file.Classifier).Format);
        var planned = SyntheticModel.Plan(Shape).Single(t => t.Name == "blk.1.ffn_down.weight");
        using var pruned = SyntheticModel.RandomDense(planned.Name, planned.Rows, planned.Columns, ElementType.F32, NmPattern.TwoFour, planned.Seed(7));
        using var expected = NmQuantizedMatrix.Compress(pruned, NmPattern.TwoFour, Kernels.Simd.Quantized.QuantType.Q4_0);
        Assert.Equal(expected.ToDenseArray(), down.ToDenseArray());
    }

    [DataFact]
    public void Metadata_names_and_vocabulary_are_what_llama_cpp_reads()
    {
        using var tmp = new TempDir();
        string path = tmp.File("m.gguf");
        SyntheticGguf.Write(Shape, ElementType.F16, TokenizerMetadata.Read(VocabularyGguf), path);
        using var g = GgufFile.Open(path);
        Assert.Equal("llama", g.Get<string>("general.architecture"));
        Assert.Equal(1u, g.Get<uint>("general.file_type"));
        foreach (var (key, value) in new (string, long)[]
        {
            ("llama.embedding_length", 512), ("llama.feed_forward_length", 1376), ("llama.block_count", 2),
            ("llama.attention.head_count", 8), ("llama.attention.head_count_kv", 4), ("llama.rope.dimension_count", 64),
            ("llama.context_length", 1024), ("llama.vocab_size", 32000),
        })
        {
            Assert.Equal(value, g.GetRequiredInt(key));
        }
        Assert.Equal("llama", g.Get<string>("tokenizer.ggml.model"));
        Assert.Equal(32000, ((string[])g.Metadata["tokenizer.ggml.tokens"]).Length);
        Assert.Equal(32000, ((float[])g.Metadata["tokenizer.ggml.scores"]).Length);
        Assert.Equal(32000, ((int[])g.Metadata["tokenizer.ggml.token_type"]).Length);
        var names = g.Tensors.Select(t => t.Name).ToHashSet();
        foreach (string n in new[] { "token_embd.weight", "output_norm.weight", "output.weight", "blk.1.attn_norm.weight", "blk.1.attn_q.weight",
                     "blk.1.attn_k.weight", "blk.1.attn_v.weight", "blk.1.attn_output.weight", "blk.1.ffn_norm.weight", "blk.1.ffn_gate.weight",
                     "blk.1.ffn_up.weight", "blk.1.ffn_down.weight" })
        {
            Assert.Contains(n, names);
        }
        Assert.Equal(GgmlType.F32, g.FindTensor("blk.0.ffn_norm.weight")!.Type);
        Assert.Equal(GgmlType.F16, g.FindTensor("blk.0.ffn_down.weight")!.Type);
        // The tokenizer of the file encodes as the Llama-2 vocabulary does.
        using var model = ModelLoader.Load(path);
        var tok = Kernels.Runtime.Tokenization.TokenizerLoader.Load(model, null);
        Assert.Equal(new[] { 1, 15043, 3186 }, tok.Encode("Hello world", addBos: true, addEos: false));
    }

    [DataFact]
    public void The_sentencepiece_model_gives_the_same_vocabulary_as_the_vocab_gguf()
    {
        var fromModel = TokenizerMetadata.Read(TestData.File_("tokenizer.model"));
        var fromGguf = TokenizerMetadata.Read(VocabularyGguf);
        Assert.Equal(32000, fromModel.TokenCount);
        Assert.Equal(fromGguf.TokenCount, fromModel.TokenCount);
        string[] Tokens(TokenizerMetadata m) => (string[])m.Entries.Single(e => e.Key == "tokenizer.ggml.tokens").Value;
        int[] Types(TokenizerMetadata m) => (int[])m.Entries.Single(e => e.Key == "tokenizer.ggml.token_type").Value;
        Assert.Equal(Tokens(fromGguf), Tokens(fromModel));
        Assert.Equal(Types(fromGguf), Types(fromModel));
    }

    [Fact]
    public void A_vocabulary_file_that_is_neither_gguf_nor_sentencepiece_is_refused()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("v.model"), "not a protobuf");
        Assert.Throws<ModelFormatException>(() => TokenizerMetadata.Read(tmp.File("v.model")));
        Assert.Throws<FileNotFoundException>(() => TokenizerMetadata.Read(tmp.File("missing.model")));
    }

    [Fact]
    public void A_failed_write_leaves_neither_a_file_nor_a_temporary_one()
    {
        using var tmp = new TempDir();
        string path = tmp.File("m.gguf");
        var throwing = new GgufWriter().Add("general.architecture", "llama")
            .AddTensor("a", new long[] { 4 }, GgmlType.F32, 16, _ => throw new IOException("disk full"));
        Assert.Throws<IOException>(() => throwing.Write(path));
        Assert.Empty(Directory.GetFiles(tmp.Path));
        // A tensor that writes fewer bytes than it declared fails too, and an existing file stays as it was.
        File.WriteAllText(path, "previous");
        var short_ = new GgufWriter().AddTensor("a", new long[] { 4 }, GgmlType.F32, 16, s => s.Write(new byte[8]));
        Assert.Throws<InvalidOperationException>(() => short_.Write(path));
        Assert.Equal("previous", File.ReadAllText(path));
        Assert.Single(Directory.GetFiles(tmp.Path));
    }
}
