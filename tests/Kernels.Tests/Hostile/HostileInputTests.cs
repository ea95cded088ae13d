using System.Buffers.Binary;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Session;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Tokenization;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Hostile;

/// <summary>Each defect of issue J, reproduced on a tiny valid file and checked to fail clearly (or load correctly).</summary>
public sealed class HostileInputTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly byte[] _good;

    public HostileInputTests()
    {
        HostileFixtures.WriteGguf(_tmp.File("good.gguf"));
        _good = File.ReadAllBytes(_tmp.File("good.gguf"));
    }

    public void Dispose() => _tmp.Dispose();

    private GgufLayout Layout => GgufLayout.Read(_good);

    /// <summary>Writes <paramref name="bytes"/>, loads them and returns the error, which must name the file and contain <paramref name="expected"/>.</summary>
    private ModelFormatException Rejects(byte[] bytes, string expected, string name = "bad.gguf")
    {
        string path = _tmp.File(name);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(path, memory: WeightMemory.Mapped));
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
        return e;
    }

    private byte[] WithValue(string key, uint type, byte[] value)
    {
        var e = Layout.Key(key);
        return Layout.Splice(_good, e.TypeAt, e.End, BitConverter.GetBytes(type).Concat(value).ToArray());
    }

    private byte[] WithExtraKey(string key, uint type, byte[] value) =>
        Layout.Splice(_good, Layout.HeaderEnd - Layout.Tensors.Sum(t => t.End - t.NameAt), Layout.HeaderEnd - Layout.Tensors.Sum(t => t.End - t.NameAt),
            GgufLayout.KeyValue(key, type, value), countDelta: 1);

    [Fact]
    public void The_fixture_itself_loads_and_runs()
    {
        using var model = ModelLoader.Load(_tmp.File("good.gguf"), memory: WeightMemory.Mapped);
        using var ops = new HostOps();
        using var t = new Transformer(model, ops);
        using var cache = t.CreateCache();
        t.Forward(new[] { 1, 5, 7 }, 0, cache, LogitsMode.Last);
        Assert.InRange(t.ArgMax(0), 0, model.Config.VocabSize - 1);
    }

    [Fact]
    public void Metadata_of_every_gguf_type_round_trips_as_typed_values()
    {
        var values = new Dictionary<string, object>
        {
            ["u8"] = (byte)7, ["i8"] = (sbyte)-7, ["u16"] = (ushort)700, ["i16"] = (short)-700, ["u32"] = 7u, ["i32"] = -7, ["f32"] = 0.5f,
            ["bool"] = true, ["str"] = "x", ["u64"] = ulong.MaxValue, ["i64"] = long.MinValue, ["f64"] = 0.25,
            ["a.u8"] = new byte[] { 1, 2 }, ["a.i8"] = new sbyte[] { -1 }, ["a.u16"] = new ushort[] { 3 }, ["a.i16"] = new short[] { -3 },
            ["a.u32"] = new uint[] { 4, 5 }, ["a.i32"] = new[] { -4 }, ["a.f32"] = new[] { 1.5f }, ["a.bool"] = new[] { true, false },
            ["a.str"] = new[] { "p", "q" }, ["a.u64"] = new ulong[] { 9 }, ["a.i64"] = new long[] { -9 }, ["a.f64"] = new[] { 2.5 },
        };
        var w = new GgufWriter();
        foreach (var (k, v) in values)
        {
            w.Add(k, v);
        }
        w.Add("u32", 8u); // set twice: the last value, written once
        w.Write(_tmp.File("types.gguf"));
        using var g = GgufFile.Open(_tmp.File("types.gguf"));
        values["u32"] = 8u;
        foreach (var (k, v) in values)
        {
            Assert.Equal(v.GetType(), g.Metadata[k].GetType());
            Assert.Equal(v, g.Metadata[k]);
        }
        Assert.Equal(new long[] { 4, 5 }, GgufFile.IntegerArray(g.Metadata["a.u32"]));
        Assert.Equal(-7L, g.Get<long>("i32"));
        Assert.Throws<ModelFormatException>(() => g.Get<int>("u64"));
        Assert.Throws<ModelFormatException>(() => g.Get<long>("f32"));
        Assert.Throws<ModelFormatException>(() => g.Get<long>("str"));
    }

    [Fact]
    public void D1_nested_arrays_are_rejected_without_recursion()
    {
        var nested = new List<byte>();
        for (int i = 0; i < 20_000; i++)
        {
            nested.AddRange(BitConverter.GetBytes(9u)); // element type: array
            nested.AddRange(BitConverter.GetBytes(1ul));
        }
        Rejects(WithExtraKey("deep", 9, nested.ToArray()), "arrays of arrays");
    }

    [Fact]
    public void D2_a_huge_context_length_is_refused_and_a_large_one_costs_nothing_until_used()
    {
        Rejects(WithValue("llama.context_length", 4, BitConverter.GetBytes(1u << 28)), "llama.context_length = 268435456 is outside");
        Rejects(WithValue("llama.context_length", 4, BitConverter.GetBytes(1u << 30)), "llama.context_length");
        File.WriteAllBytes(_tmp.File("long.gguf"), WithValue("llama.context_length", 4, BitConverter.GetBytes(1u << 26)));
        long before = GC.GetAllocatedBytesForCurrentThread();
        using var model = ModelLoader.Load(_tmp.File("long.gguf"), memory: WeightMemory.Mapped);
        using var ops = new HostOps();
        using var t = new Transformer(model, ops);
        using var cache = t.CreateCache();
        t.Forward(new[] { 1, 2 }, 0, cache, LogitsMode.Last);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 << 20, "a 2^26 context must not be allocated up front");
    }

    [Fact]
    public void D3_overlapping_duplicate_wrapped_and_unknown_tensors_are_rejected()
    {
        var l = Layout;
        var t0 = l.Tensors[0];
        var t1 = l.Tensors[1];
        var overlap = (byte[])_good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(overlap.AsSpan(t1.OffsetAt), BitConverter.ToUInt64(_good, t0.OffsetAt));
        Rejects(overlap, $"tensor {t1.Name}: data offset");

        var duplicate = l.Splice(_good, t1.NameAt, t1.RankAt, GgufLayout.GgufString(t0.Name));
        Rejects(duplicate, $"tensor {t0.Name} appears twice");

        var key = l.Key("general.architecture");
        var dupKey = l.Splice(_good, key.End, key.End, _good.AsSpan(key.KeyAt, key.End - key.KeyAt), countDelta: 1);
        Rejects(dupKey, "metadata key general.architecture appears twice");

        // Two dims whose product wraps 2^64 (the byte size would come out as 0).
        var wrap = (byte[])_good.Clone();
        var matrix = l.Tensors.First(t => BitConverter.ToUInt32(_good, t.RankAt) == 2);
        BinaryPrimitives.WriteUInt64LittleEndian(wrap.AsSpan(matrix.DimsAt), 1ul << 32);
        BinaryPrimitives.WriteUInt64LittleEndian(wrap.AsSpan(matrix.DimsAt + 8), 1ul << 32);
        Rejects(wrap, "overflow int64");

        foreach (uint code in new[] { 4u, 31u, 39u, 255u, uint.MaxValue })
        {
            var unknown = (byte[])_good.Clone();
            BinaryPrimitives.WriteUInt32LittleEndian(unknown.AsSpan(t0.TypeAt), code);
            Rejects(unknown, $"type code {code} is not a ggml type");
            string path = _tmp.File("bad.gguf");
            Assert.Throws<ModelFormatException>(() => ModelInspector.Inspect(path));
        }

        Rejects(WithValue("general.alignment", 4, BitConverter.GetBytes(48u)), "general.alignment");
        Rejects(WithValue("general.alignment", 10, BitConverter.GetBytes(32ul)), "general.alignment must be a u32");
    }

    [Fact]
    public void D4_metadata_of_the_wrong_type_or_range_is_named()
    {
        Rejects(WithValue("llama.block_count", 10, BitConverter.GetBytes((1ul << 32) + 2)), "llama.block_count = 4294967298 is outside [1, 1024]");
        Rejects(WithValue("llama.block_count", 4, BitConverter.GetBytes(0u)), "llama.block_count = 0 is outside");
        Rejects(WithValue("llama.block_count", 4, BitConverter.GetBytes(1u)), "tensors are not part of the 1-layer model");
        Rejects(WithValue("llama.block_count", 8, GgufLayout.GgufString("2")), "llama.block_count is a string, expected i64");
        Rejects(WithValue("llama.attention.head_count", 4, BitConverter.GetBytes(2u)), "tensor blk.0.attn_q.weight: shape [16, 16], expected [8, 16]");
        Rejects(WithValue("llama.attention.key_length", 4, BitConverter.GetBytes(2u)), "llama.rope.dimension_count 4 differs from the head size 2");
        Rejects(WithValue("llama.attention.layer_norm_rms_epsilon", 6, BitConverter.GetBytes(float.PositiveInfinity)), "llama.attention.layer_norm_rms_epsilon = ");
        Rejects(WithValue("llama.attention.layer_norm_rms_epsilon", 6, BitConverter.GetBytes(1e-30f)), "layer_norm_rms_epsilon");
        Rejects(WithValue("llama.rope.freq_base", 6, BitConverter.GetBytes(1e-30f)), "llama.rope.freq_base");
        Rejects(WithValue("llama.rope.freq_base", 6, BitConverter.GetBytes(float.NaN)), "llama.rope.freq_base");
        Rejects(WithValue("tokenizer.ggml.tokens", 9, BitConverter.GetBytes(8u).Concat(BitConverter.GetBytes(0ul)).ToArray()), "tokenizer.ggml.tokens is missing, empty");
        var scores = Layout.Key("tokenizer.ggml.scores");
        int count = (int)BitConverter.ToInt64(_good, scores.ValueAt + 4);
        var asInts = BitConverter.GetBytes(5u).Concat(BitConverter.GetBytes((ulong)count)).Concat(new byte[count * 4]).ToArray();
        Rejects(WithValue("tokenizer.ggml.scores", 9, asInts), "tokenizer.ggml.scores must be an f32 array");
        Rejects(WithValue("tokenizer.ggml.bos_token_id", 4, BitConverter.GetBytes(100_000u)), "tokenizer.ggml.bos_token_id = 100000 is outside [0, 39]");
        Rejects(WithExtraKey("kernels.kv_share_source", 9, BitConverter.GetBytes(5u).Concat(BitConverter.GetBytes(2ul)).Concat(BitConverter.GetBytes(-1)).Concat(BitConverter.GetBytes(7)).ToArray()),
            "shares the KV cache of layer 7");
        Rejects(WithExtraKey("kernels.kv_share_source", 9, BitConverter.GetBytes(5u).Concat(BitConverter.GetBytes(1ul)).Concat(BitConverter.GetBytes(-1)).ToArray()),
            "kernels.kv_share_source must be an i32 array with one entry per layer (2)");
    }

    [Fact]
    public void D5_llama2c_and_tokenizer_errors_name_the_file_and_field()
    {
        HostileFixtures.WriteBin(_tmp.File("m.bin"));
        var bin = File.ReadAllBytes(_tmp.File("m.bin"));
        BinaryPrimitives.WriteInt32LittleEndian(bin.AsSpan(20), int.MinValue);
        Rejects(bin, "vocab_size -2147483648", "min.bin");

        File.WriteAllText(_tmp.File("garbage.model"), "not a protobuf at all, just text \u0001\u0002");
        var e = Assert.Throws<ModelFormatException>(() => new SentencePieceModelTokenizer(_tmp.File("garbage.model")));
        Assert.Contains("garbage.model", e.Message);
        HostileFixtures.WriteSentencePieceModel(_tmp.File("ok.model"));
        var sp = File.ReadAllBytes(_tmp.File("ok.model"));
        File.WriteAllBytes(_tmp.File("cut.model"), sp[..(sp.Length / 2)]);
        e = Assert.Throws<ModelFormatException>(() => new SentencePieceModelTokenizer(_tmp.File("cut.model")));
        Assert.Contains("cut.model", e.Message);

        string folder = _tmp.File("hf");
        HostileFixtures.WriteHf(folder);
        string config = Path.Combine(folder, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": \"two\""));
        e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(folder));
        Assert.Contains("config.json: num_hidden_layers must be an integer, not \"two\"", e.Message);
    }

    [Fact]
    public void D6_hf_folders_cannot_reach_outside_overlap_or_hide_layers()
    {
        string folder = _tmp.File("hf");
        HostileFixtures.WriteHf(folder, sharded: true);
        using (var ok = ModelLoader.Load(folder, memory: WeightMemory.Mapped))
        {
            Assert.Equal(2, ok.Layers.Count);
        }
        string index = Path.Combine(folder, "model.safetensors.index.json");
        string text = File.ReadAllText(index);
        File.WriteAllText(index, text.Replace("model-00001-of-00002.safetensors", "/etc/passwd"));
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(folder));
        Assert.Contains("shard '/etc/passwd' must be a file name inside the model folder", e.Message);
        File.WriteAllText(index, text.Replace("model-00001-of-00002.safetensors", "../model-00001-of-00002.safetensors"));
        Assert.Throws<ModelFormatException>(() => ModelLoader.Load(folder));
        File.WriteAllText(index, text);

        string config = Path.Combine(folder, "config.json");
        string configText = File.ReadAllText(config);
        File.WriteAllText(config, configText.Replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1"));
        e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(folder));
        Assert.Contains("tensors are not part of the 1-layer model", e.Message);
        File.WriteAllText(config, configText);

        // One shard's header: the second tensor's offsets moved onto the first's; a negative shape.
        string shard = Path.Combine(folder, "model-00001-of-00002.safetensors");
        var bytes = File.ReadAllBytes(shard);
        int headerLength = (int)BitConverter.ToUInt64(bytes, 0);
        string header = System.Text.Encoding.UTF8.GetString(bytes, 8, headerLength);
        var (tensors, _) = Safetensors.ReadHeader(shard);
        var second = tensors.OrderBy(t => t.Offset).ElementAt(1);
        long begin = second.Offset - 8 - headerLength;
        string moved = header.Replace($"[{begin},{begin + second.ByteLength}]", $"[0,{second.ByteLength}]");
        Assert.NotEqual(header, moved);
        WriteHeader(shard, bytes, headerLength, moved);
        e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(folder));
        Assert.Contains("overlapping tensors or a gap", e.Message);
        var shape = string.Join(",", tensors[0].Shape);
        WriteHeader(shard, bytes, headerLength, header.Replace($"\"shape\":[{shape}]", $"\"shape\":[-{shape}]"));
        e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(folder));
        Assert.Contains("negative", e.Message);
    }

    /// <summary>Rewrites a safetensors file with another header (the data section is kept; its offsets are relative to it).</summary>
    private static void WriteHeader(string path, byte[] bytes, int headerLength, string header)
    {
        var h = System.Text.Encoding.UTF8.GetBytes(header);
        var copy = BitConverter.GetBytes((ulong)h.Length).Concat(h).Concat(bytes.Skip(8 + headerLength)).ToArray();
        File.WriteAllBytes(path, copy);
    }

    [Theory]
    [InlineData("blk.1.ffn_up.weight", "layer 1 (MLP)")]
    [InlineData("blk.0.attn_v.weight", "layer 0 (attention)")]
    [InlineData("output_norm.weight", "final norm and classifier")]
    [InlineData("token_embd.weight", "token embedding")]
    public void D7_non_finite_weights_stop_the_pass_naming_where_and_check_tensors_finds_them(string tensor, string where)
    {
        var l = Layout;
        var t = l.Tensor(tensor);
        var bytes = (byte[])_good.Clone();
        long offset = l.DataStart + (long)BitConverter.ToUInt64(_good, t.OffsetAt);
        var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes.AsSpan((int)offset, 4 * (int)Math.Min(64, new FileInfo(_tmp.File("good.gguf")).Length)));
        floats.Slice(0, tensor.StartsWith("token_embd") ? floats.Length : 16).Fill(float.NaN);
        if (tensor == "output_norm.weight")
        {
            floats.Slice(0, 16).Fill(float.PositiveInfinity);
        }
        File.WriteAllBytes(_tmp.File("nan.gguf"), bytes);
        using var model = ModelLoader.Load(_tmp.File("nan.gguf"), memory: WeightMemory.Mapped);
        var check = Assert.Throws<ModelFormatException>(() => TensorCheck.Run(model));
        Assert.Contains(tensor[..tensor.LastIndexOf('.')], check.Message);
        using var ops = new HostOps();
        using var transformer = new Transformer(model, ops);
        using var cache = transformer.CreateCache();
        var e = Assert.Throws<NonFiniteValuesException>(() => transformer.Forward(new[] { 1, 0, 3, 4 }, 0, cache, LogitsMode.Last));
        Assert.Contains(where, e.Message);
        Assert.Contains("nan.gguf", e.Message);
    }

    [Fact]
    public async Task D9_cancellation_stops_prefill_and_an_already_cancelled_token_yields_nothing()
    {
        using var model = HostileFixtures.Model();
        using var ops = new HostOps();
        using var session = InferenceSession.Create(model, ops, new InferenceOptions { MaxBatch = 4 });
        var transformer = session.Transformer;
        var generator = new TextGenerator(session, new BpeTokenizer(model.Vocabulary!));
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        int pieces = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in generator.GenerateAsync("abc abc", new GenerationOptions { Steps = 20, Temperature = 0 }, cancelled.Token))
            {
                pieces++;
            }
        });
        Assert.Equal(0, pieces);

        // A prefill of many chunks stops at the next layer once cancelled.
        using var cts = new CancellationTokenSource();
        using var cache = transformer.CreateCache();
        int layersSeen = 0;
        transformer.Plan = transformer.Plan with { Observer = new CancelAfter(cts, 3, () => layersSeen++) };
        Assert.ThrowsAny<OperationCanceledException>(() => transformer.Forward(Enumerable.Repeat(5, 60).ToArray(), 0, cache, LogitsMode.Last, cts.Token));
        Assert.InRange(layersSeen, 3, 4);
        transformer.Plan = transformer.Plan with { Observer = null };
    }

    [Fact]
    public async Task D9_dispose_waits_for_a_running_pass_and_later_use_is_an_ObjectDisposedException()
    {
        var model = HostileFixtures.Model();
        using var ops = new HostOps();
        var transformer = new Transformer(model, ops, maxBatch: 4);
        using var cache = transformer.CreateCache();
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        transformer.Plan = transformer.Plan with { Observer = new Blocker(entered, release) };
        var pass = Task.Run(() => transformer.Forward(new[] { 1, 2, 3 }, 0, cache, LogitsMode.Last));
        Assert.True(entered.Wait(10_000));
        var dispose = Task.Run(model.Dispose);
        await Task.Delay(200);
        Assert.False(dispose.IsCompleted, "Dispose must wait for the running pass");
        release.Set();
        await pass;
        await dispose.WaitAsync(TimeSpan.FromSeconds(10));
        transformer.Plan = transformer.Plan with { Observer = null };
        Assert.Throws<ObjectDisposedException>(() => transformer.Forward(new[] { 1 }, 3, cache, LogitsMode.Last));
        Assert.Throws<ObjectDisposedException>(() => new Transformer(model, ops));
    }

    private sealed class CancelAfter(CancellationTokenSource cts, int layers, Action seen) : IForwardObserver
    {
        private int _n;

        public void OnBlockInput(int layer, DeviceTensor x, int n)
        {
            seen();
            if (++_n == layers)
            {
                cts.Cancel();
            }
        }

        public void OnLinearInput(int layer, LinearKind kind, DeviceTensor x, int n)
        {
        }
    }

    private sealed class Blocker(ManualResetEventSlim entered, ManualResetEventSlim release) : IForwardObserver
    {
        public void OnBlockInput(int layer, DeviceTensor x, int n)
        {
            entered.Set();
            release.Wait();
        }

        public void OnLinearInput(int layer, LinearKind kind, DeviceTensor x, int n)
        {
        }
    }

    [Fact]
    public void D11_inspect_checks_the_llama2c_file_size()
    {
        HostileFixtures.WriteBin(_tmp.File("m.bin"));
        var bin = File.ReadAllBytes(_tmp.File("m.bin"));
        Assert.Equal("llama2.c v0", ModelInspector.Inspect(_tmp.File("m.bin")).Format);
        File.WriteAllBytes(_tmp.File("cut.bin"), bin[..^4]);
        Assert.Contains("truncated", Assert.Throws<ModelFormatException>(() => ModelInspector.Inspect(_tmp.File("cut.bin"))).Message);
        File.WriteAllBytes(_tmp.File("pad.bin"), bin.Concat(new byte[4]).ToArray());
        Assert.Contains("trailing", Assert.Throws<ModelFormatException>(() => ModelInspector.Inspect(_tmp.File("pad.bin"))).Message);
    }
}
