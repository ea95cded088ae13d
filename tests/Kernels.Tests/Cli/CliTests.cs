using System.Diagnostics;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Cli;

/// <summary>The kernels executable as a user runs it (separate process: stdout holds only the text).</summary>
public sealed class CliTests
{
    internal static (int Code, string Out, string Err) Run(params string[] args) => RunWithInput(null, args);

    /// <summary>Runs kernels with <paramref name="input"/> on stdin (closed afterwards), or with stdin inherited when null.</summary>
    internal static (int Code, string Out, string Err) RunWithInput(string? input, params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "kernels.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = input is not null, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        if (input is not null)
        {
            p.StandardInput.Write(input);
            p.StandardInput.Close();
        }
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

    /// <summary>dip-report writes its Markdown and its JSON (rows without a hit rate included).</summary>
    [DataFact]
    public void Dip_report_writes_markdown_and_json()
    {
        using var tmp = new TempDir();
        var (code, _, stderr) = Run("dip-report", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--text", TestData.File_("tinystories_valid_sample.txt"),
            "--text-bytes", "0:3000", "--keeps", "0.5", "--gammas", "1", "--dram-fraction", "0.8", "-o", tmp.Path);
        Assert.True(code == 0, stderr);
        Assert.Contains("| DIP | 0.5 |", File.ReadAllText(Path.Combine(tmp.Path, "dip-report.md")));
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(tmp.Path, "dip-report.json")));
        Assert.True(json.RootElement.GetProperty("rows").GetArrayLength() >= 3);
    }

    /// <summary>train-sdtp writes a predictor GGUF that perplexity's --token-prune-saliency predictor uses; a predictor without its file is one clear error.</summary>
    [DataFact]
    public void Train_sdtp_writes_a_predictor_that_token_pruning_uses()
    {
        using var tmp = new TempDir();
        string predictor = Path.Combine(tmp.Path, "sdtp.gguf");
        var (code, stdout, stderr) = Run("train-sdtp", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--calibration", TestData.File_("tinystories_valid_sample.txt"),
            "--calibration-bytes", "0:60000", "--calibration-windows", "10", "--steps", "50", "--out", predictor);
        Assert.True(code == 0, stderr);
        Assert.Contains("stages at layers 1,2,3,4", stdout);
        (code, stdout, stderr) = Run("perplexity", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--text", TestData.File_("tinystories_valid_sample.txt"),
            "--max-bytes", "3000", "--token-prune", "0.9", "--token-prune-saliency", "predictor", "--token-prune-predictor", predictor);
        Assert.True(code == 0, stderr);
        Assert.Contains("saliency Predictor", stderr);
        (code, _, stderr) = Run("perplexity", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--text", TestData.File_("tinystories_valid_sample.txt"),
            "--max-bytes", "3000", "--token-prune", "0.9", "--token-prune-saliency", "predictor");
        Assert.NotEqual(0, code);
        Assert.Contains("--token-prune-predictor", stderr);
        (code, _, stderr) = Run("train-sdtp", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--calibration", TestData.File_("tinystories_valid_sample.txt"),
            "--calibration-bytes", "0:60000", "--calibration-windows", "2", "--stages", "2,9", "--out", predictor + ".bad");
        Assert.NotEqual(0, code);
        Assert.Contains("--stages", stderr);
        Assert.False(File.Exists(predictor + ".bad"));
    }

    /// <summary>kernels serve on a free port answers /health and /v1/models, and a SIGTERM stops it cleanly.</summary>
    [DataFact]
    public async Task Serve_listens_answers_and_stops_on_sigterm()
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "kernels.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { dll, "serve", "--model", TestData.Stories260KGguf, "--chat-template", "llama-2", "--port", "0", "--parallel", "2" })
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        string? url = null;
        var stderr = new System.Text.StringBuilder();
        while (url is null && await p.StandardError.ReadLineAsync() is { } line)
        {
            stderr.AppendLine(line);
            url = System.Text.RegularExpressions.Regex.Match(line, @"on (http://\S+?)[ ,]").Groups[1] is { Success: true } g ? g.Value : null;
        }
        Assert.True(url is not null, stderr.ToString());
        using var http = new HttpClient { BaseAddress = new Uri(url!) };
        Assert.Contains("\"slots\":2", await http.GetStringAsync("/health"));
        Assert.Contains("stories260K", await http.GetStringAsync("/v1/models"));
        Process.Start("kill", ["-TERM", p.Id.ToString()])!.WaitForExit();
        Assert.True(p.WaitForExit(30_000), "kernels serve did not stop on SIGTERM");
        Assert.Equal(0, p.ExitCode);
    }

    /// <summary>Piped input: one reply per line, the cache kept between turns (the second turn prefills only its new tokens).</summary>
    [DataFact]
    public void Chat_reads_messages_from_stdin_and_keeps_the_cache_between_turns()
    {
        var (code, stdout, stderr) = RunWithInput("Hello there\nTell me about the cat\n",
            "chat", "--model", TestData.Stories260KGguf, "--chat-template", "llama-2", "--temperature", "0", "--max-tokens", "20");
        Assert.True(code == 0, stderr);
        Assert.Equal(2, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        var turns = System.Text.RegularExpressions.Regex.Matches(stderr, @"\[(\d+) prompt tokens, (\d+) prefilled \((\d+) kept");
        Assert.Equal(2, turns.Count);
        Assert.Equal("0", turns[0].Groups[3].Value);
        Assert.True(int.Parse(turns[1].Groups[3].Value) > 0 && int.Parse(turns[1].Groups[2].Value) < int.Parse(turns[1].Groups[1].Value), stderr);

        var (bad, _, err) = RunWithInput("hi\n", "chat", "--model", TestData.Stories260KGguf, "--chat-template", "alpaca");
        Assert.Equal(1, bad);
        Assert.Contains("chat template 'alpaca' is not one of", err);
    }
}

public sealed class BenchCliTests
{
    [Fact]
    public void Kv_policy_token_pruning_and_kv_sharing_variants_run_together()
    {
        using var tmp = new TempDir();
        var (code, _, stderr) = CliTests.Run("bench", "--shape", "small", "--layers", "2", "--types", "f32", "--kv-policy", "h2o", "--kv-budget", "0.5",
            "--token-prune", "0.9", "--token-prune-layers", "1", "--kv-share", "every:2", "--context", "32", "--decode-tokens", "2", "--prefill-tokens", "16", "--json", tmp.File("b.json"));
        Assert.True(code == 0, stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(tmp.File("b.json")));
        var names = doc.RootElement.GetProperty("variants").EnumerateArray().Select(v => v.GetProperty("name").GetString()!).ToList();
        Assert.Equal(5, names.Count); // baseline, h2o, sdtp, kv-share, baseline again: none replaces another
        Assert.Contains(names, n => n.Contains("h2o"));
        Assert.Contains(names, n => n.Contains("sdtp"));
        Assert.Contains(names, n => n.Contains("kv-share"));
    }

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

public sealed class SimplificationCliTests
{
    private static string[] Calibration => new[] { "--calibration", TestData.File_("tinystories_valid_sample.txt"), "--calibration-windows", "4", "--calibration-length", "64" };

    [DataFact]
    public void Analyze_writes_tables_json_and_heat_maps()
    {
        using var tmp = new TempDir();
        foreach (var what in new[] { "heads", "layers", "kv-share" })
        {
            var (code, stdout, stderr) = CliTests.Run(new[] { "analyze", what, "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--out", tmp.Path }.Concat(Calibration).ToArray());
            Assert.True(code == 0, stderr);
            Assert.Contains(what switch { "heads" => "head 7", "layers" => "block influence", _ => "--kv-share" }, stdout);
        }
        foreach (var f in new[] { "heads.json", "heads-ppl-increase.png", "heads-output-norm.png", "layers.json", "layers-angular.png", "kv-share.json", "kv-dissimilarity.png" })
        {
            Assert.True(new FileInfo(tmp.File(f)).Length > 100, f);
        }
        using var heads = System.Text.Json.JsonDocument.Parse(File.ReadAllText(tmp.File("heads.json")));
        Assert.Equal(5, heads.RootElement.GetProperty("perplexity_increase").GetArrayLength());
    }

    [DataFact]
    public void Prune_heads_and_drop_layers_export_smaller_models_that_run()
    {
        using var tmp = new TempDir();
        var (code, stdout, stderr) = CliTests.Run(new[] { "prune-heads", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--fraction", "0.25", "--out", tmp.File("h.gguf") }.Concat(Calibration).ToArray());
        Assert.True(code == 0, stderr);
        Assert.Contains("removed 5 units", stdout);
        (code, stdout, stderr) = CliTests.Run(new[] { "drop-layers", "--model", tmp.File("h.gguf"), "--count", "1", "--metric", "angular", "--out", tmp.File("hl.gguf") }.Concat(Calibration).ToArray());
        Assert.True(code == 0, stderr);
        Assert.Contains("4 layers left", stdout);
        Assert.True(new FileInfo(tmp.File("hl.gguf")).Length < new FileInfo(TestData.Stories260KGguf).Length * 0.85);
        (code, stdout, stderr) = CliTests.Run("generate", "--model", tmp.File("hl.gguf"), "--prompt", "Once upon a time", "--steps", "30", "--temperature", "0");
        Assert.True(code == 0, stderr);
        Assert.StartsWith("Once upon a time", stdout);
        (code, _, stderr) = CliTests.Run(new[] { "drop-layers", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--count", "5", "--out", tmp.File("x.gguf") }.Concat(Calibration).ToArray());
        Assert.NotEqual(0, code);
        Assert.Contains("can remove 0..4 of 5 layers", stderr);
    }

    [DataFact]
    public void Generate_and_perplexity_accept_kv_share_and_token_prune()
    {
        var (code, stdout, stderr) = CliTests.Run("generate", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--prompt",
            "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends every day.",
            "--steps", "60", "--temperature", "0", "--token-prune", "0.8", "--token-prune-layers", "1,2", "--kv-share", "4:3");
        Assert.True(code == 0, stderr);
        Assert.StartsWith("Once upon a time", stdout);
        Assert.Contains("token-prune: r 0.8 at layers 1,2 ", stderr);
        Assert.Contains("kv-share: 1 of 5 layers", stderr);
        Assert.Matches(@"per layer \d+,\d+,\d+,\d+,\d+", stderr);
        using var tmp = new TempDir();
        (code, _, stderr) = CliTests.Run("perplexity", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--text", TestData.File_("tinystories_valid_sample.txt"),
            "--max-bytes", "16178", "--token-prune", "0.9", "--json", tmp.File("p.json"));
        Assert.True(code == 0, stderr);
        Assert.Contains("scoring the continuation", stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(tmp.File("p.json")));
        Assert.InRange(doc.RootElement.GetProperty("perplexity").GetDouble(), 2, 6);
        (code, _, stderr) = CliTests.Run("generate", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--prompt", "x", "--kv-share", "1:2");
        Assert.NotEqual(0, code);
        Assert.Contains("earlier layer", stderr);
    }

    [Fact]
    public void Bench_compares_token_pruning_and_kv_sharing()
    {
        using var tmp = new TempDir();
        var (code, stdout, stderr) = CliTests.Run("bench", "--shape", "small", "--layers", "4", "--types", "f32", "--decode-tokens", "2", "--prefill-tokens", "64",
            "--token-prune", "0.8", "--token-prune-layers", "1,2", "--kv-share", "every:2", "--sequential", "--json", tmp.File("b.json"), "--chart", tmp.File("b.png"));
        Assert.True(code == 0, stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(tmp.File("b.json")));
        var v = doc.RootElement.GetProperty("variants").EnumerateArray().ToList();
        Assert.Equal(4, v.Count);
        Assert.Equal("dense F32 (repeat)", v[3].GetProperty("name").GetString());
        long denseKv = v[0].GetProperty("prefill_kv_bytes").GetInt64();
        Assert.Equal(1.0, v[0].GetProperty("prefill_layer_token_fraction").GetDouble());
        Assert.Equal((64 + 52 + 41 + 41) / 256.0, v[1].GetProperty("prefill_layer_token_fraction").GetDouble(), 9);
        Assert.Equal(0.64, v[1].GetProperty("token_prune_final_keep").GetDouble(), 9);
        Assert.Equal(denseKv / 2, v[2].GetProperty("prefill_kv_bytes").GetInt64());
    }
}
