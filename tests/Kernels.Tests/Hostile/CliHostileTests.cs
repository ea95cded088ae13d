using Kernels.Tests.Cli;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Hostile;

/// <summary>Bad command lines and hostile files through the kernels executable: one line naming the option or file, a non-zero exit, no output file.</summary>
public sealed class CliHostileTests
{
    [Theory]
    [InlineData("--steps: -1 is outside [0, 2147483647]", "generate", "--steps", "-1")]
    [InlineData("--kv-recent: -1 is outside [0, 1]", "generate", "--kv-recent", "-1")]
    [InlineData("--kv-protect: -1 is outside", "generate", "--kv-protect", "-1")]
    [InlineData("--kv-sinks: -1 is outside", "generate", "--kv-sinks", "-1")]
    [InlineData("--dip-keep: 2 is outside (0, 1]", "generate", "--dip-keep", "2")]
    [InlineData("--dip-gamma: NaN is outside [0, 1]", "generate", "--dip-gamma", "NaN")]
    [InlineData("--dip-cache-fraction: 2 is outside [0, 1]", "generate", "--dip-cache-fraction", "2")]
    [InlineData("--dip-top-n: -5 is outside", "generate", "--dip-top-n", "-5")]
    [InlineData("--top-p: 0 is outside (0, 1]", "generate", "--top-p", "0")]
    [InlineData("--max-bytes: 0 is outside [1, ", "perplexity", "--text", "x.txt", "--max-bytes", "0")]
    [InlineData("--max-bytes: -3 is outside", "perplexity", "--text", "x.txt", "--max-bytes", "-3")]
    public void Numeric_options_out_of_range_fail_naming_option_and_range(string expected, params string[] args)
    {
        var (code, stdout, stderr) = CliTests.Run(args.Concat(new[] { "--model", "none.gguf" }).ToArray());
        Assert.NotEqual(0, code);
        Assert.Contains(expected, stderr + stdout);
    }

    [Theory]
    [InlineData("--dram-gbps: 0 is outside (0, 100000]", "--dram-gbps", "0")]
    [InlineData("--weight-bits: 0 is outside [1, 32]", "--weight-bits", "0")]
    public void Simulator_options_are_checked(string expected, params string[] args)
    {
        var (code, stdout, stderr) = CliTests.Run(new[] { "simulate", "--model", "none.gguf" }.Concat(args).ToArray());
        Assert.NotEqual(0, code);
        Assert.Contains(expected, stderr + stdout);
    }

    [Fact]
    public void Bench_rejects_zero_counts_and_types_quick_ignores()
    {
        var (code, o, e) = CliTests.Run("bench", "--decode-tokens", "0");
        Assert.NotEqual(0, code);
        Assert.Contains("--decode-tokens: 0 is outside [1, ", e + o);
        (code, o, e) = CliTests.Run("bench", "--layers", "0");
        Assert.NotEqual(0, code);
        Assert.Contains("--layers: 0 is outside [1, 1024]", e + o);
        (code, o, e) = CliTests.Run("bench", "--context", "0");
        Assert.NotEqual(0, code);
        Assert.Contains("--context: 0 is outside [1, ", e + o);
        (code, o, e) = CliTests.Run("bench", "--quick", "--types", "f64");
        Assert.NotEqual(0, code);
        Assert.Contains("--quick", e);
    }

    [Fact]
    public void Perplexity_of_an_empty_text_and_generation_past_the_context_are_errors()
    {
        using var tmp = new TempDir();
        HostileFixtures.WriteGguf(tmp.File("m.gguf"));
        File.WriteAllText(tmp.File("empty.txt"), "");
        var (code, _, stderr) = CliTests.Run("perplexity", "--model", tmp.File("m.gguf"), "--text", tmp.File("empty.txt"), "--context", "16", "--json", tmp.File("p.json"));
        Assert.NotEqual(0, code);
        Assert.True(stderr.Contains("no tokens to score"), stderr);
        Assert.False(File.Exists(tmp.File("p.json")));

        string longPrompt = string.Concat(Enumerable.Repeat("abc ", 100)); // > the fixture's 64-token context
        (code, _, stderr) = CliTests.Run("generate", "--model", tmp.File("m.gguf"), "--prompt", longPrompt, "--temperature", "0");
        Assert.NotEqual(0, code);
        Assert.Contains("more than the model's context of 64", stderr);
    }

    [Fact]
    public void Nan_weights_stop_generation_and_check_tensors_names_the_tensor()
    {
        using var tmp = new TempDir();
        HostileFixtures.WriteGguf(tmp.File("m.gguf"));
        var bytes = File.ReadAllBytes(tmp.File("m.gguf"));
        var layout = GgufLayout.Read(bytes);
        var t = layout.Tensor("blk.1.ffn_down.weight");
        long at = layout.DataStart + (long)BitConverter.ToUInt64(bytes, t.OffsetAt);
        BitConverter.GetBytes(float.NaN).CopyTo(bytes, at);
        File.WriteAllBytes(tmp.File("nan.gguf"), bytes);

        var (code, _, stderr) = CliTests.Run("generate", "--model", tmp.File("nan.gguf"), "--prompt", "abc", "--temperature", "0", "--steps", "8");
        Assert.NotEqual(0, code);
        Assert.True(stderr.Contains("layer 1 (MLP)"), stderr);
        (code, _, stderr) = CliTests.Run("generate", "--model", tmp.File("nan.gguf"), "--prompt", "abc", "--check-tensors");
        Assert.NotEqual(0, code);
        Assert.Contains("tensor blk.1.ffn_down", stderr);
        File.WriteAllText(tmp.File("t.txt"), "the abc ba the abc");
        (code, _, stderr) = CliTests.Run("perplexity", "--model", tmp.File("nan.gguf"), "--text", tmp.File("t.txt"), "--context", "16");
        Assert.NotEqual(0, code);
        Assert.True(stderr.Contains("layer 1 (MLP)"), stderr);
    }
}
