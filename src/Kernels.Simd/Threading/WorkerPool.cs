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
/// part, and work is handed out in chunks through one atomic counter so a core slowed down by
/// another tenant does not stall the others.
/// </summary>
/// <remarks>
/// Jobs are structs passed by reference; workers reach them through a function pointer to a
/// generic trampoline, so nothing is boxed. Calls are serialized; a call made while the pool is
/// busy (for example from inside a job) runs inline on the calling thread.
/// Workers spin briefly after a job (decode issues kernels back to back) and then block.
/// Thread count: <c>KERNELS_THREADS</c>, else <see cref="Environment.ProcessorCount"/>.
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

    // Current job (valid while a call is in flight).
    private delegate*<void*, int, int, void> _run;
    private void* _job;
    private int _count;
    private int _chunk;
    private int _nextChunk;
    private int _chunks;
    private int _pendingWorkers;
    private int _generation;
    private int _sleepers;

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

    /// <summary>
    /// Runs <paramref name="job"/> over <c>[0, count)</c> in chunks of <paramref name="chunk"/> items
    /// (every Execute call covers at most one chunk).
    /// Returns when every item has been processed. Exceptions from jobs are not supported (kernels validate first).
    /// </summary>
    public void For<TJob>(int count, int chunk, ref TJob job) where TJob : struct, IRangeJob
    {
        if (count <= 0)
        {
            return;
        }
        chunk = Math.Max(1, chunk);
        int chunks = (count + chunk - 1) / chunk;
        if (chunks == 1 || _workers.Length == 0 || !Monitor.TryEnter(_gate))
        {
            // Inline, still chunk by chunk: jobs may size scratch space by the chunk.
            for (int begin = 0; begin < count; begin += chunk)
            {
                job.Execute(begin, Math.Min(count, begin + chunk));
            }
            return;
        }

        try
        {
            _run = &Trampoline<TJob>.Run;
            _job = Unsafe.AsPointer(ref job);
            _count = count;
            _chunk = chunk;
            _chunks = chunks;
            _nextChunk = 0;
            Volatile.Write(ref _pendingWorkers, _workers.Length);
            Interlocked.Increment(ref _generation);
            int sleepers = Volatile.Read(ref _sleepers);
            if (sleepers > 0)
            {
                _wake.Release(sleepers); // every worker checks in once per call
            }

            RunChunks();

            SpinWait spin = default;
            while (Volatile.Read(ref _pendingWorkers) != 0)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }
            _job = null;
        }
        finally
        {
            Monitor.Exit(_gate);
        }
    }

    private void RunChunks()
    {
        while (true)
        {
            int c = Interlocked.Increment(ref _nextChunk) - 1;
            if (c >= _chunks)
            {
                return;
            }
            int begin = c * _chunk;
            int end = Math.Min(_count, begin + _chunk);
            _run(_job, begin, end);
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
            if (_job != null)
            {
                RunChunks();
            }
            Interlocked.Decrement(ref _pendingWorkers);
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
