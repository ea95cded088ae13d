using Kernels.Runtime.Compute;
using Kernels.Runtime.Model;
using Kernels.Runtime.Simplification;

namespace Kernels.Runtime.Inference;

/// <summary>Which logits a forward pass computes.</summary>
public enum LogitsMode
{
    /// <summary>No classifier (prefill whose logits are not needed).</summary>
    None,

    /// <summary>Only the last token's logits.</summary>
    Last,

    /// <summary>Logits of every token in the batch (perplexity).</summary>
    All,
}

/// <summary>
/// The Llama forward pass, written once against <see cref="ITransformerOps"/>: embedding,
/// per layer RMSNorm → Q/K/V → RoPE → GQA attention with KV cache → output projection →
/// residual, RMSNorm → SwiGLU MLP → residual; final RMSNorm and classifier. Batches of tokens
/// (prefill) and single tokens (decode) take the same path.
/// </summary>
public sealed class Transformer : IDisposable
{
    private readonly ITransformerOps _ops;
    private readonly int _maxBatch;
    private DeviceTensor? _x, _xb, _q, _k, _v, _att, _proj, _gate, _up, _h, _last, _logits, _zeroHead;
    private int _logitRows;
    private (int CacheLayer, int Heads, int KvHeads)? _lastAttention;

    public Transformer(LlamaModel model, ITransformerOps ops, int maxBatch = 256)
    {
        ObjectDisposedException.ThrowIf(model.IsDisposed, model);
        Model = model;
        _ops = ops;
        _maxBatch = Math.Max(1, maxBatch);
        Rope = new RopeTable(model.Config.HeadDim, model.Config.MaxSequenceLength, model.Config.RopeTheta);
    }

    public LlamaModel Model { get; }
    public ITransformerOps Ops => _ops;
    public RopeTable Rope { get; }
    public int MaxBatch => _maxBatch;

    /// <summary>Optional per-block MLP replacement (dynamic input pruning etc.); null runs the dense SwiGLU MLP.</summary>
    public IMlpOverride? Mlp { get; set; }

    /// <summary>Optional observer of block inputs and linear inputs (calibration, analysis).</summary>
    public IForwardObserver? Observer { get; set; }

    /// <summary>Layer indices to skip (layer removal experiments without rebuilding the model).</summary>
    public HashSet<int>? SkipLayers { get; set; }

    /// <summary>
    /// SDTP-style token pruning of prompts: applies to batches whose logits are not all needed
    /// (prefill with <see cref="LogitsMode.Last"/> or <see cref="LogitsMode.None"/>); decode steps
    /// and perplexity batches (<see cref="LogitsMode.All"/>) run every token. Host KV cache only.
    /// </summary>
    public TokenPruneOptions? TokenPruning { get; set; }

    /// <summary>Tokens each layer processed in the last pruned prefill (null when none ran).</summary>
    public TokenPruneTrace? LastTokenPruning { get; private set; }

    /// <summary>Query heads whose attention output is zeroed (head-importance analysis); (layer, head).</summary>
    public IReadOnlySet<(int Layer, int Head)>? MaskedHeads { get; set; }

    /// <summary>Tensor holding the logits of the last forward ([rows, vocab]).</summary>
    public DeviceTensor Logits => _logits ?? throw new InvalidOperationException("no forward pass has produced logits");

    /// <summary>Rows of <see cref="Logits"/> written by the last forward.</summary>
    public int LogitRows => _logitRows;

    public IKvCache CreateCache(int? capacity = null) => _ops.CreateKvCache(Model, capacity ?? Model.Config.MaxSequenceLength);

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions startPosition.. (appending to the cache) and
    /// leaves the requested logits in <see cref="Logits"/>.
    /// </summary>
    /// <param name="cancellationToken">Checked between chunks, layers and the blocks of a layer, so a long prefill stops
    /// within one matmul's time. A cancelled pass leaves the cache partly written: reset it before reuse.</param>
    public void Forward(ReadOnlySpan<int> tokens, int startPosition, IKvCache cache, LogitsMode mode, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var lease = Model.Use();
        if (tokens.Length == 0)
        {
            throw new ArgumentException("no tokens to run", nameof(tokens));
        }
        if (startPosition < 0 || startPosition + tokens.Length > Model.Config.MaxSequenceLength)
        {
            throw new ArgumentOutOfRangeException(nameof(startPosition), $"positions {startPosition}..{startPosition + tokens.Length - 1} exceed the model's context of {Model.Config.MaxSequenceLength}");
        }
        if (TokenPruning is not null && mode != LogitsMode.All && tokens.Length > _maxBatch)
        {
            throw new InvalidOperationException($"token pruning scores the whole prompt at once: {tokens.Length} tokens exceed the batch of {_maxBatch} (create the Transformer with maxBatch ≥ the prompt length)");
        }
        int vocab = Model.Config.VocabSize;
        EnsureLogits(mode == LogitsMode.All ? tokens.Length : 1);
        _logitRows = 0;
        Span<int> positionBuffer = new int[Math.Min(_maxBatch, tokens.Length)];
        for (int off = 0; off < tokens.Length; off += _maxBatch)
        {
            int n = Math.Min(_maxBatch, tokens.Length - off);
            bool lastChunk = off + n == tokens.Length;
            var chunkMode = mode == LogitsMode.All ? LogitsMode.All : lastChunk ? mode : LogitsMode.None;
            Span<int> positions = positionBuffer[..n];
            for (int i = 0; i < n; i++)
            {
                positions[i] = startPosition + off + i;
            }
            RunChunk(tokens.Slice(off, n), positions, cache, chunkMode, mode == LogitsMode.All ? off * vocab : 0, cancellationToken);
        }
        _logitRows = mode switch { LogitsMode.All => tokens.Length, LogitsMode.Last => 1, _ => 0 };
    }

    /// <summary>
    /// Runs decoder block <paramref name="layer"/> alone on hidden states [n, dim] (in place),
    /// at positions startPosition.., appending to the cache: the unit of block-wise calibration.
    /// </summary>
    public void ForwardLayer(int layer, Span<float> hidden, int startPosition, IKvCache cache)
    {
        int dim = Model.Config.Dim;
        if (hidden.Length % dim != 0 || hidden.Length / dim > _maxBatch || hidden.Length == 0)
        {
            throw new ArgumentException($"hidden has {hidden.Length} floats: need n·{dim} with 0 < n ≤ {_maxBatch}", nameof(hidden));
        }
        int n = hidden.Length / dim;
        using var lease = Model.Use();
        EnsureActivations();
        Span<int> positions = new int[n];
        for (int i = 0; i < n; i++)
        {
            positions[i] = startPosition + i;
        }
        _ops.Upload(hidden, _x!, 0);
        Observer?.OnBlockInput(layer, _x!, n);
        AttentionBlock(layer, Model.Layers[layer], n, positions, cache);
        MlpBlock(layer, Model.Layers[layer], n, prompt: false);
        _ops.Download(_x!, 0, hidden);
    }

    /// <summary>Embedding rows of <paramref name="tokens"/> as host floats [n, dim].</summary>
    public float[] Embed(ReadOnlySpan<int> tokens)
    {
        int dim = Model.Config.Dim;
        var result = new float[tokens.Length * dim];
        for (int i = 0; i < tokens.Length; i++)
        {
            Model.TokenEmbedding.CopyRow(tokens[i], result.AsSpan(i * dim, dim));
        }
        return result;
    }

    private void RunChunk(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, IKvCache cache, LogitsMode mode, int logitOffset, CancellationToken cancellationToken)
    {
        var c = Model.Config;
        int n = tokens.Length;
        EnsureActivations();
        _ops.Embed(Model.TokenEmbedding, tokens, _x!);
        CheckFinite(_x!, 0, n * c.Dim, -1, "token embedding");
        _lastAttention = null;
        var prune = mode == LogitsMode.All ? null : TokenPruning;
        int[]? prunedPositions = null;
        int[]? perLayer = null;
        if (prune is not null)
        {
            _ops.Require(BackendFeature.TokenPruning, "--token-prune");
            ValidateTokenPruning(prune);
            prunedPositions = positions.ToArray();
            perLayer = new int[Model.Layers.Count];
        }
        int stage = 0;
        for (int l = 0; l < Model.Layers.Count; l++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            while (prune is not null && stage < prune.StageLayers.Count && prune.StageLayers[stage] <= l)
            {
                stage++;
                n = PruneTokens(prune, stage, n, tokens.Length, positions[0] + tokens.Length, prunedPositions!, cache);
            }
            if (SkipLayers?.Contains(l) == true)
            {
                continue;
            }
            var layer = Model.Layers[l];
            var layerPositions = prunedPositions is null ? positions : prunedPositions.AsSpan(0, n);
            Observer?.OnBlockInput(l, _x!, n);
            AttentionBlock(l, layer, n, layerPositions, cache);
            CheckFinite(_x!, 0, n * c.Dim, l, "attention");
            cancellationToken.ThrowIfCancellationRequested();
            MlpBlock(l, layer, n, prompt: mode != LogitsMode.All && tokens.Length > 1, cancellationToken);
            CheckFinite(_x!, 0, n * c.Dim, l, "MLP");
            if (perLayer is not null)
            {
                perLayer[l] = n;
            }
        }
        if (perLayer is not null)
        {
            LastTokenPruning = new TokenPruneTrace(tokens.Length, perLayer);
        }
        Observer?.OnBlockInput(Model.Layers.Count, _x!, n);
        if (mode == LogitsMode.None)
        {
            return;
        }
        if (mode == LogitsMode.Last)
        {
            _ops.Copy(_x!, (n - 1) * c.Dim, _last!, 0, c.Dim);
            _ops.RmsNorm(_last!, Model.FinalNorm, c.NormEpsilon, 1, _xb!);
            _ops.MatMul(Model.Classifier, _xb!, 1, _logits!);
            CheckFinite(_logits!, 0, c.VocabSize, -1, "final norm and classifier");
            return;
        }
        _ops.RmsNorm(_x!, Model.FinalNorm, c.NormEpsilon, n, _xb!);
        if (logitOffset == 0)
        {
            _ops.MatMul(Model.Classifier, _xb!, n, _logits!);
        }
        else
        {
            using var tmp = _ops.Allocate(n * c.VocabSize);
            _ops.MatMul(Model.Classifier, _xb!, n, tmp);
            _ops.Copy(tmp, 0, _logits!, logitOffset, n * c.VocabSize);
        }
        CheckFinite(_logits!, logitOffset, n * c.VocabSize, -1, "final norm and classifier");
    }

    /// <summary>Stops the pass at the first block whose output holds NaN or infinity (one scan of n·dim values: negligible beside the block's matmuls).</summary>
    private void CheckFinite(DeviceTensor x, int offset, int count, int layer, string block)
    {
        if (!_ops.AllFinite(x, offset, count))
        {
            throw new NonFiniteValuesException(Model.Source, layer, block);
        }
    }

    private void AttentionBlock(int l, LlamaLayer layer, int n, ReadOnlySpan<int> positions, IKvCache cache)
    {
        var c = Model.Config;
        _ops.RmsNorm(_x!, layer.AttentionNorm, c.NormEpsilon, n, _xb!);
        Observer?.OnLinearInput(l, LinearKind.Query, _xb!, n);
        bool ownKv = layer.SharesKvWith < 0;
        if (ownKv)
        {
            _ops.MatMul([layer.Query, layer.Key, layer.Value], _xb!, n, [_q!, _k!, _v!]);
            _ops.Rope(_k!, n, layer.KvHeads, Rope, positions);
        }
        else
        {
            _ops.MatMul(layer.Query, _xb!, n, _q!);
        }
        _ops.Rope(_q!, n, layer.Heads, Rope, positions);
        _ops.Attention(cache, l, ownKv ? l : layer.SharesKvWith, ownKv, _q!, _k!, _v!, n, layer.Heads, layer.KvHeads, positions, _att!);
        _lastAttention = (ownKv ? l : layer.SharesKvWith, layer.Heads, layer.KvHeads);
        if (MaskedHeads is { Count: > 0 })
        {
            ZeroMaskedHeads(l, layer.Heads, n);
        }
        Observer?.OnLinearInput(l, LinearKind.Output, _att!, n);
        _ops.MatMul(layer.Output, _att!, n, _proj!);
        _ops.AddInPlace(_x!, _proj!, n * c.Dim);
    }

    /// <summary>
    /// One SDTP stage: scores the current rows with the previous attention layer's last-w queries,
    /// keeps ⌈r^stage · promptLength⌉ of them (sinks and recent tokens always) and compacts the
    /// residual stream and positions so later layers run only the kept rows. Returns the new n.
    /// </summary>
    private int PruneTokens(TokenPruneOptions options, int stage, int n, int promptLength, int promptEnd, int[] positions, IKvCache cache)
    {
        int target = (int)Math.Ceiling(Math.Pow(options.Ratio, stage) * promptLength - 1e-9);
        if (target >= n || _lastAttention is not { } last)
        {
            return n;
        }
        var host = cache as HostKvCache ?? throw new NotSupportedException("token pruning reads attention from the host KV cache: use the cpu or reference backend");
        int d = Model.Config.HeadDim;
        int w = Math.Min(options.Window, n);
        int qWidth = last.Heads * d;
        var queries = new float[w * qWidth];
        _ops.Download(_q!, (n - w) * qWidth, queries);
        var saliency = new float[n];
        if (options.Saliency == TokenSaliencyKind.Random)
        {
            // Not HashCode.Combine: it is randomized per process, and the baseline must repeat.
            var rng = new Random(unchecked(options.Seed * 1_000_003 + stage * 7_919 + n));
            for (int i = 0; i < n; i++)
            {
                saliency[i] = rng.NextSingle();
            }
        }
        else
        {
            TokenSaliency.Score(host, last.CacheLayer, queries, n, last.Heads, last.KvHeads, options.Saliency == TokenSaliencyKind.AttentionValueNorm, saliency);
        }
        var kept = TokenSaliency.SelectKept(saliency, positions.AsSpan(0, n), promptLength, promptEnd, target, options.SinkTokens, options.RecentFraction);
        int dim = Model.Config.Dim;
        for (int i = 0; i < kept.Length; i++)
        {
            if (kept[i] != i)
            {
                _ops.Copy(_x!, kept[i] * dim, _x!, i * dim, dim);
                positions[i] = positions[kept[i]];
            }
        }
        return kept.Length;
    }

    private void ValidateTokenPruning(TokenPruneOptions options)
    {
        options.Validated(Model.Layers.Count);
        for (int i = 0; i < Model.Layers.Count; i++)
        {
            int j = Model.Layers[i].SharesKvWith;
            if (j >= 0 && options.StageLayers.Any(s => s > j && s <= i))
            {
                throw new InvalidOperationException($"layer {i} shares the KV cache of layer {j} across token-pruning stage(s) {string.Join(",", options.StageLayers.Where(s => s > j && s <= i))}: the caches would hold different tokens");
            }
        }
    }

    private void ZeroMaskedHeads(int l, int heads, int n)
    {
        int d = Model.Config.HeadDim;
        if (_zeroHead is null)
        {
            _zeroHead = _ops.Allocate(d);
            _ops.Upload(new float[d], _zeroHead, 0);
        }
        for (int h = 0; h < heads; h++)
        {
            if (MaskedHeads!.Contains((l, h)))
            {
                for (int t = 0; t < n; t++)
                {
                    _ops.Copy(_zeroHead, 0, _att!, (t * heads + h) * d, d);
                }
            }
        }
    }

    /// <param name="prompt">The batch is a prompt whose logits are not scored (prefill before generation).</param>
    private void MlpBlock(int l, LlamaLayer layer, int n, bool prompt, CancellationToken cancellationToken = default)
    {
        var c = Model.Config;
        _ops.RmsNorm(_x!, layer.FfnNorm, c.NormEpsilon, n, _xb!);
        if (Mlp is not null && Mlp.TryRun(this, l, layer, _xb!, n, prompt, _proj!))
        {
            _ops.AddInPlace(_x!, _proj!, n * c.Dim);
            return;
        }
        Observer?.OnLinearInput(l, LinearKind.Gate, _xb!, n);
        _ops.MatMul([layer.Gate, layer.Up], _xb!, n, [_gate!, _up!]);
        _ops.SwiGlu(_gate!, _up!, n * c.HiddenDim, _h!);
        cancellationToken.ThrowIfCancellationRequested(); // the MLP's two matmuls are a prefill's longest steps
        Observer?.OnLinearInput(l, LinearKind.Down, _h!, n);
        _ops.MatMul(layer.Down, _h!, n, _proj!);
        _ops.AddInPlace(_x!, _proj!, n * c.Dim);
    }

    private void EnsureActivations()
    {
        if (_x is not null)
        {
            return;
        }
        var c = Model.Config;
        int b = _maxBatch;
        int qWidth = Model.Layers.Count == 0 ? c.Heads * c.HeadDim : Math.Max(c.Heads * c.HeadDim, Model.Layers.Max(l => l.Heads * c.HeadDim));
        int kvWidth = Math.Max(c.KvDim, Model.Layers.Count == 0 ? 0 : Model.Layers.Max(l => l.KvHeads * c.HeadDim));
        _x = _ops.Allocate(b * c.Dim);
        _xb = _ops.Allocate(b * c.Dim);
        _q = _ops.Allocate(b * qWidth);
        _k = _ops.Allocate(b * kvWidth);
        _v = _ops.Allocate(b * kvWidth);
        _att = _ops.Allocate(b * qWidth);
        _proj = _ops.Allocate(b * c.Dim);
        _gate = _ops.Allocate(b * c.HiddenDim);
        _up = _ops.Allocate(b * c.HiddenDim);
        _h = _ops.Allocate(b * c.HiddenDim);
        _last = _ops.Allocate(c.Dim);
    }

    private void EnsureLogits(int rows)
    {
        int need = rows * Model.Config.VocabSize;
        if (_logits is null || _logits.Length < need)
        {
            _logits?.Dispose();
            _logits = _ops.Allocate(need);
        }
    }

    /// <summary>Copies the logits of row <paramref name="row"/> of the last forward to the host.</summary>
    public void ReadLogits(int row, Span<float> destination) => _ops.Download(Logits, row * Model.Config.VocabSize, destination[..Model.Config.VocabSize]);

    /// <summary>Greedy token of row <paramref name="row"/> computed on the backend (no logits download).</summary>
    public int ArgMax(int row) => _ops.ArgMax(Logits, row * Model.Config.VocabSize, Model.Config.VocabSize);

    public void Dispose()
    {
        foreach (var t in new[] { _x, _xb, _q, _k, _v, _att, _proj, _gate, _up, _h, _last, _logits, _zeroHead })
        {
            t?.Dispose();
        }
    }
}

/// <summary>Tokens each layer processed in a pruned prefill of <paramref name="PromptTokens"/> tokens (0 for skipped layers).</summary>
public sealed record TokenPruneTrace(int PromptTokens, IReadOnlyList<int> TokensPerLayer)
{
    /// <summary>Σ tokens per layer / (layers · prompt tokens): the fraction of dense per-layer work done.</summary>
    public double LayerTokenFraction => TokensPerLayer.Count == 0 ? 1 : TokensPerLayer.Sum(t => (double)t) / (TokensPerLayer.Count * (double)PromptTokens);
}

/// <summary>Linear layers whose inputs an observer sees.</summary>
public enum LinearKind
{
    /// <summary>Input of Q, K and V (the normed block input).</summary>
    Query,
    /// <summary>Input of the attention output projection.</summary>
    Output,
    /// <summary>Input of gate and up (the normed MLP input).</summary>
    Gate,
    /// <summary>Input of down (the SwiGLU activation h).</summary>
    Down,
}

/// <summary>Sees activations during a forward (calibration statistics, analysis). Tensors are read through the ops.</summary>
public interface IForwardObserver
{
    /// <summary>Residual stream entering block <paramref name="layer"/> ([n, dim]); layer == Layers for the final output.</summary>
    void OnBlockInput(int layer, DeviceTensor x, int n);

    void OnLinearInput(int layer, LinearKind kind, DeviceTensor input, int n);
}

/// <summary>Replaces a block's MLP (y = W_down(silu(W_gate x) ⊙ W_up x)) for some tokens/layers.</summary>
public interface IMlpOverride
{
    /// <summary>Writes the MLP output for x[n, dim] into y[n, dim] and returns true, or returns false to run the dense MLP.</summary>
    /// <param name="prompt">The n tokens are a prompt being prefilled (no logits scored): generation's prefill, not a decode step or a scored batch.</param>
    bool TryRun(Transformer transformer, int layer, LlamaLayer weights, DeviceTensor x, int n, bool prompt, DeviceTensor y);
}
