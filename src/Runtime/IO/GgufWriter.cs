using System.Text;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;

namespace Kernels.Runtime.IO;

/// <summary>
/// Writes GGUF v3 files: metadata of the common scalar/array types and tensors given as raw
/// bytes (F32/F16/BF16, or any ggml type id for fixtures) or produced one at a time while the
/// file is written, so a multi-GB model never has to be held in memory. Files are written
/// atomically (<see cref="AtomicFile"/>). <see cref="WriteModel"/> exports a
/// <see cref="LlamaModel"/> (llama architecture, interleaved RoPE, embedded vocabulary).
/// </summary>
public sealed class GgufWriter
{
    private readonly List<(string Key, object Value)> _metadata = new();
    private readonly List<(string Name, long[] Dims, GgmlType Type, long Bytes, Action<Stream> WriteData)> _tensors = new();

    public int Alignment { get; init; } = 32;

    /// <summary>Called after each tensor's data is written with (tensors written, total).</summary>
    public Action<int, int>? TensorWritten { get; init; }

    /// <summary>
    /// Sets a metadata key (a key set twice keeps the last value: GGUF forbids duplicates).
    /// general.alignment is the writer's own (<see cref="Alignment"/>): a copied one is dropped.
    /// </summary>
    public GgufWriter Add(string key, object value)
    {
        if (key == "general.alignment")
        {
            return this;
        }
        int at = _metadata.FindIndex(m => m.Key == key);
        if (at >= 0)
        {
            _metadata[at] = (key, value);
        }
        else
        {
            _metadata.Add((key, value));
        }
        return this;
    }

    /// <summary>Adds a tensor; <paramref name="shape"/> is outermost first ([rows, cols]), stored innermost first as GGUF does.</summary>
    public GgufWriter AddTensor(string name, long[] shape, GgmlType type, byte[] data) =>
        AddTensor(name, shape, type, data.LongLength, s => s.Write(data));

    /// <summary>
    /// Adds a tensor of <paramref name="byteLength"/> bytes whose data <paramref name="writeData"/>
    /// produces when the file is written (after every earlier tensor); writing any other number
    /// of bytes fails the write.
    /// </summary>
    public GgufWriter AddTensor(string name, long[] shape, GgmlType type, long byteLength, Action<Stream> writeData)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteLength);
        _tensors.Add((name, shape.Reverse().ToArray(), type, byteLength, writeData));
        return this;
    }

    public void Write(string path) => AtomicFile.Write(path, fs =>
    {
        using var w = new BinaryWriter(fs, Encoding.UTF8, leaveOpen: true);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)(_metadata.Count + 1));
        WriteString(w, "general.alignment");
        w.Write(4u);
        w.Write((uint)Alignment);
        foreach (var (key, value) in _metadata)
        {
            WriteString(w, key);
            WriteValue(w, value);
        }
        long offset = 0;
        foreach (var t in _tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (long d in t.Dims)
            {
                w.Write((ulong)d);
            }
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offset += (t.Bytes + Alignment - 1) / Alignment * Alignment;
        }
        w.Flush();
        Pad(fs);
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            long start = fs.Position;
            t.WriteData(fs);
            if (fs.Position - start != t.Bytes)
            {
                throw new InvalidOperationException($"tensor {t.Name}: {fs.Position - start} bytes written, {t.Bytes} declared");
            }
            Pad(fs);
            TensorWritten?.Invoke(i + 1, _tensors.Count);
        }
    });

    private void Pad(Stream s)
    {
        long pad = (Alignment - s.Position % Alignment) % Alignment;
        for (long i = 0; i < pad; i++)
        {
            s.WriteByte(0);
        }
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] b = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)b.Length);
        w.Write(b);
    }

    private static void WriteValue(BinaryWriter w, object v)
    {
        // Exact types: the CLR lets byte[]/sbyte[], int[]/uint[] (and the other same-size pairs) match each other's patterns.
        switch (v)
        {
            case byte b: w.Write(0u); w.Write(b); break;
            case sbyte x: w.Write(1u); w.Write(x); break;
            case ushort x: w.Write(2u); w.Write(x); break;
            case short x: w.Write(3u); w.Write(x); break;
            case uint u: w.Write(4u); w.Write(u); break;
            case int i: w.Write(5u); w.Write(i); break;
            case float f: w.Write(6u); w.Write(f); break;
            case bool b: w.Write(7u); w.Write((byte)(b ? 1 : 0)); break;
            case string s: w.Write(8u); WriteString(w, s); break;
            case ulong u: w.Write(10u); w.Write(u); break;
            case long l: w.Write(11u); w.Write(l); break;
            case double d: w.Write(12u); w.Write(d); break;
            case string[] a:
                w.Write(9u); w.Write(8u); w.Write((ulong)a.Length);
                foreach (string s in a)
                {
                    WriteString(w, s);
                }
                break;
            case Array a when a.GetType() == typeof(byte[]): ScalarArray(w, 0, (byte[])a); break;
            case Array a when a.GetType() == typeof(sbyte[]): ScalarArray(w, 1, (sbyte[])a); break;
            case Array a when a.GetType() == typeof(ushort[]): ScalarArray(w, 2, (ushort[])a); break;
            case Array a when a.GetType() == typeof(short[]): ScalarArray(w, 3, (short[])a); break;
            case Array a when a.GetType() == typeof(uint[]): ScalarArray(w, 4, (uint[])a); break;
            case Array a when a.GetType() == typeof(int[]): ScalarArray(w, 5, (int[])a); break;
            case Array a when a.GetType() == typeof(float[]): ScalarArray(w, 6, (float[])a); break;
            case Array a when a.GetType() == typeof(bool[]): ScalarArray(w, 7, (bool[])a); break;
            case Array a when a.GetType() == typeof(ulong[]): ScalarArray(w, 10, (ulong[])a); break;
            case Array a when a.GetType() == typeof(long[]): ScalarArray(w, 11, (long[])a); break;
            case Array a when a.GetType() == typeof(double[]): ScalarArray(w, 12, (double[])a); break;
            default:
                throw new ArgumentException($"unsupported GGUF metadata value type {v.GetType().Name}");
        }
    }

    /// <summary>An array of fixed-size scalars (as <see cref="GgufFile"/> reads them back: typed arrays).</summary>
    private static void ScalarArray<T>(BinaryWriter w, uint elementType, T[] values) where T : unmanaged
    {
        w.Write(9u);
        w.Write(elementType);
        w.Write((ulong)values.Length);
        w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
    }

    /// <summary>Writes a matrix row by row in <paramref name="type"/> (one row of floats in memory at a time).</summary>
    internal static void WriteRows(WeightMatrix m, ElementType type, Stream s)
    {
        var row = new float[m.Columns];
        var bytes = new byte[(long)m.Columns * type.Size()];
        for (int r = 0; r < m.Rows; r++)
        {
            m.CopyRow(r, row);
            HfFolder.Encode(row, type, bytes);
            s.Write(bytes);
        }
    }

    internal static GgmlType TypeOf(ElementType t) => t switch
    {
        ElementType.F32 => GgmlType.F32,
        ElementType.F16 => GgmlType.F16,
        _ => GgmlType.BF16,
    };

    internal static GgmlType TypeOf(QuantType t) => t switch
    {
        QuantType.Q8_0 => GgmlType.Q8_0,
        QuantType.Q4_0 => GgmlType.Q4_0,
        QuantType.Q4_K => GgmlType.Q4_K,
        QuantType.Q6_K => GgmlType.Q6_K,
        _ => throw new NotSupportedException($"writing {t} tensors is not supported (Q8_0, Q4_0, Q4_K and Q6_K are)"),
    };

    /// <summary>
    /// Writes a matrix as <paramref name="type"/> blocks, row by row. Rows that hold a 2:4 or 4:8
    /// pattern (<paramref name="sparse"/>) get one scale per 64 columns — the span of 32 kept
    /// values, so the N:M blocks built from the file at load hold exactly these numbers.
    /// </summary>
    internal static void WriteQuantizedRows(WeightMatrix m, QuantType type, bool sparse, Stream s)
    {
        var row = new float[m.Columns];
        var bytes = new byte[type.RowBytes(m.Columns)];
        for (int r = 0; r < m.Rows; r++)
        {
            m.CopyRow(r, row);
            Quantization.QuantizeRow(type, row, bytes, scaleSpan: sparse ? 2 : 1);
            s.Write(bytes);
        }
    }

    /// <summary>
    /// Exports a model as GGUF. Matrices are written dense in <paramref name="type"/> (sparse
    /// ones densified with their zeros, which is how the runtime recognises N:M patterns on load),
    /// or quantized as <paramref name="quantize"/> says. Per-layer head counts and KV-sharing
    /// sources go into arrays when layers differ.
    /// </summary>
    /// <returns>The matrices <paramref name="quantize"/> asked for but written otherwise (rows not whole blocks): in
    /// <paramref name="type"/>, or as "NAME (Q8_0)" when a K type fell back to Q8_0.</returns>
    /// <param name="compact">Write compressed N:M matrices as their arrays (the compact N:M file of
    /// docs/formats.md, loaded without conversion; llama.cpp does not read it) instead of densified.</param>
    public static IReadOnlyList<string> WriteModel(LlamaModel model, string path, ElementType type, IDictionary<string, object>? extraMetadata = null,
        QuantizePlan? quantize = null, bool compact = false)
    {
        var c = model.Config;
        string arch = c.Architecture;
        var w = new GgufWriter { Alignment = compact ? NativeBuffer.Alignment : 32 }
            .Add("general.architecture", arch)
            .Add("general.name", Path.GetFileNameWithoutExtension(path))
            .Add($"{arch}.context_length", (uint)c.MaxSequenceLength)
            .Add($"{arch}.embedding_length", (uint)c.Dim)
            .Add($"{arch}.block_count", (uint)model.Layers.Count)
            .Add($"{arch}.feed_forward_length", (uint)c.HiddenDim)
            .Add($"{arch}.rope.dimension_count", (uint)c.HeadDim)
            .Add($"{arch}.attention.key_length", (uint)c.HeadDim)
            .Add($"{arch}.attention.layer_norm_rms_epsilon", c.NormEpsilon)
            .Add($"{arch}.rope.freq_base", c.RopeTheta)
            .Add($"{arch}.vocab_size", (uint)c.VocabSize);
        if (c.SlidingWindow is int window)
        {
            w.Add($"{arch}.attention.sliding_window", (uint)window);
        }
        bool uniformHeads = model.Layers.All(l => l.Heads == c.Heads && l.KvHeads == c.KvHeads);
        if (uniformHeads)
        {
            w.Add($"{arch}.attention.head_count", (uint)c.Heads).Add($"{arch}.attention.head_count_kv", (uint)c.KvHeads);
        }
        else
        {
            w.Add($"{arch}.attention.head_count", model.Layers.Select(l => l.Heads).ToArray())
             .Add($"{arch}.attention.head_count_kv", model.Layers.Select(l => l.KvHeads).ToArray());
        }
        if (model.Layers.Any(l => l.SharesKvWith >= 0))
        {
            w.Add("kernels.kv_share_source", model.Layers.Select(l => l.SharesKvWith).ToArray());
        }
        if (model.Vocabulary is { } v)
        {
            w.Add("tokenizer.ggml.model", "llama")
             .Add("tokenizer.ggml.tokens", v.Pieces.Select(p => Encoding.UTF8.GetString(p).Replace(' ', '\u2581')).ToArray())
             .Add("tokenizer.ggml.scores", v.Scores)
             .Add("tokenizer.ggml.token_type", v.Kinds.Select(k => (int)k).ToArray())
             .Add("tokenizer.ggml.bos_token_id", (uint)v.Bos)
             .Add("tokenizer.ggml.eos_token_id", (uint)v.Eos)
             .Add("tokenizer.ggml.unknown_token_id", (uint)v.Unknown);
        }
        if (model.ByteLevelVocabulary is { } b)
        {
            if (Tokenization.PreTokenizers.Find(b.Pre.Name) is null)
            {
                throw new NotSupportedException($"{b.Source}: pre-tokenizer '{b.Pre.Name}' has no GGUF name (tokenizer.ggml.pre); it cannot be written");
            }
            w.Add("tokenizer.ggml.model", "gpt2")
             .Add("tokenizer.ggml.pre", b.Pre.Name)
             .Add("tokenizer.ggml.tokens", b.Tokens)
             .Add("tokenizer.ggml.token_type", b.Kinds.Select(k => (int)k).ToArray())
             .Add("tokenizer.ggml.merges", b.Merges)
             .Add("tokenizer.ggml.add_bos_token", b.Special.AddBos)
             .Add("tokenizer.ggml.add_eos_token", b.Special.AddEos);
            foreach (var (name, id) in b.Special.Named())
            {
                if (id is int specialId)
                {
                    w.Add($"tokenizer.ggml.{name}_token_id", (uint)specialId);
                }
            }
        }
        if (extraMetadata is not null)
        {
            foreach (var kv in extraMetadata)
            {
                w.Add(kv.Key, kv.Value);
            }
        }
        if (quantize?.Linears is { } fileType)
        {
            // llama.cpp's llama_ftype codes (informational there: each tensor carries its own type).
            w.Add("general.quantization_version", 2u).Add("general.file_type", fileType switch
            {
                QuantType.Q8_0 => 7u,
                QuantType.Q4_0 => 2u,
                QuantType.Q4_K => 15u, // LLAMA_FTYPE_MOSTLY_Q4_K_M
                _ => 18u,              // LLAMA_FTYPE_MOSTLY_Q6_K
            });
        }
        var fallbacks = new List<string>();
        var gt = TypeOf(type);
        if (compact)
        {
            w.Add(CompactNm.VersionKey, CompactNm.Version);
        }
        void Mat(string name, WeightMatrix m, QuantType? q)
        {
            if (compact && CompactNm.TryAdd(w, name, m))
            {
                return;
            }
            if (q is QuantType.Q4_K or QuantType.Q6_K && m.Columns % q.Value.BlockElements() != 0 && m.Columns % 32 == 0)
            {
                // Rows that are not whole super-blocks of 256: Q8_0, as llama.cpp falls back for Q6_K.
                fallbacks.Add($"{name} (Q8_0)");
                q = QuantType.Q8_0;
            }
            if (q is { } qt && m.Columns % qt.BlockElements() == 0)
            {
                bool sparse = NmSparseMatrix.Satisfies(m, NmPattern.TwoFour) || NmSparseMatrix.Satisfies(m, NmPattern.FourEight);
                w.AddTensor(name, new long[] { m.Rows, m.Columns }, TypeOf(qt), m.Rows * qt.RowBytes(m.Columns), s => WriteQuantizedRows(m, qt, sparse, s));
                return;
            }
            if (q is not null)
            {
                fallbacks.Add(name);
            }
            w.AddTensor(name, new long[] { m.Rows, m.Columns }, gt, (long)m.Rows * m.Columns * type.Size(), s => WriteRows(m, type, s));
        }
        void Vec(string name, float[] x) => w.AddTensor(name, new long[] { x.Length }, GgmlType.F32, HfFolder.Encode(x, ElementType.F32));

        var temporaries = new List<WeightMatrix>();
        WeightMatrix Temporary(WeightMatrix m)
        {
            temporaries.Add(m);
            return m;
        }
        QuantType? linear = quantize?.Linears;
        Mat("token_embd.weight", model.TokenEmbedding, quantize?.TokenEmbedding);
        for (int l = 0; l < model.Layers.Count; l++)
        {
            var layer = model.Layers[l];
            string p = $"blk.{l}.";
            Vec(p + "attn_norm.weight", layer.AttentionNorm);
            // Qwen2 files keep HF's half-split Q/K rows (llama.cpp rotates halves for qwen2): undo the load-time permutation.
            bool halfSplit = arch == "qwen2";
            WeightMatrix Rows(WeightMatrix m) => halfSplit ? Temporary(RopeLayout.Permuted(m, c.HeadDim, toHalfSplit: true)) : m;
            float[]? RowBias(float[]? b) => halfSplit && b is not null ? RopeLayout.InterleavedToHalfSplit(b, c.HeadDim) : b;
            Mat(p + "attn_q.weight", Rows(layer.Query), linear);
            Mat(p + "attn_k.weight", Rows(layer.Key), linear);
            Mat(p + "attn_v.weight", layer.Value, linear);
            foreach (var (name, bias) in new[] { ("attn_q.bias", RowBias(layer.QueryBias)), ("attn_k.bias", RowBias(layer.KeyBias)), ("attn_v.bias", layer.ValueBias) })
            {
                if (bias is not null)
                {
                    Vec(p + name, bias);
                }
            }
            Mat(p + "attn_output.weight", layer.Output, linear);
            Vec(p + "ffn_norm.weight", layer.FfnNorm);
            Mat(p + "ffn_gate.weight", layer.Gate, linear);
            Mat(p + "ffn_up.weight", layer.Up, linear);
            Mat(p + "ffn_down.weight", layer.Down, linear);
        }
        Vec("output_norm.weight", model.FinalNorm);
        switch (c.RopeScaling)
        {
            case { Kind: RopeScalingKind.Linear } interpolation:
                w.Add($"{arch}.rope.scaling.type", "linear").Add($"{arch}.rope.scaling.factor", interpolation.Factor);
                break;
            case { Kind: RopeScalingKind.Llama3 or RopeScalingKind.Factors } scaled:
                // As llama.cpp's converter: Llama 3.1's scaling travels as per-frequency divisors.
                Vec("rope_freqs.weight", scaled.FrequencyDivisors(c.RopeTheta, c.HeadDim));
                break;
        }
        if (!model.SharedClassifier)
        {
            Mat("output.weight", model.Classifier, quantize?.Classifier);
        }
        try
        {
            w.Write(path);
        }
        finally
        {
            temporaries.ForEach(m => m.Dispose());
        }
        return fallbacks;
    }
}

/// <summary>
/// Which matrices <see cref="GgufWriter.WriteModel"/> quantizes, and to what (Q8_0 or Q4_0); null
/// keeps a matrix in the file's float type. Matrices whose rows are not whole blocks stay float.
/// </summary>
public sealed record QuantizePlan(QuantType? Linears, QuantType? TokenEmbedding = null, QuantType? Classifier = null)
{
    /// <summary>
    /// Every matrix in <paramref name="type"/>, with llama-quantize's higher-precision classifier:
    /// Q8_0 for Q4_0 (llama.cpp writes Q6_K there; this keeps Q4_0's plan within the two
    /// byte-identical types) and Q6_K for Q4_K. llama.cpp's Q4_K_M also moves some attn_v and
    /// ffn_down matrices to Q6_K; this plan does not.
    /// </summary>
    public static QuantizePlan Like(QuantType type) => new(type, type, type switch
    {
        QuantType.Q4_0 => QuantType.Q8_0,
        QuantType.Q4_K => QuantType.Q6_K,
        _ => type,
    });

    /// <summary>Parses q8 / q4 for the options that also build N:M kept values (Q8_0 and Q4_0 only).</summary>
    public static QuantType ParseKeptType(string text, string option) => text.ToLowerInvariant() switch
    {
        "q8" or "q8_0" => QuantType.Q8_0,
        "q4" or "q4_0" => QuantType.Q4_0,
        _ => throw new ArgumentException($"{option} '{text}': N:M kept values are q8 or q4 (Q8_0, Q4_0); other types are written by `kernels quantize`"),
    };

    /// <summary>Parses q8 / q8_0 / q4 / q4_0 / q4_k / q6_k (the option <paramref name="option"/> is named in errors).</summary>
    public static QuantType ParseType(string text, string option) => text.ToLowerInvariant() switch
    {
        "q8" or "q8_0" => QuantType.Q8_0,
        "q4" or "q4_0" => QuantType.Q4_0,
        "q4_k" => QuantType.Q4_K,
        "q6_k" => QuantType.Q6_K,
        _ => throw new ArgumentException($"{option} '{text}': writing this type is not supported (q8_0, q4_0, q4_k and q6_k are)"),
    };
}
