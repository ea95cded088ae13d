using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Kernels.Simd.Vectors;

/// <summary>
/// A kernel written once over the vector width (<see cref="IFloatVector{TVec}"/>) plus its scalar
/// twin. The kernel is a struct holding its arguments; <see cref="SimdDispatch.Run"/> picks the
/// instantiation, so the tier ladder exists in one place only.
/// </summary>
internal interface IWidthKernel
{
    void Vector<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged;

    void Scalar();
}

/// <summary>The one place that turns <see cref="SimdInfo.Tier"/> into a kernel instantiation.</summary>
internal static class SimdDispatch
{
    /// <summary>
    /// Runs <paramref name="kernel"/> at the process's tier. With <paramref name="length"/> (element-wise
    /// work), a tier whose vector is longer than the data steps down to the next narrower one, so
    /// short spans still run vectorized instead of entirely in the scalar tail.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Run<TKernel>(ref TKernel kernel, int length = int.MaxValue) where TKernel : struct, IWidthKernel
    {
        if (SimdInfo.Use512 && length >= Vec512.Count)
        {
            kernel.Vector<Vec512, Vector512<float>>();
        }
        else if ((SimdInfo.Use512 || SimdInfo.Use256) && length >= Vec256.Count)
        {
            kernel.Vector<Vec256, Vector256<float>>();
        }
        else if (SimdInfo.Tier != SimdTier.Scalar && length >= Vec128.Count)
        {
            kernel.Vector<Vec128, Vector128<float>>();
        }
        else
        {
            kernel.Scalar();
        }
    }

    /// <summary>Floats per vector at the process's tier (1 on the scalar tier).</summary>
    public static int Lanes => SimdInfo.Use512 ? Vec512.Count : SimdInfo.Use256 ? Vec256.Count : SimdInfo.Use128 ? Vec128.Count : 1;
}
