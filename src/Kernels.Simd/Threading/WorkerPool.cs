using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Kernels.Simd.Threading;

/// <summary>A unit of parallel work over an index range; implemented by small structs.</summary>
public interface IRangeJob
{
    /// <summary>Processes items <c>[begin, end)</c>. Called concurrently on disjoint ranges.</summary>
    void Execute(int begin, int end);
}

/// <summary>
/// Persistent worker threads for kernels: no allocation per call, the calling thread takes
/// part, and work is handed out in chunks through one atomic cursor so a core slowed down by
/// another tenant does not stall the others.
/// </summary>
/// <remarks>
/// <para>Jobs are structs passed by reference; workers reach them through a function pointer to
/// a generic trampoline, so nothing is boxed. Calls are serialized; a call made while the pool
/// is busy (for example from inside a job) runs inline on the calling thread.</para>
/// <para>The cursor holds the call's generation next to the next item, and items are claimed by
/// compare-and-swap on both: a worker that wakes up late claims nothing from a finished call, so
/// a call returns as soon as every item has run — it never waits for a worker to check in.
/// (Waiting for check-ins made the caller sit out a sleeping worker's wake-up latency, tens of
/// microseconds to milliseconds, after doing all the work itself.)</para>
/// <para>Workers spin briefly after a job (decode issues kernels back to back) and then block.
/// Thread count: <c>KERNELS_THREADS</c>, else <see cref="Environment.ProcessorCount"/>.</para>
/// </remarks>
public sealed unsafe class WorkerPool : IDisposable
{
    private static readonly Lazy<WorkerPool> s_shared = new(() =>
    {
        string? env = Environment.GetEnvironmentVariable("KERNELS_THREADS");
        int threads = env is not null && int.TryParse(env, out int t) && t > 0 ? t : Environment.ProcessorCount;
        return new WorkerPool(threads);
    });

    /// <summary>The process-wide pool used by the kernels.</summary>
    public static WorkerPool Shared => s_shared.Value;

    private readonly Thread[] _workers;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly object _gate = new();
    private volatile bool _disposed;

    // The current call; written before its generation is published, valid until every item is done.
    private delegate*<void*, int, int, void> _run;
    private void* _job;
    private int _count;
    private int _chunk;
    private bool _guided;

    /// <summary>(generation &lt;&lt; 32) | next unclaimed item.</summary>
    private long _cursor;
    private int _done;
    private int _generation;
    private int _sleepers;
    /// <summary>Per calling thread: a profiler reads it around its own operations, so other threads' calls (concurrent sessions, parallel tests) must not leak in.</summary>
    [ThreadStatic] private static long t_handOffTicks;

    /// <summary>Creates a pool whose calls run on <paramref name="threadCount"/> threads in total (caller included).</summary>
    public WorkerPool(int threadCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threadCount, 1);
        ThreadCount = threadCount;
        _workers = new Thread[threadCount - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            _workers[i] = new Thread(WorkerLoop) { IsBackground = true, Name = $"kernels-worker-{i}" };
            _workers[i].Start();
        }
    }

    /// <summary>Threads that execute a call, the caller included.</summary>
    public int ThreadCount { get; }

    /// <summary>When true, calls add their fork/join overhead to <see cref="HandOffTicks"/> (profiling).</summary>
    public bool TrackHandOff { get; set; }

    /// <summary>
    /// <see cref="Stopwatch"/> ticks the current thread, as the caller of parallel calls, spent not
    /// running items while <see cref="TrackHandOff"/> was on: publishing the call, then waiting for
    /// the items other threads were still running when it found nothing left to claim.
    /// </summary>
    public long HandOffTicks => t_handOffTicks;

    /// <summary>
    /// Runs <paramref name="job"/> over <c>[0, count)</c> in chunks of <paramref name="chunk"/> items
    /// (every Execute call covers at most one chunk).
    /// Returns when every item has been processed. Exceptions from jobs are not supported (kernels validate first).
    /// </summary>
    public void For<TJob>(int count, int chunk, ref TJob job) where TJob : struct, IRangeJob => Run(count, chunk, guided: false, ref job);

    /// <summary>
    /// Like <see cref="For{TJob}"/>, but each claim takes a share of what is left (remaining / (2 ·
    /// threads), at least <paramref name="minChunk"/>): large pieces first, small ones at the end,
    /// so the threads finish together. Execute calls may span more than <paramref name="minChunk"/> items.
    /// </summary>
    public void ForGuided<TJob>(int count, int minChunk, ref TJob job) where TJob : struct, IRangeJob => Run(count, minChunk, guided: true, ref job);

    private void Run<TJob>(int count, int chunk, bool guided, ref TJob job) where TJob : struct, IRangeJob
    {
        if (count <= 0)
        {
            return;
        }
        chunk = Math.Max(1, chunk);
        if (count <= chunk || _workers.Length == 0 || !Monitor.TryEnter(_gate))
        {
            // Inline, still chunk by chunk: jobs may size scratch space by the chunk.
            if (guided)
            {
                job.Execute(0, count);
                return;
            }
            for (int begin = 0; begin < count; begin += chunk)
            {
                job.Execute(begin, Math.Min(count, begin + chunk));
            }
            return;
        }

        bool track = TrackHandOff;
        long start = track ? Stopwatch.GetTimestamp() : 0;
        try
        {
            // Close the previous call's cursor before its parameters are overwritten: a worker still
            // holding that call's cursor could otherwise read this call's larger _count, win its
            // exchange against the old cursor and run (and count) an item of this call twice.
            int generation = _generation + 1;
            Interlocked.Exchange(ref _cursor, ((long)generation << 32) | int.MaxValue);
            _run = &Trampoline<TJob>.Run;
            _job = Unsafe.AsPointer(ref job);
            _count = count;
            _chunk = chunk;
            _guided = guided;
            Volatile.Write(ref _done, 0);
            Volatile.Write(ref _cursor, (long)generation << 32);
            Volatile.Write(ref _generation, generation);
            int sleepers = Volatile.Read(ref _sleepers);
            if (sleepers > 0)
            {
                _wake.Release(sleepers);
            }

            long ownStart = track ? Stopwatch.GetTimestamp() : 0;
            RunChunks(generation);
            long ownEnd = track ? Stopwatch.GetTimestamp() : 0;

            SpinWait spin = default;
            while (Volatile.Read(ref _done) != count)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }
            _job = null;
            if (track)
            {
                t_handOffTicks += ownStart - start + Stopwatch.GetTimestamp() - ownEnd;
            }
        }
        finally
        {
            Monitor.Exit(_gate);
        }
    }

    /// <summary>Claims and runs items of call <paramref name="generation"/> until none is left (or that call is over).</summary>
    private void RunChunks(int generation)
    {
        int divisor = 2 * ThreadCount;
        while (true)
        {
            long cursor = Volatile.Read(ref _cursor);
            if ((int)(cursor >> 32) != generation)
            {
                return;
            }
            int begin = (int)cursor;
            // _count and _chunk may already belong to a later call here; then the exchange below fails,
            // because a call closes the earlier cursor before it writes them.
            int count = _count;
            if (begin >= count)
            {
                return;
            }
            int size = _guided ? Math.Max(_chunk, (count - begin) / divisor) : _chunk;
            int end = (int)Math.Min(count, (long)begin + size);
            if (Interlocked.CompareExchange(ref _cursor, ((long)generation << 32) | (uint)end, cursor) == cursor)
            {
                // Claimed: the call cannot finish before these items are done, so its job is still current.
                _run(_job, begin, end);
                Interlocked.Add(ref _done, end - begin);
            }
        }
    }

    private void WorkerLoop()
    {
        int seen = 0;
        while (!_disposed)
        {
            // Spin a little (back-to-back kernels), then sleep on the semaphore.
            int spins = 0;
            while (Volatile.Read(ref _generation) == seen && !_disposed)
            {
                if (++spins < 2000)
                {
                    Thread.SpinWait(20);
                    continue;
                }
                Interlocked.Increment(ref _sleepers);
                if (Volatile.Read(ref _generation) == seen)
                {
                    _wake.Wait(50);
                }
                Interlocked.Decrement(ref _sleepers);
                spins = 0;
            }
            if (_disposed)
            {
                return;
            }
            seen = Volatile.Read(ref _generation);
            RunChunks(seen);
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _wake.Release(_workers.Length);
    }

    private static class Trampoline<TJob> where TJob : struct, IRangeJob
    {
        public static void Run(void* job, int begin, int end) => Unsafe.AsRef<TJob>(job).Execute(begin, end);
    }
}
