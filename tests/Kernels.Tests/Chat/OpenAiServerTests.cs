using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Kernels.Runtime.Chat;
using Kernels.Runtime.Compute;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Tokenization;
using Kernels.Server;
using Kernels.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Xunit;

namespace Kernels.Tests.Chat;

/// <summary>The OpenAI-compatible server on a free loopback port, driven with HttpClient (stories260K, llama-2 format, greedy).</summary>
public sealed class OpenAiServerTests
{
    private sealed class Running : IAsyncDisposable
    {
        private readonly LlamaModel _model;
        private readonly List<HostOps> _ops = new();

        /// <param name="model">The model to serve (default stories260K with the llama-2 format).</param>
        public Running(int parallel, LlamaModel? model = null, string template = "llama-2")
        {
            _model = model ?? ModelLoader.Load(TestData.Stories260KGguf);
            var tokenizer = TokenizerLoader.Load(_model, null);
            App = OpenAiServer.Build(new ServerOptions { ModelId = "stories260K", Port = 0, Parallel = parallel }, () =>
            {
                var ops = new HostOps();
                _ops.Add(ops);
                return new LocalChatClient(_model, ops, tokenizer, new LocalChatOptions { Template = ChatTemplate.ByName(template), ModelId = "stories260K" });
            });
            App.StartAsync().GetAwaiter().GetResult();
            // No draining: a response disposed half-read closes its connection, as a client that goes away does.
            Http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = new Uri(App.Urls.First()), Timeout = TimeSpan.FromMinutes(2) };
        }

        public WebApplication App { get; }

        public HttpClient Http { get; }

        public async ValueTask DisposeAsync()
        {
            Http.Dispose();
            await App.StopAsync();
            await App.DisposeAsync();
            _ops.ForEach(o => o.Dispose());
            _model.Dispose();
        }
    }

    private static object Chat(string content, int maxTokens, bool stream) =>
        new { messages = new[] { new { role = "user", content } }, temperature = 0, max_tokens = maxTokens, stream };

    /// <summary>The text of an SSE chat stream (deltas joined) and its final chunk.</summary>
    private static async Task<(string Text, JsonElement Last)> ReadStream(HttpResponseMessage response)
    {
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var text = new StringBuilder();
        JsonElement last = default;
        bool done = false;
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal))
            {
                continue;
            }
            string data = line[6..];
            if (data == "[DONE]")
            {
                done = true;
                break;
            }
            last = JsonDocument.Parse(data).RootElement.Clone();
            if (last.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var c))
            {
                text.Append(c.GetString());
            }
        }
        Assert.True(done, "the stream ends with data: [DONE]");
        return (text.ToString(), last);
    }

    [DataFact]
    public async Task Json_and_streamed_chat_completions_agree_and_the_other_routes_answer()
    {
        await using var s = new Running(parallel: 1);
        var health = await s.Http.GetFromJsonAsync<JsonElement>("/health");
        Assert.Equal("ok", health.GetProperty("status").GetString());
        var models = await s.Http.GetFromJsonAsync<JsonElement>("/v1/models");
        Assert.Equal("stories260K", models.GetProperty("data")[0].GetProperty("id").GetString());

        var json = await (await s.Http.PostAsJsonAsync("/v1/chat/completions", Chat("Tell me a story", 16, false))).Content.ReadFromJsonAsync<JsonElement>();
        string text = json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.Equal(16, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", json.GetProperty("choices")[0].GetProperty("finish_reason").GetString());

        using var streamed = await s.Http.PostAsJsonAsync("/v1/chat/completions", Chat("Tell me a story", 16, true));
        var (streamText, last) = await ReadStream(streamed);
        Assert.Equal(text, streamText);
        Assert.Equal(16, last.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        var completion = await (await s.Http.PostAsJsonAsync("/v1/completions", new { prompt = "Once upon a time", temperature = 0, max_tokens = 8 })).Content.ReadFromJsonAsync<JsonElement>();
        Assert.False(string.IsNullOrEmpty(completion.GetProperty("choices")[0].GetProperty("text").GetString()));
        Assert.Equal("text_completion", completion.GetProperty("object").GetString());
    }

    [DataFact]
    public async Task Eight_concurrent_streams_equal_the_same_requests_run_one_at_a_time()
    {
        await using var s = new Running(parallel: 3); // fewer slots than requests: the rest queue
        string[] prompts = Enumerable.Range(0, 8).Select(i => $"Tell me a story about a {(new[] { "cat", "dog", "bird", "fish", "girl", "boy", "tree", "ball" })[i]}").ToArray();
        async Task<string> One(string p)
        {
            using var r = await s.Http.PostAsJsonAsync("/v1/chat/completions", Chat(p, 24, true));
            return (await ReadStream(r)).Text;
        }
        var concurrent = await Task.WhenAll(prompts.Select(One));
        foreach (var (p, i) in prompts.Select((p, i) => (p, i)))
        {
            Assert.Equal(await One(p), concurrent[i]);
        }
        Assert.True(concurrent.Distinct().Count() > 1, "different prompts, different replies");
    }

    /// <summary>
    /// A model slow enough (8 layers of dim 512, ~100 MB of F32 weights read per token) that a
    /// 1500-token reply is still running when the client leaves after its first event; stories260K
    /// writes its whole context into the socket buffers within half a second. A small vocabulary keeps
    /// the greedy reply in printable tokens, so events flow.
    /// </summary>
    [Fact]
    public async Task A_client_that_disconnects_cancels_its_generation_and_frees_its_slot()
    {
        var shape = SyntheticShape.Small with { Name = "slow", Dim = 512, Hidden = 1376, Layers = 8, Heads = 8, KvHeads = 4, Vocab = 300, MaxSequence = 2048 };
        await using var s = new Running(parallel: 1, SyntheticFamilies.Create(ModelFamily.SmolLM2, shape, Kernels.Simd.Matrices.ElementType.F32, seed: 3), "chatml");
        using (var cts = new CancellationTokenSource())
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(Chat("Tell me a long story", 1500, true)) };
            var response = await s.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
            Assert.StartsWith("data: ", await reader.ReadLineAsync(cts.Token));
            await cts.CancelAsync();
            response.Dispose();
        }
        // The server notices, stops generating and returns the only slot.
        JsonElement health = default;
        for (int i = 0; i < 200; i++)
        {
            health = await s.Http.GetFromJsonAsync<JsonElement>("/health");
            if (health.GetProperty("cancelled").GetInt64() >= 1 && health.GetProperty("busy").GetInt32() == 0)
            {
                break;
            }
            await Task.Delay(100);
        }
        Assert.Equal(1, health.GetProperty("cancelled").GetInt64());
        Assert.Equal(0, health.GetProperty("busy").GetInt32());
        var next = await s.Http.PostAsJsonAsync("/v1/chat/completions", Chat("Hi", 2, false));
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
    }

    [DataFact]
    public async Task Bad_requests_get_openai_errors_without_stack_traces()
    {
        await using var s = new Running(parallel: 1);
        async Task Bad(string path, string body, string expected, HttpStatusCode status = HttpStatusCode.BadRequest)
        {
            var r = await s.Http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
            string text = await r.Content.ReadAsStringAsync();
            Assert.Equal(status, r.StatusCode);
            var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
            Assert.Contains(expected, error.GetProperty("message").GetString());
            Assert.DoesNotContain("   at ", text);
        }
        await Bad("/v1/chat/completions", "{not json", "not valid JSON");
        await Bad("/v1/chat/completions", "[]", "JSON object");
        await Bad("/v1/chat/completions", "{}", "messages must be a non-empty array");
        await Bad("/v1/chat/completions", """{"messages":[{"role":"tool","content":"x"}]}""", "role 'tool'");
        await Bad("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"top_p":2}""", "top_p");
        await Bad("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"max_tokens":0}""", "max_tokens");
        await Bad("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"stop":5}""", "stop");
        await Bad("/v1/completions", """{"prompt":3}""", "prompt must be a string");
        await Bad("/v1/chat/completions", JsonSerializer.Serialize(Chat(new string('a', 4000), 4, false)), "context");
        await Bad("/v1/nothing", "{}", "no route", HttpStatusCode.NotFound);
    }
}
