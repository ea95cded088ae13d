using Kernels.Runtime.Compute;
using Kernels.Runtime.Model;

namespace Kernels.Runtime.Inference;

/// <summary>Replaces a block's MLP (y = W_down(silu(W_gate x) ⊙ W_up x)) for some tokens/layers.</summary>
public interface IMlpOverride
{
    /// <summary>Writes the MLP output for x[n, dim] into y[n, dim] and returns true, or returns false to run the dense MLP.</summary>
    /// <param name="prompt">The n tokens are a prompt being prefilled (no logits scored): generation's prefill, not a decode step or a scored batch.</param>
    bool TryRun(Transformer transformer, int layer, LlamaLayer weights, DeviceTensor x, int n, bool prompt, DeviceTensor y);
}
