using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Tokenization;

namespace Kernels.Runtime.Session;

/// <summary>Options of one generation, llama2.c's defaults.</summary>
public sealed record GenerationOptions
{
    /// <summary>Total positions including the prompt (llama2.c -n); clamped to the context.</summary>
    public int Steps { get; init; } = 256;
    public float Temperature { get; init; } = 1.0f;
    public float TopP { get; init; } = 0.9f;
    public ulong Seed { get; init; } = 42;
    /// <summary>Stop when the model emits BOS (llama2.c's behaviour).</summary>
    public bool StopAtBos { get; init; } = true;
}

/// <summary>Counters of the last generation.</summary>
public sealed record GenerationStats(int PromptTokens, int GeneratedTokens, TimeSpan PrefillTime, TimeSpan DecodeTime)
{
    public double DecodeTokensPerSecond => GeneratedTokens > 0 && DecodeTime > TimeSpan.Zero ? GeneratedTokens / DecodeTime.TotalSeconds : 0;
    public double PrefillTokensPerSecond => PromptTokens > 0 && PrefillTime > TimeSpan.Zero ? PromptTokens / PrefillTime.TotalSeconds : 0;
}

/// <summary>
/// Streams text as llama2.c's generate loop prints it: the prompt (BOS prepended, forced) and
/// then sampled tokens, each piece decoded against the previous token, until Steps positions or BOS.
/// The prompt is prefilled as one batch.
/// </summary>
public sealed class TextGenerator
{
    private readonly InferenceSession _session;
    private readonly ITokenizer _tokenizer;

    /// <summary>Generates through <paramref name="session"/>: each generation starts it afresh (position 0, empty cache).</summary>
    public TextGenerator(InferenceSession session, ITokenizer tokenizer)
    {
        _session = session;
        _tokenizer = tokenizer;
    }

    public GenerationStats? LastStats { get; private set; }

    public InferenceSession Session => _session;

    /// <summary>
    /// Optional step profiler (<c>--profile</c>): the prompt is one prefill step, each generated
    /// token one decode step (its forward plus the sampling of its logits). The transformer's
    /// backend must be a <see cref="Profiling.ProfilingOps"/> reporting to the same profiler.
    /// </summary>
    public Profiling.ForwardProfiler? Profiler { get; set; }

    public async IAsyncEnumerable<string> GenerateAsync(string prompt, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var model = _session.Model;
        ObjectDisposedException.ThrowIf(model.IsDisposed, model);
        int[] promptTokens = _tokenizer.Encode(prompt, addBos: true, addEos: false);
        if (promptTokens.Length == 0)
        {
            throw new ArgumentException("the prompt is empty and the vocabulary has no BOS token to start from", nameof(prompt));
        }
        if (promptTokens.Length > model.Config.MaxSequenceLength)
        {
            throw new ArgumentException($"the prompt has {promptTokens.Length} tokens, more than the model's context of {model.Config.MaxSequenceLength}", nameof(prompt));
        }
        int steps = options.Steps <= 0 || options.Steps > model.Config.MaxSequenceLength ? model.Config.MaxSequenceLength : options.Steps;
        var sampler = new Sampler(model.Config.VocabSize, options.Temperature, options.TopP, options.Seed);
        var logits = sampler.IsGreedy ? Array.Empty<float>() : new float[model.Config.VocabSize];
        var utf8 = Encoding.UTF8.GetDecoder();
        var chars = new char[64];
        _session.Reset();

        string Text(ReadOnlySpan<byte> bytes, bool flush = false)
        {
            int need = utf8.GetCharCount(bytes, flush);
            if (need > chars.Length)
            {
                chars = new char[need * 2];
            }
            int count = utf8.GetChars(bytes, chars, flush);
            return new string(chars, 0, count);
        }

        int Next()
        {
            using var step = Profiler?.Step(Profiler.Decode, 0, countsAsStep: false);
            if (sampler.IsGreedy)
            {
                return _session.ArgMax();
            }
            _session.ReadLogits(logits);
            using var sampling = Profiling.ForwardProfiler.Time(Profiling.ProfilePart.Sampling);
            return sampler.Sample(logits);
        }

        var clock = Stopwatch.StartNew();
        int prefillCount = Math.Min(promptTokens.Length, steps);
        using (Profiler?.Step(Profiler.Prefill, prefillCount))
        {
            _session.Prefill(promptTokens.AsSpan(0, prefillCount), LogitsMode.Last, cancellationToken);
        }
        var prefillTime = clock.Elapsed;
        // Prompt pieces after BOS, as llama2.c prints them while forcing the prompt (a vocabulary without BOS prints its first piece too).
        int token = promptTokens[0];
        if (token != _tokenizer.Bos && Text(_tokenizer.DecodePiece(-1, token)) is { Length: > 0 } first)
        {
            yield return first;
        }
        for (int i = 1; i < prefillCount; i++)
        {
            string piece = Text(_tokenizer.DecodePiece(token, promptTokens[i]));
            token = promptTokens[i];
            if (piece.Length > 0)
            {
                yield return piece;
            }
        }
        int generated = 0;
        clock.Restart();
        int pos = prefillCount - 1;
        // llama2.c: every position pos < steps is forwarded and prints the token that follows it.
        while (pos < steps)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int next = pos < promptTokens.Length - 1 ? promptTokens[pos + 1] : Next();
            pos++;
            if (options.StopAtBos && next == _tokenizer.Bos || pos > promptTokens.Length - 1 && _tokenizer.IsEndOfGeneration(next))
            {
                break;
            }
            string piece = Text(_tokenizer.DecodePiece(token, next));
            token = next;
            generated++;
            if (piece.Length > 0)
            {
                yield return piece;
            }
            if (pos >= steps)
            {
                break;
            }
            using (Profiler?.Step(Profiler.Decode, 1))
            {
                _session.Step(token, cancellationToken);
            }
            await Task.Yield();
        }
        string tail = Text(ReadOnlySpan<byte>.Empty, flush: true);
        if (tail.Length > 0)
        {
            yield return tail;
        }
        LastStats = new GenerationStats(prefillCount, generated, prefillTime, clock.Elapsed);
    }
}
