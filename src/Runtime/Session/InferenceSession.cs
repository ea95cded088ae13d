using Kernels.Runtime.Caching;
using Kernels.Runtime.Caching.Policies;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Dip;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;

namespace Kernels.Runtime.Session;

/// <summary>
/// One conversation with a model: the backend, the forward pass with its plan, one KV cache and
/// its eviction policy. <see cref="Prefill"/> and <see cref="Step"/> advance the position and drive
/// the policy (budget from the prompt, eviction after the prompt and after every step), so no
/// caller repeats the before-prompt / after-prompt / after-step protocol.
/// </summary>
public sealed class InferenceSession : IDisposable
{
    private readonly DipMlp? _dip;
    private readonly IKvMemory? _memory;

    /// <summary>Tokens of a token-by-token sequence that play the prompt (<see cref="StartSequence"/>); 0 when none is running.</summary>
    private int _sequencePrompt;

    private InferenceSession(LlamaModel model, ITransformerOps ops, InferenceOptions options)
    {
        Model = model;
        Options = options;
        _dip = options.Dip is { } dip ? new DipMlp(model, ops, dip) : null;
        Transformer = new Transformer(model, ops, options.MaxBatch)
        {
            Plan = new ForwardPlan { Mlp = _dip, TokenPruning = options.TokenPruning is { } t ? new PromptTokenPruner(t) : null },
        };
        int capacity = options.CacheCapacity ?? model.Config.MaxSequenceLength;
        // "none" keeps every token; on a backend without IKvMemory caches it needs no policy object at all.
        Policy = options.Kv is { } kv && (kv.Policy != KvPolicyKind.None || ops.Supports(BackendFeature.KvMemory)) ? KvEvictionPolicy.Create(kv) : null;
        _memory = Policy?.CreateCache(Transformer, capacity);
        Cache = _memory ?? Transformer.CreateCache(capacity);
    }

    /// <summary>
    /// Checks the combination once — each feature against what the backend runs, the options
    /// against the model — and builds the session; anything unsupported is one clear exception.
    /// </summary>
    public static InferenceSession Create(LlamaModel model, ITransformerOps ops, InferenceOptions options)
    {
        ObjectDisposedException.ThrowIf(model.IsDisposed, model);
        options.Kv?.Validated();
        var needs = (options.Kv?.RequiredFeatures ?? BackendFeature.None)
                    | (options.Dip is not null ? BackendFeature.DynamicInputPruning : BackendFeature.None)
                    | (options.TokenPruning is not null ? BackendFeature.TokenPruning : BackendFeature.None);
        ops.Require(needs, "this session");
        if (options.MaxBatch < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), $"MaxBatch {options.MaxBatch} must be at least 1");
        }
        if (options.CacheCapacity is < 1 || options.CacheCapacity > model.Config.MaxSequenceLength)
        {
            throw new ArgumentOutOfRangeException(nameof(options), $"cache capacity {options.CacheCapacity} must be in [1, {model.Config.MaxSequenceLength}] (the model's context)");
        }
        options.TokenPruning?.Validated(model.Layers.Count);
        return new InferenceSession(model, ops, options);
    }

    public LlamaModel Model { get; }

    public InferenceOptions Options { get; }

    public Transformer Transformer { get; }

    public ITransformerOps Ops => Transformer.Ops;

    /// <summary>The KV cache this session appends to.</summary>
    public IKvCache Cache { get; }

    /// <summary>The eviction policy (null when every token is kept).</summary>
    public KvEvictionPolicy? Policy { get; }

    /// <summary>The DIP MLP when dynamic input pruning runs.</summary>
    public DipMlp? Dip => _dip;

    /// <summary>Position of the next token.</summary>
    public int Position { get; private set; }

    /// <summary>Forgets the conversation: an empty cache at position 0.</summary>
    public void Reset()
    {
        Cache.Reset();
        Position = 0;
        _sequencePrompt = 0;
    }

    /// <summary>
    /// Starts a sequence that will be run token by token (<see cref="Step"/>) from position 0: the
    /// policy fixes its budget from the whole <paramref name="length"/> (a constrained perplexity window).
    /// </summary>
    public void StartSequence(int length)
    {
        Reset();
        _sequencePrompt = Policy?.BeforeSequence(_memory!, length) ?? 0;
    }

    /// <summary>Runs a prompt at the current position: the policy fixes its budget from it before and evicts after.</summary>
    public void Prefill(ReadOnlySpan<int> tokens, LogitsMode mode = LogitsMode.Last, CancellationToken cancellationToken = default)
    {
        Policy?.BeforePrompt(_memory!, tokens.Length);
        Transformer.Forward(tokens, Position, Cache, mode, cancellationToken);
        Position += tokens.Length;
        Policy?.AfterPrompt(_memory!, tokens.Length);
    }

    /// <summary>Runs one token at the current position; the policy evicts after it.</summary>
    public void Step(int token, CancellationToken cancellationToken = default)
    {
        Transformer.Forward([token], Position, Cache, LogitsMode.Last, cancellationToken);
        Position++;
        if (Position == _sequencePrompt)
        {
            // A stepped sequence's prompt is complete: the policy's after-prompt step (Scissorhands' window mean) runs here.
            _sequencePrompt = 0;
            Policy?.AfterPrompt(_memory!, Position);
        }
        else
        {
            Policy?.AfterStep(_memory!);
        }
    }

    /// <summary>Greedy next token after the last forward (computed on the backend).</summary>
    public int ArgMax() => Transformer.ArgMax(0);

    /// <summary>Copies row <paramref name="row"/> of the last forward's logits to the host.</summary>
    public void ReadLogits(Span<float> destination, int row = 0) => Transformer.ReadLogits(row, destination);

    /// <summary>KV bytes held and the policy's per-slot statistics (for reports).</summary>
    public (long KvBytes, long StatisticsBytes) CacheBytes => (Cache.BytesHeld, _memory?.StatisticsBytes ?? 0);

    public void Dispose()
    {
        Cache.Dispose();
        Transformer.Dispose();
        _dip?.Dispose();
    }
}
