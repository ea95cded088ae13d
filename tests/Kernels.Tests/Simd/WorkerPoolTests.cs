using Kernels.Simd.Threading;
using Xunit;

namespace Kernels.Tests.Simd;

public sealed class WorkerPoolTests
{
    private struct CountingJob : IRangeJob
    {
        public int[] Hits;
        public int Chunk;
        public int[] Oversized;

        public readonly void Execute(int begin, int end)
        {
            if (end - begin > Chunk)
            {
                Interlocked.Increment(ref Oversized[0]);
            }
            for (int i = begin; i < end; i++)
            {
                Interlocked.Increment(ref Hits[i]);
            }
        }
    }

    [Fact]
    public async Task Every_item_runs_once_and_no_call_exceeds_the_chunk_even_when_called_concurrently()
    {
        using var pool = new WorkerPool(3);
        var oversized = new int[1];
        var tasks = Enumerable.Range(0, 4).Select(seed => Task.Run(() =>
        {
            for (int round = 0; round < 200; round++)
            {
                int count = 1 + (seed * 131 + round * 17) % 1000;
                int chunk = 1 + round % 37;
                var job = new CountingJob { Hits = new int[count], Chunk = chunk, Oversized = oversized };
                pool.For(count, chunk, ref job);
                Assert.All(job.Hits, h => Assert.Equal(1, h));
            }
        })).ToArray();
        await Task.WhenAll(tasks);
        Assert.Equal(0, oversized[0]);
    }

    [Fact]
    public void Empty_ranges_do_nothing()
    {
        var job = new CountingJob { Hits = Array.Empty<int>(), Chunk = 1, Oversized = new int[1] };
        WorkerPool.Shared.For(0, 4, ref job);
        WorkerPool.Shared.For(-3, 4, ref job);
    }
}
