using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Simd;

namespace Kernels.Runtime.Simplification;

/// <summary>
/// SDTP's light token-saliency predictor (Tao et al., arXiv 2504.04514): one 2-layer MLP per
/// pruning stage on each token's hidden state entering the stage layer,
/// π = w₂·GELU(W₁·u + b₁) + b₂ with u = x / rms(x) (a weightless RMS normalization, so one
/// predictor copes with the residual stream's growing scale). Only the ranking of π matters.
/// Stored as a GGUF of <c>kernels.sdtp.*</c> tensors (<see cref="Save"/>, <see cref="Load"/>);
/// trained by <c>kernels train-sdtp</c>.
/// </summary>
public sealed class SaliencyPredictor
{
    public const string Architecture = "kernels-sdtp";

    /// <summary>The predictor of the stage before layer <see cref="Layer"/>: W₁ [hidden, dim], b₁ [hidden], w₂ [hidden], b₂.</summary>
    public sealed class Stage(int layer, float[] w1, float[] b1, float[] w2, float b2)
    {
        public int Layer { get; } = layer;

        public float[] W1 { get; } = w1;

        public float[] B1 { get; } = b1;

        public float[] W2 { get; } = w2;

        public float B2 { get; set; } = b2;

        public int Hidden => B1.Length;

        /// <summary>π of one normalized input <paramref name="u"/>; leaves W₁u + b₁ in <paramref name="z"/> and its GELU in <paramref name="a"/> (training reads them).</summary>
        public float Forward(ReadOnlySpan<float> u, Span<float> z, Span<float> a)
        {
            int dim = u.Length;
            float pi = B2;
            for (int k = 0; k < Hidden; k++)
            {
                z[k] = VectorMath.Dot(W1.AsSpan(k * dim, dim), u) + B1[k];
                a[k] = Gelu(z[k]);
                pi += W2[k] * a[k];
            }
            return pi;
        }
    }

    public SaliencyPredictor(int dim, IReadOnlyList<Stage> stages, string teacher)
    {
        if (stages.Count == 0 || stages.Select(s => s.Layer).Distinct().Count() != stages.Count)
        {
            throw new ArgumentException("a saliency predictor needs one stage per distinct layer", nameof(stages));
        }
        foreach (var s in stages)
        {
            if (s.W1.Length != s.Hidden * dim || s.W2.Length != s.Hidden || s.Hidden < 1)
            {
                throw new ArgumentException($"stage at layer {s.Layer}: W1 {s.W1.Length} floats, b1 {s.B1.Length}, w2 {s.W2.Length} do not fit dim {dim}", nameof(stages));
            }
        }
        Dim = dim;
        Stages = stages.OrderBy(s => s.Layer).ToArray();
        Teacher = teacher;
    }

    public int Dim { get; }

    public IReadOnlyList<Stage> Stages { get; }

    /// <summary>What the predictor was trained to rank like (stored with it).</summary>
    public string Teacher { get; }

    public IReadOnlyList<int> StageLayers => Stages.Select(s => s.Layer).ToArray();

    /// <summary>Multiply-adds per token and stage: the MLP plus the normalization.</summary>
    public long MacsPerToken(int layer) => (long)For(layer).Hidden * (Dim + 1) + Dim;

    public Stage For(int layer) => Stages.FirstOrDefault(s => s.Layer == layer)
        ?? throw new ArgumentException($"the saliency predictor has stages at layers {string.Join(",", StageLayers)}, not {layer}");

    /// <summary>GELU, tanh form.</summary>
    public static float Gelu(float z) => 0.5f * z * (1f + MathF.Tanh(0.7978845608f * (z + 0.044715f * z * z * z)));

    /// <summary>d GELU / dz of the tanh form.</summary>
    public static float GeluDerivative(float z)
    {
        float inner = 0.7978845608f * (z + 0.044715f * z * z * z);
        float t = MathF.Tanh(inner);
        return 0.5f * (1f + t) + 0.5f * z * (1f - t * t) * 0.7978845608f * (1f + 3f * 0.044715f * z * z);
    }

    /// <summary>u = x / rms(x) (ε 1e-6).</summary>
    public static void Normalize(ReadOnlySpan<float> x, Span<float> u)
    {
        float ss = VectorMath.Dot(x, x);
        float scale = 1f / MathF.Sqrt(ss / x.Length + 1e-6f);
        for (int i = 0; i < x.Length; i++)
        {
            u[i] = x[i] * scale;
        }
    }

    /// <summary>saliency[i] = π of row i of <paramref name="x"/> ([n, dim] hidden states entering <paramref name="layer"/>).</summary>
    public void Score(int layer, ReadOnlySpan<float> x, int n, Span<float> saliency)
    {
        var stage = For(layer);
        if (x.Length < n * Dim || saliency.Length < n)
        {
            throw new ArgumentException($"{n} rows of dim {Dim} need {n * Dim} inputs and {n} scores (got {x.Length} and {saliency.Length})");
        }
        var u = new float[Dim];
        var z = new float[stage.Hidden];
        var a = new float[stage.Hidden];
        for (int i = 0; i < n; i++)
        {
            Normalize(x.Slice(i * Dim, Dim), u);
            saliency[i] = stage.Forward(u, z, a);
        }
    }

    /// <summary>Checks the predictor against a model: its width and a stage for every pruning layer.</summary>
    public void Validate(LlamaModel model, IReadOnlyList<int> stageLayers)
    {
        if (Dim != model.Config.Dim)
        {
            throw new ArgumentException($"the saliency predictor was trained for dim {Dim}; this model has dim {model.Config.Dim}");
        }
        var missing = stageLayers.Where(l => Stages.All(s => s.Layer != l)).ToArray();
        if (missing.Length > 0)
        {
            throw new ArgumentException($"the saliency predictor has stages at layers {string.Join(",", StageLayers)}; token pruning asks for {string.Join(",", stageLayers)} (no predictor for {string.Join(",", missing)})");
        }
    }

    /// <summary>Writes the predictor as a GGUF (F32 tensors <c>kernels.sdtp.{layer}.fc1.weight</c> …), atomically.</summary>
    public void Save(string path, IReadOnlyDictionary<string, object>? metadata = null)
    {
        var w = new GgufWriter()
            .Add("general.architecture", Architecture)
            .Add("kernels.sdtp.version", 1)
            .Add("kernels.sdtp.dim", Dim)
            .Add("kernels.sdtp.stage_layers", StageLayers.ToArray())
            .Add("kernels.sdtp.teacher", Teacher);
        foreach (var (key, value) in metadata ?? new Dictionary<string, object>())
        {
            w.Add(key, value);
        }
        foreach (var s in Stages)
        {
            w.AddTensor(TensorName(s.Layer, "fc1.weight"), [s.Hidden, Dim], GgmlType.F32, Bytes(s.W1));
            w.AddTensor(TensorName(s.Layer, "fc1.bias"), [s.Hidden], GgmlType.F32, Bytes(s.B1));
            w.AddTensor(TensorName(s.Layer, "fc2.weight"), [s.Hidden], GgmlType.F32, Bytes(s.W2));
            w.AddTensor(TensorName(s.Layer, "fc2.bias"), [1], GgmlType.F32, Bytes([s.B2]));
        }
        w.Write(path);
    }

    /// <summary>Reads a predictor GGUF; anything missing, mis-shaped or non-finite is a <see cref="ModelFormatException"/> naming the file and tensor.</summary>
    public static SaliencyPredictor Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"saliency predictor {path} not found (`kernels train-sdtp --out FILE` writes one)", path);
        }
        if (!GgufFile.LooksLikeGguf(path))
        {
            throw new ModelFormatException(path, "not a GGUF file (a saliency predictor is written by `kernels train-sdtp`)");
        }
        using var file = GgufFile.Open(path);
        if (file.Get<string>("general.architecture") != Architecture)
        {
            throw new ModelFormatException(path, $"general.architecture is '{file.Get<string>("general.architecture")}', not '{Architecture}' (is this a model rather than a predictor written by `kernels train-sdtp`?)");
        }
        int dim = (int)file.GetRequiredInt("kernels.sdtp.dim", 1, 1 << 20);
        var layers = file.Metadata.TryGetValue("kernels.sdtp.stage_layers", out var raw) && GgufFile.IntegerArray(raw) is { Length: > 0 } l
            ? l : throw new ModelFormatException(path, "kernels.sdtp.stage_layers is missing or not an integer array");
        var stages = new List<Stage>();
        foreach (long layer in layers)
        {
            if (layer < 1 || layer > 1 << 16)
            {
                throw new ModelFormatException(path, $"stage layer {layer} is out of range");
            }
            var w1 = Read(file, TensorName((int)layer, "fc1.weight"), null);
            int hidden = w1.Length / dim;
            if (hidden < 1 || hidden * dim != w1.Length)
            {
                throw new ModelFormatException(path, $"tensor {TensorName((int)layer, "fc1.weight")} has {w1.Length} values, not a multiple of dim {dim}");
            }
            stages.Add(new Stage((int)layer, w1, Read(file, TensorName((int)layer, "fc1.bias"), hidden), Read(file, TensorName((int)layer, "fc2.weight"), hidden),
                Read(file, TensorName((int)layer, "fc2.bias"), 1)[0]));
        }
        if (stages.Select(s => s.Layer).Distinct().Count() != stages.Count)
        {
            throw new ModelFormatException(path, $"kernels.sdtp.stage_layers lists a layer twice ({string.Join(",", layers)})");
        }
        return new SaliencyPredictor(dim, stages, file.Get<string>("kernels.sdtp.teacher") ?? "");
    }

    private static string TensorName(int layer, string part) => $"kernels.sdtp.{layer}.{part}";

    private static unsafe float[] Read(GgufFile file, string name, int? count)
    {
        var t = file.FindTensor(name) ?? throw new ModelFormatException(file.Path, $"tensor {name} is missing");
        if (t.Type != GgmlType.F32 || count is { } c && t.ElementCount != c || t.ElementCount > int.MaxValue)
        {
            throw new ModelFormatException(file.Path, $"tensor {name} is {t.Type} {t.Shape}; expected F32 with {count?.ToString() ?? "dim x hidden"} values");
        }
        var values = new ReadOnlySpan<float>(file.TensorData(t), (int)t.ElementCount).ToArray();
        if (values.Any(v => !float.IsFinite(v)))
        {
            throw new ModelFormatException(file.Path, $"tensor {name} holds NaN or infinity");
        }
        return values;
    }

    private static byte[] Bytes(float[] values) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
}
