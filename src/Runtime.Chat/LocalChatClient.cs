using System.Runtime.CompilerServices;
using System.Text;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;
using Kernels.Runtime.Session;
using Kernels.Runtime.Tokenization;
using Microsoft.Extensions.AI;

namespace Kernels.Runtime.Chat;

/// <summary>Settings of a <see cref="LocalChatClient"/>; the project's features (KV policy, DIP, SDTP) come in <see cref="Inference"/>.</summary>
public sealed record LocalChatOptions
{
    /// <summary>The chat format; null recognises the model's <c>tokenizer.chat_template</c>.</summary>
    public ChatTemplate? Template { get; init; }

    /// <summary>Backend features of the session (KV eviction, DIP, token pruning, cache capacity).</summary>
    public InferenceOptions Inference { get; init; } = new();

    /// <summary>The model name reported in responses (default: the model file's name).</summary>
    public string? ModelId { get; init; }

    /// <summary>Defaults for requests that leave them unset.</summary>
    public float Temperature { get; init; } = 0.8f;

    public float TopP { get; init; } = 0.95f;

    public int MaxOutputTokens { get; init; } = 256;
}

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IChatClient"/> over one <see cref="InferenceSession"/>. Each
/// request renders the whole conversation with the chat template; when the rendered tokens extend
/// what the session already holds (the previous turns, as a chat continues), only the new tokens
/// are prefilled. Requests are served one at a time (the session is one conversation).
/// </summary>
public sealed class LocalChatClient : IChatClient
{
    private readonly LlamaModel _model;
    private readonly ITokenizer _tokenizer;
    private readonly InferenceSession _session;
    private readonly LocalChatOptions _options;
    private readonly HashSet<int> _endTokens;
    private readonly List<int> _history = new();
    private readonly SemaphoreSlim _gate = new(1, 1);

    public LocalChatClient(LlamaModel model, ITransformerOps ops, ITokenizer tokenizer, LocalChatOptions? options = null)
    {
        _model = model;
        _tokenizer = tokenizer;
        _options = options ?? new LocalChatOptions();
        Template = _options.Template
            ?? ChatTemplate.Detect(model.Metadata.GetValueOrDefault("tokenizer.chat_template"), model.Source)
            ?? throw new ArgumentException($"{model.Source}: the model has no tokenizer.chat_template; choose a chat template ({ChatTemplate.Names})");
        // A turn ends at EOS/EOT or at the template's own end marker when it is one token.
        _endTokens = Template.EndMarkers.Select(m => tokenizer.Encode(m, false, false, parseSpecial: true))
            .Where(ids => ids.Length == 1).Select(ids => ids[0]).ToHashSet();
        _session = InferenceSession.Create(model, ops, _options.Inference);
        ModelId = _options.ModelId ?? Path.GetFileNameWithoutExtension(model.Source);
    }

    public ChatTemplate Template { get; }

    public string ModelId { get; }

    /// <summary>Tokens the last request prefilled (the rest of its prompt was already in the session).</summary>
    public int LastPrefillTokens { get; private set; }

    /// <summary>Tokens of the last request's prompt found in the session from earlier turns.</summary>
    public int LastReusedTokens { get; private set; }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = messages.ToList();
        if (list.Count == 0)
        {
            throw new ArgumentException("no messages", nameof(messages));
        }
        string rendered = Template.Render(list); // a bad role fails here, before anything runs
        return GenerateAsync(() => _tokenizer.Encode(rendered, _tokenizer.AddBosByDefault, false, parseSpecial: true), options, cancellationToken);
    }

    /// <summary>
    /// A plain completion of <paramref name="prompt"/> (no chat template; BOS as the vocabulary asks;
    /// control-token text stays text), streamed as the chat updates are: text, then usage and finish reason.
    /// </summary>
    public IAsyncEnumerable<ChatResponseUpdate> GetCompletionStreamingAsync(string prompt, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return GenerateAsync(() => _tokenizer.Encode(prompt, _tokenizer.AddBosByDefault, false), options, cancellationToken);
    }

    private async IAsyncEnumerable<ChatResponseUpdate> GenerateAsync(Func<int[]> encode, ChatOptions? options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        float temperature = options?.Temperature ?? _options.Temperature;
        float topP = options?.TopP ?? _options.TopP;
        int maxTokens = options?.MaxOutputTokens ?? _options.MaxOutputTokens;
        if (temperature < 0 || !(topP > 0 && topP <= 1) || maxTokens < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), $"temperature {temperature} must be ≥ 0, top-p {topP} in (0, 1], max output tokens {maxTokens} ≥ 1");
        }
        var stops = options?.StopSequences?.Where(s => !string.IsNullOrEmpty(s)).ToArray() ?? [];
        var sampler = new Sampler(_model.Config.VocabSize, temperature, topP, (ulong)(options?.Seed ?? DateTime.UtcNow.Ticks));
        string responseId = Guid.NewGuid().ToString("N");

        await _gate.WaitAsync(cancellationToken);
        try
        {
            int[] prompt = encode();
            if (prompt.Length == 0)
            {
                throw new ArgumentException("the prompt is empty and the vocabulary has no BOS token to start from");
            }
            if (prompt.Length >= _model.Config.MaxSequenceLength)
            {
                throw new ArgumentException($"the prompt is {prompt.Length} tokens; the model's context is {_model.Config.MaxSequenceLength}");
            }
            Prefill(prompt, cancellationToken);
            maxTokens = Math.Min(maxTokens, _model.Config.MaxSequenceLength - _session.Position);
            var logits = sampler.IsGreedy ? [] : new float[_model.Config.VocabSize];
            var utf8 = Encoding.UTF8.GetDecoder();
            var text = new StringBuilder();
            int emitted = 0, generated = 0;
            bool stopSequence = false;
            ChatFinishReason finish = ChatFinishReason.Length;
            while (generated < maxTokens)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int next;
                if (sampler.IsGreedy)
                {
                    next = _session.ArgMax();
                }
                else
                {
                    _session.ReadLogits(logits);
                    next = sampler.Sample(logits);
                }
                if (_endTokens.Contains(next) || _tokenizer.IsEndOfGeneration(next) || next == _tokenizer.Eos)
                {
                    finish = ChatFinishReason.Stop;
                    break;
                }
                generated++;
                var bytes = _tokenizer.DecodePiece(-1, next);
                var chars = new char[utf8.GetCharCount(bytes, flush: false)];
                utf8.GetChars(bytes, chars, flush: false);
                text.Append(chars);
                // Text that could still become a stop sequence is held back until it cannot.
                int stopAt = stops.Select(s => text.ToString().IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
                int safe = stopAt >= 0 ? stopAt : text.Length - stops.Select(s => HeldBack(text, s)).DefaultIfEmpty(0).Max();
                if (safe > emitted)
                {
                    yield return new ChatResponseUpdate(ChatRole.Assistant, text.ToString(emitted, safe - emitted)) { ResponseId = responseId, ModelId = ModelId };
                    emitted = safe;
                }
                if (stopAt >= 0)
                {
                    finish = ChatFinishReason.Stop;
                    stopSequence = true;
                    break;
                }
                if (generated < maxTokens)
                {
                    _session.Step(next, cancellationToken);
                    _history.Add(next);
                }
            }
            // Text held back as a possible start of a stop sequence that never completed is part of the reply.
            if (!stopSequence && text.Length > emitted)
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, text.ToString(emitted, text.Length - emitted)) { ResponseId = responseId, ModelId = ModelId };
            }
            var usage = new UsageDetails { InputTokenCount = prompt.Length, OutputTokenCount = generated, TotalTokenCount = prompt.Length + generated };
            yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(usage)]) { ResponseId = responseId, ModelId = ModelId, FinishReason = finish };
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Runs the part of <paramref name="prompt"/> the session does not hold yet (everything, after a reset, when the history diverges).</summary>
    private void Prefill(int[] prompt, CancellationToken cancellationToken)
    {
        int common = 0;
        while (common < _history.Count && common < prompt.Length && _history[common] == prompt[common])
        {
            common++;
        }
        // The last prompt token must run to give logits; a diverged history cannot be kept.
        if (common < _history.Count || common == prompt.Length)
        {
            _session.Reset();
            _history.Clear();
            common = 0;
        }
        LastReusedTokens = common;
        LastPrefillTokens = prompt.Length - common;
        _session.Prefill(prompt.AsSpan(common), LogitsMode.Last, cancellationToken);
        _history.AddRange(prompt.AsSpan(common));
    }

    /// <summary>Length of the longest suffix of <paramref name="text"/> that starts <paramref name="stop"/>.</summary>
    private static int HeldBack(StringBuilder text, string stop)
    {
        for (int n = Math.Min(stop.Length - 1, text.Length); n > 0; n--)
        {
            if (text.ToString(text.Length - n, n) == stop[..n])
            {
                return n;
            }
        }
        return 0;
    }

    /// <summary>Forgets the conversation (the next request prefills from scratch).</summary>
    public void Reset()
    {
        _gate.Wait();
        try
        {
            _session.Reset();
            _history.Clear();
        }
        finally
        {
            _gate.Release();
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? new ChatClientMetadata("kernels", null, ModelId)
        : serviceType.IsInstanceOfType(this) ? this
        : null;

    public void Dispose()
    {
        _session.Dispose();
        _gate.Dispose();
    }
}
