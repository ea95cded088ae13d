using System.Diagnostics;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;

namespace Kernels.Runtime.Benchmarking;

/// <summary>Settings of an end-to-end decode/prefill measurement.</summary>
public sealed record ModelBenchmarkOptions
{
    /// <summary>Timed single-token decode steps (after a short prompt).</summary>
    public int DecodeTokens { get; init; } = 32;

    /// <summary>Prompt length of the timed prefill.</summary>
    public int PrefillTokens { get; init; } = 256;

    /// <summary>Timed prefill repetitions (median reported).</summary>
    public int PrefillRepeats { get; init; } = 3;

    /// <summary>Context already in the cache before the timed decode steps.</summary>
    public int DecodeContext { get; init; } = 16;

    /// <summary>Optional KV policy applied after the context (budgeted decode at long context).</summary>
    public Caching.KvCacheOptions? Kv { get; init; }

    /// <summary>Optional SDTP token pruning applied to the timed prefill (decode steps are unaffected).</summary>
    public Simplification.TokenPruneOptions? TokenPruning { get; init; }

    /// <summary>Split the timed decode steps and prefills into parts (<see cref="Profiling.ForwardProfiler"/>).</summary>
    public bool Profile { get; init; }
}

/// <summary>End-to-end numbers for one model variant.</summary>
public sealed record ModelBenchmarkResult(double DecodeMsPerToken, double PrefillTokensPerSecond, long WeightBytes, long PeakResidentBytes)
{
    /// <summary>KV bytes held after the timed prefill (shrinks with KV sharing and token pruning).</summary>
    public long PrefillKvBytes { get; init; }

    /// <summary>Fraction of dense per-layer token work the prefill did (1 without token pruning).</summary>
    public double LayerTokenFraction { get; init; } = 1;

    /// <summary>True when <see cref="PeakResidentBytes"/> is an estimate (variants held in memory together).</summary>
    public bool ResidentIsEstimate { get; init; }

    /// <summary>Timed decode steps over their total time (what llama-bench's tg reports), next to the median.</summary>
    public double DecodeTokensPerSecondMean { get; init; }

    /// <summary>Per-part times of the decode steps and prefills (with <see cref="ModelBenchmarkOptions.Profile"/>).</summary>
    public Profiling.ForwardProfiler? Profile { get; init; }

    public double DecodeTokensPerSecond => 1000.0 / DecodeMsPerToken;

    /// <summary>Weight bytes streamed per decoded token over its time (GB/s).</summary>
    public double DecodeWeightGBps => WeightBytes / (DecodeMsPerToken * 1e6);
}

/// <summary>Times decode (median ms per token) and prefill (median tokens/s) of a model on a backend.</summary>
public static class ModelBenchmark
{
    /// <summary>One variant on its own: all decode steps, then all prefills.</summary>
    public static ModelBenchmarkResult Run(LlamaModel model, ITransformerOps ops, ModelBenchmarkOptions options, CancellationToken cancellationToken = default)
    {
        using var session = new ModelBenchmarkSession(model, ops, options, cancellationToken);
        RunInterleaved(new[] { session }, cancellationToken);
        return session.Result(PeakMemory.PeakResidentBytes());
    }

    /// <summary>
    /// Several prepared variants round-robin: every decode step and every prefill runs once per
    /// variant in turn, so a slow phase of a shared machine slows all variants alike and the
    /// ratios between them hold (measured one after another, they drifted by 30% here).
    /// </summary>
    public static void RunInterleaved(IReadOnlyList<ModelBenchmarkSession> sessions, CancellationToken cancellationToken = default)
    {
        int steps = sessions.Count == 0 ? 0 : sessions.Max(s => s.Options.DecodeTokens);
        for (int i = 0; i < steps; i++)
        {
            foreach (var s in sessions.Where(s => i < s.Options.DecodeTokens))
            {
                s.DecodeStep(cancellationToken);
            }
        }
        int prefills = sessions.Count == 0 ? 0 : sessions.Max(s => s.TimedPrefills);
        for (int r = 0; r < prefills; r++)
        {
            foreach (var s in sessions.Where(s => r < s.TimedPrefills))
            {
                s.Prefill(cancellationToken);
            }
        }
    }

    /// <summary>Median (mean of the middle two for an even count); NaN for none.</summary>
    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }
        var sorted = values.OrderBy(v => v).ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : 0.5 * (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]);
    }
}

/// <summary>
/// One variant ready to time: transformer, decode cache with the context prompt already run,
/// and the prefill prompt with its warm-up run done (JIT, page faults of fresh weights, scratch
/// growth). <see cref="DecodeStep"/> and <see cref="Prefill"/> each time one unit of work.
/// </summary>
public sealed class ModelBenchmarkSession : IDisposable
{
    private readonly LlamaModel _model;
    private readonly Session.InferenceSession _session;
    private readonly Transformer _transformer;
    private readonly IKvCache? _prefillCache;
    private readonly int[] _prefillTokens;
    private readonly List<double> _decodeMs = new();
    private readonly List<double> _prefillRates = new();
    private readonly Profiling.ForwardProfiler? _profiler;
    private int _next;
    private double _layerTokens = 1;

    public ModelBenchmarkSession(LlamaModel model, ITransformerOps ops, ModelBenchmarkOptions options, CancellationToken cancellationToken = default)
    {
        _model = model;
        Options = options;
        int vocab = model.Config.VocabSize;
        int Token(int i) => (int)((uint)(i * 2654435761u) % (uint)vocab);
        if (options.Profile)
        {
            _profiler = new Profiling.ForwardProfiler();
            ops = new Profiling.ProfilingOps(ops, model, _profiler);
        }
        // Decode runs through a session (the context prompt, then one step per timed token, the KV
        // policy driven by Prefill/Step); timed prefills reuse its transformer with a cache of their own.
        _session = Session.InferenceSession.Create(model, ops, new Session.InferenceOptions
        {
            MaxBatch = Math.Max(Math.Min(options.DecodeContext, 512), Math.Max(1, options.PrefillTokens)),
            CacheCapacity = options.DecodeContext + options.DecodeTokens + 1,
            Kv = options.Kv,
        });
        _transformer = _session.Transformer;
        _session.Prefill(Enumerable.Range(0, options.DecodeContext).Select(Token).ToArray());
        _next = _session.ArgMax();
        _prefillTokens = Enumerable.Range(0, options.PrefillTokens).Select(i => Token(i + 7)).ToArray();
        if (options.PrefillTokens > 0)
        {
            _prefillCache = _transformer.CreateCache(options.PrefillTokens);
            if (options.PrefillRepeats > 0)
            {
                TimePrefill(cancellationToken); // warm-up, not recorded
            }
        }
    }

    public ModelBenchmarkOptions Options { get; }

    /// <summary>Prefills to time: the repeats after a warm-up run, or one run without warm-up when repeats is 0.</summary>
    public int TimedPrefills => Options.PrefillTokens > 0 ? Math.Max(1, Options.PrefillRepeats) : 0;

    /// <summary>Decode steps and prefills timed so far.</summary>
    public (int DecodeSteps, int Prefills) Timed => (_decodeMs.Count, _prefillRates.Count);

    /// <summary>Times one single-token decode step at the next position.</summary>
    public void DecodeStep(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var sw = Stopwatch.StartNew();
        // Like the median, the profile leaves out the first two steps (JIT, first touch of the weights).
        using (_profiler?.Step(_decodeMs.Count >= 2 ? _profiler.Decode : _profiler.Discarded, 1))
        {
            _session.Step(_next, cancellationToken);
            _next = _session.ArgMax();
        }
        _decodeMs.Add(sw.Elapsed.TotalMilliseconds);
    }

    /// <summary>Times one prefill of the prompt into a reset cache.</summary>
    public void Prefill(CancellationToken cancellationToken = default) => _prefillRates.Add(TimePrefill(cancellationToken, timed: true));

    private double TimePrefill(CancellationToken cancellationToken, bool timed = false)
    {
        cancellationToken.ThrowIfCancellationRequested();
        _prefillCache!.Reset();
        _transformer.Plan = _transformer.Plan with { TokenPruning = Options.TokenPruning is { } pruneOptions ? new PromptTokenPruner(pruneOptions) : null };
        try
        {
            var sw = Stopwatch.StartNew();
            using (_profiler?.Step(timed ? _profiler.Prefill : _profiler.Discarded, _prefillTokens.Length))
            {
                _transformer.Forward(_prefillTokens, 0, _prefillCache, LogitsMode.Last);
            }
            double rate = _prefillTokens.Length / sw.Elapsed.TotalSeconds;
            _layerTokens = _transformer.LastTokenPruning?.LayerTokenFraction ?? 1;
            return rate;
        }
        finally
        {
            _transformer.Plan = _transformer.Plan with { TokenPruning = null };
        }
    }

    /// <param name="residentBytes">What to report as the variant's resident memory.</param>
    public ModelBenchmarkResult Result(long residentBytes)
    {
        // The first decode steps include JIT and page faults of the freshly built weights.
        var steady = _decodeMs.Skip(Math.Min(2, Math.Max(0, _decodeMs.Count - 1))).ToList();
        double decodeMs = ModelBenchmark.Median(steady);
        return new ModelBenchmarkResult(decodeMs, _prefillRates.Count > 0 ? ModelBenchmark.Median(_prefillRates) : 0, _model.WeightBytes, residentBytes)
        {
            PrefillKvBytes = _prefillCache?.BytesUsed ?? 0,
            LayerTokenFraction = _layerTokens,
            DecodeTokensPerSecondMean = steady.Count == 0 ? 0 : steady.Count * 1000.0 / steady.Sum(),
            Profile = _profiler,
        };
    }

    public void Dispose()
    {
        _prefillCache?.Dispose();
        _session.Dispose();
    }
}

/// <summary>Process peak resident memory (Linux VmHWM, resettable), else the runtime's peak working set.</summary>
public static class PeakMemory
{
    public static long PeakResidentBytes() => StatusBytes("VmHWM:") ?? Process.GetCurrentProcess().PeakWorkingSet64;

    /// <summary>Current resident memory (Linux VmRSS), else the runtime's working set.</summary>
    public static long CurrentResidentBytes() => StatusBytes("VmRSS:") ?? Process.GetCurrentProcess().WorkingSet64;

    /// <summary>A kB field of /proc/self/status in bytes; null where that file is unavailable.</summary>
    private static long? StatusBytes(string field)
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith(field, StringComparison.Ordinal))
                {
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return null;
    }

    /// <summary>Resets the peak to the current resident size (Linux: writes 5 to /proc/self/clear_refs). Returns false where unsupported.</summary>
    public static bool Reset()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
