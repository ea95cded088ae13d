using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>
/// Float vector primitives used by the transformer kernels (dot, axpy, scale, sum of squares),
/// each dispatched once by <see cref="SimdDispatch"/>; the element-wise ones are operators of <see cref="ElementWise"/>.
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
        var kernel = new DotKernel { A = a, B = b, N = n };
        SimdDispatch.Run(ref kernel, n);
        return kernel.Result;
    }

    private struct DotKernel : IWidthKernel
    {
        public float* A, B;
        public int N;
        public float Result;

        public void Vector<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => Result = Dot<TTier, TVec>(A, B, N);

        public void Scalar()
        {
            float s = 0f;
            for (int i = 0; i < N; i++)
            {
                s += A[i] * B[i];
            }
            Result = s;
        }
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
    public static void Axpy(float a, float* x, float* y, int n) => ElementWise.Binary(new AxpyOperator(a), x, y, y, n);

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
    public static void Add(float* a, float* b, float* d, int n) => ElementWise.Binary(new AddOperator(), a, b, d, n);

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
