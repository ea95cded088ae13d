using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Kernels.Simd.Matrices;

namespace Kernels.Simd.Quantized;

/// <summary>
/// Activations quantized to int8 in blocks of 32 (ggml's Q8_0 idea, with float32 scales): the
/// integer side of the quantized dot products. Per block b of token t: 32 values q, scale d
/// (x ≈ d·q) and s = d·Σq (for the min terms of Q4_K-style formats).
/// </summary>
/// <remarks>q = round-half-even(x · (1/d)) with d = max|x| / 127 (d = 0 for an all-zero block);
/// the SIMD and scalar quantizers compute the same float operations, so they give the same bytes.</remarks>
public sealed unsafe class QuantizedInput : IDisposable
{
    public const int BlockSize = 32;

    private NativeBuffer? _values;
    private NativeBuffer? _scales;

    /// <summary>Blocks per token (columns / 32).</summary>
    public int BlocksPerToken { get; private set; }

    public int Tokens { get; private set; }

    /// <summary>[Tokens · BlocksPerToken · 32] int8, 32-byte aligned blocks.</summary>
    public sbyte* Values { get; private set; }

    /// <summary>[Tokens · BlocksPerToken] block scales d.</summary>
    public float* Scales { get; private set; }

    /// <summary>[Tokens · BlocksPerToken] d · Σq per block.</summary>
    public float* Sums { get; private set; }

    [ThreadStatic] private static QuantizedInput? t_shared;

    /// <summary>A per-thread instance reused across calls (kernels quantize x once per call).</summary>
    internal static QuantizedInput ForCurrentThread => t_shared ??= new QuantizedInput();

    /// <summary>Quantizes <paramref name="n"/> tokens of <paramref name="columns"/> floats (a multiple of 32).</summary>
    public void Quantize(float* x, int columns, int n, bool simd = true)
    {
        if (columns % BlockSize != 0)
        {
            ThrowHelper.Argument($"quantized activations need whole blocks of {BlockSize}; {columns} columns", nameof(columns));
        }
        int blocks = columns / BlockSize;
        long total = (long)blocks * n;
        Reserve(total);
        BlocksPerToken = blocks;
        Tokens = n;
        bool vector = simd && Avx2.IsSupported && SimdInfo.Tier >= SimdTier.Vector256;
        for (long b = 0; b < total; b++)
        {
            float* src = x + b * BlockSize;
            if (vector)
            {
                QuantizeBlock256(src, Values + b * BlockSize, out Scales[b], out Sums[b]);
            }
            else
            {
                QuantizeBlockScalar(src, Values + b * BlockSize, out Scales[b], out Sums[b]);
            }
        }
    }

    private void Reserve(long blocks)
    {
        if (_values is null || _values.ByteLength < blocks * BlockSize)
        {
            _values?.Dispose();
            _scales?.Dispose();
            long capacity = Math.Max(blocks, 64);
            _values = new NativeBuffer(capacity * BlockSize);
            _scales = new NativeBuffer(capacity * 2 * sizeof(float));
            Values = (sbyte*)_values.Pointer;
            Scales = (float*)_scales.Pointer;
            Sums = Scales + capacity;
        }
    }

    internal static void QuantizeBlockScalar(float* x, sbyte* q, out float d, out float s)
    {
        float amax = 0;
        for (int j = 0; j < BlockSize; j++)
        {
            amax = MathF.Max(amax, MathF.Abs(x[j]));
        }
        d = amax / 127f;
        float id = d != 0 ? 1f / d : 0f;
        int sum = 0;
        for (int j = 0; j < BlockSize; j++)
        {
            int v = (int)MathF.Round(x[j] * id, MidpointRounding.ToEven);
            v = Math.Clamp(v, -127, 127);
            q[j] = (sbyte)v;
            sum += v;
        }
        s = d * sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void QuantizeBlock256(float* x, sbyte* q, out float d, out float s)
    {
        var abs = Vector256.Create(0x7FFF_FFFF).AsSingle();
        Vector256<float> x0 = Avx.LoadVector256(x), x1 = Avx.LoadVector256(x + 8), x2 = Avx.LoadVector256(x + 16), x3 = Avx.LoadVector256(x + 24);
        var m = Avx.Max(Avx.Max(Avx.And(x0, abs), Avx.And(x1, abs)), Avx.Max(Avx.And(x2, abs), Avx.And(x3, abs)));
        var m4 = Sse.Max(m.GetLower(), m.GetUpper());
        m4 = Sse.Max(m4, Sse.Shuffle(m4, m4, 0b01_00_11_10));
        m4 = Sse.Max(m4, Sse.Shuffle(m4, m4, 0b10_11_00_01));
        float amax = m4.ToScalar();
        // Max drops NaN lanes (MathF.Max keeps them) and Inf scales quantize to NaN products:
        // non-finite blocks take the scalar path so both quantizers agree.
        if (!float.IsFinite(amax) || !Vector256.EqualsAll(Vector256.Equals(x0, x0) & Vector256.Equals(x1, x1) & Vector256.Equals(x2, x2) & Vector256.Equals(x3, x3), Vector256<float>.AllBitsSet))
        {
            QuantizeBlockScalar(x, q, out d, out s);
            return;
        }
        d = amax / 127f;
        float id = d != 0 ? 1f / d : 0f;
        var vid = Vector256.Create(id);
        var lo = Vector256.Create(-127);
        var hi = Vector256.Create(127);
        Vector256<int> i0 = Avx2.Min(Avx2.Max(Avx.ConvertToVector256Int32(Avx.Multiply(x0, vid)), lo), hi);
        Vector256<int> i1 = Avx2.Min(Avx2.Max(Avx.ConvertToVector256Int32(Avx.Multiply(x1, vid)), lo), hi);
        Vector256<int> i2 = Avx2.Min(Avx2.Max(Avx.ConvertToVector256Int32(Avx.Multiply(x2, vid)), lo), hi);
        Vector256<int> i3 = Avx2.Min(Avx2.Max(Avx.ConvertToVector256Int32(Avx.Multiply(x3, vid)), lo), hi);
        var sum = (i0 + i1) + (i2 + i3);
        s = d * Vector256.Sum(sum);
        // Pack 32 int32 to int8 in order: packs interleave 128-bit lanes, the final permute restores order.
        var p01 = Avx2.PackSignedSaturate(i0, i1);
        var p23 = Avx2.PackSignedSaturate(i2, i3);
        var p = Avx2.PackSignedSaturate(p01, p23);
        p = Avx2.PermuteVar8x32(p.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte();
        Avx.Store(q, p);
    }

    public void Dispose()
    {
        _values?.Dispose();
        _scales?.Dispose();
        _values = _scales = null;
    }
}
