namespace Kernels.Simd.Matrices;

/// <summary>
/// An N:M semi-structured sparsity pattern: in every group of M consecutive weights, at most
/// N are non-zero. The kernels support the half-density patterns 2:4 and 4:8.
/// </summary>
public readonly record struct NmPattern(int N, int M)
{
    public static readonly NmPattern TwoFour = new(2, 4);
    public static readonly NmPattern FourEight = new(4, 8);

    /// <summary>Bits of metadata per kept value in the input-axis (gather) format: log2(M).</summary>
    public int IndexBits => M == 4 ? 2 : 3;

    public bool IsSupported => this == TwoFour || this == FourEight;

    public override string ToString() => $"{N}:{M}";

    public static NmPattern Parse(string text)
    {
        var parts = text.Split(':');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int n) || !int.TryParse(parts[1], out int m))
        {
            throw new FormatException($"'{text}' is not an N:M pattern (e.g. 2:4)");
        }
        var p = new NmPattern(n, m);
        if (!p.IsSupported)
        {
            throw new NotSupportedException($"pattern {p} is not supported (2:4 and 4:8 are)");
        }
        return p;
    }

    internal void ThrowIfUnsupported(string name)
    {
        if (!IsSupported)
        {
            ThrowHelper.NotSupported($"{name}: N:M pattern {this} is not supported (2:4 and 4:8 are)");
        }
    }
}

/// <summary>Along which dimension of W [rows, cols] the N:M groups run.</summary>
public enum NmAxis
{
    /// <summary>Groups of M consecutive input columns within each row (Wanda, SparseGPT, DaSS down_proj; what 2:4 hardware expects).</summary>
    Input,

    /// <summary>Groups of M consecutive output rows within each column (DaSS gate_proj/up_proj).</summary>
    Output,
}
