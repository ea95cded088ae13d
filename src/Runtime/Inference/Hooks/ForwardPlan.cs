namespace Kernels.Runtime.Inference;

/// <summary>
/// What a forward pass does besides the dense Llama block: an immutable set of hooks, each with
/// one call site in <see cref="Transformer"/>. Change a plan with <c>with</c> and assign the new one.
/// </summary>
public sealed record ForwardPlan
{
    /// <summary>The dense forward pass.</summary>
    public static readonly ForwardPlan Dense = new();

    /// <summary>Per-block MLP replacement (dynamic input pruning); null runs the dense SwiGLU MLP.</summary>
    public IMlpOverride? Mlp { get; init; }

    /// <summary>Observer of block inputs and linear inputs (calibration, analysis).</summary>
    public IForwardObserver? Observer { get; init; }

    /// <summary>Layers to skip (layer removal experiments without rebuilding the model).</summary>
    public IReadOnlySet<int> SkipLayers { get; init; } = new HashSet<int>();

    /// <summary>SDTP token pruning of prompts (see <see cref="PromptTokenPruner"/>).</summary>
    public PromptTokenPruner? TokenPruning { get; init; }

    /// <summary>Query heads whose attention output is zeroed.</summary>
    public HeadMask? HeadMask { get; init; }
}
