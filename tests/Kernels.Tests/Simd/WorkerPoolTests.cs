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

    /// <summary>Guided calls: every item once, pieces of at least the minimum (except the last), from several callers at once.</summary>
    [Fact]
    public async Task Guided_calls_run_every_item_once()
    {
        using var pool = new WorkerPool(3);
        var undersized = new int[1];
        var tasks = Enumerable.Range(0, 3).Select(seed => Task.Run(() =>
        {
            for (int round = 0; round < 300; round++)
            {
                int count = 1 + (seed * 97 + round * 31) % 2000;
                int min = 1 + round % 23;
                var job = new GuidedJob { Hits = new int[count], Min = min, Count = count, Undersized = undersized };
                pool.ForGuided(count, min, ref job);
                Assert.All(job.Hits, h => Assert.Equal(1, h));
            }
        })).ToArray();
        await Task.WhenAll(tasks);
        Assert.Equal(0, undersized[0]);
    }

    /// <summary>
    /// Workers that wake up after a call ended must not run items of a later call with the earlier
    /// call's job: thousands of tiny back-to-back calls with different jobs, each call larger than
    /// the one before in turn (a late worker of a smaller call once ran an item of the next call,
    /// twice counted, and the caller then waited forever). A hang fails the test instead of the run.
    /// </summary>
    [Fact]
    public async Task Back_to_back_tiny_calls_never_mix_jobs()
    {
        using var pool = new WorkerPool(4);
        var calls = Task.Factory.StartNew(() =>
        {
            for (int round = 0; round < 20000; round++)
            {
                var job = new CountingJob { Hits = new int[3 + round % 5], Chunk = 1, Oversized = new int[1] };
                pool.For(job.Hits.Length, 1, ref job);
                Assert.All(job.Hits, h => Assert.Equal(1, h));
            }
        }, TaskCreationOptions.LongRunning);
        var finished = await Task.WhenAny(calls, Task.Delay(TimeSpan.FromMinutes(2)));
        Assert.True(finished == calls, "a pool call did not return within 2 minutes");
        await calls;
    }

    private struct GuidedJob : IRangeJob
    {
        public int[] Hits;
        public int Min, Count;
        public int[] Undersized;

        public readonly void Execute(int begin, int end)
        {
            if (end - begin < Min && end != Count)
            {
                Interlocked.Increment(ref Undersized[0]);
            }
            for (int i = begin; i < end; i++)
            {
                Interlocked.Increment(ref Hits[i]);
            }
        }
    }

    [Fact]
    public void Empty_ranges_do_nothing()
    {
        var job = new CountingJob { Hits = Array.Empty<int>(), Chunk = 1, Oversized = new int[1] };
        WorkerPool.Shared.For(0, 4, ref job);
        WorkerPool.Shared.For(-3, 4, ref job);
    }
}
