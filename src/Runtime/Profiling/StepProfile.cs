using System.Diagnostics;

namespace Kernels.Runtime.Profiling;

/// <summary>Where the time of a forward step goes (<c>--profile</c>).</summary>
public enum ProfilePart
{
    /// <summary>Q, K and V projections.</summary>
    Qkv,

    /// <summary>Attention over the KV cache (cache append included).</summary>
    Attention,

    /// <summary>Attention output projection.</summary>
    OutputProjection,

    /// <summary>MLP gate and up projections and the SwiGLU activation.</summary>
    GateUp,

    /// <summary>MLP down projection.</summary>
    Down,

    /// <summary>RMSNorms and RoPE.</summary>
    NormsRope,

    /// <summary>The classifier (LM head).</summary>
    LmHead,

    /// <summary>Choosing the next token: argmax or logits download, softmax and top-p.</summary>
    Sampling,

    /// <summary>Fork/join of parallel regions as the calling thread sees it: waking workers and waiting for the last chunk.</summary>
    ThreadHandOff,

    /// <summary>Embedding lookup, residual additions and copies.</summary>
    Other,
}

/// <summary>
/// Accumulated time per <see cref="ProfilePart"/> over a number of steps, the independently
/// measured wall time of those steps, and the weight bytes each matmul class read (for GB/s).
/// </summary>
public sealed class StepProfile
{
    public static readonly ProfilePart[] Parts = Enum.GetValues<ProfilePart>();

    private readonly long[] _ticks = new long[Parts.Length];
    private readonly long[] _bytes = new long[Parts.Length];
    private readonly long[] _calls = new long[Parts.Length];
    private long _stepTicks;

    public StepProfile(string name) => Name = name;

    /// <summary>"decode" or "prefill".</summary>
    public string Name { get; }

    public int Steps { get; private set; }

    /// <summary>Tokens processed over all steps (1 per decode step; the prompt length per prefill).</summary>
    public long Tokens { get; private set; }

    internal void Add(ProfilePart part, long ticks, long bytes)
    {
        _ticks[(int)part] += ticks;
        _bytes[(int)part] += bytes;
        _calls[(int)part]++;
    }

    internal void AddStep(long ticks, int tokens, bool counts)
    {
        _stepTicks += ticks;
        Steps += counts ? 1 : 0;
        Tokens += tokens;
    }

    private static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    /// <summary>Mean wall time of one step, measured around the whole step.</summary>
    public double StepMs => Steps == 0 ? 0 : Ms(_stepTicks) / Steps;

    /// <summary>Mean time of one part per step.</summary>
    public double PartMs(ProfilePart part) => Steps == 0 ? 0 : Ms(_ticks[(int)part]) / Steps;

    /// <summary>Calls of one part per step.</summary>
    public double CallsPerStep(ProfilePart part) => Steps == 0 ? 0 : (double)_calls[(int)part] / Steps;

    /// <summary>Σ of the parts per step (compare with <see cref="StepMs"/>: the difference was not inside any timed operation).</summary>
    public double PartsMs => Parts.Sum(PartMs);

    /// <summary>Weight bytes read per second by a matmul class (0 for other parts).</summary>
    public double GBps(ProfilePart part) =>
        _ticks[(int)part] == 0 ? 0 : _bytes[(int)part] / (Ms(_ticks[(int)part]) * 1e6);

    /// <summary>Weight bytes a step reads in one part.</summary>
    public double BytesPerStep(ProfilePart part) => Steps == 0 ? 0 : (double)_bytes[(int)part] / Steps;
}
