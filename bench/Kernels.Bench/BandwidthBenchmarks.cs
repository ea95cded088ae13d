using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;
using Kernels.Simd.Matrices;
using Kernels.Simd.Threading;

namespace Kernels.Bench;

/// <summary>
/// Read-bandwidth probe in the same process and thread pool as the kernels: a read-only sum over
/// 1 GiB with four streams per thread. GEMV percentages in the closing notes divide by this.
/// </summary>
public unsafe class BandwidthBenchmarks
{
    internal const long Floats = 256L << 20;
    private NativeBuffer _buffer = null!;

    [GlobalSetup]
    public void Setup() => _buffer = CreateBuffer();

    /// <summary>1 GiB read; GB/s = 1.0737 / seconds.</summary>
    [Benchmark]
    public float ReadSum1GiB() => ReadSum(_buffer);

    /// <summary>The probe's 1 GiB of ones.</summary>
    internal static NativeBuffer CreateBuffer()
    {
        var buffer = NativeBuffer.Of<float>(Floats);
        for (long i = 0; i < Floats; i += 1 << 20)
        {
            new Span<float>((float*)buffer.Pointer + i, 1 << 20).Fill(1f);
        }
        return buffer;
    }

    /// <summary>Reads the whole buffer on the kernels' thread pool.</summary>
    internal static float ReadSum(NativeBuffer buffer)
    {
        var job = new SumJob { P = (float*)buffer.Pointer };
        WorkerPool.Shared.For((int)(Floats >> 20), 1, ref job);
        return SumJob.Sink;
    }

    [GlobalCleanup]
    public void Cleanup() => _buffer.Dispose();

    private struct SumJob : IRangeJob
    {
        public float* P;
        public static float Sink;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int begin, int end)
        {
            var a0 = Vector256<float>.Zero;
            var a1 = a0;
            var a2 = a0;
            var a3 = a0;
            for (long c = begin; c < end; c++)
            {
                float* p0 = P + (c << 20), p1 = p0 + (1 << 18), p2 = p1 + (1 << 18), p3 = p2 + (1 << 18);
                for (int i = 0; i < 1 << 18; i += 8)
                {
                    a0 += Vector256.Load(p0 + i);
                    a1 += Vector256.Load(p1 + i);
                    a2 += Vector256.Load(p2 + i);
                    a3 += Vector256.Load(p3 + i);
                }
            }
            Sink = Vector256.Sum(a0 + a1 + a2 + a3);
        }
    }
}
