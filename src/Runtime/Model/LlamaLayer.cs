using Kernels.Simd.Matrices;

namespace Kernels.Runtime.Model;

/// <summary>One decoder block. Matrices are y = W x with W [out, in].</summary>
public sealed class LlamaLayer
{
    public required float[] AttentionNorm { get; init; }   // [dim]
    public required WeightMatrix Query { get; set; }        // [heads*headDim, dim]
    public required WeightMatrix Key { get; set; }          // [kvHeads*headDim, dim]
    public required WeightMatrix Value { get; set; }        // [kvHeads*headDim, dim]
    public required WeightMatrix Output { get; set; }       // [dim, heads*headDim]
    public required float[] FfnNorm { get; init; }          // [dim]
    public required WeightMatrix Gate { get; set; }         // w1 [hidden, dim]
    public required WeightMatrix Down { get; set; }         // w2 [dim, hidden]
    public required WeightMatrix Up { get; set; }           // w3 [hidden, dim]

    /// <summary>Bias added after the Q projection (Qwen2), in the interleaved RoPE row order like the rows; null for none.</summary>
    public float[]? QueryBias { get; set; }

    /// <summary>Bias added after the K projection (Qwen2), in the interleaved RoPE row order; null for none.</summary>
    public float[]? KeyBias { get; set; }

    /// <summary>Bias added after the V projection (Qwen2); null for none.</summary>
    public float[]? ValueBias { get; set; }

    /// <summary>Query heads in this layer (may be fewer than the config's after head pruning).</summary>
    public required int Heads { get; set; }

    /// <summary>KV heads in this layer.</summary>
    public required int KvHeads { get; set; }

    /// <summary>Index of the layer whose KV cache this layer reads instead of its own (cross-layer sharing), or -1.</summary>
    public int SharesKvWith { get; set; } = -1;

    public IEnumerable<(string Name, WeightMatrix Matrix)> Linears()
    {
        yield return ("attn_q", Query);
        yield return ("attn_k", Key);
        yield return ("attn_v", Value);
        yield return ("attn_output", Output);
        yield return ("ffn_gate", Gate);
        yield return ("ffn_down", Down);
        yield return ("ffn_up", Up);
    }
}
