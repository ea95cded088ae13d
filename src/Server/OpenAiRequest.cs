using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Kernels.Server;

/// <summary>A request the client got wrong: answered with HTTP 400 and OpenAI's error object naming the parameter.</summary>
public sealed class BadRequestException(string message, string? param = null) : Exception(message)
{
    public string? Param { get; } = param;
}

/// <summary>The fields of an OpenAI chat or text completion request this server honours, checked one by one.</summary>
internal sealed record OpenAiRequest(List<ChatMessage>? Messages, string? Prompt, ChatOptions Options, bool Stream)
{
    public static OpenAiRequest Parse(JsonElement root, bool chat)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new BadRequestException("the request body must be a JSON object");
        }
        var options = new ChatOptions();
        if (Number(root, "temperature") is double t)
        {
            options.Temperature = t is >= 0 and <= 100 ? (float)t : throw new BadRequestException($"temperature {t} must lie in [0, 100]", "temperature");
        }
        if (Number(root, "top_p") is double p)
        {
            options.TopP = p is > 0 and <= 1 ? (float)p : throw new BadRequestException($"top_p {p} must lie in (0, 1]", "top_p");
        }
        foreach (string key in new[] { "max_tokens", "max_completion_tokens" })
        {
            if (Number(root, key) is double m)
            {
                options.MaxOutputTokens = m >= 1 && m <= int.MaxValue && m == Math.Floor(m) ? (int)m : throw new BadRequestException($"{key} {m} must be a positive integer", key);
            }
        }
        if (Number(root, "seed") is double s)
        {
            options.Seed = s == Math.Floor(s) && Math.Abs(s) < 9e15 ? (long)s : throw new BadRequestException($"seed {s} must be an integer", "seed");
        }
        if (root.TryGetProperty("stop", out var stop) && stop.ValueKind != JsonValueKind.Null)
        {
            options.StopSequences = stop.ValueKind switch
            {
                JsonValueKind.String => [stop.GetString()!],
                JsonValueKind.Array when stop.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) => stop.EnumerateArray().Select(e => e.GetString()!).ToList(),
                _ => throw new BadRequestException("stop must be a string or an array of strings", "stop"),
            };
        }
        bool stream = root.TryGetProperty("stream", out var st) && st.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False or JsonValueKind.Null => false,
            _ => throw new BadRequestException("stream must be a boolean", "stream"),
        };
        if (!chat)
        {
            if (!root.TryGetProperty("prompt", out var prompt) || prompt.ValueKind != JsonValueKind.String)
            {
                throw new BadRequestException("prompt must be a string", "prompt");
            }
            return new OpenAiRequest(null, prompt.GetString(), options, stream);
        }
        if (!root.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
        {
            throw new BadRequestException("messages must be a non-empty array", "messages");
        }
        var list = new List<ChatMessage>();
        int i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            string where = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
            {
                throw new BadRequestException($"{where} must be an object with a string role", where);
            }
            var r = role.GetString() switch
            {
                "system" or "developer" => ChatRole.System,
                "user" => ChatRole.User,
                "assistant" => ChatRole.Assistant,
                var other => throw new BadRequestException($"{where}.role '{other}' is not supported (system, user, assistant)", where + ".role"),
            };
            list.Add(new ChatMessage(r, Content(m, where)));
        }
        return new OpenAiRequest(list, null, options, stream);
    }

    /// <summary>content as a string, or as an array of text parts joined.</summary>
    private static string Content(JsonElement message, string where)
    {
        if (!message.TryGetProperty("content", out var c) || c.ValueKind == JsonValueKind.Null)
        {
            return "";
        }
        if (c.ValueKind == JsonValueKind.String)
        {
            return c.GetString()!;
        }
        if (c.ValueKind == JsonValueKind.Array)
        {
            return string.Concat(c.EnumerateArray().Select(part =>
                part.TryGetProperty("type", out var type) && type.GetString() == "text" && part.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String
                    ? text.GetString()
                    : throw new BadRequestException($"{where}.content parts must be text parts", where + ".content")));
        }
        throw new BadRequestException($"{where}.content must be a string or an array of text parts", where + ".content");
    }

    private static double? Number(JsonElement root, string key) =>
        !root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.Number ? v.GetDouble()
        : throw new BadRequestException($"{key} must be a number", key);
}
