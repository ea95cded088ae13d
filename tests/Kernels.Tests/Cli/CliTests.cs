using System.Diagnostics;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Cli;

/// <summary>The kernels executable as a user runs it (separate process: stdout holds only the text).</summary>
public sealed class CliTests
{
    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "kernels.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(300_000))
        {
            p.Kill(true);
            Assert.Fail("kernels timed out");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [DataFact]
    public void Generate_prints_exactly_the_llama2c_text_on_stdout()
    {
        var (code, stdout, stderr) = Run("generate", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512,
            "--prompt", "Once upon a time", "--steps", "256", "--temperature", "0");
        Assert.Equal(0, code);
        Assert.Equal(File.ReadAllText(TestData.Reference("gen_once_n256.txt")), stdout);
        Assert.Contains("tok/s", stderr);
    }

    [DataFact]
    public void Perplexity_writes_json()
    {
        using var tmp = new TempDir();
        var (code, _, stderr) = Run("perplexity", "--model", TestData.Stories260KGguf, "--text", TestData.File_("tinystories_valid_sample.txt"),
            "--context", "256", "--max-bytes", "16178", "--json", tmp.File("p.json"));
        Assert.True(code == 0, stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(tmp.File("p.json")));
        Assert.InRange(doc.RootElement.GetProperty("perplexity").GetDouble(), 4.4925, 4.4945);
        Assert.Equal(7786, doc.RootElement.GetProperty("tokens").GetInt32());
        Assert.True(doc.RootElement.GetProperty("tokens_per_s").GetDouble() > 0);
        Assert.True(doc.RootElement.TryGetProperty("mean_nll", out _));
    }

    [DataFact]
    public void Inspect_and_errors()
    {
        var (code, stdout, _) = Run("inspect", TestData.Stories260KGguf);
        Assert.Equal(0, code);
        Assert.Contains("blk.4.ffn_down.weight", stdout);
        var (bad, _, err) = Run("generate", "--model", TestData.Tok512, "--prompt", "x");
        Assert.NotEqual(0, bad);
        Assert.Contains("tok512.bin", err);
    }
}

public sealed class BenchCliTests
{
    [Fact]
    public void Bench_writes_json_and_chart_for_every_variant()
    {
        using var tmp = new TempDir();
        var (code, stdout, stderr) = CliTests.Run("bench", "--shape", "small", "--layers", "2", "--types", "f32,f16",
            "--decode-tokens", "3", "--prefill-tokens", "16", "--json", tmp.File("b.json"), "--chart", tmp.File("b.png"));
        Assert.True(code == 0, stderr);
        Assert.Contains("2:4 F16", stdout);
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(tmp.File("b.json")));
        var variants = doc.RootElement.GetProperty("variants").EnumerateArray().ToList();
        Assert.Equal(6, variants.Count);
        foreach (var v in variants)
        {
            Assert.True(v.GetProperty("tokens_per_s").GetDouble() > 0);
            Assert.True(v.GetProperty("weight_bytes").GetInt64() > 0);
            Assert.True(v.GetProperty("speedup_vs_dense").GetDouble() > 0);
        }
        var dense = variants.First(v => v.GetProperty("name").GetString() == "dense F16");
        var sparse = variants.First(v => v.GetProperty("name").GetString() == "2:4 F16");
        Assert.True(sparse.GetProperty("weight_bytes").GetInt64() < dense.GetProperty("weight_bytes").GetInt64());
        Assert.True(new FileInfo(tmp.File("b.png")).Length > 1000);
    }
}

public sealed class PruneCliTests
{
    [DataFact]
    public void Prune_exports_a_gguf_that_generate_loads_compressed()
    {
        using var tmp = new TempDir();
        var (code, stdout, stderr) = CliTests.Run("prune", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--method", "wanda",
            "--pattern", "2:4", "--calibration", TestData.File_("tinystories_valid_sample.txt"), "--calibration-windows", "4", "--calibration-length", "64",
            "--out", tmp.File("p.gguf"));
        Assert.True(code == 0, stderr);
        Assert.Contains("blk.4.ffn_down", stdout);
        var (gcode, text, gerr) = CliTests.Run("generate", "--model", tmp.File("p.gguf"), "--prompt", "Once upon a time", "--steps", "40", "--temperature", "0");
        Assert.True(gcode == 0, gerr);
        Assert.StartsWith("Once upon a time", text);
        Assert.Contains("sparse: 15 linears compressed", gerr);
        var (bad, _, berr) = CliTests.Run("prune", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--method", "wanda", "--pattern", "2:4", "--out", tmp.File("x.gguf"));
        Assert.NotEqual(0, bad);
        Assert.Contains("--calibration is required", berr);
    }
}
