namespace Kernels.Runtime.Inference;

/// <summary>Which logits a forward pass computes.</summary>
public enum LogitsMode
{
    /// <summary>No classifier (prefill whose logits are not needed).</summary>
    None,

    /// <summary>Only the last token's logits.</summary>
    Last,

    /// <summary>Logits of every token in the batch (perplexity).</summary>
    All,
}
