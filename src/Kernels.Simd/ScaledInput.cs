using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.InteropServices;

namespace Kernels.Simd;

/// <summary>
/// Activations multiplied by a power of two into a per-thread scratch buffer, for kernels that
/// fold a constant factor of their weights (the F16 rebias 2¹¹²) into the activations once per
/// call instead of into every weight vector.
/// </summary>
internal static unsafe class ScaledInput
{
    // Pinned (POH) so the pointer stays valid while the worker pool reads it; grows, never shrinks.
    [ThreadStatic] private static float[]? t_scratch;

    /// <summary>
    /// Writes x[0..length) · <paramref name="scale"/> into this thread's scratch and returns it, or
    /// null when a scaled value overflows or x holds Inf/NaN: the caller then takes its unscaled
    /// path, so results never depend on the trick. Scaling by a power of two is exact otherwise.
    /// The buffer is reused by this thread's next call: use it before calling again.
    /// </summary>
    public static float* TryScale(float* x, long length, float scale)
    {
        if (length > Array.MaxLength)
        {
            return null;
        }
        float[] scratch = t_scratch is { } s && s.Length >= length ? s : t_scratch = GC.AllocateUninitializedArray<float>((int)length, pinned: true);
        float* d = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(scratch));
        var factor = new Vector<float>(scale);
        var check = Vector<float>.Zero;
        long i = 0;
        for (; i + Vector<float>.Count <= length; i += Vector<float>.Count)
        {
            Vector<float> v = Vector.Load(x + i) * factor;
            v.Store(d + i);
            check += v * Vector<float>.Zero; // NaN once any lane is Inf or NaN
        }
        float tail = 0f;
        for (; i < length; i++)
        {
            d[i] = x[i] * scale;
            tail += d[i] * 0f;
        }
        return Vector.Sum(check) + tail == 0f ? d : null;
    }
}

/// <summary>
/// Activations permuted for paired widening of dense 16-bit weights: within every block of
/// <c>pair</c> = 2·Count values, the even-indexed ones first, then the odd-indexed ones (the
/// order in which <see cref="Vectors.IFloatVector{TVec}.LoadHalfPairInterleaved"/> splits a vector
/// of 16-bit weights), optionally multiplied by a power of two. Values past the last whole block
/// are not written (kernels sum that tail against the original x).
/// </summary>
internal static unsafe class PairedInput
{
    // Pinned (POH) so the pointer stays valid while the worker pool reads it; grows, never shrinks.
    [ThreadStatic] private static float[]? t_scratch;

    /// <summary>
    /// Permutes x[0..k) into this thread's scratch (reused by its next call). With a
    /// <paramref name="scale"/> other than 1, returns null when a scaled value is not finite (it
    /// overflowed, or x holds Inf/NaN): the caller then takes its unscaled path.
    /// </summary>
    public static float* TryPermute(float* x, int k, int pair, float scale)
    {
        float[] scratch = t_scratch is { } s && s.Length >= k ? s : t_scratch = GC.AllocateUninitializedArray<float>(Math.Max(k, 64), pinned: true);
        float* d = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(scratch));
        int half = pair / 2;
        float check = 0f;
        int b = 0;
        if (pair == 32 && System.Runtime.Intrinsics.X86.Avx512F.IsSupported)
        {
            var evenIndices = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            var oddIndices = evenIndices + Vector512<int>.One;
            var factor = Vector512.Create(scale);
            var nonFinite = Vector512<float>.Zero;
            for (; b + 32 <= k; b += 32)
            {
                Vector512<float> lo = Vector512.Load(x + b) * factor, hi = Vector512.Load(x + b + 16) * factor;
                System.Runtime.Intrinsics.X86.Avx512F.PermuteVar16x32x2(lo, evenIndices, hi).Store(d + b);
                System.Runtime.Intrinsics.X86.Avx512F.PermuteVar16x32x2(lo, oddIndices, hi).Store(d + b + 16);
                nonFinite += lo * Vector512<float>.Zero + hi * Vector512<float>.Zero;
            }
            check = Vector512.Sum(nonFinite);
        }
        for (; b + pair <= k; b += pair)
        {
            for (int j = 0; j < half; j++)
            {
                float even = x[b + 2 * j] * scale, odd = x[b + 2 * j + 1] * scale;
                d[b + j] = even;
                d[b + half + j] = odd;
                check += even * 0f + odd * 0f; // NaN once a value is Inf or NaN
            }
        }
        return scale == 1f || check == 0f ? d : null;
    }
}
