using Kernels.Runtime.Compute;

namespace Kernels.Runtime.Inference;

/// <summary>Linear layers whose inputs an observer sees.</summary>
public enum LinearKind
{
    /// <summary>Input of Q, K and V (the normed block input).</summary>
    Query,
    /// <summary>Input of the attention output projection.</summary>
    Output,
    /// <summary>Input of gate and up (the normed MLP input).</summary>
    Gate,
    /// <summary>Input of down (the SwiGLU activation h).</summary>
    Down,
}

/// <summary>Sees activations during a forward (calibration statistics, analysis). Tensors are read through the ops.</summary>
public interface IForwardObserver
{
    /// <summary>Residual stream entering block <paramref name="layer"/> ([n, dim]); layer == Layers for the final output.</summary>
    void OnBlockInput(int layer, DeviceTensor x, int n);

    void OnLinearInput(int layer, LinearKind kind, DeviceTensor input, int n);
}
