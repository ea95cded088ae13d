using System.Diagnostics;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;

namespace Kernels.Runtime.Evaluation;

/// <summary>Result of a perplexity run.</summary>
public sealed record PerplexityResult(int Tokens, double TotalNll, TimeSpan Elapsed, IReadOnlyList<ChunkResult> Chunks)
{
    public double MeanNll => Tokens > 0 ? TotalNll / Tokens : double.NaN;
    public double Perplexity => Math.Exp(MeanNll);
    public double TokensPerSecond => Elapsed > TimeSpan.Zero ? Tokens / Elapsed.TotalSeconds : 0;
}

/// <summary>One window: index, first token index, token count, summed NLL.</summary>
public sealed record ChunkResult(int Index, int Start, int Length, double Nll);

/// <summary>
/// Perplexity over a token stream in non-overlapping windows of <c>context</c> tokens: the
/// cache is reset per window, position 0 gets BOS and predicts the window's first token, so
/// every token is scored exactly once (llama2.c reference procedure). NLL is computed in
/// double from the float logits.
/// </summary>
public sealed class PerplexityEvaluator
{
    private readonly Transformer _transformer;

    public PerplexityEvaluator(Transformer transformer) => _transformer = transformer;

    /// <summary>Optional cache factory (constrained caches); default: a full cache per window.</summary>
    public Func<Transformer, IKvCache>? CacheFactory { get; set; }

    /// <summary>
    /// Optional per-window runner that replaces the single batched forward (streaming modes that
    /// evict between tokens). Receives (inputs, cache, nll accumulator target list) and must
    /// return the NLL of every target.
    /// </summary>
    public Func<int[], int[], IKvCache, double>? WindowRunner { get; set; }

    /// <summary>Called before each window runs (a method with per-sequence state resets it: DIP's column caches).</summary>
    public Action? WindowStarting { get; set; }

    /// <summary>
    /// Prompt/continuation protocol (0 = off, score every token): each window's first
    /// ⌊fraction·len⌋ tokens are run as a prompt (one prefill that needs only its last logits, so
    /// prompt-side methods such as token pruning act on it) and only the predictions from the
    /// prompt's last token onwards are scored.
    /// </summary>
    public double PromptFraction { get; set; }

    public PerplexityResult Evaluate(IReadOnlyList<int> tokens, int context, int bos, IProgress<float>? progress = null, CancellationToken cancellationToken = default)
    {
        if (tokens.Count == 0)
        {
            throw new ArgumentException("the text holds no tokens to score", nameof(tokens));
        }
        if (context < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(context), "context must be at least 1");
        }
        if (context > _transformer.Model.Config.MaxSequenceLength)
        {
            throw new ArgumentOutOfRangeException(nameof(context), $"context {context} exceeds the model's {_transformer.Model.Config.MaxSequenceLength}");
        }
        int vocab = _transformer.Model.Config.VocabSize;
        var logits = new float[vocab];
        var chunks = new List<ChunkResult>();
        double total = 0;
        int scored = 0;
        if (!(PromptFraction >= 0 && PromptFraction < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(PromptFraction), $"prompt fraction {PromptFraction} must be in [0, 1)");
        }
        var clock = Stopwatch.StartNew();
        using var cache = CacheFactory?.Invoke(_transformer) ?? _transformer.CreateCache(context);
        for (int start = 0, index = 0; start < tokens.Count; start += context, index++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int len = Math.Min(context, tokens.Count - start);
            var inputs = new int[len];
            var targets = new int[len];
            for (int j = 0; j < len; j++)
            {
                inputs[j] = j == 0 ? bos : tokens[start + j - 1];
                targets[j] = tokens[start + j];
            }
            cache.Reset();
            WindowStarting?.Invoke();
            double nll;
            int first = 0;
            if (WindowRunner is not null)
            {
                nll = WindowRunner(inputs, targets, cache);
            }
            else if (PromptFraction > 0)
            {
                int prompt = Math.Max(1, (int)(PromptFraction * len));
                first = prompt - 1;
                _transformer.Forward(inputs.AsSpan(0, prompt), 0, cache, LogitsMode.Last, cancellationToken);
                _transformer.ReadLogits(0, logits);
                nll = NegativeLogLikelihood(logits, targets[prompt - 1]);
                if (prompt < len)
                {
                    _transformer.Forward(inputs.AsSpan(prompt), prompt, cache, LogitsMode.All, cancellationToken);
                    for (int j = prompt; j < len; j++)
                    {
                        _transformer.ReadLogits(j - prompt, logits);
                        nll += NegativeLogLikelihood(logits, targets[j]);
                    }
                }
            }
            else
            {
                _transformer.Forward(inputs, 0, cache, LogitsMode.All, cancellationToken);
                nll = 0;
                for (int j = 0; j < len; j++)
                {
                    _transformer.ReadLogits(j, logits);
                    nll += NegativeLogLikelihood(logits, targets[j]);
                }
            }
            total += nll;
            scored += len - first;
            chunks.Add(new ChunkResult(index, start + first, len - first, nll));
            progress?.Report((float)(start + len) / tokens.Count);
        }
        return new PerplexityResult(scored, total, clock.Elapsed, chunks);
    }

    /// <summary>-log softmax(logits)[target], in double.</summary>
    public static double NegativeLogLikelihood(ReadOnlySpan<float> logits, int target)
    {
        double max = double.NegativeInfinity;
        foreach (float l in logits)
        {
            max = Math.Max(max, l);
        }
        double sum = 0;
        foreach (float l in logits)
        {
            sum += Math.Exp(l - max);
        }
        return -(logits[target] - max - Math.Log(sum));
    }
}
