namespace Kernels.Simd.Vectors;

/// <summary>f(x, y) on one float and on one vector of any tier (the TensorPrimitives operator pattern; instance fields carry scalars such as axpy's a).</summary>
internal interface IBinaryOperator
{
    float Invoke(float x, float y);

    TVec Invoke<TTier, TVec>(TVec x, TVec y) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged;
}

/// <summary>f(x, y, z) on one float and on one vector of any tier.</summary>
internal interface ITernaryOperator
{
    float Invoke(float x, float y, float z);

    TVec Invoke<TTier, TVec>(TVec x, TVec y, TVec z) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged;
}

/// <summary>
/// The element-wise driver: d[i] = op(x[i], y[i] [, z[i]]) for i &lt; n, vectorized at the
/// process's tier by <see cref="SimdDispatch"/>. Callers check lengths and overlap.
/// </summary>
/// <remarks>
/// Exact aliasing of d with an input is allowed, so the tail is scalar: an overlapping last
/// vector would apply a non-idempotent op (add, axpy) twice to the lanes it re-reads.
/// </remarks>
internal static unsafe class ElementWise
{
    public static void Binary<TOp>(TOp op, float* x, float* y, float* d, int n) where TOp : struct, IBinaryOperator
    {
        var kernel = new BinaryKernel<TOp> { Op = op, X = x, Y = y, D = d, N = n };
        SimdDispatch.Run(ref kernel, n);
    }

    public static void Ternary<TOp>(TOp op, float* x, float* y, float* z, float* d, int n) where TOp : struct, ITernaryOperator
    {
        var kernel = new TernaryKernel<TOp> { Op = op, X = x, Y = y, Z = z, D = d, N = n };
        SimdDispatch.Run(ref kernel, n);
    }

    private struct BinaryKernel<TOp> : IWidthKernel where TOp : struct, IBinaryOperator
    {
        public TOp Op;
        public float* X, Y, D;
        public int N;

        public void Vector<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
        {
            int c = TTier.Count, i = 0;
            for (; i <= N - c; i += c)
            {
                TTier.Store(D + i, Op.Invoke<TTier, TVec>(TTier.Load(X + i), TTier.Load(Y + i)));
            }
            Tail(i);
        }

        public void Scalar() => Tail(0);

        private void Tail(int i)
        {
            for (; i < N; i++)
            {
                D[i] = Op.Invoke(X[i], Y[i]);
            }
        }
    }

    private struct TernaryKernel<TOp> : IWidthKernel where TOp : struct, ITernaryOperator
    {
        public TOp Op;
        public float* X, Y, Z, D;
        public int N;

        public void Vector<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
        {
            int c = TTier.Count, i = 0;
            for (; i <= N - c; i += c)
            {
                TTier.Store(D + i, Op.Invoke<TTier, TVec>(TTier.Load(X + i), TTier.Load(Y + i), TTier.Load(Z + i)));
            }
            Tail(i);
        }

        public void Scalar() => Tail(0);

        private void Tail(int i)
        {
            for (; i < N; i++)
            {
                D[i] = Op.Invoke(X[i], Y[i], Z[i]);
            }
        }
    }
}

/// <summary>x + y.</summary>
internal readonly struct AddOperator : IBinaryOperator
{
    public float Invoke(float x, float y) => x + y;

    public TVec Invoke<TTier, TVec>(TVec x, TVec y) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => TTier.Add(x, y);
}

/// <summary>a·x + y (axpy with y as the second operand; fused in vectors).</summary>
internal readonly struct AxpyOperator(float a) : IBinaryOperator
{
    public float Invoke(float x, float y) => y + a * x;

    public TVec Invoke<TTier, TVec>(TVec x, TVec y) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
        TTier.MultiplyAdd(TTier.Broadcast(a), x, y);
}

/// <summary>x·y + z (fused in vectors).</summary>
internal readonly struct MultiplyAddOperator : ITernaryOperator
{
    public float Invoke(float x, float y, float z) => z + x * y;

    public TVec Invoke<TTier, TVec>(TVec x, TVec y, TVec z) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged => TTier.MultiplyAdd(x, y, z);
}

/// <summary>silu(gate)·up, silu(g) = g / (1 + e^-g): SwiGLU's activation.</summary>
internal readonly struct SwiGluOperator : IBinaryOperator
{
    public float Invoke(float gate, float up) => SwiGlu.Scalar(gate, up);

    public TVec Invoke<TTier, TVec>(TVec gate, TVec up) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        TVec silu = TTier.Divide(gate, TTier.Add(TTier.Broadcast(1f), TTier.Exp(TTier.Subtract(TTier.Zero, gate))));
        return TTier.Multiply(silu, up);
    }
}
