using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Tokenization;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>Llama 3-style RoPE scaling and Mistral's sliding window, on fixtures written by the project's own GGUF and HF writers.</summary>
public sealed class ModelFamilyTests
{
    private static readonly RopeScaling Llama31 = new(RopeScalingKind.Llama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalContext: 8192);

    /// <summary>HF transformers' _compute_llama3_parameters in double precision.</summary>
    private static double Llama3Frequency(double theta, int i, int d, double factor, double low, double high, double original)
    {
        double freq = 1.0 / Math.Pow(theta, 2.0 * i / d);
        double wavelen = 2 * Math.PI / freq;
        if (wavelen < original / high)
        {
            return freq;
        }
        if (wavelen > original / low)
        {
            return freq / factor;
        }
        double smooth = (original / wavelen - low) / (high - low);
        return (1 - smooth) * freq / factor + smooth * freq;
    }

    [Fact]
    public void Llama3_and_linear_scaling_follow_their_formulas()
    {
        const float theta = 500000f;
        const int d = 128;
        int kept = 0, divided = 0, ramped = 0;
        for (int i = 0; i < d / 2; i++)
        {
            double expected = Llama3Frequency(theta, i, d, 8, 1, 4, 8192);
            double plain = 1.0 / Math.Pow(theta, 2.0 * i / d);
            Tolerance.Close((float)expected, Llama31.Frequency(theta, i, d), 2e-6f, (float)expected, 0, $"llama3 frequency {i}");
            Tolerance.Close((float)(plain / 4), new RopeScaling(RopeScalingKind.Linear, 4).Frequency(theta, i, d), 2e-6f, (float)plain, 0, $"linear frequency {i}");
            if (Math.Abs(expected - plain) < 1e-12 * plain) kept++;
            else if (Math.Abs(expected - plain / 8) < 1e-9 * plain) divided++;
            else ramped++;
        }
        Assert.True(kept > 0 && divided > 0 && ramped > 0, $"all three regimes: kept {kept}, divided {divided}, ramped {ramped}");

        // The table rotates by the scaled frequencies; llama.cpp's per-frequency divisors give the same table.
        var table = new RopeTable(d, 4096, theta, Llama31);
        var divisors = new RopeTable(d, 4096, theta, new RopeScaling(RopeScalingKind.Factors, 1, Divisors: Llama31.FrequencyDivisors(theta, d)));
        for (int i = 0; i < d / 2; i++)
        {
            float angle = 3000 * Llama31.Frequency(theta, i, d);
            Tolerance.Close(MathF.Cos(angle), table.Cos(3000)[i], 0, 1, 1e-6f, $"cos {i}");
            Tolerance.Close(table.Cos(3000)[i], divisors.Cos(3000)[i], 0, 1, 2e-3f, $"divisor table cos {i}");
        }
    }

    /// <summary>A tiny byte-level vocabulary: the 256 byte tokens, a few merges, and BOS/EOS control tokens.</summary>
    private static ByteLevelVocabulary TinyVocabulary(int size, string pre)
    {
        var tokens = Enumerable.Range(0, 256).Select(b => AlphabetChar((byte)b)).ToList();
        var merges = new List<string>();
        foreach (var (a, b) in new[] { ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a") })
        {
            merges.Add($"{a} {b}");
            tokens.Add(a + b);
        }
        tokens.Add("<|begin_of_text|>");
        tokens.Add("<|eot_id|>");
        while (tokens.Count < size)
        {
            tokens.Add($"<|reserved_{tokens.Count}|>");
        }
        var kinds = tokens.Select((t, i) => i < 256 + merges.Count ? TokenKind.Normal : TokenKind.Control).ToArray();
        int bos = 256 + merges.Count, eot = bos + 1;
        return new ByteLevelVocabulary(tokens.ToArray(), merges.ToArray(), kinds, PreTokenizers.Find(pre)!, new SpecialTokens(bos, eot, eot, null, true, false), "tiny", "merges");
    }

    private static string AlphabetChar(byte b)
    {
        // The alphabet spells byte b as one char: find it by decoding candidates.
        for (int c = 0; c < 512; c++)
        {
            if (ByteLevelAlphabet.TryDecode(((char)c).ToString()) is [var x] && x == b)
            {
                return ((char)c).ToString();
            }
        }
        throw new InvalidOperationException($"byte {b}");
    }

    private static float[] LastLogits(LlamaModel model, int[] tokens)
    {
        using var ops = new HostOps();
        using var t = new Transformer(model, ops);
        using var cache = t.CreateCache();
        t.Forward(tokens, 0, cache, LogitsMode.Last);
        var logits = new float[model.Config.VocabSize];
        t.ReadLogits(0, logits);
        return logits;
    }

    [Fact]
    public void A_llama3_style_fixture_gives_the_same_logits_and_tokens_from_its_gguf_and_hf_forms()
    {
        using var tmp = new TempDir();
        var shape = SyntheticShape.Small with { Name = "llama3-tiny", Dim = 64, Hidden = 172, Layers = 2, Heads = 4, KvHeads = 2, Vocab = 320, MaxSequence = 256 };
        using var synthetic = SyntheticModel.Create(shape, ElementType.F32, null, seed: 11);
        // Llama 3: rope base 500000, Llama 3.1 scaling, tied embeddings, a byte-level tokenizer (llama-bpe).
        var config = synthetic.Config with { RopeTheta = 500000f, RopeScaling = Llama31 with { OriginalContext = 64 } };
        var model = new LlamaModel(config, synthetic.TokenEmbedding, synthetic.Layers, synthetic.FinalNorm, synthetic.TokenEmbedding, "llama3-tiny")
        {
            ByteLevelVocabulary = TinyVocabulary(shape.Vocab, "llama-bpe"),
        };
        GgufWriter.WriteModel(model, tmp.File("m.gguf"), ElementType.F32);
        HfFolder.Write(model, tmp.File("hf"), ElementType.F32);
        HfTokenizerJson.Write(tmp.File("hf"), model.ByteLevelVocabulary);

        using var gguf = ModelLoader.Load(tmp.File("m.gguf"));
        using var hf = ModelLoader.Load(tmp.File("hf"));
        Assert.Equal(RopeScalingKind.Factors, gguf.Config.RopeScaling!.Kind); // llama.cpp's rope_freqs tensor
        Assert.Equal(RopeScalingKind.Llama3, hf.Config.RopeScaling!.Kind);
        Assert.True(gguf.SharedClassifier && hf.SharedClassifier);

        var gt = TokenizerLoader.Load(gguf, null);
        var ht = TokenizerLoader.Load(hf, null);
        int[] ids = gt.Encode("the cat in the hat sat on the mat, then ran", gt.AddBosByDefault, false);
        Assert.Equal(ids, ht.Encode("the cat in the hat sat on the mat, then ran", ht.AddBosByDefault, false));
        Assert.Equal(model.ByteLevelVocabulary.Special.Bos, ids[0]);
        // Long enough that scaled and unscaled positions differ.
        var tokens = Enumerable.Range(0, 96).Select(i => ids[i % ids.Length]).ToArray();
        var a = LastLogits(gguf, tokens);
        var b = LastLogits(hf, tokens);
        Tolerance.AllClose(a, b, 1e-3f, 1e-4f, "GGUF vs HF logits");
        var unscaled = new LlamaModel(config with { RopeScaling = null }, synthetic.TokenEmbedding, synthetic.Layers, synthetic.FinalNorm, synthetic.TokenEmbedding, "unscaled");
        Assert.True(a.Zip(LastLogits(unscaled, tokens)).Max(p => Math.Abs(p.First - p.Second)) > 1e-3f, "the scaling changes the logits");
    }

    [Fact]
    public void A_sliding_window_is_read_from_both_forms_and_positions_past_it_are_refused()
    {
        using var tmp = new TempDir();
        var shape = SyntheticShape.Small with { Name = "mistral-tiny", Dim = 64, Hidden = 172, Layers = 1, Heads = 4, KvHeads = 1, Vocab = 64, MaxSequence = 64 };
        using var synthetic = SyntheticModel.Create(shape, ElementType.F32, null, seed: 5);
        var model = new LlamaModel(synthetic.Config with { SlidingWindow = 8 }, synthetic.TokenEmbedding, synthetic.Layers, synthetic.FinalNorm, synthetic.Classifier, "mistral-tiny");
        GgufWriter.WriteModel(model, tmp.File("m.gguf"), ElementType.F32);
        HfFolder.Write(model, tmp.File("hf"), ElementType.F32);
        foreach (string path in new[] { tmp.File("m.gguf"), tmp.File("hf") })
        {
            using var loaded = ModelLoader.Load(path);
            Assert.Equal(8, loaded.Config.SlidingWindow);
            LastLogits(loaded, Enumerable.Range(1, 8).ToArray()); // within the window: plain causal attention
            var e = Assert.Throws<NotSupportedException>(() => LastLogits(loaded, Enumerable.Range(1, 9).ToArray()));
            Assert.Contains("sliding window of 8 tokens", e.Message);
        }
    }

    [Fact]
    public void Unimplemented_rope_scaling_is_named()
    {
        using var tmp = new TempDir();
        var shape = SyntheticShape.Small with { Dim = 32, Hidden = 64, Layers = 1, Heads = 2, KvHeads = 1, Vocab = 16, MaxSequence = 32 };
        using var synthetic = SyntheticModel.Create(shape, ElementType.F32, null, seed: 2);
        HfFolder.Write(synthetic, tmp.File("hf"), ElementType.F32);
        string config = tmp.File("hf/config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}"));
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(tmp.File("hf")));
        Assert.Contains("rope_scaling type 'yarn'", e.Message);
        Assert.Contains("config.json", e.Message);
    }
}
