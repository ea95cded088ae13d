using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;

namespace Kernels.Bench;

/// <summary>
/// <c>serve-load URL CLIENTS REQUESTS MAX_TOKENS [OUT.json]</c>: CLIENTS concurrent clients send
/// REQUESTS streaming chat completions in all (each a different prompt) to a running
/// <c>kernels serve</c>, and report requests per second, generated tokens per second, and the
/// p50/p95 time to first token and latency. Used by bench/serve/load.sh.
/// </summary>
public static class ServeLoad
{
    private static readonly string[] Topics = ["cat", "dog", "bird", "fish", "girl", "boy", "tree", "ball", "sun", "moon", "car", "boat", "cake", "park", "rain", "star"];

    public static void Run(string[] args)
    {
        if (args.Length is < 4 or > 5 || !int.TryParse(args[1], out int clients) || !int.TryParse(args[2], out int requests) || !int.TryParse(args[3], out int maxTokens)
            || clients < 1 || requests < clients || maxTokens < 1)
        {
            throw new ArgumentException("usage: serve-load URL CLIENTS REQUESTS MAX_TOKENS [OUT.json]  (REQUESTS ≥ CLIENTS ≥ 1)");
        }
        using var http = new HttpClient { BaseAddress = new Uri(args[0]), Timeout = TimeSpan.FromMinutes(10) };
        // One request first so that JIT and first-touch costs stay out of the numbers.
        Once(http, "Hello", maxTokens).GetAwaiter().GetResult();
        int next = -1;
        var results = new List<(double Ttft, double Latency, int Tokens)>();
        var wall = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < requests)
            {
                var r = await Once(http, $"Tell me a story about a {Topics[i % Topics.Length]} number {i}", maxTokens);
                lock (results)
                {
                    results.Add(r);
                }
            }
        })).ToArray();
        Task.WaitAll(workers);
        double seconds = wall.Elapsed.TotalSeconds;
        double P(IEnumerable<double> xs, double q)
        {
            var s = xs.Order().ToArray();
            return s[Math.Min(s.Length - 1, (int)Math.Ceiling(q * s.Length) - 1)];
        }
        var summary = new
        {
            clients, requests, max_tokens = maxTokens, seconds,
            requests_per_s = requests / seconds,
            generated_tokens_per_s = results.Sum(r => r.Tokens) / seconds,
            ttft_ms_p50 = P(results.Select(r => r.Ttft), 0.5), ttft_ms_p95 = P(results.Select(r => r.Ttft), 0.95),
            latency_ms_p50 = P(results.Select(r => r.Latency), 0.5), latency_ms_p95 = P(results.Select(r => r.Latency), 0.95),
        };
        Console.WriteLine($"{clients} clients, {requests} requests in {seconds:F2} s: {summary.requests_per_s:F2} req/s, {summary.generated_tokens_per_s:F1} tok/s; " +
                          $"TTFT p50 {summary.ttft_ms_p50:F0} ms p95 {summary.ttft_ms_p95:F0} ms; latency p50 {summary.latency_ms_p50:F0} ms p95 {summary.latency_ms_p95:F0} ms");
        if (args.Length == 5)
        {
            Kernels.Runtime.IO.AtomicFile.WriteAllText(args[4], JsonSerializer.Serialize(summary, new JsonSerializerOptions { WriteIndented = true }));
        }
    }

    /// <summary>One streaming request: time to the first content event, total time, and the completion tokens the server reports.</summary>
    private static async Task<(double Ttft, double Latency, int Tokens)> Once(HttpClient http, string prompt, int maxTokens)
    {
        var clock = Stopwatch.StartNew();
        var body = new { messages = new[] { new { role = "user", content = prompt } }, max_tokens = maxTokens, temperature = 0, stream = true };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(body) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        double ttft = -1;
        int tokens = 0;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal) || line == "data: [DONE]")
            {
                continue;
            }
            if (ttft < 0)
            {
                ttft = clock.Elapsed.TotalMilliseconds;
            }
            using var chunk = JsonDocument.Parse(line[6..]);
            if (chunk.RootElement.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
            {
                tokens = usage.GetProperty("completion_tokens").GetInt32();
            }
        }
        return (ttft, clock.Elapsed.TotalMilliseconds, tokens);
    }
}
