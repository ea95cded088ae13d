using Kernels.Simd.Matrices;

namespace Kernels.Runtime.Pruning;

public enum PruneMethod
{
    /// <summary>|W|, compared per output row.</summary>
    Magnitude,

    /// <summary>|W_ij|·‖X_j‖₂, compared per output row (Sun et al.).</summary>
    Wanda,

    /// <summary>Dependency-aware: down = Wanda on h; gate/up = |W_ij|·‖h_i‖₂^α compared per input column (Guo et al.).</summary>
    Dass,

    /// <summary>OBS-style reconstruction with weight updates (Frantar and Alistarh).</summary>
    SparseGpt,
}

public enum PruneScope
{
    /// <summary>gate, up and down only (the DaSS paper's protocol).</summary>
    Mlp,

    /// <summary>Every linear of every block (q, k, v, o, gate, up, down).</summary>
    All,
}

/// <summary>Target sparsity: an N:M pattern, or an unstructured ratio.</summary>
public sealed record Sparsity(NmPattern? Pattern, double Ratio)
{
    public static Sparsity Parse(string text)
    {
        if (text.Contains(':'))
        {
            return new Sparsity(NmPattern.Parse(text), 0.5);
        }
        if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double r) || !(r > 0 && r < 1))
        {
            throw new FormatException($"'{text}' is neither an N:M pattern (2:4, 4:8) nor an unstructured ratio in (0, 1)");
        }
        return new Sparsity(null, r);
    }

    public override string ToString() => Pattern?.ToString() ?? $"{Ratio:0.##} unstructured";
}

/// <summary>Everything a pruning run needs besides the model and calibration data.</summary>
public sealed record PruneSpec
{
    public required PruneMethod Method { get; init; }
    public required Sparsity Sparsity { get; init; }
    public PruneScope Scope { get; init; } = PruneScope.Mlp;

    /// <summary>DaSS exponent on ‖h_i‖ for gate/up (0.5 in the paper's code).</summary>
    public double Alpha { get; init; } = 0.5;

    /// <summary>SparseGPT column block size.</summary>
    public int BlockSize { get; init; } = 128;

    /// <summary>SparseGPT damping as a fraction of the mean Hessian diagonal.</summary>
    public double PercentDamp { get; init; } = 0.01;

    public override string ToString() => $"{Method} {Sparsity} ({Scope})";
}
