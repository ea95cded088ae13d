namespace Kernels.Runtime.Model;

/// <summary>Hyper-parameters of a Llama-style decoder (per-layer head counts live on <see cref="LlamaLayer"/>).</summary>
public sealed record LlamaConfig
{
    public required int Dim { get; init; }
    public required int HiddenDim { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int VocabSize { get; init; }
    public required int MaxSequenceLength { get; init; }
    public float NormEpsilon { get; init; } = 1e-5f;
    public float RopeTheta { get; init; } = 10000f;

    /// <summary>The family name files use: "llama" (Llama 1-3, Mistral, SmolLM) or "qwen2" (attention biases; GGUF keys qwen2.*, NEOX RoPE rows).</summary>
    public string Architecture { get; init; } = "llama";

    /// <summary>RoPE frequency scaling (Llama 3.1's, or linear); null for none.</summary>
    public RopeScaling? RopeScaling { get; init; }

    /// <summary>
    /// Attention of every position sees only the last this-many positions (Mistral's sliding window);
    /// null for full attention. The forward pass refuses positions beyond it rather than attend wrongly.
    /// </summary>
    public int? SlidingWindow { get; init; }

    /// <summary>Per-head width; fixed by the unpruned model (head pruning removes heads, not width).</summary>
    public int HeadDim { get; init; }

    public int KvDim => KvHeads * HeadDim;

    /// <summary>Throws <see cref="ModelFormatException"/> when the numbers cannot describe a Llama model.</summary>
    public LlamaConfig Validated(string source)
    {
        void Fail(string why) => throw new ModelFormatException(source, $"invalid configuration: {why} ({this})");
        if (Dim <= 0 || HiddenDim <= 0 || Layers < 0 || Heads <= 0 || KvHeads <= 0 || VocabSize <= 0 || MaxSequenceLength <= 0)
        {
            Fail("every dimension must be positive");
        }
        if (HeadDim <= 0 || HeadDim % 2 != 0)
        {
            Fail($"head dim {HeadDim} must be positive and even (RoPE rotates pairs)");
        }
        if (Heads % KvHeads != 0)
        {
            Fail($"heads {Heads} is not a multiple of kv heads {KvHeads}");
        }
        if (!(NormEpsilon > 0) || !(RopeTheta > 0))
        {
            Fail("norm epsilon and rope theta must be positive");
        }
        return this;
    }

    /// <summary>Builds a config with head dim = dim / heads.</summary>
    public static LlamaConfig Create(int dim, int hiddenDim, int layers, int heads, int kvHeads, int vocab, int maxSeq,
        float eps = 1e-5f, float theta = 10000f, int headDim = 0) => new()
    {
        Dim = dim, HiddenDim = hiddenDim, Layers = layers, Heads = heads, KvHeads = kvHeads, VocabSize = vocab,
        MaxSequenceLength = maxSeq, NormEpsilon = eps, RopeTheta = theta,
        HeadDim = headDim > 0 ? headDim : heads > 0 && dim % heads == 0 ? dim / heads : 0,
    };
}
