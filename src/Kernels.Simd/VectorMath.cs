using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>
/// Float vector primitives used by the transformer kernels (dot, axpy, scale, sum of squares),
/// each dispatched once on <see cref="SimdInfo.Tier"/>.
/// </summary>
/// <remarks>Reductions accumulate lane-wise and reduce at the end; tails use an overlapping masked vector.</remarks>
public static unsafe class VectorMath
{
    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length)
        {
            ThrowHelper.LengthMismatch("a, b");
        }
        fixed (float* pa = a)
        fixed (float* pb = b)
        {
            return Dot(pa, pb, a.Length);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(float* a, float* b, int n)
    {
        if (SimdInfo.Use512 && n >= 16)
        {
            return Dot<Vec512, Vector512<float>>(a, b, n);
        }
        if ((SimdInfo.Use512 || SimdInfo.Use256) && n >= 8)
        {
            return Dot<Vec256, Vector256<float>>(a, b, n);
        }
        if (SimdInfo.Tier != SimdTier.Scalar && n >= 4)
        {
            return Dot<Vec128, Vector128<float>>(a, b, n);
        }
        float s = 0f;
        for (int i = 0; i < n; i++)
        {
            s += a[i] * b[i];
        }
        return s;
    }

    private static float Dot<TTier, TVec>(float* a, float* b, int n)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        int c = TTier.Count;
        TVec acc0 = TTier.Zero, acc1 = TTier.Zero;
        int i = 0;
        for (; i <= n - 2 * c; i += 2 * c)
        {
            acc0 = TTier.MultiplyAdd(TTier.Load(a + i), TTier.Load(b + i), acc0);
            acc1 = TTier.MultiplyAdd(TTier.Load(a + i + c), TTier.Load(b + i + c), acc1);
        }
        if (i <= n - c)
        {
            acc0 = TTier.MultiplyAdd(TTier.Load(a + i), TTier.Load(b + i), acc0);
            i += c;
        }
        if (i < n)
        {
            int t = n - c;
            acc1 = TTier.Add(acc1, TTier.KeepLast(TTier.Multiply(TTier.Load(a + t), TTier.Load(b + t)), n - i));
        }
        return TTier.Sum(TTier.Add(acc0, acc1));
    }

    /// <summary>Σ x².</summary>
    public static float SumOfSquares(ReadOnlySpan<float> x)
    {
        fixed (float* p = x)
        {
            return Dot(p, p, x.Length);
        }
    }

    /// <summary>y += a · x (exact aliasing of x and y allowed).</summary>
    public static void Axpy(float a, ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length != y.Length)
        {
            ThrowHelper.LengthMismatch("x, y");
        }
        ThrowHelper.ThrowIfPartialOverlap(x, y);
        fixed (float* px = x)
        fixed (float* py = y)
        {
            Axpy(a, px, py, x.Length);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Axpy(float a, float* x, float* y, int n)
    {
        if (SimdInfo.Use512 && n >= 16)
        {
            Axpy<Vec512, Vector512<float>>(a, x, y, n);
        }
        else if ((SimdInfo.Use512 || SimdInfo.Use256) && n >= 8)
        {
            Axpy<Vec256, Vector256<float>>(a, x, y, n);
        }
        else if (SimdInfo.Tier != SimdTier.Scalar && n >= 4)
        {
            Axpy<Vec128, Vector128<float>>(a, x, y, n);
        }
        else
        {
            for (int i = 0; i < n; i++)
            {
                y[i] += a * x[i];
            }
        }
    }

    private static void Axpy<TTier, TVec>(float a, float* x, float* y, int n)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        int c = TTier.Count;
        TVec av = TTier.Broadcast(a);
        int i = 0;
        for (; i <= n - c; i += c)
        {
            TTier.Store(y + i, TTier.MultiplyAdd(av, TTier.Load(x + i), TTier.Load(y + i)));
        }
        // Not idempotent, so the tail is scalar rather than an overlapping vector.
        for (; i < n; i++)
        {
            y[i] += a * x[i];
        }
    }

    /// <summary>destination = a + b (element-wise; exact aliasing allowed).</summary>
    public static void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> destination)
    {
        if (a.Length != b.Length)
        {
            ThrowHelper.LengthMismatch("a, b");
        }
        if (destination.Length < a.Length)
        {
            ThrowHelper.DestinationTooShort();
        }
        ThrowHelper.ThrowIfPartialOverlap(a, destination);
        ThrowHelper.ThrowIfPartialOverlap(b, destination);
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* pd = destination)
        {
            Add(pa, pb, pd, a.Length);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Add(float* a, float* b, float* d, int n)
    {
        if (SimdInfo.Use512 && n >= 16)
        {
            Add<Vec512, Vector512<float>>(a, b, d, n);
        }
        else if ((SimdInfo.Use512 || SimdInfo.Use256) && n >= 8)
        {
            Add<Vec256, Vector256<float>>(a, b, d, n);
        }
        else if (SimdInfo.Tier != SimdTier.Scalar && n >= 4)
        {
            Add<Vec128, Vector128<float>>(a, b, d, n);
        }
        else
        {
            for (int i = 0; i < n; i++)
            {
                d[i] = a[i] + b[i];
            }
        }
    }

    private static void Add<TTier, TVec>(float* a, float* b, float* d, int n)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        int c = TTier.Count;
        int i = 0;
        for (; i <= n - c; i += c)
        {
            TTier.Store(d + i, TTier.Add(TTier.Load(a + i), TTier.Load(b + i)));
        }
        // Overlapping tail is wrong when d aliases a or b (lanes would be added twice): scalar tail.
        for (; i < n; i++)
        {
            d[i] = a[i] + b[i];
        }
    }

    /// <summary>Index of the largest element (first one on ties), -1 for an empty span. NaN is never chosen.</summary>
    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = -1;
        float bestValue = float.NegativeInfinity;
        for (int i = 0; i < x.Length; i++)
        {
            if (x[i] > bestValue || best < 0 && !float.IsNaN(x[i]))
            {
                best = i;
                bestValue = x[i];
            }
        }
        return best;
    }
}
