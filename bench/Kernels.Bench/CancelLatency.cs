using System.Diagnostics;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;
using Kernels.Simd;
using Kernels.Simd.Matrices;

namespace Kernels.Bench;

/// <summary>
/// <c>cancel-latency [layers] [prompt] [rounds]</c>: how long a long prefill takes to stop once its
/// token is cancelled (TinyLlama-shaped synthetic F16 model), and what the per-block NaN/Inf scan
/// of the residual stream costs next to a layer.
/// </summary>
public static class CancelLatency
{
    public static void Run(string[] args)
    {
        int Arg(int i, string name, int fallback, int min, int max) =>
            args.Length <= i ? fallback
            : int.TryParse(args[i], out int v) && v >= min && v <= max ? v
            : throw new ArgumentException($"cancel-latency: {name} '{args[i]}' must be an integer in [{min}, {max}]");
        int layers = Arg(0, "layers", 8, 1, SyntheticShape.TinyLlama.Layers);
        int promptLength = Arg(1, "prompt", 1000, 1, SyntheticShape.TinyLlama.MaxSequence);
        int rounds = Arg(2, "rounds", 10, 1, 1000);
        var shape = SyntheticShape.TinyLlama with { Layers = layers };
        using var model = SyntheticModel.Create(shape, ElementType.F16, null, seed: 7);
        using var ops = new HostOps();
        using var transformer = new Transformer(model, ops, maxBatch: 256);
        var prompt = Enumerable.Range(0, promptLength).Select(i => 1 + i % 31000).ToArray();

        using (var warm = transformer.CreateCache())
        {
            var full = Stopwatch.StartNew();
            transformer.Forward(prompt, 0, warm, LogitsMode.Last);
            Console.WriteLine($"{shape.Name} x{layers} layers, F16, {ops.Name}: uncancelled prefill of {promptLength} tokens {full.Elapsed.TotalMilliseconds:F0} ms " +
                              $"({full.Elapsed.TotalMilliseconds / Math.Ceiling(promptLength / 256.0) / layers:F1} ms per 256-token layer)");
        }
        var random = new Random(3);
        var latencies = new List<double>();
        for (int r = 0; r < rounds; r++)
        {
            using var cache = transformer.CreateCache();
            using var cts = new CancellationTokenSource();
            long cancelledAt = 0;
            var pass = Task.Run(() => transformer.Forward(prompt, 0, cache, LogitsMode.Last, cts.Token));
            Thread.Sleep(50 + random.Next(400));
            cancelledAt = Stopwatch.GetTimestamp();
            cts.Cancel();
            try
            {
                pass.GetAwaiter().GetResult();
                Console.WriteLine($"round {r}: finished before the cancel");
                continue;
            }
            catch (OperationCanceledException)
            {
                latencies.Add(Stopwatch.GetElapsedTime(cancelledAt).TotalMilliseconds);
            }
        }
        latencies.Sort();
        if (latencies.Count > 0)
        {
            Console.WriteLine($"cancel -> OperationCanceledException over {latencies.Count} rounds: median {latencies[latencies.Count / 2]:F1} ms, max {latencies[^1]:F1} ms");
        }

        foreach (int n in new[] { 1, 256 })
        {
            var x = new float[n * shape.Dim];
            int reps = n == 1 ? 200_000 : 2_000;
            var clock = Stopwatch.StartNew();
            int hits = 0;
            for (int i = 0; i < reps; i++)
            {
                hits += FiniteCheck.IndexOfNonFinite(x);
            }
            Console.WriteLine($"finite scan of {n} x {shape.Dim} floats ({SimdInfo.Tier}): {clock.Elapsed.TotalMilliseconds * 1e3 / reps:F2} us ({hits / reps})");
        }
    }
}
