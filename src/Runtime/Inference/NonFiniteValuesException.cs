namespace Kernels.Runtime.Inference;

/// <summary>
/// The forward pass produced NaN or infinity: names the model and the first place it appeared
/// (the token embedding, a layer's attention or MLP block, or the classifier), so a corrupt
/// weight is found without guessing. Generation and perplexity stop instead of printing garbage.
/// </summary>
public sealed class NonFiniteValuesException : InvalidOperationException
{
    public NonFiniteValuesException(string model, int layer, string block)
        : base($"{model}: NaN or infinite values first appear in {(layer >= 0 ? $"layer {layer} ({block})" : block)} (corrupt weights? run with --check-tensors)")
    {
        Model = model;
        Layer = layer;
        Block = block;
    }

    public string Model { get; }

    /// <summary>The decoder layer, or -1 for the embedding and the classifier.</summary>
    public int Layer { get; }

    public string Block { get; }
}
