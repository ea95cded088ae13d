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
}

/// <summary>End-to-end numbers for one model variant.</summary>
public sealed record ModelBenchmarkResult(double DecodeMsPerToken, double PrefillTokensPerSecond, long WeightBytes, long PeakResidentBytes)
{
    /// <summary>KV bytes held after the timed prefill (shrinks with KV sharing and token pruning).</summary>
    public long PrefillKvBytes { get; init; }

    /// <summary>Fraction of dense per-layer token work the prefill did (1 without token pruning).</summary>
    public double LayerTokenFraction { get; init; } = 1;

    public double DecodeTokensPerSecond => 1000.0 / DecodeMsPerToken;

    /// <summary>Weight bytes streamed per decoded token over its time (GB/s).</summary>
    public double DecodeWeightGBps => WeightBytes / (DecodeMsPerToken * 1e6);
}

/// <summary>Times decode (median ms per token) and prefill (median tokens/s) of a model on a backend.</summary>
public static class ModelBenchmark
{
    public static ModelBenchmarkResult Run(LlamaModel model, ITransformerOps ops, ModelBenchmarkOptions options, CancellationToken cancellationToken = default)
    {
        int vocab = model.Config.VocabSize;
        int Token(int i) => (int)((uint)(i * 2654435761u) % (uint)vocab);
        using var transformer = new Transformer(model, ops, maxBatch: Math.Max(Math.Min(options.DecodeContext, 512), Math.Max(1, options.PrefillTokens)));
        var controller = options.Kv is { } kv ? new Caching.KvCacheController(kv) : null;
        int capacity = options.DecodeContext + options.DecodeTokens + 1;
        using var cache = controller is null ? transformer.CreateCache(capacity) : controller.Create(transformer, capacity);
        var prompt = Enumerable.Range(0, options.DecodeContext).Select(Token).ToArray();
        controller?.BeforePrompt((HostKvCache)cache, prompt.Length);
        transformer.Forward(prompt, 0, cache, LogitsMode.Last);
        controller?.AfterPrompt((HostKvCache)cache, prompt.Length);
        var times = new List<double>();
        int pos = prompt.Length;
        int next = transformer.ArgMax(0);
        for (int i = 0; i < options.DecodeTokens; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var sw = Stopwatch.StartNew();
            transformer.Forward(new[] { next }, pos++, cache, LogitsMode.Last);
            controller?.AfterStep((HostKvCache)cache);
            next = transformer.ArgMax(0);
            times.Add(sw.Elapsed.TotalMilliseconds);
        }
        // The first steps include JIT and page faults of the freshly built weights.
        double decodeMs = Median(times.Skip(Math.Min(2, times.Count - 1)).ToList());

        var prefillRates = new List<double>();
        long kvBytes = 0;
        double layerTokens = 1;
        if (options.PrefillTokens > 0)
        {
            transformer.TokenPruning = options.TokenPruning;
            var tokens = Enumerable.Range(0, options.PrefillTokens).Select(i => Token(i + 7)).ToArray();
            using var prefillCache = transformer.CreateCache(options.PrefillTokens);
            for (int r = 0; r < options.PrefillRepeats + 1; r++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                prefillCache.Reset();
                var sw = Stopwatch.StartNew();
                transformer.Forward(tokens, 0, prefillCache, LogitsMode.Last);
                double s = sw.Elapsed.TotalSeconds;
                if (r > 0 || options.PrefillRepeats == 0)
                {
                    prefillRates.Add(options.PrefillTokens / s);
                }
            }
            kvBytes = prefillCache.BytesUsed;
            layerTokens = transformer.LastTokenPruning?.LayerTokenFraction ?? 1;
            transformer.TokenPruning = null;
        }
        return new ModelBenchmarkResult(decodeMs, prefillRates.Count > 0 ? Median(prefillRates) : 0, model.WeightBytes, PeakMemory.PeakResidentBytes())
        {
            PrefillKvBytes = kvBytes,
            LayerTokenFraction = layerTokens,
        };
    }

    private static double Median(List<double> values)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }
        values.Sort();
        return values.Count % 2 == 1 ? values[values.Count / 2] : 0.5 * (values[values.Count / 2 - 1] + values[values.Count / 2]);
    }
}

/// <summary>Process peak resident memory (Linux VmHWM, resettable), else the runtime's peak working set.</summary>
public static class PeakMemory
{
    public static long PeakResidentBytes()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
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
        return Process.GetCurrentProcess().PeakWorkingSet64;
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
