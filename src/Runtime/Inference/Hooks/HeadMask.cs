using Kernels.Runtime.Compute;

namespace Kernels.Runtime.Inference;

/// <summary>Query heads whose attention output is zeroed (head-importance analysis): (layer, head) pairs.</summary>
public sealed class HeadMask(IReadOnlySet<(int Layer, int Head)> heads)
{
    public IReadOnlySet<(int Layer, int Head)> Heads { get; } = heads;

    /// <summary>Zeroes the masked heads of <paramref name="layer"/> in the attention output [n, heads·headDim].</summary>
    public void Apply(ITransformerOps ops, DeviceTensor attention, int layer, int heads, int headDim, int n)
    {
        var masked = Enumerable.Range(0, heads).Where(h => Heads.Contains((layer, h))).ToArray();
        if (masked.Length == 0)
        {
            return;
        }
        ops.ZeroHeads(attention, n, heads, headDim, masked);
    }
}
