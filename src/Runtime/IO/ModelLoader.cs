using Kernels.Runtime.Model;

namespace Kernels.Runtime.IO;

/// <summary>Model file formats the runtime reads.</summary>
public enum ModelFormat
{
    Llama2c,
    Gguf,
    HfFolder,
}

/// <summary>Entry point for loading any supported model into <see cref="LlamaModel"/>.</summary>
public static class ModelLoader
{
    public static ModelFormat Detect(string path)
    {
        if (Directory.Exists(path))
        {
            return HfFolder.IsHfFolder(path) ? ModelFormat.HfFolder : throw new ModelFormatException(path, "folder has no config.json (not an HF model folder)");
        }
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path}: model file or folder not found", path);
        }
        return GgufFile.LooksLikeGguf(path) ? ModelFormat.Gguf : ModelFormat.Llama2c;
    }

    /// <summary>
    /// Loads synchronously. Weights are read into huge-page memory by default, or mapped from the
    /// file (<see cref="WeightMemory"/>); either way they are used in place, without conversion.
    /// </summary>
    public static LlamaModel Load(string path, IProgress<float>? progress = null, CancellationToken cancellationToken = default,
        WeightMemory memory = WeightMemory.HugePages) =>
        Detect(path) switch
        {
            ModelFormat.Gguf => GgufModelLoader.Load(path, progress, cancellationToken, memory),
            ModelFormat.HfFolder => HfFolder.Load(path, progress, cancellationToken, memory),
            _ => Llama2cCheckpoint.Load(path, progress, cancellationToken, memory),
        };

    /// <summary>Loads on a worker thread; progress runs from 0 to 1; cancellation throws <see cref="OperationCanceledException"/>.</summary>
    public static Task<LlamaModel> LoadAsync(string path, IProgress<float>? progress = null, CancellationToken cancellationToken = default,
        WeightMemory memory = WeightMemory.HugePages) =>
        Task.Run(() => Load(path, progress, cancellationToken, memory), cancellationToken);
}

/// <summary>One tensor as listed by <see cref="ModelInspector"/>.</summary>
public sealed record TensorSummary(string Name, string DType, long[] Shape)
{
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>Header-only description of a model: format, metadata and tensor table.</summary>
public sealed record ModelSummary(string Path, string Format, IReadOnlyList<KeyValuePair<string, string>> Metadata, IReadOnlyList<TensorSummary> Tensors);

/// <summary>Lists metadata and tensors from headers only; never reads weight data.</summary>
public static class ModelInspector
{
    public static ModelSummary Inspect(string path)
    {
        switch (ModelLoader.Detect(path))
        {
            case ModelFormat.Gguf:
            {
                using var g = GgufFile.Open(path);
                var meta = g.Metadata.Select(kv => new KeyValuePair<string, string>(kv.Key, Describe(kv.Value))).ToList();
                var tensors = g.Tensors.Select(t => new TensorSummary(t.Name, t.Type.ToString(), t.Dims.Reverse().ToArray())).ToList();
                return new ModelSummary(path, $"GGUF v{g.Version}", meta, tensors);
            }
            case ModelFormat.HfFolder:
            {
                var config = HfFolder.ReadConfig(path);
                var table = HfFolder.ReadTensorTable(path);
                var meta = new List<KeyValuePair<string, string>> { new("config", config.ToString()) };
                return new ModelSummary(path, "HF safetensors", meta,
                    table.Values.OrderBy(t => t.Name, StringComparer.Ordinal).Select(t => new TensorSummary(t.Name, t.DType, t.Shape)).ToList());
            }
            default:
            {
                var header = new byte[Llama2cCheckpoint.HeaderBytes];
                long length;
                using (var fs = File.OpenRead(path))
                {
                    int read = fs.ReadAtLeast(header, header.Length, throwOnEndOfStream: false);
                    Array.Resize(ref header, read);
                    length = fs.Length;
                }
                var c = Llama2cCheckpoint.ReadConfig(header, path, out bool shared);
                Llama2cCheckpoint.CheckSize(c, shared, length, path);
                long d = c.Dim, h = c.HiddenDim, L = c.Layers, kv = c.KvDim, q = c.Heads * c.HeadDim;
                var t = new List<TensorSummary>
                {
                    new("token_embedding_table", "F32", new[] { c.VocabSize, d }),
                    new("rms_att_weight", "F32", new[] { L, d }),
                    new("wq", "F32", new[] { L, q, d }),
                    new("wk", "F32", new[] { L, kv, d }),
                    new("wv", "F32", new[] { L, kv, d }),
                    new("wo", "F32", new[] { L, d, q }),
                    new("rms_ffn_weight", "F32", new[] { L, d }),
                    new("w1", "F32", new[] { L, h, d }),
                    new("w2", "F32", new[] { L, d, h }),
                    new("w3", "F32", new[] { L, h, d }),
                    new("rms_final_weight", "F32", new[] { d }),
                    new("freq_cis_real (unused)", "F32", new[] { c.MaxSequenceLength, (long)c.HeadDim / 2 }),
                    new("freq_cis_imag (unused)", "F32", new[] { c.MaxSequenceLength, (long)c.HeadDim / 2 }),
                };
                if (!shared)
                {
                    t.Add(new("wcls", "F32", new[] { c.VocabSize, d }));
                }
                var meta = new List<KeyValuePair<string, string>>
                {
                    new("dim", c.Dim.ToString()), new("hidden_dim", c.HiddenDim.ToString()), new("n_layers", c.Layers.ToString()),
                    new("n_heads", c.Heads.ToString()), new("n_kv_heads", c.KvHeads.ToString()), new("vocab_size", c.VocabSize.ToString()),
                    new("seq_len", c.MaxSequenceLength.ToString()), new("shared_classifier", shared.ToString()),
                };
                return new ModelSummary(path, "llama2.c v0", meta, t);
            }
        }
    }

    private static string Describe(object v) => v switch
    {
        string s => s.Length > 80 ? s[..77] + "..." : s,
        string[] a => $"string[{a.Length}]",
        float[] a => $"float[{a.Length}]",
        int[] a => a.Length <= 16 ? "[" + string.Join(", ", a) + "]" : $"int[{a.Length}]",
        Array a => $"{a.GetType().GetElementType()!.Name.ToLowerInvariant()}[{a.Length}]",
        IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => v.ToString() ?? "",
    };
}
