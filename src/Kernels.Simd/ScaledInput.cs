using System.Numerics;
using System.Runtime.CompilerServices;
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
