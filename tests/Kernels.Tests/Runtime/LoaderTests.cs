using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Session;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

public sealed class LoaderTests
{
    private static readonly int[] Prompt = { 1, 403, 407, 261, 378, 260, 412, 271, 300, 289, 309, 272 };

    private static float[][] Logits(LlamaModel model)
    {
        using var ops = new HostOps();
        var all = ModelFixtures.TeacherForcedLogits(model, ops, Prompt, Enumerable.Range(0, Prompt.Length), batched: true);
        return Enumerable.Range(0, Prompt.Length).Select(p => all[p]).ToArray();
    }

    [DataFact]
    public void Hf_folder_round_trip_with_rotate_half_permutation_gives_identical_logits()
    {
        using var tmp = new TempDir();
        using var bin = ModelLoader.Load(TestData.Stories260KBin);
        HfFolder.Write(bin, tmp.Path, ElementType.F32);
        using var hf = ModelLoader.Load(tmp.Path);
        Assert.Equal(ModelFormat.HfFolder, ModelLoader.Detect(tmp.Path));
        // The stored q_proj really is in HF's rotate-half order (differs from the interleaved rows) ...
        var (tensors, _) = Safetensors.ReadHeader(tmp.File("model.safetensors"));
        Assert.Contains(tensors, t => t.Name == "model.layers.0.self_attn.q_proj.weight" && t.Shape.SequenceEqual(new long[] { 64, 64 }));
        // ... and loading permutes it back: identical logits.
        var expected = Logits(bin);
        var actual = Logits(hf);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i], actual[i]);
        }
    }

    [DataFact]
    public void Hf_folder_without_permutation_would_differ()
    {
        // Guards the test above: writing Q/K without the permutation must change the logits.
        using var bin = ModelLoader.Load(TestData.Stories260KBin);
        using var tmp = new TempDir();
        HfFolder.Write(bin, tmp.Path, ElementType.F32);
        using var hf = ModelLoader.Load(tmp.Path);
        var l0 = hf.Layers[0];
        var unpermuted = RopeLayout.InterleavedToHalfSplit((DenseMatrix)l0.Query, hf.Config.HeadDim);
        l0.Query = unpermuted;
        Assert.NotEqual(Logits(bin)[^1], Logits(hf)[^1]);
    }

    [DataTheory]
    [InlineData(ElementType.F16, 2e-2f)]
    [InlineData(ElementType.BF16, 2e-1f)]
    public void Hf_half_precision_folders_load_and_stay_close(ElementType type, float tolerance)
    {
        using var tmp = new TempDir();
        using var bin = ModelLoader.Load(TestData.Stories260KBin);
        HfFolder.Write(bin, tmp.Path, type);
        using var hf = ModelLoader.Load(tmp.Path);
        Assert.Equal(type, ((DenseMatrix)hf.Layers[0].Gate).ElementType);
        var a = Logits(bin);
        var b = Logits(hf);
        for (int i = 0; i < a.Length; i++)
        {
            Tolerance.AllClose(a[i], b[i], tolerance, tolerance, $"{type} logits pos {i}");
        }
    }

    [DataFact]
    public void Sharded_hf_folder_loads_through_the_index()
    {
        using var tmp = new TempDir();
        using var bin = ModelLoader.Load(TestData.Stories260KBin);
        HfFolder.Write(bin, tmp.Path, ElementType.F32);
        // Split the single file into two shards plus an index.
        var (tensors, _) = Safetensors.ReadHeader(tmp.File("model.safetensors"));
        var bytes = File.ReadAllBytes(tmp.File("model.safetensors"));
        var shard = tensors.Select((t, i) => (t, file: i % 2 == 0 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors")).ToList();
        foreach (var group in shard.GroupBy(s => s.file))
        {
            Safetensors.Write(tmp.File(group.Key), group.Select(s => (s.t.Name, s.t.Shape, s.t.DType, bytes.AsSpan((int)s.t.Offset, (int)s.t.ByteLength).ToArray())));
        }
        File.Delete(tmp.File("model.safetensors"));
        var map = string.Join(",", shard.Select(s => $"\"{s.t.Name}\": \"{s.file}\""));
        File.WriteAllText(tmp.File("model.safetensors.index.json"), $"{{\"metadata\": {{}}, \"weight_map\": {{{map}}}}}");
        using var hf = ModelLoader.Load(tmp.Path);
        Assert.Equal(Logits(bin)[^1], Logits(hf)[^1]);
    }

    [DataFact]
    public void Gguf_export_round_trips()
    {
        using var tmp = new TempDir();
        using var bin = ModelLoader.Load(TestData.Stories260KBin);
        bin.Vocabulary = Llama2cTokenizerFile.Read(TestData.Tok512, 512);
        GgufWriter.WriteModel(bin, tmp.File("m.gguf"), ElementType.F32);
        using var back = ModelLoader.Load(tmp.File("m.gguf"));
        Assert.Equal(Logits(bin)[^1], Logits(back)[^1]);
        Assert.Equal(bin.Vocabulary.Pieces.Length, back.Vocabulary!.Pieces.Length);
        Assert.Equal(bin.Vocabulary.Pieces[403], back.Vocabulary.Pieces[403]);
    }

    [DataFact]
    public void Tiny_random_f16_gguf_loads_with_separate_classifier_and_runs()
    {
        using var model = ModelLoader.Load(TestData.File_("llama-2-tiny-random.gguf"));
        Assert.False(model.SharedClassifier);
        Assert.Equal(ElementType.F16, ((DenseMatrix)model.Layers[0].Query).ElementType);
        Assert.Equal(32000, model.Config.VocabSize);
        Assert.Equal(8, model.Config.Dim);
        using var ops = new HostOps();
        using var refOps = new ReferenceOps();
        int[] tokens = { 1, 9038, 2501, 263, 931 };
        var a = ModelFixtures.TeacherForcedLogits(model, ops, tokens, new[] { 4 }, batched: false)[4];
        var b = ModelFixtures.TeacherForcedLogits(model, refOps, tokens, new[] { 4 }, batched: false)[4];
        Tolerance.AllClose(b, a, 1e-4f, 1e-4f, "f16 logits");
        Assert.All(a, v => Assert.True(float.IsFinite(v)));
    }

    [DataTheory]
    [InlineData("stories260K.bin", "llama2.c v0", "wq")]
    [InlineData("stories260K.gguf", "GGUF v3", "blk.0.attn_q.weight")]
    [InlineData("llama-2-tiny-random.gguf", "GGUF v3", "output.weight")]
    public void Inspect_lists_tensors_from_headers(string file, string format, string tensor)
    {
        var s = ModelInspector.Inspect(TestData.File_(file));
        Assert.Equal(format, s.Format);
        Assert.Contains(s.Tensors, t => t.Name == tensor);
        if (file.EndsWith(".gguf"))
        {
            Assert.Contains(s.Metadata, kv => kv.Key == "general.architecture" && kv.Value == "llama");
            Assert.Contains(s.Tensors, t => t.Name == "blk.0.attn_k.weight" && t.Shape.Length == 2);
        }
    }

    [DataFact]
    public async Task Async_load_reports_progress_and_honours_cancellation()
    {
        var seen = new List<float>();
        using (var model = await ModelLoader.LoadAsync(TestData.Stories260KBin, new SyncProgress(seen.Add)))
        {
            Assert.Equal(5, model.Layers.Count);
        }
        Assert.Equal(1f, seen[^1]);
        Assert.True(seen.SequenceEqual(seen.Order()), "progress must not go backwards");
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ModelLoader.LoadAsync(TestData.Stories260KGguf, null, cts.Token));
    }

    [DataFact]
    public async Task Generation_stream_honours_cancellation_between_steps()
    {
        var (model, tokenizer) = ModelFixtures.LoadStoriesBin();
        using (model)
        {
            using var ops = new HostOps();
            using var session = InferenceSession.Create(model, ops, new InferenceOptions());
            var generator = new TextGenerator(session, tokenizer);
            using var cts = new CancellationTokenSource();
            int pieces = 0;
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                await foreach (var _ in generator.GenerateAsync("Once upon a time", new GenerationOptions { Steps = 500, Temperature = 0 }, cts.Token))
                {
                    if (++pieces == 10)
                    {
                        cts.Cancel();
                    }
                }
            });
            Assert.InRange(pieces, 10, 11);
        }
    }

    [DataFact]
    public void Seeded_sampling_is_reproducible()
    {
        var (model, tokenizer) = ModelFixtures.LoadStoriesBin();
        using (model)
        {
            string Run(ulong seed)
            {
                using var ops = new HostOps();
                using var session = InferenceSession.Create(model, ops, new InferenceOptions());
                var g = new TextGenerator(session, tokenizer);
                var sb = new System.Text.StringBuilder();
                Task.Run(async () =>
                {
                    await foreach (var p in g.GenerateAsync("Once", new GenerationOptions { Steps = 60, Temperature = 0.9f, TopP = 0.9f, Seed = seed }))
                    {
                        sb.Append(p);
                    }
                }).GetAwaiter().GetResult();
                return sb.ToString();
            }
            Assert.Equal(Run(7), Run(7));
            Assert.NotEqual(Run(7), Run(8));
        }
    }

    private sealed class SyncProgress(Action<float> report) : IProgress<float>
    {
        public void Report(float value) => report(value);
    }
}
