using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;

namespace Kernels.Runtime.Compute;

/// <summary>A float buffer that lives wherever the backend computes (host memory, GPU memory).</summary>
public abstract class DeviceTensor : IDisposable
{
    protected DeviceTensor(int length) => Length = length;

    public int Length { get; }

    public abstract void Dispose();
}

/// <summary>
/// The operations the forward pass calls. Backends implement them over their own tensors and
/// KV caches; the model code (Inference.Transformer) never touches memory directly.
/// </summary>
/// <remarks>
/// Parameter order: sources, then arguments, then destination. Shapes are row-major; n is the
/// number of tokens in the batch. Weights are passed as the model's own objects; a device
/// backend uploads each once (keyed by reference) and reuses it.
/// </remarks>
public interface ITransformerOps : IDisposable
{
    /// <summary>Backend and device, for logs ("cpu-simd Vector512, 2 threads").</summary>
    string Name { get; }

    /// <summary>Whether this backend runs every feature in <paramref name="feature"/> (see <see cref="BackendFeatures.Require"/>).</summary>
    bool Supports(BackendFeature feature);

    DeviceTensor Allocate(int length);

    /// <summary>x[n, dim] = embedding rows of <paramref name="tokens"/>.</summary>
    void Embed(WeightMatrix embedding, ReadOnlySpan<int> tokens, DeviceTensor x);

    /// <summary>y[n, dim] = RMSNorm(x[n, dim]) ⊙ weight.</summary>
    void RmsNorm(DeviceTensor x, float[] weight, float epsilon, int n, DeviceTensor y);

    /// <summary>y[n, w.Rows] = x[n, w.Columns] · Wᵀ.</summary>
    void MatMul(WeightMatrix w, DeviceTensor x, int n, DeviceTensor y);

    /// <summary>
    /// ys[i][n, ws[i].Rows] = x[n, columns] · ws[i]ᵀ for matrices that read the same input (Q/K/V,
    /// gate/up). A backend may run them as one operation; by default they run one after another.
    /// </summary>
    void MatMul(ReadOnlySpan<WeightMatrix> ws, DeviceTensor x, int n, ReadOnlySpan<DeviceTensor> ys)
    {
        if (ws.Length != ys.Length)
        {
            throw new ArgumentException($"{ws.Length} matrices but {ys.Length} outputs", nameof(ys));
        }
        for (int i = 0; i < ws.Length; i++)
        {
            MatMul(ws[i], x, n, ys[i]);
        }
    }

    /// <summary>x[t, :] += bias for every token row t of x[n, bias.Length]; nothing when <paramref name="bias"/> is null (Qwen2's Q/K/V biases).</summary>
    void AddBias(DeviceTensor x, float[]? bias, int n);

    /// <summary>Rotates x[n, heads·headDim] in place; row t is at <paramref name="positions"/>[t].</summary>
    void Rope(DeviceTensor x, int n, int heads, RopeTable table, ReadOnlySpan<int> positions);

    /// <summary>
    /// Appends k/v [n, kvHeads·headDim] of layer <paramref name="layer"/> to the cache (unless
    /// <paramref name="appendKv"/> is false: the layer reuses another layer's cache) and computes
    /// causal attention of q [n, heads·headDim] into output [n, heads·headDim].
    /// </summary>
    void Attention(IKvCache cache, int layer, int cacheLayer, bool appendKv, DeviceTensor q, DeviceTensor k, DeviceTensor v,
        int n, int heads, int kvHeads, ReadOnlySpan<int> positions, DeviceTensor output);

    /// <summary>
    /// Builds, unless it exists, this backend's column-major copy of <paramref name="layer"/>'s MLP
    /// for <see cref="MaskedGateUp"/> and <see cref="MaskedDown"/>; the backend owns it until disposed.
    /// Dynamic input pruning prepares every layer before its first step, so no step pays for a copy.
    /// </summary>
    void PrepareMaskedMlp(LlamaLayer layer) => throw MaskedSwiGluUnsupported();

    /// <summary>
    /// h[hidden] = silu(Σ_{j∈inputs} x_j·W_gate[:, j]) ⊙ Σ_{j∈inputs} x_j·W_up[:, j] for the one
    /// token row x[offset .. offset + dim): only the selected input columns are read (DIP).
    /// </summary>
    void MaskedGateUp(LlamaLayer layer, DeviceTensor x, int offset, ReadOnlySpan<int> inputs, DeviceTensor h) => throw MaskedSwiGluUnsupported();

    /// <summary>y[offset .. offset + dim) = Σ_{i∈columns} h_i·W_down[:, i]: only the selected intermediate columns are read.</summary>
    void MaskedDown(LlamaLayer layer, DeviceTensor h, ReadOnlySpan<int> columns, DeviceTensor y, int offset) => throw MaskedSwiGluUnsupported();

    private NotSupportedException MaskedSwiGluUnsupported() =>
        new($"the {Name} backend does not run masked SwiGLU ({nameof(BackendFeature.DynamicInputPruning)})");

    /// <summary>h[count] = silu(gate) ⊙ up.</summary>
    void SwiGlu(DeviceTensor gate, DeviceTensor up, int count, DeviceTensor h);

    /// <summary>Zeroes heads <paramref name="maskedHeads"/> of every token row of x[n, heads·headDim] (head masking: one call per layer, not one copy per token and head).</summary>
    void ZeroHeads(DeviceTensor x, int n, int heads, int headDim, ReadOnlySpan<int> maskedHeads);

    /// <summary>x[count] += delta[count].</summary>
    void AddInPlace(DeviceTensor x, DeviceTensor delta, int count);

    /// <summary>Copies count floats between tensors of this backend.</summary>
    void Copy(DeviceTensor source, int sourceOffset, DeviceTensor destination, int destinationOffset, int count);

    /// <summary>Host copy of count floats from <paramref name="source"/> at offset.</summary>
    void Download(DeviceTensor source, int offset, Span<float> destination);

    /// <summary>Writes host data into a tensor.</summary>
    void Upload(ReadOnlySpan<float> source, DeviceTensor destination, int offset);

    /// <summary>True when count values at offset hold no NaN or infinity (the forward pass checks each block's output).</summary>
    bool AllFinite(DeviceTensor x, int offset, int count);

    /// <summary>Index of the largest of count values at offset (first on ties): greedy sampling without downloading logits.</summary>
    int ArgMax(DeviceTensor source, int offset, int count);

    /// <summary>A KV cache for this backend sized for <paramref name="capacity"/> tokens per layer and head.</summary>
    IKvCache CreateKvCache(LlamaModel model, int capacity);

    /// <summary>Waits until every operation issued so far has finished (asynchronous backends; host backends return at once).</summary>
    void Synchronize()
    {
    }
}

/// <summary>Per-layer, per-KV-head key/value storage owned by a backend.</summary>
public interface IKvCache : IDisposable
{
    /// <summary>Tokens held for (layer, kvHead).</summary>
    int Count(int layer, int kvHead);

    /// <summary>Bytes of key/value storage currently allocated.</summary>
    long BytesHeld { get; }

    /// <summary>Bytes holding live entries (Σ count · 2 · headDim · 4).</summary>
    long BytesUsed { get; }

    /// <summary>Forgets every entry (positions restart).</summary>
    void Reset();
}
