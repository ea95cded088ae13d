using Kernels.Simd;
using Kernels.Simd.Reference;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Simd;

/// <summary>Element-wise and reduction primitives against scalar definitions for every length 0..256.</summary>
public sealed class VectorMathTests
{
    private static float[] Random(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => r.NextSingle() * 2 - 1).ToArray();
    }

    [Fact]
    public void Dot_matches_scalar_for_all_lengths()
    {
        for (int n = 0; n <= 256; n++)
        {
            float[] a = Random(n, n), b = Random(n, n + 1000);
            using var ga = new GuardedBuffer(n);
            using var gb = new GuardedBuffer(n);
            a.CopyTo(ga.Span);
            b.CopyTo(gb.Span);
            float expected = ScalarReference.Dot(a, b);
            float scale = a.Zip(b, (x, y) => MathF.Abs(x * y)).Sum();
            Tolerance.Close(expected, VectorMath.Dot(ga.Span, gb.Span), 1e-6f, scale, 1e-6f, $"dot n={n}");
            Assert.True(ga.CanariesIntact() && gb.CanariesIntact());
        }
    }

    [Fact]
    public void Add_and_axpy_match_scalar_for_all_lengths_including_in_place()
    {
        for (int n = 0; n <= 256; n++)
        {
            float[] a = Random(n, 3 * n), b = Random(n, 3 * n + 1);
            using var d = new GuardedBuffer(n);
            VectorMath.Add(a, b, d.Span);
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(a[i] + b[i], d.Span[i]);
            }
            // In place (exact aliasing).
            a.CopyTo(d.Span);
            VectorMath.Add(d.Span, b, d.Span);
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(a[i] + b[i], d.Span[i]);
            }
            a.CopyTo(d.Span);
            VectorMath.Axpy(0.5f, b, d.Span);
            for (int i = 0; i < n; i++)
            {
                Tolerance.Close(a[i] + 0.5f * b[i], d.Span[i], 1e-6f, 2f, 1e-7f, $"axpy n={n}");
            }
            Assert.True(d.CanariesIntact());
        }
    }

    /// <summary>The attention-statistics reduction (received += p, or += p·‖v‖) in place, through the element-wise driver's binary and ternary paths.</summary>
    [Fact]
    public unsafe void Accumulate_matches_scalar_for_all_lengths_with_and_without_weights()
    {
        for (int n = 0; n <= 256; n++)
        {
            float[] p = Random(n, 5 * n), w = Random(n, 5 * n + 1), r = Random(n, 5 * n + 2);
            using var gp = new GuardedBuffer(n);
            using var gw = new GuardedBuffer(n);
            using var received = new GuardedBuffer(n);
            p.CopyTo(gp.Span);
            w.CopyTo(gw.Span);
            foreach (bool weighted in new[] { false, true })
            {
                r.CopyTo(received.Span);
                fixed (float* pp = gp.Span, pw = gw.Span, pr = received.Span)
                {
                    Attention.Accumulate(pp, weighted ? pw : null, pr, n);
                }
                for (int i = 0; i < n; i++)
                {
                    float expected = weighted ? r[i] + p[i] * w[i] : r[i] + p[i];
                    Tolerance.Close(expected, received.Span[i], 1e-6f, 2f, 1e-7f, $"accumulate n={n} weighted={weighted}");
                }
            }
            Assert.True(gp.CanariesIntact() && gw.CanariesIntact() && received.CanariesIntact());
        }
    }

    [Fact]
    public void Partial_overlap_is_rejected()
    {
        var buf = new float[20];
        Assert.Throws<ArgumentException>(() => VectorMath.Add(buf.AsSpan(0, 10), buf.AsSpan(0, 10), buf.AsSpan(5, 10)));
        Assert.Throws<ArgumentException>(() => VectorMath.Add(new float[3], new float[4], new float[4]));
        Assert.Throws<ArgumentException>(() => VectorMath.Add(new float[4], new float[4], new float[3]));
    }

    [Fact]
    public void ArgMax_returns_first_maximum_and_skips_nan()
    {
        Assert.Equal(-1, VectorMath.ArgMax(ReadOnlySpan<float>.Empty));
        Assert.Equal(1, VectorMath.ArgMax(new[] { 1f, 3f, 3f, 2f }));
        Assert.Equal(2, VectorMath.ArgMax(new[] { float.NaN, -5f, 2f }));
    }

    [Fact]
    public void RmsNorm_swiglu_softmax_match_scalar_for_all_lengths()
    {
        for (int n = 1; n <= 256; n++)
        {
            float[] x = Random(n, 7 * n), w = Random(n, 7 * n + 1), up = Random(n, 7 * n + 2);
            var expected = new float[n];
            ScalarReference.RmsNorm(x, w, expected, 1e-5f);
            using var d = new GuardedBuffer(n);
            RmsNorm.Apply(x, w, d.Span, 1e-5f);
            Tolerance.AllClose(expected, d.Span, 1e-5f, 1e-6f, $"rmsnorm n={n}");

            ScalarReference.SwiGlu(x, up, expected);
            SwiGlu.Apply(x, up, d.Span);
            Tolerance.AllClose(expected, d.Span, 1e-5f, 1e-6f, $"swiglu n={n}");
            Assert.True(d.CanariesIntact());

            var s = (float[])x.Clone();
            Softmax.InPlace(s);
            Assert.InRange(s.Sum(), 0.9999f, 1.0001f);
            Assert.Equal(Array.IndexOf(x, x.Max()), Array.IndexOf(s, s.Max()));
        }
    }

    [Fact]
    public void Attention_matches_scalar_reference()
    {
        foreach (int d in new[] { 2, 8, 16, 64, 70, 128 })
        {
            foreach (int count in new[] { 1, 2, 17, 100 })
            {
                float[] q = Random(d, d + count), k = Random(count * d, 2 * d), v = Random(count * d, 3 * d);
                var expectedOut = new float[d];
                var expectedRecv = new float[count];
                ScalarReference.Attend(q, k, v, count, d, new float[count], expectedOut, expectedRecv);
                var output = new float[d];
                var recv = new float[count];
                var scores = new float[count];
                unsafe
                {
                    fixed (float* pq = q, pk = k, pv = v, ps = scores, po = output, pr = recv)
                    {
                        Attention.Attend(pq, pk, pv, count, d, ps, po, pr);
                    }
                }
                Tolerance.AllClose(expectedOut, output, 1e-5f, 1e-6f, $"attention d={d} count={count}");
                Tolerance.AllClose(expectedRecv, recv, 1e-5f, 1e-7f, $"received d={d} count={count}");
            }
        }
    }
}
