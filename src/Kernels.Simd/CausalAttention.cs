using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Kernels.Simd.Matrices;
using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>
/// Causal attention of a batch of queries (prefill) against one KV head: every query head of
/// the GQA group and every token of the batch at once, as two small matrix products per block
/// of tokens, S = Q·Kᵀ/√d and O = softmax(S)·V, instead of one dot product per (query, key).
/// </summary>
/// <remarks>
/// <para>A block's rows are (token, head) pairs; row (t, j) attends to keys [0, first + t]. The
/// keys the block needs are transposed once into scratch ([d][keys]), so S is computed in
/// register tiles of 4 rows x 2 vectors of keys (one broadcast of q per key vector pair) and O in
/// tiles of 4 rows x 4 vectors of the head dimension (one broadcast of p per value row).
/// Softmax subtracts the row maximum and uses the vectorized exponential.</para>
/// <para>Results equal <see cref="Attention.Attend"/> up to float rounding (other summation
/// order and exponential). Needs a head dimension that is a whole number of vectors; callers
/// keep the per-query kernel otherwise.</para>
/// </remarks>
public static unsafe class CausalAttention
{
    /// <summary>Tokens per block: rows = tokens x group heads.</summary>
    public const int BlockTokens = 16;

    /// <summary>True when the batched kernel handles <paramref name="headDim"/> at the dispatched tier.</summary>
    public static bool Supports(int headDim) => SimdInfo.Tier != SimdTier.Scalar && headDim > 0 && headDim % SimdDispatch.Lanes == 0;

    /// <summary>
    /// Attends tokens [t0, t1) of the batch for <paramref name="heads"/> query heads that share
    /// one KV head.
    /// </summary>
    /// <param name="q">Query of (token t, head j) at q + t·<paramref name="tokenStride"/> + j·headDim.</param>
    /// <param name="keys">[first + tokens, headDim]: the cache, batch included.</param>
    /// <param name="values">[first + tokens, headDim].</param>
    /// <param name="first">Keys before the batch: token t attends to keys [0, first + t].</param>
    /// <param name="output">Output of (t, j) at output + t·tokenStride + j·headDim (the same layout as q).</param>
    public static void Attend(float* q, long tokenStride, int heads, int headDim, float* keys, float* values, int first,
        int t0, int t1, float* output)
    {
        if (!Supports(headDim))
        {
            ThrowHelper.NotSupported($"batched attention needs a head dimension that is a whole number of {SimdInfo.Tier} vectors (got {headDim})");
        }
        if (t1 <= t0)
        {
            return;
        }
        var width = new ByWidth
        {
            Q = q, TokenStride = tokenStride, Heads = heads, HeadDim = headDim, Keys = keys, Values = values, First = first, T0 = t0, T1 = t1, Output = output,
        };
        SimdDispatch.Run(ref width);
    }

    private struct ByWidth : IWidthKernel
    {
        public float* Q, Keys, Values, Output;
        public long TokenStride;
        public int Heads, HeadDim, First, T0, T1;

        public readonly void Vector<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
            Run<TTier, TVec>(Q, TokenStride, Heads, HeadDim, Keys, Values, First, T0, T1, Output);

        /// <summary>Unreachable: <see cref="Supports"/> is false on the scalar tier (the per-token host path runs instead).</summary>
        public readonly void Scalar() => ThrowHelper.NotSupported("batched attention has no scalar kernel");
    }

    [ThreadStatic] private static NativeBuffer? t_scratch;

    private static float* Scratch(long floats)
    {
        if (t_scratch is null || t_scratch.ByteLength < floats * sizeof(float))
        {
            t_scratch?.Dispose();
            t_scratch = new NativeBuffer(Math.Max(floats * sizeof(float), 64 * 1024));
        }
        return (float*)t_scratch.Pointer;
    }

    private static void Run<TTier, TVec>(float* q, long tokenStride, int heads, int d, float* keys, float* values, int first,
        int t0, int t1, float* output) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        int c = TTier.Count;
        int rows = (t1 - t0) * heads;
        // Keys of the block's last token, rounded up to whole pairs of vectors (the padding is zero and masked).
        int count = first + t1;
        int padded = (count + 2 * c - 1) / (2 * c) * (2 * c);
        float* kt = Scratch((long)d * padded + (long)rows * padded);
        float* s = kt + (long)d * padded;
        TransposeKeys(keys, count, d, padded, kt);
        float scale = MathF.Sqrt(d);
        var rowQuery = stackalloc float*[4];
        for (int r0 = 0; r0 < rows; r0 += 4)
        {
            int rv = Math.Min(4, rows - r0);
            for (int i = 0; i < 4; i++)
            {
                int r = r0 + Math.Min(i, rv - 1);
                rowQuery[i] = q + (t0 + r / heads) * tokenStride + (r % heads) * d;
            }
            Scores<TTier, TVec>(rowQuery, kt, d, padded, s + (long)r0 * padded, rv);
        }
        for (int r = 0; r < rows; r++)
        {
            int limit = first + t0 + r / heads + 1;
            SoftmaxScaled<TTier, TVec>(s + (long)r * padded, limit, padded, scale);
        }
        for (int r0 = 0; r0 < rows; r0 += 4)
        {
            int rv = Math.Min(4, rows - r0);
            Values<TTier, TVec>(s + (long)r0 * padded, padded, rv, r0, heads, first + t0, values, d, output + t0 * tokenStride, tokenStride);
        }
    }

    /// <summary>kt[i][j] = keys[j][i] for j &lt; count, zero up to padded.</summary>
    private static void TransposeKeys(float* keys, int count, int d, int padded, float* kt)
    {
        int j = 0;
        if (d % 16 == 0)
        {
            for (; j + 16 <= count; j += 16)
            {
                for (int i = 0; i < d; i += 16)
                {
                    Transpose.Block16x16(keys + (long)j * d + i, d, kt + (long)i * padded + j, padded);
                }
            }
        }
        for (; j < count; j++)
        {
            for (int i = 0; i < d; i++)
            {
                kt[(long)i * padded + j] = keys[(long)j * d + i];
            }
        }
        for (int i = 0; i < d; i++)
        {
            new Span<float>(kt + (long)i * padded + count, padded - count).Clear();
        }
    }

    /// <summary>s[row][j] = q_row · k_j for up to 4 rows and every key (tiles of 2 vectors of keys).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores<TTier, TVec>(float** rowQuery, float* kt, int d, int padded, float* s, int rv)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        int c = TTier.Count;
        float* q0 = rowQuery[0], q1 = rowQuery[1], q2 = rowQuery[2], q3 = rowQuery[3];
        for (int j = 0; j < padded; j += 2 * c)
        {
            TVec a0 = TTier.Zero, b0 = TTier.Zero, a1 = TTier.Zero, b1 = TTier.Zero;
            TVec a2 = TTier.Zero, b2 = TTier.Zero, a3 = TTier.Zero, b3 = TTier.Zero;
            float* k = kt + j;
            for (int i = 0; i < d; i++, k += padded)
            {
                TVec klo = TTier.Load(k), khi = TTier.Load(k + c);
                TVec x = TTier.Broadcast(q0[i]);
                a0 = TTier.MultiplyAdd(x, klo, a0); b0 = TTier.MultiplyAdd(x, khi, b0);
                x = TTier.Broadcast(q1[i]);
                a1 = TTier.MultiplyAdd(x, klo, a1); b1 = TTier.MultiplyAdd(x, khi, b1);
                x = TTier.Broadcast(q2[i]);
                a2 = TTier.MultiplyAdd(x, klo, a2); b2 = TTier.MultiplyAdd(x, khi, b2);
                x = TTier.Broadcast(q3[i]);
                a3 = TTier.MultiplyAdd(x, klo, a3); b3 = TTier.MultiplyAdd(x, khi, b3);
            }
            TTier.Store(s + j, a0); TTier.Store(s + j + c, b0);
            if (rv > 1)
            {
                TTier.Store(s + padded + j, a1); TTier.Store(s + padded + j + c, b1);
            }
            if (rv > 2)
            {
                TTier.Store(s + 2L * padded + j, a2); TTier.Store(s + 2L * padded + j + c, b2);
            }
            if (rv > 3)
            {
                TTier.Store(s + 3L * padded + j, a3); TTier.Store(s + 3L * padded + j + c, b3);
            }
        }
    }

    /// <summary>s[0..limit) = softmax(s / scale); s[limit..padded) = 0 (the keys past this row's position).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SoftmaxScaled<TTier, TVec>(float* s, int limit, int padded, float scale)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        int c = TTier.Count;
        int whole = limit / c * c;
        TVec divisor = TTier.Broadcast(scale);
        TVec maxv = TTier.Broadcast(float.NegativeInfinity);
        for (int j = 0; j < whole; j += c)
        {
            TVec v = TTier.Divide(TTier.Load(s + j), divisor);
            TTier.Store(s + j, v);
            maxv = TTier.Max(maxv, v);
        }
        float max = TTier.MaxAcross(maxv);
        for (int j = whole; j < limit; j++)
        {
            s[j] /= scale;
            max = Math.Max(max, s[j]);
        }
        TVec m = TTier.Broadcast(max);
        TVec sumv = TTier.Zero;
        for (int j = 0; j < whole; j += c)
        {
            TVec e = TTier.Exp(TTier.Subtract(TTier.Load(s + j), m));
            TTier.Store(s + j, e);
            sumv = TTier.Add(sumv, e);
        }
        float sum = TTier.Sum(sumv);
        for (int j = whole; j < limit; j++)
        {
            s[j] = MathF.Exp(s[j] - max);
            sum += s[j];
        }
        TVec inv = TTier.Broadcast(1f / sum);
        for (int j = 0; j < whole; j += c)
        {
            TTier.Store(s + j, TTier.Multiply(TTier.Load(s + j), inv));
        }
        float invScalar = 1f / sum;
        for (int j = whole; j < limit; j++)
        {
            s[j] *= invScalar;
        }
        new Span<float>(s + limit, padded - limit).Clear();
    }

    /// <summary>out_row = Σ_j p_row[j] · v_j for up to 4 rows (tiles of 4 vectors of the head dimension).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Values<TTier, TVec>(float* p, int padded, int rv, int r0, int heads, int firstLimit, float* values, int d,
        float* output, long tokenStride) where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        int c = TTier.Count;
        // The tile's rows differ by at most a few tokens: all run to the largest limit (probabilities past a row's own limit are zero).
        float** outs = stackalloc float*[4];
        float** probs = stackalloc float*[4];
        int maxLimit = firstLimit + (r0 + rv - 1) / heads + 1;
        for (int i = 0; i < 4; i++)
        {
            int r = r0 + Math.Min(i, rv - 1);
            outs[i] = output + (r / heads) * tokenStride + (r % heads) * d;
            probs[i] = p + (long)Math.Min(i, rv - 1) * padded;
        }
        float* p0 = probs[0], p1 = probs[1], p2 = probs[2], p3 = probs[3];
        for (int i0 = 0; i0 < d; i0 += 4 * c)
        {
            int vectors = Math.Min(4, (d - i0) / c);
            TVec a00 = TTier.Zero, a01 = TTier.Zero, a02 = TTier.Zero, a03 = TTier.Zero;
            TVec a10 = TTier.Zero, a11 = TTier.Zero, a12 = TTier.Zero, a13 = TTier.Zero;
            TVec a20 = TTier.Zero, a21 = TTier.Zero, a22 = TTier.Zero, a23 = TTier.Zero;
            TVec a30 = TTier.Zero, a31 = TTier.Zero, a32 = TTier.Zero, a33 = TTier.Zero;
            float* v = values + i0;
            for (int j = 0; j < maxLimit; j++, v += d)
            {
                TVec v0 = TTier.Load(v);
                TVec v1 = vectors > 1 ? TTier.Load(v + c) : TTier.Zero;
                TVec v2 = vectors > 2 ? TTier.Load(v + 2 * c) : TTier.Zero;
                TVec v3 = vectors > 3 ? TTier.Load(v + 3 * c) : TTier.Zero;
                TVec x = TTier.Broadcast(p0[j]);
                a00 = TTier.MultiplyAdd(x, v0, a00); a01 = TTier.MultiplyAdd(x, v1, a01); a02 = TTier.MultiplyAdd(x, v2, a02); a03 = TTier.MultiplyAdd(x, v3, a03);
                x = TTier.Broadcast(p1[j]);
                a10 = TTier.MultiplyAdd(x, v0, a10); a11 = TTier.MultiplyAdd(x, v1, a11); a12 = TTier.MultiplyAdd(x, v2, a12); a13 = TTier.MultiplyAdd(x, v3, a13);
                x = TTier.Broadcast(p2[j]);
                a20 = TTier.MultiplyAdd(x, v0, a20); a21 = TTier.MultiplyAdd(x, v1, a21); a22 = TTier.MultiplyAdd(x, v2, a22); a23 = TTier.MultiplyAdd(x, v3, a23);
                x = TTier.Broadcast(p3[j]);
                a30 = TTier.MultiplyAdd(x, v0, a30); a31 = TTier.MultiplyAdd(x, v1, a31); a32 = TTier.MultiplyAdd(x, v2, a32); a33 = TTier.MultiplyAdd(x, v3, a33);
            }
            Store<TTier, TVec>(outs[0] + i0, vectors, a00, a01, a02, a03);
            if (rv > 1)
            {
                Store<TTier, TVec>(outs[1] + i0, vectors, a10, a11, a12, a13);
            }
            if (rv > 2)
            {
                Store<TTier, TVec>(outs[2] + i0, vectors, a20, a21, a22, a23);
            }
            if (rv > 3)
            {
                Store<TTier, TVec>(outs[3] + i0, vectors, a30, a31, a32, a33);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store<TTier, TVec>(float* o, int vectors, TVec a, TVec b, TVec c, TVec e)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        int n = TTier.Count;
        TTier.Store(o, a);
        if (vectors > 1)
        {
            TTier.Store(o + n, b);
        }
        if (vectors > 2)
        {
            TTier.Store(o + 2 * n, c);
        }
        if (vectors > 3)
        {
            TTier.Store(o + 3 * n, e);
        }
    }
}
