using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Tokenization;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>Corrupt, truncated and unsupported inputs fail with a message naming the file/tensor and the problem.</summary>
public sealed class BadInputTests
{
    private static ModelFormatException Fails(string path)
    {
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(path));
        Assert.Contains(path, e.Message);
        return e;
    }

    [DataFact]
    public void Truncated_llama2c_checkpoint()
    {
        using var tmp = new TempDir();
        var bytes = File.ReadAllBytes(TestData.Stories260KBin);
        File.WriteAllBytes(tmp.File("t.bin"), bytes[..(bytes.Length / 2)]);
        Assert.Contains("truncated", Fails(tmp.File("t.bin")).Message);
        File.WriteAllBytes(tmp.File("h.bin"), bytes[..20]);
        Assert.Contains("header", Fails(tmp.File("h.bin")).Message);
        File.WriteAllBytes(tmp.File("x.bin"), bytes.Concat(new byte[16]).ToArray());
        Assert.Contains("trailing", Fails(tmp.File("x.bin")).Message);
    }

    [Fact]
    public void Garbage_llama2c_header()
    {
        using var tmp = new TempDir();
        var header = new byte[28 + 64];
        BitConverter.GetBytes(64).CopyTo(header, 0);
        BitConverter.GetBytes(-3).CopyTo(header, 12); // negative heads
        File.WriteAllBytes(tmp.File("g.bin"), header);
        Assert.Contains("n_heads -3", Fails(tmp.File("g.bin")).Message);
        File.WriteAllBytes(tmp.File("e.bin"), Array.Empty<byte>());
        Assert.Contains("empty", Fails(tmp.File("e.bin")).Message);
    }

    [DataFact]
    public void Truncated_and_corrupt_gguf()
    {
        using var tmp = new TempDir();
        var bytes = File.ReadAllBytes(TestData.Stories260KGguf);
        File.WriteAllBytes(tmp.File("t.gguf"), bytes[..(bytes.Length - 1000)]);
        Assert.Contains("truncated", Fails(tmp.File("t.gguf")).Message);
        File.WriteAllBytes(tmp.File("h.gguf"), bytes[..5000]);
        Assert.Contains("truncated", Fails(tmp.File("h.gguf")).Message);
        var bad = (byte[])bytes.Clone();
        BitConverter.GetBytes(7u).CopyTo(bad, 4); // version 7
        File.WriteAllBytes(tmp.File("v.gguf"), bad);
        Assert.Contains("version 7", Fails(tmp.File("v.gguf")).Message);
    }

    [Fact]
    public void Unsupported_tensor_type_and_missing_tensor_are_named()
    {
        using var tmp = new TempDir();
        var w = new GgufWriter()
            .Add("general.architecture", "llama").Add("llama.embedding_length", 8u).Add("llama.feed_forward_length", 16u)
            .Add("llama.block_count", 1u).Add("llama.attention.head_count", 2u)
            .AddTensor("token_embd.weight", new long[] { 4, 8 }, GgmlType.Q8_0, new byte[34 * 1]);
        w.Write(tmp.File("q.gguf"));
        var e = Fails(tmp.File("q.gguf"));
        Assert.Contains("token_embd.weight", e.Message);
        Assert.Contains("Q8_0", e.Message);

        new GgufWriter().Add("general.architecture", "llama").Add("llama.embedding_length", 8u).Add("llama.feed_forward_length", 16u)
            .Add("llama.block_count", 1u).Add("llama.attention.head_count", 2u)
            .AddTensor("token_embd.weight", new long[] { 4, 8 }, GgmlType.F32, new byte[4 * 8 * 4])
            .Write(tmp.File("m.gguf"));
        Assert.Contains("blk.0.attn_q.weight is missing", Fails(tmp.File("m.gguf")).Message);

        new GgufWriter().Add("general.architecture", "gpt2").Write(tmp.File("a.gguf"));
        Assert.Contains("architecture 'gpt2'", Fails(tmp.File("a.gguf")).Message);
    }

    [DataFact]
    public void Wrong_tensor_shape_is_named()
    {
        using var tmp = new TempDir();
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        HfFolder.Write(model, tmp.Path, Kernels.Simd.Matrices.ElementType.F32);
        // Claim a different intermediate size: ffn tensors no longer match.
        string cfg = File.ReadAllText(tmp.File("config.json")).Replace("\"intermediate_size\": 172", "\"intermediate_size\": 176");
        File.WriteAllText(tmp.File("config.json"), cfg);
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(tmp.Path));
        Assert.Contains("mlp.gate_proj.weight", e.Message);
    }

    [Fact]
    public void Corrupt_safetensors_header()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("config.json"), "{\"hidden_size\":8,\"intermediate_size\":16,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":4}");
        File.WriteAllBytes(tmp.File("model.safetensors"), BitConverter.GetBytes(1000UL).Concat("{not json"u8.ToArray()).ToArray());
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(tmp.Path));
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void Missing_files_are_reported()
    {
        Assert.Throws<FileNotFoundException>(() => ModelLoader.Load("/nonexistent/model.bin"));
    }

    [DataFact]
    public void Gguf_vocabulary_is_checked_against_model()
    {
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        var e = Assert.Throws<ModelFormatException>(() => TokenizerLoader.Load(model, TestData.File_("llama-2-tiny-random.gguf")));
        Assert.Contains("32000", e.Message);
        Assert.Throws<ModelFormatException>(() => TokenizerLoader.Load(model, null));
    }
}
