using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kernels.Simd;

/// <summary>Which vector width the kernels run at.</summary>
public enum SimdTier
{
    Scalar = 0,
    Vector128 = 128,
    Vector256 = 256,
    Vector512 = 512,
}

/// <summary>
/// The dispatch decision for every CPU kernel in this assembly, made once per process.
/// </summary>
/// <remarks>
/// Policy (deliberate): use 512-bit vectors whenever the CPU executes AVX-512F, even when
/// the runtime's <c>Vector512.IsHardwareAccelerated</c> is false (it is false by default on
/// Intel parts where .NET guards against AVX-512 down-clocking). The machines this project is
/// measured on run zmm FMAs at the same clock as ymm (perf-anchors.md: 2x the FLOP peak), and
/// GEMV streams more bytes per instruction, so the preference heuristic would cost speed.
/// The runtime knobs still work: <c>DOTNET_EnableAVX512=0</c> drops to 256-bit,
/// <c>DOTNET_EnableAVX2=0</c> to 128-bit and <c>DOTNET_EnableHWIntrinsic=0</c> to scalar.
/// <c>KERNELS_MAX_SIMD_BITS</c> (0, 128, 256, 512) caps the tier without touching the runtime.
/// </remarks>
public static class SimdInfo
{
    /// <summary>The tier every dispatching kernel uses.</summary>
    public static readonly SimdTier Tier = Detect();

    internal static readonly bool Use512 = Tier == SimdTier.Vector512;
    internal static readonly bool Use256 = Tier == SimdTier.Vector256;
    internal static readonly bool Use128 = Tier == SimdTier.Vector128;

    private static SimdTier Detect()
    {
        int cap = 512;
        string? env = Environment.GetEnvironmentVariable("KERNELS_MAX_SIMD_BITS");
        if (env is not null && int.TryParse(env, out int parsed))
        {
            cap = parsed;
        }

        if (cap >= 512 && Avx512F.IsSupported && Avx512BW.IsSupported && Avx512DQ.IsSupported && Avx512F.VL.IsSupported)
        {
            return SimdTier.Vector512;
        }
        if (cap >= 256 && Avx2.IsSupported && Fma.IsSupported)
        {
            return SimdTier.Vector256;
        }
        if (cap >= 128 && Vector128.IsHardwareAccelerated)
        {
            return SimdTier.Vector128;
        }
        return SimdTier.Scalar;
    }

    /// <summary>One line for logs and benchmark headers.</summary>
    public static string Describe() =>
        $"SIMD tier {Tier} (AVX-512F {Avx512F.IsSupported}, AVX-512 VBMI {Avx512Vbmi.IsSupported}, AVX2 {Avx2.IsSupported}, FMA {Fma.IsSupported}, " +
        $"Vector512.IsHardwareAccelerated {Vector512.IsHardwareAccelerated}, Vector<float>.Count {System.Numerics.Vector<float>.Count}, " +
        $"threads {Threading.WorkerPool.Shared.ThreadCount})";
}
