using System.Runtime.Intrinsics;
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

    public static void Apply(float* gate, float* up, float* destination, int n)
    {
        int i = 0;
        if (SimdInfo.Use512)
        {
            i = Run<Vec512, Vector512<float>>(gate, up, destination, n);
        }
        else if (SimdInfo.Use256)
        {
            i = Run<Vec256, Vector256<float>>(gate, up, destination, n);
        }
        else if (SimdInfo.Use128)
        {
            i = Run<Vec128, Vector128<float>>(gate, up, destination, n);
        }
        for (; i < n; i++)
        {
            destination[i] = Scalar(gate[i], up[i]);
        }
    }

    /// <summary>The scalar definition (llama2.c's order of operations).</summary>
    public static float Scalar(float gate, float up) => gate * (1f / (1f + MathF.Exp(-gate))) * up;

    private static int Run<TTier, TVec>(float* g, float* u, float* d, int n)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        int c = TTier.Count;
        TVec one = TTier.Broadcast(1f);
        TVec zero = TTier.Zero;
        int i = 0;
        for (; i <= n - c; i += c)
        {
            TVec gv = TTier.Load(g + i);
            TVec silu = TTier.Divide(gv, TTier.Add(one, TTier.Exp(TTier.Subtract(zero, gv))));
            TTier.Store(d + i, TTier.Multiply(silu, TTier.Load(u + i)));
        }
        return i;
    }
}
