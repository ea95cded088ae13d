using System.Text;
using System.Text.Json;
using Kernels.Runtime.Chat;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Kernels.Server;

/// <summary>Where and how the server listens.</summary>
public sealed record ServerOptions
{
    /// <summary>The model id /v1/models lists and responses carry.</summary>
    public required string ModelId { get; init; }

    public string Host { get; init; } = "127.0.0.1";

    /// <summary>0 picks a free port (read it from <c>app.Urls</c> after start).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>Requests served at once (one chat client and KV cache each); more wait in line.</summary>
    public int Parallel { get; init; } = 1;
}

/// <summary>
/// An OpenAI-compatible HTTP server over <see cref="LocalChatClient"/>s (llama.cpp's
/// <c>llama-server</c> surface): <c>/v1/chat/completions</c> and <c>/v1/completions</c> (JSON, or
/// server-sent events with <c>"stream": true</c>), <c>/v1/models</c>, <c>/health</c>. A client that
/// disconnects cancels its generation; a bad request gets a 400 with OpenAI's error object, never a
/// stack trace.
/// </summary>
public static class OpenAiServer
{
    private static readonly JsonSerializerOptions Json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <param name="createClient">Makes one chat client (with its own session); called <see cref="ServerOptions.Parallel"/> times.</param>
    public static WebApplication Build(ServerOptions options, Func<LocalChatClient> createClient)
    {
        if (options.Parallel < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), $"parallel {options.Parallel} must be at least 1");
        }
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://{options.Host}:{options.Port}");
        var app = builder.Build();
        var pool = new ClientPool(Enumerable.Range(0, options.Parallel).Select(_ => createClient()));
        app.Lifetime.ApplicationStopped.Register(pool.Dispose);
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        app.MapGet("/health", (HttpContext ctx) => Write(ctx, 200, new { status = "ok", slots = pool.Size, busy = pool.Busy, waiting = pool.Waiting, cancelled = pool.Cancelled }));
        app.MapGet("/v1/models", (HttpContext ctx) => Write(ctx, 200, new { @object = "list", data = new[] { new { id = options.ModelId, @object = "model", created, owned_by = "kernels" } } }));
        app.MapPost("/v1/chat/completions", (HttpContext ctx) => Handle(ctx, pool, options, chat: true));
        app.MapPost("/v1/completions", (HttpContext ctx) => Handle(ctx, pool, options, chat: false));
        app.MapFallback((HttpContext ctx) => Error(ctx, 404, $"no route {ctx.Request.Method} {ctx.Request.Path}", "invalid_request_error", null));
        return app;
    }

    private static async Task Handle(HttpContext ctx, ClientPool pool, ServerOptions options, bool chat)
    {
        var aborted = ctx.RequestAborted;
        OpenAiRequest request;
        try
        {
            using var body = await JsonDocument.ParseAsync(ctx.Request.Body, cancellationToken: aborted);
            request = OpenAiRequest.Parse(body.RootElement, chat);
        }
        catch (JsonException e)
        {
            await Error(ctx, 400, $"the request body is not valid JSON: {e.Message}", "invalid_request_error", null);
            return;
        }
        catch (BadRequestException e)
        {
            await Error(ctx, 400, e.Message, "invalid_request_error", e.Param);
            return;
        }
        ClientPool.Lease lease;
        try
        {
            lease = await pool.RentAsync(aborted);
        }
        catch (OperationCanceledException)
        {
            pool.CountCancelled();
            return;
        }
        using (lease)
        {
            var client = lease.Client;
            var updates = chat
                ? client.GetStreamingResponseAsync(request.Messages!, request.Options, aborted)
                : client.GetCompletionStreamingAsync(request.Prompt!, request.Options, aborted);
            string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
            long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            bool started = false;
            try
            {
                if (request.Stream)
                {
                    ctx.Response.ContentType = "text/event-stream";
                    ctx.Response.Headers.CacheControl = "no-cache";
                    bool first = true;
                    await foreach (var u in updates)
                    {
                        var usage = u.Contents.OfType<UsageContent>().FirstOrDefault()?.Details;
                        string? text = u.Text is { Length: > 0 } t ? t : null;
                        if (text is null && u.FinishReason is null)
                        {
                            continue;
                        }
                        object chunk = chat
                            ? new
                            {
                                id, @object = "chat.completion.chunk", created = now, model = options.ModelId,
                                choices = new[] { new { index = 0, delta = Delta(first, text), finish_reason = Finish(u.FinishReason) } },
                                usage = Usage(usage),
                            }
                            : new
                            {
                                id, @object = "text_completion", created = now, model = options.ModelId,
                                choices = new[] { new { index = 0, text = text ?? "", finish_reason = Finish(u.FinishReason) } },
                                usage = Usage(usage),
                            };
                        first = false;
                        started = true; // the headers leave with the first event
                        await ctx.Response.WriteAsync("data: " + JsonSerializer.Serialize(chunk, Json) + "\n\n", aborted);
                        await ctx.Response.Body.FlushAsync(aborted);
                    }
                    await ctx.Response.WriteAsync("data: [DONE]\n\n", aborted);
                    return;
                }
                var textAll = new StringBuilder();
                UsageDetails? total = null;
                ChatFinishReason? finish = null;
                await foreach (var u in updates)
                {
                    textAll.Append(u.Text);
                    total = u.Contents.OfType<UsageContent>().FirstOrDefault()?.Details ?? total;
                    finish = u.FinishReason ?? finish;
                }
                object response = chat
                    ? new
                    {
                        id, @object = "chat.completion", created = now, model = options.ModelId,
                        choices = new[] { new { index = 0, message = new { role = "assistant", content = textAll.ToString() }, finish_reason = Finish(finish) } },
                        usage = Usage(total),
                    }
                    : new
                    {
                        id, @object = "text_completion", created = now, model = options.ModelId,
                        choices = new[] { new { index = 0, text = textAll.ToString(), finish_reason = Finish(finish) } },
                        usage = Usage(total),
                    };
                await Write(ctx, 200, response);
            }
            catch (Exception) when (aborted.IsCancellationRequested)
            {
                // The client went away (a cancelled token, or a write to the closed connection): nothing to answer.
                pool.CountCancelled();
            }
            catch (ArgumentException e) when (!started)
            {
                await Error(ctx, 400, e.Message, "invalid_request_error", null);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                if (started)
                {
                    // Headers are gone: the error travels as an event, then the stream ends.
                    await ctx.Response.WriteAsync("data: " + JsonSerializer.Serialize(new { error = new { message = e.Message, type = "server_error" } }, Json) + "\n\n");
                }
                else
                {
                    await Error(ctx, e is ArgumentException ? 400 : 500, e.Message, e is ArgumentException ? "invalid_request_error" : "server_error", null);
                }
            }
        }
    }

    private static object Delta(bool first, string? text) =>
        first ? new { role = "assistant", content = text ?? "" } : text is null ? new { } : new { content = text };

    private static string? Finish(ChatFinishReason? reason) =>
        reason is null ? null : reason == ChatFinishReason.Length ? "length" : "stop";

    private static object? Usage(UsageDetails? u) =>
        u is null ? null : new { prompt_tokens = u.InputTokenCount ?? 0, completion_tokens = u.OutputTokenCount ?? 0, total_tokens = u.TotalTokenCount ?? 0 };

    private static Task Write(HttpContext ctx, int status, object value)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        return ctx.Response.WriteAsync(JsonSerializer.Serialize(value, Json));
    }

    private static Task Error(HttpContext ctx, int status, string message, string type, string? param) =>
        Write(ctx, status, new { error = new { message, type, param, code = (string?)null } });
}
