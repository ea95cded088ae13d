using Kernels.Runtime.Compute;
using Kernels.Runtime.Model;

namespace Kernels.Runtime.Inference;

/// <summary>
/// The backend tensors a forward pass works in (run.c's RunState): the residual stream x, its
/// normed copy xb, q/k/v, the attention output, the projection, the MLP's gate/up/h, and the
/// logits. Sized once for the largest batch (and per-layer head counts); logits grow on demand.
/// </summary>
internal sealed class ForwardBuffers : IDisposable
{
    private readonly ITransformerOps _ops;

    public ForwardBuffers(ITransformerOps ops, LlamaModel model, int maxBatch)
    {
        _ops = ops;
        var c = model.Config;
        int b = maxBatch;
        int qWidth = Math.Max(c.Heads * c.HeadDim, model.Layers.Count == 0 ? 0 : model.Layers.Max(l => l.Heads * c.HeadDim));
        int kvWidth = Math.Max(c.KvDim, model.Layers.Count == 0 ? 0 : model.Layers.Max(l => l.KvHeads * c.HeadDim));
        X = ops.Allocate(b * c.Dim);
        Xb = ops.Allocate(b * c.Dim);
        Q = ops.Allocate(b * qWidth);
        K = ops.Allocate(b * kvWidth);
        V = ops.Allocate(b * kvWidth);
        Attention = ops.Allocate(b * qWidth);
        Projection = ops.Allocate(b * c.Dim);
        Gate = ops.Allocate(b * c.HiddenDim);
        Up = ops.Allocate(b * c.HiddenDim);
        H = ops.Allocate(b * c.HiddenDim);
        Last = ops.Allocate(c.Dim);
    }

    public DeviceTensor X { get; }
    public DeviceTensor Xb { get; }
    public DeviceTensor Q { get; }
    public DeviceTensor K { get; }
    public DeviceTensor V { get; }
    public DeviceTensor Attention { get; }
    public DeviceTensor Projection { get; }
    public DeviceTensor Gate { get; }
    public DeviceTensor Up { get; }
    public DeviceTensor H { get; }
    public DeviceTensor Last { get; }
    public DeviceTensor? Logits { get; private set; }

    /// <summary>Logits for at least <paramref name="length"/> floats.</summary>
    public DeviceTensor EnsureLogits(int length)
    {
        if (Logits is null || Logits.Length < length)
        {
            Logits?.Dispose();
            Logits = _ops.Allocate(length);
        }
        return Logits;
    }

    public void Dispose()
    {
        foreach (var t in new[] { X, Xb, Q, K, V, Attention, Projection, Gate, Up, H, Last, Logits })
        {
            t?.Dispose();
        }
    }
}
