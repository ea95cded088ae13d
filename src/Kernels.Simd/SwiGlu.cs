using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>SwiGLU activation: destination = silu(gate) ⊙ up, silu(g) = g / (1 + e^-g).</summary>
public static unsafe class SwiGlu
{
    /// <remarks>Exact aliasing of destination with gate or up is allowed.</remarks>
    public static void Apply(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> destination)
    {
        if (gate.Length != up.Length)
        {
            ThrowHelper.LengthMismatch("gate, up");
        }
        if (destination.Length < gate.Length)
        {
            ThrowHelper.DestinationTooShort();
        }
        ThrowHelper.ThrowIfPartialOverlap(gate, destination);
        ThrowHelper.ThrowIfPartialOverlap(up, destination);
        fixed (float* g = gate)
        fixed (float* u = up)
        fixed (float* d = destination)
        {
            Apply(g, u, d, gate.Length);
        }
    }

    public static void Apply(float* gate, float* up, float* destination, int n) =>
        ElementWise.Binary(new SwiGluOperator(), gate, up, destination, n);

    /// <summary>The scalar definition (llama2.c's order of operations).</summary>
    public static float Scalar(float gate, float up) => gate * (1f / (1f + MathF.Exp(-gate))) * up;
}
