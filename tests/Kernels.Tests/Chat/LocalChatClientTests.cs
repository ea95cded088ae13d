using Kernels.Runtime.Chat;
using Kernels.Runtime.Compute;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Tokenization;
using Kernels.Tests.Infrastructure;
using Microsoft.Extensions.AI;
using Xunit;

namespace Kernels.Tests.Chat;

/// <summary>The IChatClient over an inference session, on stories260K with the llama-2 format (greedy, so replies are reproducible).</summary>
public sealed class LocalChatClientTests
{
    private static LocalChatClient Client(LlamaModel model, ITransformerOps ops) =>
        new(model, ops, TokenizerLoader.Load(model, null), new LocalChatOptions { Template = ChatTemplate.ByName("llama-2") });

    private static ChatOptions Greedy => new() { Temperature = 0, MaxOutputTokens = 24 };

    [DataFact]
    public async Task Streaming_and_whole_responses_agree_and_report_usage()
    {
        using var model = ModelLoader.Load(TestData.Stories260KGguf);
        using var ops = new HostOps();
        using var client = Client(model, ops);
        ChatMessage[] messages = [new(ChatRole.User, "Tell me a story about a cat")];
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(messages, Greedy))
        {
            updates.Add(u);
        }
        var whole = await client.GetResponseAsync(messages, Greedy);
        string streamed = string.Concat(updates.Select(u => u.Text));
        Assert.False(string.IsNullOrWhiteSpace(streamed));
        Assert.Equal(streamed, whole.Text);
        var usage = Assert.Single(updates[^1].Contents.OfType<UsageContent>()).Details;
        Assert.Equal(client.LastPrefillTokens + client.LastReusedTokens, usage.InputTokenCount);
        Assert.InRange(usage.OutputTokenCount!.Value, 1, 24);
        Assert.NotNull(updates[^1].FinishReason);
        Assert.Equal(usage.OutputTokenCount, whole.Usage!.OutputTokenCount);
        Assert.Equal("stories260K", client.GetService<ChatClientMetadata>()!.DefaultModelId);
    }

    /// <summary>A second turn prefills only what is new, and replies exactly as a fresh client given the whole conversation.</summary>
    [DataFact]
    public async Task A_continued_conversation_reuses_the_cache_and_matches_a_fresh_prefill()
    {
        using var model = ModelLoader.Load(TestData.Stories260KGguf);
        using var ops = new HostOps();
        using var client = Client(model, ops);
        var messages = new List<ChatMessage> { new(ChatRole.System, "Be short"), new(ChatRole.User, "Once upon a time") };
        var first = await client.GetResponseAsync(messages, Greedy);
        int firstPrompt = client.LastPrefillTokens;
        messages.Add(new ChatMessage(ChatRole.Assistant, first.Text));
        messages.Add(new ChatMessage(ChatRole.User, "What happened next?"));
        var second = await client.GetResponseAsync(messages, Greedy);
        Assert.True(client.LastReusedTokens > firstPrompt, $"kept {client.LastReusedTokens} tokens; the first turn alone was {firstPrompt}");
        Assert.True(client.LastPrefillTokens < second.Usage!.InputTokenCount);

        using var fresh = Client(model, ops);
        var again = await fresh.GetResponseAsync(messages, Greedy);
        Assert.Equal(0, fresh.LastReusedTokens);
        Assert.Equal(again.Text, second.Text);
    }

    [DataFact]
    public async Task Stop_sequences_and_the_token_limit_end_a_reply()
    {
        using var model = ModelLoader.Load(TestData.Stories260KGguf);
        using var ops = new HostOps();
        using var client = Client(model, ops);
        ChatMessage[] messages = [new(ChatRole.User, "Tell me a story")];
        var full = await client.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 40 });
        Assert.Equal(ChatFinishReason.Length, full.FinishReason);
        Assert.Equal(40, full.Usage!.OutputTokenCount);
        // A stop sequence taken from the middle of the reply cuts it just before.
        string stop = full.Text.Substring(full.Text.Length / 2, 3);
        var cut = await client.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 40, StopSequences = [stop] });
        Assert.Equal(ChatFinishReason.Stop, cut.FinishReason);
        Assert.Equal(full.Text[..full.Text.IndexOf(stop, StringComparison.Ordinal)], cut.Text);
        // Text held back because it might start a stop sequence is released when the sequence never completes.
        var held = await client.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 40, StopSequences = [full.Text[^2..] + "\u0001"] });
        Assert.Equal(full.Text, held.Text);
    }

    [DataFact]
    public async Task Cancellation_and_bad_options_fail_cleanly_and_the_client_stays_usable()
    {
        using var model = ModelLoader.Load(TestData.Stories260KGguf);
        using var ops = new HostOps();
        using var client = Client(model, ops);
        ChatMessage[] messages = [new(ChatRole.User, "Hello")];
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetResponseAsync(messages, Greedy, cancelled.Token));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.GetResponseAsync(messages, new ChatOptions { Temperature = 0, TopP = 0 }));
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync([], Greedy));
        var reply = await client.GetResponseAsync(messages, Greedy);
        Assert.False(string.IsNullOrEmpty(reply.Text));
        var e = Assert.Throws<ArgumentException>(() => new LocalChatClient(model, ops, TokenizerLoader.Load(model, null)));
        Assert.Contains("chat_template", e.Message); // stories260K has none: the error names the choices
        Assert.Contains("chatml", e.Message);
    }
}
