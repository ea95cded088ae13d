using System.Text.Json;
using System.Text.Json.Nodes;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;

namespace Kernels.Runtime.IO;

/// <summary>
/// Hugging Face model folders: config.json + model.safetensors, or shards listed in
/// model.safetensors.index.json; F32/F16/BF16. Q/K rows are permuted from HF's rotate-half
/// layout to the runtime's interleaved layout at load (so those two matrices are copied;
/// everything else is mapped).
/// </summary>
public static unsafe class HfFolder
{
    /// <summary>JSON as the files must be: a key given twice is an error, not "last one wins".</summary>
    internal static readonly JsonDocumentOptions StrictJson = new() { AllowDuplicateProperties = false };

    public static bool IsHfFolder(string path) => Directory.Exists(path) && File.Exists(System.IO.Path.Combine(path, "config.json"));

    public static LlamaConfig ReadConfig(string folder)
    {
        string path = System.IO.Path.Combine(folder, "config.json");
        JsonNode root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path), documentOptions: StrictJson) ?? throw new ModelFormatException(path, "empty JSON");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, "not valid JSON", e);
        }
        if (root is not JsonObject)
        {
            throw new ModelFormatException(path, "must hold a JSON object");
        }
        string? type = Read<string>(root, "model_type", path);
        if (type is not null && type != "llama" && type != "mistral" && type != "qwen2")
        {
            throw new ModelFormatException(path, $"model_type '{type}' is not supported (llama, mistral, qwen2)");
        }
        int Int(string key, int? fallback, long min, long max)
        {
            long? v = Read<long?>(root, key, path) ?? fallback;
            return v is null ? throw new ModelFormatException(path, $"required key {key} is missing")
                : v >= min && v <= max ? (int)v : throw new ModelFormatException(path, $"{key} = {v} is outside [{min}, {max}]");
        }
        float Float(string key, float fallback, float min, float max)
        {
            double v = Read<double?>(root, key, path) ?? fallback;
            return double.IsFinite(v) && v >= min && v <= max ? (float)v : throw new ModelFormatException(path, $"{key} = {v} is outside [{min:G}, {max:G}]");
        }
        int layers = Int("num_hidden_layers", null, 1, GgufModelLoader.MaxLayers);
        int dim = Int("hidden_size", null, 1, 1 << 20);
        int heads = Int("num_attention_heads", null, 1, dim);
        if (Read<long?>(root, "head_dim", path) is null && dim % heads != 0)
        {
            throw new ModelFormatException(path, $"hidden_size {dim} is not divisible by num_attention_heads {heads} (and no head_dim)");
        }
        return LlamaConfig.Create(
            dim, Int("intermediate_size", null, 1, 1 << 22), layers, heads,
            Int("num_key_value_heads", heads, 1, heads),
            Int("vocab_size", null, 1, GgufModelLoader.MaxVocab),
            Int("max_position_embeddings", 2048, 1, GgufModelLoader.MaxContext),
            Float("rms_norm_eps", 1e-5f, GgufModelLoader.MinEpsilon, GgufModelLoader.MaxEpsilon),
            Float("rope_theta", 10000f, GgufModelLoader.MinRopeBase, GgufModelLoader.MaxRopeBase),
            Int("head_dim", 0, 0, 1 << 14)).Validated(path) with
        {
            Architecture = type == "qwen2" ? "qwen2" : "llama",
            RopeScaling = ReadRopeScaling(root, path),
            // Mistral v0.1 sets it; later Mistrals write null (full attention); Qwen2 sets it but turns it off.
            SlidingWindow = Read<bool?>(root, "use_sliding_window", path) == false ? null : Read<long?>(root, "sliding_window", path) is long w ? (w >= 1 && w <= GgufModelLoader.MaxContext ? (int)w : throw new ModelFormatException(path, $"sliding_window = {w} is outside [1, {GgufModelLoader.MaxContext}]")) : null,
        };
    }

    /// <summary>config.json rope_scaling: {"rope_type" (or "type"): "llama3" | "linear", "factor", ...}; null or "default" for none.</summary>
    private static RopeScaling? ReadRopeScaling(JsonNode root, string path)
    {
        if (root["rope_scaling"] is not JsonObject scaling)
        {
            return root["rope_scaling"] is null ? null : throw new ModelFormatException(path, "rope_scaling must be an object or null");
        }
        string type = Read<string>(scaling, "rope_type", path) ?? Read<string>(scaling, "type", path)
            ?? throw new ModelFormatException(path, "rope_scaling has no rope_type");
        double Number(string key, double? fallback) => Read<double?>(scaling, key, path) ?? fallback
            ?? throw new ModelFormatException(path, $"rope_scaling.{key} is missing");
        return type switch
        {
            "default" => null,
            "linear" => new RopeScaling(RopeScalingKind.Linear, (float)Number("factor", null)).Validated(path, "rope_scaling"),
            "llama3" => new RopeScaling(RopeScalingKind.Llama3, (float)Number("factor", null), (float)Number("low_freq_factor", null),
                (float)Number("high_freq_factor", null), (int)Number("original_max_position_embeddings", null)).Validated(path, "rope_scaling"),
            _ => throw new ModelFormatException(path, $"rope_scaling type '{type}' is not implemented (default, linear, llama3)"),
        };
    }

    /// <summary>The value of <paramref name="key"/> as <typeparamref name="T"/> (null when absent or JSON null); a value of another JSON type is named.</summary>
    private static T? Read<T>(JsonNode root, string key, string path)
    {
        var node = root[key];
        if (node is null)
        {
            return default;
        }
        try
        {
            return node.GetValue<T>();
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or OverflowException)
        {
            string expected = (Nullable.GetUnderlyingType(typeof(T)) ?? typeof(T)) == typeof(string) ? "a string" : typeof(T) == typeof(double?) ? "a number" : "an integer";
            throw new ModelFormatException(path, $"{key} must be {expected}, not {node.ToJsonString()}");
        }
    }

    /// <summary>All tensors of the folder, from the single file or the shard index (headers only).</summary>
    public static Dictionary<string, SafetensorsTensor> ReadTensorTable(string folder)
    {
        string single = System.IO.Path.Combine(folder, "model.safetensors");
        string index = System.IO.Path.Combine(folder, "model.safetensors.index.json");
        var files = new List<string>();
        if (File.Exists(index))
        {
            JsonNode? root;
            try
            {
                root = JsonNode.Parse(File.ReadAllText(index), documentOptions: StrictJson);
            }
            catch (JsonException e)
            {
                throw new ModelFormatException(index, "not valid JSON", e);
            }
            if (root?["weight_map"] is not JsonObject map)
            {
                throw new ModelFormatException(index, "weight_map is missing or not an object");
            }
            foreach (var (name, value) in map)
            {
                string shard = value is JsonValue v && v.TryGetValue(out string? f) ? f
                    : throw new ModelFormatException(index, $"weight_map entry {name} must be a file name");
                files.Add(ShardPath(folder, shard, index));
            }
            files = files.Distinct().ToList();
        }
        else if (File.Exists(single))
        {
            files.Add(single);
        }
        else
        {
            files.AddRange(Directory.GetFiles(folder, "*.safetensors").Order());
        }
        if (files.Count == 0)
        {
            throw new ModelFormatException(folder, "no model.safetensors, shard index or *.safetensors file");
        }
        var table = new Dictionary<string, SafetensorsTensor>();
        foreach (string f in files)
        {
            if (!File.Exists(f))
            {
                throw new ModelFormatException(f, "shard listed in the index is missing");
            }
            foreach (var t in Safetensors.ReadHeader(f).Tensors)
            {
                if (!table.TryAdd(t.Name, t))
                {
                    throw new ModelFormatException(f, $"tensor {t.Name} is also in {table[t.Name].File}");
                }
            }
        }
        return table;
    }

    /// <summary>A shard named by the index: a plain file name in the model folder, nothing outside it.</summary>
    private static string ShardPath(string folder, string shard, string index)
    {
        if (shard.Length == 0 || System.IO.Path.IsPathRooted(shard) || shard != System.IO.Path.GetFileName(shard) || shard is "." or "..")
        {
            throw new ModelFormatException(index, $"shard '{shard}' must be a file name inside the model folder");
        }
        return System.IO.Path.Combine(folder, shard);
    }

    public static LlamaModel Load(string folder, IProgress<float>? progress = null, CancellationToken cancellationToken = default,
        WeightMemory memory = WeightMemory.HugePages)
    {
        var config = ReadConfig(folder);
        var table = ReadTensorTable(folder);
        var maps = new Dictionary<string, MappedFile>();
        var used = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            MappedFile Map(string file)
            {
                if (!maps.TryGetValue(file, out var m))
                {
                    maps[file] = m = new MappedFile(file, memory);
                }
                return m;
            }

            DenseMatrix Mat(string name, int rows, int cols)
            {
                if (!table.TryGetValue(name, out var t))
                {
                    throw new ModelFormatException(folder, $"tensor {name} is missing");
                }
                used.Add(name);
                if (t.Shape.Length != 2 || t.Shape[1] != cols || rows >= 0 && t.Shape[0] != rows)
                {
                    throw new ModelFormatException(t.File, $"tensor {name}: shape [{string.Join(", ", t.Shape)}], expected [{(rows >= 0 ? rows : "*")}, {cols}]");
                }
                var m = Map(t.File);
                m.CheckRange(t.Offset, t.ByteLength, $"tensor {name}");
                return new DenseMatrix(name, (int)t.Shape[0], cols, t.ElementType(t.File), m.Pointer + t.Offset, m);
            }

            float[] Vec(string name, int length)
            {
                if (!table.TryGetValue(name, out var t))
                {
                    throw new ModelFormatException(folder, $"tensor {name} is missing");
                }
                used.Add(name);
                if (t.Shape.Aggregate(1L, (a, b) => a * b) != length)
                {
                    throw new ModelFormatException(t.File, $"tensor {name}: shape [{string.Join(", ", t.Shape)}], expected [{length}]");
                }
                var type = t.ElementType(t.File);
                var m = Map(t.File);
                var r = new float[length];
                for (int i = 0; i < length; i++)
                {
                    r[i] = type.ReadAsSingle(m.Pointer + t.Offset, i);
                }
                return r;
            }

            var embedding = Mat("model.embed_tokens.weight", config.VocabSize, config.Dim);
            WeightMatrix classifier = table.ContainsKey("lm_head.weight") ? Mat("lm_head.weight", config.VocabSize, config.Dim) : embedding;
            var layers = new List<LlamaLayer>();
            var owned = new List<IDisposable>();
            for (int l = 0; l < config.Layers; l++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                string p = $"model.layers.{l}.";
                var qHf = Mat(p + "self_attn.q_proj.weight", config.Heads * config.HeadDim, config.Dim);
                var kHf = Mat(p + "self_attn.k_proj.weight", config.KvHeads * config.HeadDim, config.Dim);
                var q = RopeLayout.HalfSplitToInterleaved(qHf, config.HeadDim);
                var k = RopeLayout.HalfSplitToInterleaved(kHf, config.HeadDim);
                // Qwen2's (and attention_bias Llamas') Q/K/V biases; Q and K follow their rows into the interleaved order.
                float[]? Bias(string name, int length, bool rows) =>
                    !table.ContainsKey(p + name) ? null : rows ? RopeLayout.HalfSplitToInterleaved(Vec(p + name, length), config.HeadDim) : Vec(p + name, length);
                layers.Add(new LlamaLayer
                {
                    QueryBias = Bias("self_attn.q_proj.bias", q.Rows, true),
                    KeyBias = Bias("self_attn.k_proj.bias", k.Rows, true),
                    ValueBias = Bias("self_attn.v_proj.bias", k.Rows, false),
                    AttentionNorm = Vec(p + "input_layernorm.weight", config.Dim),
                    Query = q,
                    Key = k,
                    Value = Mat(p + "self_attn.v_proj.weight", k.Rows, config.Dim),
                    Output = Mat(p + "self_attn.o_proj.weight", config.Dim, q.Rows),
                    FfnNorm = Vec(p + "post_attention_layernorm.weight", config.Dim),
                    Gate = Mat(p + "mlp.gate_proj.weight", config.HiddenDim, config.Dim),
                    Down = Mat(p + "mlp.down_proj.weight", config.Dim, config.HiddenDim),
                    Up = Mat(p + "mlp.up_proj.weight", config.HiddenDim, config.Dim),
                    Heads = q.Rows / config.HeadDim,
                    KvHeads = k.Rows / config.HeadDim,
                });
                progress?.Report((l + 1f) / Math.Max(1, config.Layers));
            }
            var finalNorm = Vec("model.norm.weight", config.Dim);
            if (table.Keys.Where(k => !used.Contains(k) && !k.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList() is { Count: > 0 } unused)
            {
                throw new ModelFormatException(folder, $"{unused.Count} tensors are not part of the {config.Layers}-layer model config.json describes: {string.Join(", ", unused.Take(5))}{(unused.Count > 5 ? ", ..." : "")}");
            }
            var model = new LlamaModel(config, embedding, layers, finalNorm, classifier, folder);
            foreach (var m in maps.Values)
            {
                model.Own(m);
            }
            model.Metadata["format"] = "HF safetensors";
            progress?.Report(1f);
            return model;
        }
        catch
        {
            foreach (var m in maps.Values)
            {
                m.Dispose();
            }
            throw;
        }
    }

    /// <summary>
    /// Writes <paramref name="model"/> as an HF folder (config.json + model.safetensors) in
    /// <paramref name="type"/>, permuting Q/K rows to the rotate-half layout HF expects.
    /// Only dense matrices are written (sparse ones are densified).
    /// </summary>
    public static void Write(LlamaModel model, string folder, ElementType type)
    {
        Directory.CreateDirectory(folder);
        var c = model.Config;
        if (model.Layers.Any(l => l.Heads != c.Heads || l.KvHeads != c.KvHeads))
        {
            throw new NotSupportedException("HF config.json cannot express per-layer head counts; export head-pruned models as GGUF");
        }
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(c.Architecture == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"),
            ["model_type"] = c.Architecture,
            ["hidden_size"] = c.Dim,
            ["intermediate_size"] = c.HiddenDim,
            ["num_hidden_layers"] = c.Layers,
            ["num_attention_heads"] = c.Heads,
            ["num_key_value_heads"] = c.KvHeads,
            ["vocab_size"] = c.VocabSize,
            ["max_position_embeddings"] = c.MaxSequenceLength,
            ["rms_norm_eps"] = c.NormEpsilon,
            ["rope_theta"] = c.RopeTheta,
            ["rope_scaling"] = c.RopeScaling switch
            {
                null => null,
                { Kind: RopeScalingKind.Linear } s => new JsonObject { ["rope_type"] = "linear", ["factor"] = s.Factor },
                { Kind: RopeScalingKind.Llama3 } s => new JsonObject
                {
                    ["rope_type"] = "llama3", ["factor"] = s.Factor, ["low_freq_factor"] = s.LowFreqFactor,
                    ["high_freq_factor"] = s.HighFreqFactor, ["original_max_position_embeddings"] = s.OriginalContext,
                },
                _ => throw new NotSupportedException($"{model.Source}: per-frequency RoPE divisors (a GGUF rope_freqs tensor) have no config.json form"),
            },
            ["sliding_window"] = c.SlidingWindow,
            ["tie_word_embeddings"] = model.SharedClassifier,
            ["torch_dtype"] = type switch { ElementType.F32 => "float32", ElementType.F16 => "float16", _ => "bfloat16" },
        };
        AtomicFile.WriteAllText(System.IO.Path.Combine(folder, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        string dtype = type switch { ElementType.F32 => "F32", ElementType.F16 => "F16", _ => "BF16" };
        var tensors = new List<(string, long[], string, byte[])>();
        void AddMatrix(string name, WeightMatrix m, bool permute)
        {
            var dense = new float[(long)m.Rows * m.Columns];
            m.CopyToDense(dense);
            if (permute)
            {
                var permuted = new float[dense.Length];
                for (int r = 0; r < m.Rows; r++)
                {
                    Array.Copy(dense, (long)r * m.Columns, permuted, (long)RopeLayout.HalfSplitRowFor(r, c.HeadDim) * m.Columns, m.Columns);
                }
                dense = permuted;
            }
            tensors.Add((name, new long[] { m.Rows, m.Columns }, dtype, Encode(dense, type)));
        }
        void AddVector(string name, float[] v) => tensors.Add((name, new long[] { v.Length }, dtype, Encode(v, type)));

        AddMatrix("model.embed_tokens.weight", model.TokenEmbedding, false);
        for (int l = 0; l < model.Layers.Count; l++)
        {
            var layer = model.Layers[l];
            string p = $"model.layers.{l}.";
            AddVector(p + "input_layernorm.weight", layer.AttentionNorm);
            AddMatrix(p + "self_attn.q_proj.weight", layer.Query, true);
            AddMatrix(p + "self_attn.k_proj.weight", layer.Key, true);
            AddMatrix(p + "self_attn.v_proj.weight", layer.Value, false);
            foreach (var (name, bias, rows) in new[] { ("q_proj", layer.QueryBias, true), ("k_proj", layer.KeyBias, true), ("v_proj", layer.ValueBias, false) })
            {
                if (bias is not null)
                {
                    AddVector(p + $"self_attn.{name}.bias", rows ? RopeLayout.InterleavedToHalfSplit(bias, c.HeadDim) : bias);
                }
            }
            AddMatrix(p + "self_attn.o_proj.weight", layer.Output, false);
            AddVector(p + "post_attention_layernorm.weight", layer.FfnNorm);
            AddMatrix(p + "mlp.gate_proj.weight", layer.Gate, false);
            AddMatrix(p + "mlp.up_proj.weight", layer.Up, false);
            AddMatrix(p + "mlp.down_proj.weight", layer.Down, false);
        }
        AddVector("model.norm.weight", model.FinalNorm);
        if (!model.SharedClassifier)
        {
            AddMatrix("lm_head.weight", model.Classifier, false);
        }
        Safetensors.Write(System.IO.Path.Combine(folder, "model.safetensors"), tensors);
    }

    internal static byte[] Encode(float[] values, ElementType type)
    {
        var bytes = new byte[values.LongLength * type.Size()];
        Encode(values, type, bytes);
        return bytes;
    }

    /// <summary>Writes <paramref name="values"/> as <paramref name="type"/> (round to nearest even) into <paramref name="destination"/>.</summary>
    internal static void Encode(ReadOnlySpan<float> values, ElementType type, Span<byte> destination)
    {
        if (destination.Length < values.Length * type.Size())
        {
            throw new ArgumentException("destination too short", nameof(destination));
        }
        fixed (byte* b = destination)
        {
            for (int i = 0; i < values.Length; i++)
            {
                type.WriteFromSingle(b, i, values[i]);
            }
        }
    }
}
