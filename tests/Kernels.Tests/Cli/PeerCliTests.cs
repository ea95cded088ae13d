using System.Text.Json;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Cli;

/// <summary>The commands of the llama.cpp comparison: synth, bench --model, peer-report, and --profile.</summary>
public sealed class PeerCliTests
{
    [DataFact]
    public void Synth_then_bench_model_times_the_file_and_its_pruned_copy()
    {
        using var tmp = new TempDir();
        var (code, _, stderr) = CliTests.Run("synth", "--shape", "small", "--layers", "2", "--type", "bf16", "--out", tmp.File("s.gguf"),
            "--vocab", TestData.File_("tokenizer.model"));
        Assert.True(code == 0, stderr);
        Assert.Contains("vocab 32000", stderr);
        (code, _, stderr) = CliTests.Run("prune", "--model", tmp.File("s.gguf"), "--method", "magnitude", "--pattern", "2:4", "--scope", "all", "--out", tmp.File("p.gguf"));
        Assert.True(code == 0, stderr);
        (code, var stdout, stderr) = CliTests.Run("bench", "--model", tmp.File("s.gguf"), "--model", tmp.File("p.gguf"), "--decode-tokens", "8", "--prefill-tokens", "16",
            "--profile", "--json", tmp.File("b.json"), "--chart", tmp.File("b.png"));
        Assert.True(code == 0, stderr);
        Assert.Contains("s.gguf (dense BF16)", stdout);
        Assert.Contains("p.gguf (2:4 BF16)", stdout);
        Assert.Contains("thread hand-off", stdout);
        using var doc = JsonDocument.Parse(File.ReadAllText(tmp.File("b.json")));
        var variants = doc.RootElement.GetProperty("variants").EnumerateArray().ToList();
        Assert.Equal(2, variants.Count);
        Assert.Equal("2:4", variants[1].GetProperty("sparsity").GetString());
        Assert.Equal(Path.GetFullPath(tmp.File("p.gguf")), variants[1].GetProperty("model").GetString());
        foreach (var v in variants)
        {
            Assert.True(v.GetProperty("tokens_per_s_mean").GetDouble() > 0);
            Assert.True(v.GetProperty("prefill_tokens_per_s").GetDouble() > 0);
            var decode = v.GetProperty("profile").GetProperty("decode");
            Assert.InRange(decode.GetProperty("parts_ms").GetDouble(), 0.9 * decode.GetProperty("step_ms").GetDouble(), 1.1 * decode.GetProperty("step_ms").GetDouble());
        }
        Assert.True(variants[1].GetProperty("speedup_vs_dense").GetDouble() > 0);
    }

    [Fact]
    public void Bad_synth_and_bench_options_fail_with_a_message()
    {
        using var tmp = new TempDir();
        var (code, _, stderr) = CliTests.Run("bench", "--model", tmp.File("none.gguf"), "--types", "f16");
        Assert.NotEqual(0, code);
        Assert.Contains("--types", stderr);
        (code, _, stderr) = CliTests.Run("bench", "--model", tmp.File("none.gguf"));
        Assert.NotEqual(0, code);
        Assert.Contains("none.gguf", stderr);
        (code, _, stderr) = CliTests.Run("synth", "--type", "q4", "--out", tmp.File("x.gguf"));
        Assert.NotEqual(0, code);
        Assert.Contains("--type: unknown type 'q4'", stderr);
        (code, _, stderr) = CliTests.Run("synth", "--shape", "13b", "--out", tmp.File("x.gguf"));
        Assert.NotEqual(0, code);
        Assert.Contains("13b", stderr);
        (code, _, stderr) = CliTests.Run("synth", "--layers", "0", "--out", tmp.File("x.gguf"));
        Assert.NotEqual(0, code);
        Assert.Contains("--layers: 0 is outside [1, 1024]", stderr);
        (code, _, stderr) = CliTests.Run("synth", "--shape", "small", "--out", tmp.File("x.gguf"), "--vocab", tmp.File("missing.model"));
        Assert.NotEqual(0, code);
        Assert.Contains("missing.model", stderr);
        Assert.Empty(Directory.GetFiles(tmp.Path));
    }

    [DataFact]
    public void Generate_profile_goes_to_stderr_and_leaves_the_text_alone()
    {
        var (code, plain, _) = CliTests.Run("generate", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--prompt", "Once upon a time", "--steps", "40", "--temperature", "0");
        Assert.Equal(0, code);
        var (pcode, profiled, stderr) = CliTests.Run("generate", "--model", TestData.Stories260KBin, "--tokenizer", TestData.Tok512, "--prompt", "Once upon a time", "--steps", "40", "--temperature", "0", "--profile");
        Assert.Equal(0, pcode);
        Assert.Equal(plain, profiled);
        Assert.Contains("decode:", stderr);
        Assert.Contains("prefill:", stderr);
        Assert.Contains("QKV projections", stderr);
        Assert.Contains("sum of parts", stderr);
    }

    /// <summary>peer-report on raw outputs shaped like llama-bench's and bench's: medians, per-round ratios, verdicts.</summary>
    [Fact]
    public void Peer_report_computes_per_round_ratios_against_the_faster_llama_configuration()
    {
        using var tmp = new TempDir();
        string raw = tmp.File("raw");
        File.WriteAllText(tmp.File("manifest.tsv"), $"f16\tF16\t/x/f16.gguf\t1\nf16-2of4\t2:4 F16\t/x/p.gguf\t1\nq8_0\tQ8_0\t/x/q.gguf\t0\n");
        double[] llamaTg = { 20, 10, 16 }, llamaTgMmap = { 18, 12, 15 }, kernelsTg = { 22, 12, 16 }, sparseTg = { 40, 19, 29 };
        for (int r = 0; r < 3; r++)
        {
            string dir = Path.Combine(raw, $"r{r + 1}");
            Directory.CreateDirectory(dir);
            string Llama(double noMmap, double mmap, int prompt, int gen) => $$"""
                [ { "use_mmap": false, "n_prompt": {{prompt}}, "n_gen": {{gen}}, "avg_ts": {{noMmap}} },
                  { "use_mmap": true, "n_prompt": {{prompt}}, "n_gen": {{gen}}, "avg_ts": {{mmap}} } ]
                """;
            File.WriteAllText(Path.Combine(dir, "llama-f16-tg.json"), Llama(llamaTg[r], llamaTgMmap[r], 0, 32));
            File.WriteAllText(Path.Combine(dir, "llama-f16-pp.json"), Llama(100, 90, 256, 0));
            File.WriteAllText(Path.Combine(dir, "llama-q8_0-tg.json"), Llama(30, 31, 0, 32));
            // Decode and prefill from separate runs (as the script does), or one run for both.
            File.WriteAllText(Path.Combine(dir, "kernels-f16-tg.json"), $$"""{ "variants": [ { "tokens_per_s_mean": {{kernelsTg[r]}}, "prefill_tokens_per_s": 0 } ] }""");
            File.WriteAllText(Path.Combine(dir, "kernels-f16-pp.json"), $$"""{ "variants": [ { "tokens_per_s_mean": 1, "prefill_tokens_per_s": 120 } ] }""");
            if (r < 2)
            {
                // The third round's 2:4 run "failed": its ratios are missing, not zero.
                File.WriteAllText(Path.Combine(dir, "kernels-f16-2of4.json"), $$"""{ "variants": [ { "tokens_per_s_mean": {{sparseTg[r]}}, "prefill_tokens_per_s": 125 } ] }""");
            }
        }
        var (code, _, stderr) = CliTests.Run("peer-report", "--raw", raw, "--manifest", tmp.File("manifest.tsv"), "--out", tmp.File("out"), "--title", "test", "--command", "bash x.sh");
        Assert.True(code == 0, stderr);
        string md = File.ReadAllText(tmp.File("out/README.md"));
        // Decode F16: per-round ratios 22/20, 12/12, 16/16 -> median 1.00x (< 1.05: missed by 5 %).
        Assert.Contains("| decode F16 ≥ 1.05x llama.cpp F16 | 1.10x, 1.00x, 1.00x | 1.00x | missed by 5% (1.00x of 1.05x) |", md);
        // 2:4 decode against llama.cpp F16: 40/20, 19/12, missing -> median of 2.00 and 1.58 = 1.79x: met.
        Assert.Contains("| decode 2:4 F16 ≥ 1.70x llama.cpp F16 | 2.00x, 1.58x, - | 1.79x | met |", md);
        Assert.Contains("| prefill F16 ≥ 1.00x llama.cpp F16 | 1.20x, 1.20x, 1.20x | 1.20x | met |", md);
        Assert.Contains("| prefill 2:4 F16 ≥ 1.30x llama.cpp F16 | 1.25x, 1.25x, - | 1.25x | missed by 4% (1.25x of 1.30x) |", md);
        Assert.Contains("not run (manifest)", md);
        Assert.Contains("bash x.sh", md);
        using var doc = JsonDocument.Parse(File.ReadAllText(tmp.File("out/results.json")));
        Assert.Equal(3, doc.RootElement.GetProperty("rounds").GetInt32());
        Assert.True(new FileInfo(tmp.File("out/decode.png")).Length > 1000);
        Assert.True(new FileInfo(tmp.File("out/prefill.png")).Length > 1000);
    }
}
