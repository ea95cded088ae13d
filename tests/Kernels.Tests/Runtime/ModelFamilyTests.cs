using Kernels.Runtime.Caching;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Session;
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

    private static float[] LastLogits(LlamaModel model, int[] tokens)
    {
        using var ops = new HostOps();
        return ModelFixtures.PrefillLogits(model, ops, tokens);
    }

    /// <summary>The fixtures' shape: big enough for every family's vocabulary and Llama 3's scaled band (96 positions).</summary>
    internal static readonly SyntheticShape Tiny = SyntheticShape.Small with { Name = "tiny", Dim = 64, Hidden = 172, Layers = 2, Heads = 4, KvHeads = 2, Vocab = 320, MaxSequence = 256 };

    /// <summary>
    /// Each family's fixture, written by the project's GGUF and HF writers, loads from both forms
    /// with the same tokenizer ids and the same logits over 96 positions (past Llama 3's scaled
    /// original context); the family's peculiarity (scaling, biases) changes the logits.
    /// </summary>
    [Theory]
    [InlineData(ModelFamily.Llama3)]
    [InlineData(ModelFamily.Qwen2)]
    [InlineData(ModelFamily.SmolLM2)]
    [InlineData(ModelFamily.Mistral)]
    public void A_family_fixture_gives_the_same_tokens_and_logits_from_its_gguf_and_hf_forms(ModelFamily family)
    {
        using var tmp = new TempDir();
        using var model = SyntheticFamilies.Create(family, Tiny, ElementType.F32, seed: 11);
        GgufWriter.WriteModel(model, tmp.File("m.gguf"), ElementType.F32);
        HfFolder.Write(model, tmp.File("hf"), ElementType.F32);
        if (model.ByteLevelVocabulary is { } v)
        {
            HfTokenizerJson.Write(tmp.File("hf"), v);
        }
        using var gguf = ModelLoader.Load(tmp.File("m.gguf"));
        using var hf = ModelLoader.Load(tmp.File("hf"));
        Assert.Equal(model.Config.Architecture, gguf.Config.Architecture);
        Assert.Equal(model.Config.Architecture, hf.Config.Architecture);
        Assert.Equal(model.SharedClassifier, gguf.SharedClassifier);
        Assert.Equal(model.SharedClassifier, hf.SharedClassifier);
        if (family == ModelFamily.Llama3)
        {
            Assert.Equal(RopeScalingKind.Factors, gguf.Config.RopeScaling!.Kind); // llama.cpp's rope_freqs tensor
            Assert.Equal(RopeScalingKind.Llama3, hf.Config.RopeScaling!.Kind);
        }

        const string text = "the cat in the hat sat on the mat, then ran";
        int[] ids;
        if (model.ByteLevelVocabulary is not null)
        {
            var gt = TokenizerLoader.Load(gguf, null);
            var ht = TokenizerLoader.Load(hf, null);
            ids = gt.Encode(text, gt.AddBosByDefault, false);
            Assert.Equal(ids, ht.Encode(text, ht.AddBosByDefault, false));
            Assert.Equal(text, gt.Decode(ids.Where(i => i != gt.Bos)));
        }
        else
        {
            ids = TokenizerLoader.Load(gguf, null).Encode(text, true, false);
        }
        int length = family == ModelFamily.Mistral ? model.Config.SlidingWindow!.Value : 96;
        var tokens = Enumerable.Range(0, length).Select(i => ids[i % ids.Length]).ToArray();
        var a = LastLogits(gguf, tokens);
        Tolerance.AllClose(a, LastLogits(hf, tokens), 1e-3f, 1e-4f, $"{family}: GGUF vs HF logits");
        if (family == ModelFamily.Llama3)
        {
            // The file carries the scaling as per-frequency divisors: the same angles up to float rounding.
            Tolerance.AllClose(a, LastLogits(model, tokens), 1e-3f, 1e-4f, "GGUF vs in-memory logits");
        }
        else
        {
            Assert.Equal(a, LastLogits(model, tokens)); // the GGUF form is the in-memory model exactly (F32)
        }

        LlamaModel? plain = family switch
        {
            ModelFamily.Llama3 => new LlamaModel(model.Config with { RopeScaling = null }, model.TokenEmbedding, model.Layers, model.FinalNorm, model.Classifier, "unscaled"),
            ModelFamily.Qwen2 => new LlamaModel(model.Config, model.TokenEmbedding, model.Layers.Select(Unbiased).ToList(), model.FinalNorm, model.Classifier, "unbiased"),
            _ => null,
        };
        if (plain is not null)
        {
            Assert.True(a.Zip(LastLogits(plain, tokens)).Max(p => Math.Abs(p.First - p.Second)) > 1e-3f, $"{family}: the family's difference changes the logits");
        }
    }

    private static LlamaLayer Unbiased(LlamaLayer l) => new()
    {
        AttentionNorm = l.AttentionNorm, Query = l.Query, Key = l.Key, Value = l.Value, Output = l.Output,
        FfnNorm = l.FfnNorm, Gate = l.Gate, Up = l.Up, Down = l.Down, Heads = l.Heads, KvHeads = l.KvHeads,
    };

    /// <summary>Qwen2 files keep HF's half-split Q/K rows and biases (llama.cpp rotates halves for qwen2); llama files hold them interleaved.</summary>
    [Fact]
    public void Qwen2_gguf_stores_q_and_k_in_the_half_split_order_llama_cpp_expects()
    {
        using var tmp = new TempDir();
        using var model = SyntheticFamilies.Create(ModelFamily.Qwen2, Tiny, ElementType.F32, seed: 3);
        GgufWriter.WriteModel(model, tmp.File("q.gguf"), ElementType.F32);
        using var g = GgufFile.Open(tmp.File("q.gguf"));
        Assert.Equal("qwen2", g.Get<string>("general.architecture"));
        Assert.Equal(2L, g.GetRequiredInt("qwen2.block_count"));
        unsafe
        {
            var t = g.FindTensor("blk.0.attn_q.bias")!;
            var stored = new ReadOnlySpan<float>(g.TensorData(t), (int)t.ElementCount).ToArray();
            Assert.Equal(RopeLayout.InterleavedToHalfSplit(model.Layers[0].QueryBias!, model.Config.HeadDim), stored);
            var q = g.FindTensor("blk.0.attn_q.weight")!;
            var row = new ReadOnlySpan<float>(g.TensorData(q), model.Config.Dim).ToArray(); // stored row 0 = interleaved row 0
            var expected = new float[model.Config.Dim];
            model.Layers[0].Query.CopyRow(0, expected);
            Assert.Equal(expected, row);
            var row1 = new ReadOnlySpan<float>(g.TensorData(q) + 4L * model.Config.Dim, model.Config.Dim).ToArray(); // stored row 1 = interleaved row 2
            model.Layers[0].Query.CopyRow(2, expected);
            Assert.Equal(expected, row1);
        }
    }

    [Fact]
    public void A_sliding_window_is_read_from_both_forms_and_positions_past_it_are_refused()
    {
        using var tmp = new TempDir();
        var shape = SyntheticShape.Small with { Name = "mistral-tiny", Dim = 64, Hidden = 172, Layers = 1, Heads = 4, KvHeads = 1, Vocab = 400, MaxSequence = 64 };
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

/// <summary>Every family keeps the project's features: N:M compression at load (--sparse auto), VATP eviction, DIP and SDTP.</summary>
public sealed class ModelFamilyFeatureTests
{
    private static SyntheticShape Tiny => ModelFamilyTests.Tiny;

    [Theory]
    [InlineData(ModelFamily.Llama3)]
    [InlineData(ModelFamily.Qwen2)]
    [InlineData(ModelFamily.SmolLM2)]
    [InlineData(ModelFamily.Mistral)]
    public async Task Sparse_auto_vatp_dip_and_sdtp_run_on_the_family(ModelFamily family)
    {
        using var tmp = new TempDir();
        using (var pruned = SyntheticFamilies.Create(family, Tiny, ElementType.F16, NmPattern.TwoFour, seed: 4))
        {
            GgufWriter.WriteModel(pruned, tmp.File("m.gguf"), ElementType.F16);
        }
        using var dense = ModelLoader.Load(tmp.File("m.gguf"));
        using var model = ModelLoader.Load(tmp.File("m.gguf"));
        var log = Kernels.Runtime.Sparsity.SparseCompression.CompressDetected(model);
        Assert.Equal(7 * Tiny.Layers, log.Count); // every block linear holds 2:4 and is stored compressed
        Assert.All(model.Layers, l => Assert.IsType<NmSparseMatrix>(l.Query));

        var tokenizer = TokenizerLoader.Load(model, null);
        int[] prompt = tokenizer.Encode("the cat in the hat sat on the mat, then the cat ran", tokenizer.AddBosByDefault, false);
        // The compressed model computes what the dense file computes.
        using var ops = new HostOps();
        Tolerance.AllClose(ModelFixtures.PrefillLogits(dense, ops, prompt), ModelFixtures.PrefillLogits(model, ops, prompt), 1e-3f, 1e-3f, $"{family}: 2:4 compressed vs dense logits");

        var options = new InferenceOptions
        {
            Kv = new KvCacheOptions { Policy = KvPolicyKind.Vatp, BudgetTokens = 8, ProtectedTokens = 2 },
            Dip = new Kernels.Runtime.Dip.DipOptions { Keep = 0.5 },
            CacheCapacity = 64,
        };
        using (var session = InferenceSession.Create(model, ops, options))
        {
            session.Prefill(prompt);
            for (int i = 0; i < 16; i++)
            {
                session.Step(session.ArgMax());
            }
            Assert.True(session.Policy!.Evicted > 0, $"{family}: VATP evicted nothing");
            Assert.True(session.Dip!.KeepInputs < model.Config.Dim);
        }
        // The text generator prints the whole prompt, also for vocabularies without BOS (Qwen2, SmolLM2).
        using (var session = InferenceSession.Create(model, ops, new InferenceOptions()))
        {
            var text = new System.Text.StringBuilder();
            var generator = new TextGenerator(session, tokenizer);
            await foreach (var piece in generator.GenerateAsync("the cat sat", new GenerationOptions { Steps = 12, Temperature = 0 }))
            {
                text.Append(piece);
            }
            Assert.StartsWith("the cat sat", text.ToString());
        }
        var sdtp = new InferenceOptions { TokenPruning = new Kernels.Runtime.Simplification.TokenPruneOptions { StageLayers = new[] { 1 }, Ratio = 0.5, SinkTokens = 1 } };
        using (var session = InferenceSession.Create(model, ops, sdtp))
        {
            session.Prefill(prompt);
            int next = session.ArgMax();
            Assert.InRange(next, 0, model.Config.VocabSize - 1);
            Assert.True(session.Transformer.LastTokenPruning is { } trace && trace.TokensPerLayer[^1] < prompt.Length, $"{family}: SDTP pruned nothing");
        }
    }
}

/// <summary>Family metadata the project cannot run fails with the file and the key or tensor named.</summary>
public sealed class ModelFamilyBadInputTests
{
    private static readonly SyntheticShape Tiny = SyntheticShape.Small with { Name = "tiny", Dim = 32, Hidden = 64, Layers = 1, Heads = 2, KvHeads = 1, Vocab = 320, MaxSequence = 32 };

    [Fact]
    public void Gguf_rope_scaling_keys_are_read_or_refused_by_name()
    {
        using var tmp = new TempDir();
        using var model = SyntheticFamilies.Create(ModelFamily.SmolLM2, Tiny, ElementType.F32);
        GgufWriter.WriteModel(model, tmp.File("yarn.gguf"), ElementType.F32, new Dictionary<string, object> { ["llama.rope.scaling.type"] = "yarn", ["llama.rope.scaling.factor"] = 4f });
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(tmp.File("yarn.gguf")));
        Assert.Contains("yarn.gguf", e.Message);
        Assert.Contains("llama.rope.scaling.type 'yarn'", e.Message);

        GgufWriter.WriteModel(model, tmp.File("keys.gguf"), ElementType.F32, new Dictionary<string, object>
        {
            ["llama.rope.scaling.type"] = "llama3", ["llama.rope.scaling.factor"] = 8f, ["llama.rope.scaling.low_freq_factor"] = 1f,
            ["llama.rope.scaling.high_freq_factor"] = 4f, ["llama.rope.scaling.original_context_length"] = 16u,
        });
        using var keys = ModelLoader.Load(tmp.File("keys.gguf"));
        Assert.Equal(new RopeScaling(RopeScalingKind.Llama3, 8, 1, 4, 16), keys.Config.RopeScaling);

        GgufWriter.WriteModel(model, tmp.File("bad.gguf"), ElementType.F32, new Dictionary<string, object>
        {
            ["llama.rope.scaling.type"] = "llama3", ["llama.rope.scaling.low_freq_factor"] = 4f, ["llama.rope.scaling.high_freq_factor"] = 1f,
        });
        Assert.Contains("low_freq_factor", Assert.Throws<ModelFormatException>(() => ModelLoader.Load(tmp.File("bad.gguf"))).Message);
    }

    [Fact]
    public void A_bias_of_the_wrong_shape_is_named_in_both_forms()
    {
        using var tmp = new TempDir();
        using var model = SyntheticFamilies.Create(ModelFamily.Qwen2, Tiny, ElementType.F32);
        model.Layers[0].KeyBias = new float[model.Layers[0].Key.Rows + 1];
        // The writer copies what it is given; the loaders check it against the matrix.
        GgufWriter.WriteModel(model, tmp.File("q.gguf"), ElementType.F32);
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(tmp.File("q.gguf")));
        Assert.Contains("q.gguf", e.Message);
        Assert.Contains("blk.0.attn_k.bias", e.Message);
        HfFolder.Write(model, tmp.File("hf"), ElementType.F32);
        e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(tmp.File("hf")));
        Assert.Contains("self_attn.k_proj.bias", e.Message);
        Assert.Contains("model.safetensors", e.Message);
    }
}
