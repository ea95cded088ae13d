using System.Diagnostics;
using Kernels.Simd.Threading;

namespace Kernels.Runtime.Profiling;

/// <summary>
/// Collects <see cref="StepProfile"/>s for decode and prefill steps. The loop that runs steps
/// (generation, benchmark) opens a <see cref="Step"/>; <see cref="ProfilingOps"/> charges every
/// backend operation run inside it to its part; thread hand-off comes from the worker pool's
/// fork/join counter.
/// </summary>
public sealed class ForwardProfiler
{
    public StepProfile Decode { get; } = new("decode");

    public StepProfile Prefill { get; } = new("prefill");

    /// <summary>Steps timed but not reported (warm-up): they run the profiling code once before the steps that count.</summary>
    public StepProfile Discarded { get; } = new("discarded");

    /// <summary>The profile operations are charged to now (null between steps).</summary>
    internal StepProfile? Current { get; private set; }

    /// <summary>The profiler whose step is open in this process (null when none): host code outside the backend operations (an MLP override) charges itself through <see cref="Time"/>.</summary>
    private static ForwardProfiler? s_active;

    /// <summary>Charges the host work until disposal to <paramref name="part"/> of the open step, if any.</summary>
    public static PartScope Time(ProfilePart part) => new(s_active, part);

    /// <summary>
    /// Times one step of <paramref name="tokens"/> tokens into <paramref name="profile"/> until
    /// disposed; with <paramref name="countsAsStep"/> false the time joins the profile's step time
    /// without counting a new step (the sampling that follows a forward, in a loop that samples first).
    /// </summary>
    public StepScope Step(StepProfile profile, int tokens, bool countsAsStep = true)
    {
        if (Current is not null)
        {
            throw new InvalidOperationException("profiled steps cannot nest");
        }
        WorkerPool.Shared.TrackHandOff = true;
        Current = profile;
        s_active = this;
        return new StepScope(this, profile, tokens, countsAsStep);
    }

    /// <summary>Times host work of one part (sampling on the host) inside a step.</summary>
    public PartScope Measure(ProfilePart part) => new(this, part);

    /// <summary>Charges an operation that took <paramref name="ticks"/> to <paramref name="part"/>, moving the pool's hand-off share of it to <see cref="ProfilePart.ThreadHandOff"/>.</summary>
    internal void Charge(ProfilePart part, long ticks, long handOffTicks, long bytes)
    {
        if (Current is not { } profile)
        {
            return;
        }
        handOffTicks = Math.Clamp(handOffTicks, 0, ticks); // an operation cannot hand off longer than it took
        profile.Add(part, ticks - handOffTicks, bytes);

        if (handOffTicks > 0)
        {
            profile.Add(ProfilePart.ThreadHandOff, handOffTicks, 0);
        }
    }

    public readonly struct StepScope : IDisposable
    {
        private readonly ForwardProfiler _owner;
        private readonly StepProfile _profile;
        private readonly int _tokens;
        private readonly bool _counts;
        private readonly long _start;

        internal StepScope(ForwardProfiler owner, StepProfile profile, int tokens, bool counts)
        {
            _owner = owner;
            _profile = profile;
            _tokens = tokens;
            _counts = counts;
            _start = Stopwatch.GetTimestamp();
        }

        public void Dispose()
        {
            _profile.AddStep(Stopwatch.GetTimestamp() - _start, _tokens, _counts);
            _owner.Current = null;
            s_active = null;
            WorkerPool.Shared.TrackHandOff = false;
        }
    }

    public readonly struct PartScope : IDisposable
    {
        private readonly ForwardProfiler? _owner;
        private readonly ProfilePart _part;
        private readonly long _start, _handOff;

        internal PartScope(ForwardProfiler? owner, ProfilePart part)
        {
            _owner = owner;
            _part = part;
            if (owner is not null)
            {
                _handOff = WorkerPool.Shared.HandOffTicks;
                _start = Stopwatch.GetTimestamp();
            }
        }

        public void Dispose() =>
            _owner?.Charge(_part, Stopwatch.GetTimestamp() - _start, WorkerPool.Shared.HandOffTicks - _handOff, 0);
    }
}
