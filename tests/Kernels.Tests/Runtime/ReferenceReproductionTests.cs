using Kernels.Runtime.Compute;
using Kernels.Runtime.IO;
using Kernels.Runtime.Tokenization;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>Acceptance of issue A: llama2.c's greedy generations, logits and perplexity on stories260K.</summary>
public sealed class ReferenceReproductionTests
{
    [DataTheory]
    [InlineData("Once upon a time", 256, "gen_once_n256.txt")]
    [InlineData("Once upon a time", 512, "gen_once_n512.txt")]
    [InlineData("Once upon a time", 64, "gen_once_n64.txt")]
    [InlineData("Lily and Ben were playing in the garden.", 512, "gen_lilyben_n512.txt")]
    [InlineData("", 256, "gen_empty_n256.txt")]
    public void Greedy_generation_matches_llama2c_with_bin_and_gguf(string prompt, int steps, string reference)
    {
        string expected = File.ReadAllText(TestData.Reference(reference));
        var (model, tokenizer) = ModelFixtures.LoadStoriesBin();
        using (model)
        {
            using var ops = new HostOps();
            Assert.Equal(expected, ModelFixtures.Generate(model, tokenizer, ops, prompt, steps));
        }
        using var gguf = ModelLoader.Load(TestData.Stories260KGguf);
        using var ops2 = new HostOps();
        Assert.Equal(expected, ModelFixtures.Generate(gguf, TokenizerLoader.Load(gguf, null), ops2, prompt, steps));
    }

    [DataFact]
    public void Reference_backend_generation_matches_llama2c()
    {
        var (model, tokenizer) = ModelFixtures.LoadStoriesBin();
        using (model)
        {
            using var ops = new ReferenceOps();
            Assert.Equal(File.ReadAllText(TestData.Reference("gen_once_n256.txt")), ModelFixtures.Generate(model, tokenizer, ops, "Once upon a time", 256));
        }
    }

    [DataTheory]
    [InlineData("cpu", false)]
    [InlineData("cpu", true)]
    [InlineData("reference", false)]
    public void Logits_match_llama2c_within_1e4(string backend, bool batched)
    {
        var reference = ModelFixtures.ReferenceLogits();
        int[] tokens = TestData.ReadInts(TestData.Reference("logits_once_tokens.txt"));
        Assert.Equal(512, tokens.Length);
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        using ITransformerOps ops = backend == "cpu" ? new HostOps() : new ReferenceOps();
        var logits = ModelFixtures.TeacherForcedLogits(model, ops, tokens, reference.Keys, batched);
        float worst = 0;
        foreach (var (pos, (input, argmax, expected)) in reference)
        {
            Assert.Equal(tokens[pos], input);
            var actual = logits[pos];
            for (int i = 0; i < expected.Length; i++)
            {
                worst = MathF.Max(worst, MathF.Abs(expected[i] - actual[i]));
            }
            Assert.Equal(argmax, Kernels.Simd.VectorMath.ArgMax(actual));
        }
        Assert.True(worst <= 1e-4f, $"max |logit diff| = {worst:E3}");
        if (backend == "reference" && !batched)
        {
            // Same summation order as run.c: essentially bit-exact.
            Assert.True(worst <= 1e-5f, $"reference backend max |diff| = {worst:E3}");
        }
    }

    [DataFact]
    public void Gguf_and_bin_give_identical_logits()
    {
        int[] tokens = TestData.ReadInts(TestData.Reference("logits_once_tokens.txt"))[..100];
        using var bin = ModelLoader.Load(TestData.Stories260KBin);
        using var gguf = ModelLoader.Load(TestData.Stories260KGguf);
        using var ops = new HostOps();
        var positions = Enumerable.Range(0, 100).ToArray();
        var a = ModelFixtures.TeacherForcedLogits(bin, ops, tokens, positions, batched: true);
        var b = ModelFixtures.TeacherForcedLogits(gguf, ops, tokens, positions, batched: true);
        foreach (int p in positions)
        {
            Assert.Equal(a[p], b[p]);
        }
    }

    [DataTheory]
    [InlineData("tinystories_valid_sample.txt", 16178, "ppl_tinystories", 4.4934920469, 0.001)]
    [InlineData("wikitext2_test.txt", 7770, "ppl_wikitext2", 130.6539770227, 0.03)]
    public void Perplexity_matches_llama2c(string file, int bytes, string reference, double ppl, double tolerance)
    {
        var (model, tokenizer) = ModelFixtures.LoadStoriesBin();
        using (model)
        {
            string text = System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(TestData.File_(file)), 0, bytes);
            int[] tokens = tokenizer.Encode(text, false, false);
            Assert.Equal(TestData.ReadInts(TestData.Reference(reference + "_tokens.txt")), tokens);
            using var ops = new HostOps();
            using var transformer = new Kernels.Runtime.Inference.Transformer(model, ops);
            var result = new Kernels.Runtime.Evaluation.PerplexityEvaluator(transformer).Evaluate(tokens, 256, tokenizer.Bos);
            Assert.InRange(result.Perplexity, ppl - tolerance, ppl + tolerance);
            var chunks = File.ReadAllLines(TestData.Reference(reference + "_chunks.txt")).Where(l => !l.StartsWith('#'))
                .Select(l => l.Split(' ')).Select(f => (Start: int.Parse(f[1]), Len: int.Parse(f[2]), Nll: double.Parse(f[3], System.Globalization.CultureInfo.InvariantCulture))).ToList();
            Assert.Equal(chunks.Count, result.Chunks.Count);
            for (int i = 0; i < chunks.Count; i++)
            {
                Assert.Equal(chunks[i].Start, result.Chunks[i].Start);
                Assert.Equal(chunks[i].Len, result.Chunks[i].Length);
                Assert.InRange(result.Chunks[i].Nll, chunks[i].Nll - 0.01, chunks[i].Nll + 0.01);
            }
        }
    }
}
