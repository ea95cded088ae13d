using Kernels.Runtime.Compute;
using Kernels.Runtime.Model;

namespace Kernels.Runtime.Inference;

/// <summary>
/// The Llama forward pass, written once against <see cref="ITransformerOps"/> as llama2.c's
/// <c>transformer()</c>: embedding, per layer RMSNorm → Q/K/V → RoPE → GQA attention with KV cache
/// → output projection → residual, RMSNorm → SwiGLU MLP → residual; final RMSNorm and classifier.
/// Batches of tokens (prefill) and single tokens (decode) take the same path. Everything beyond
/// the dense block is a hook of the immutable <see cref="Plan"/>, each called from one place.
/// </summary>
public sealed class Transformer : IDisposable
{
    private readonly ITransformerOps _ops;
    private readonly int _maxBatch;
    private ForwardBuffers? _buffers;
    private int _logitRows;
    private (int CacheLayer, int Heads, int KvHeads)? _lastAttention;

    public Transformer(LlamaModel model, ITransformerOps ops, int maxBatch = 256)
    {
        ObjectDisposedException.ThrowIf(model.IsDisposed, model);
        Model = model;
        _ops = ops;
        _maxBatch = Math.Max(1, maxBatch);
        Rope = new RopeTable(model.Config.HeadDim, model.Config.MaxSequenceLength, model.Config.RopeTheta, model.Config.RopeScaling);
    }

    public LlamaModel Model { get; }
    public ITransformerOps Ops => _ops;
    public RopeTable Rope { get; }
    public int MaxBatch => _maxBatch;

    /// <summary>The hooks of every following forward pass (MLP override, observer, layer skips, token pruning, head masks).</summary>
    public ForwardPlan Plan { get; set; } = ForwardPlan.Dense;

    /// <summary>Tokens each layer processed in the last pruned prefill (null when none ran).</summary>
    public TokenPruneTrace? LastTokenPruning { get; private set; }

    /// <summary>Tensor holding the logits of the last forward ([rows, vocab]).</summary>
    public DeviceTensor Logits => _buffers?.Logits ?? throw new InvalidOperationException("no forward pass has produced logits");

    /// <summary>Rows of <see cref="Logits"/> written by the last forward.</summary>
    public int LogitRows => _logitRows;

    public IKvCache CreateCache(int? capacity = null) => _ops.CreateKvCache(Model, capacity ?? Model.Config.MaxSequenceLength);

    private ForwardBuffers B => _buffers ??= new ForwardBuffers(_ops, Model, _maxBatch);

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
        if (Model.Config.SlidingWindow is int window && startPosition + tokens.Length > window)
        {
            throw new NotSupportedException($"{Model.Source}: attention is a sliding window of {window} tokens (Mistral); positions past {window - 1} are not supported (reached {startPosition + tokens.Length - 1})");
        }
        if (Plan.TokenPruning is not null && mode != LogitsMode.All && tokens.Length > _maxBatch)
        {
            throw new InvalidOperationException($"token pruning scores the whole prompt at once: {tokens.Length} tokens exceed the batch of {_maxBatch} (create the Transformer with maxBatch ≥ the prompt length)");
        }
        int vocab = Model.Config.VocabSize;
        B.EnsureLogits((mode == LogitsMode.All ? tokens.Length : 1) * vocab);
        Span<int> positions = new int[Math.Min(_maxBatch, tokens.Length)];
        for (int off = 0; off < tokens.Length; off += _maxBatch)
        {
            int n = Math.Min(_maxBatch, tokens.Length - off);
            var chunkMode = mode == LogitsMode.All ? LogitsMode.All : off + n == tokens.Length ? mode : LogitsMode.None;
            for (int i = 0; i < n; i++)
            {
                positions[i] = startPosition + off + i;
            }
            RunChunk(tokens.Slice(off, n), positions[..n], cache, chunkMode, mode == LogitsMode.All ? off * vocab : 0, cancellationToken);
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
        var positions = Enumerable.Range(startPosition, n).ToArray();
        _ops.Upload(hidden, B.X, 0);
        Plan.Observer?.OnBlockInput(layer, B.X, n);
        AttentionBlock(layer, Model.Layers[layer], n, positions, cache);
        MlpBlock(layer, Model.Layers[layer], n, prompt: false, default);
        _ops.Download(B.X, 0, hidden);
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
        var plan = Plan;
        int n = tokens.Length;
        _ops.Embed(Model.TokenEmbedding, tokens, B.X);
        CheckFinite(B.X, 0, n * c.Dim, -1, "token embedding");
        _lastAttention = null;
        var pruning = mode == LogitsMode.All ? null : plan.TokenPruning?.Start(this, positions, cache);
        for (int l = 0; l < Model.Layers.Count; l++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (pruning is not null)
            {
                n = pruning.BeforeLayer(l, n, _lastAttention, B.X, B.Q);
            }
            if (plan.SkipLayers.Contains(l))
            {
                continue;
            }
            var layer = Model.Layers[l];
            plan.Observer?.OnBlockInput(l, B.X, n);
            AttentionBlock(l, layer, n, pruning is null ? positions : pruning.Positions(n), cache);
            CheckFinite(B.X, 0, n * c.Dim, l, "attention");
            cancellationToken.ThrowIfCancellationRequested();
            MlpBlock(l, layer, n, prompt: mode != LogitsMode.All && tokens.Length > 1, cancellationToken);
            CheckFinite(B.X, 0, n * c.Dim, l, "MLP");
            pruning?.Ran(l, n);
        }
        if (pruning is not null)
        {
            LastTokenPruning = pruning.Trace;
        }
        plan.Observer?.OnBlockInput(Model.Layers.Count, B.X, n);
        if (mode != LogitsMode.None)
        {
            Classify(mode == LogitsMode.Last ? 1 : n, n, logitOffset);
        }
    }

    /// <summary>Final RMSNorm and classifier over the last <paramref name="rows"/> of the n rows, into the logits at <paramref name="logitOffset"/>.</summary>
    private void Classify(int rows, int n, int logitOffset)
    {
        var c = Model.Config;
        var input = B.X;
        if (rows < n)
        {
            _ops.Copy(B.X, (n - rows) * c.Dim, B.Last, 0, rows * c.Dim);
            input = B.Last;
        }
        _ops.RmsNorm(input, Model.FinalNorm, c.NormEpsilon, rows, B.Xb);
        if (logitOffset == 0)
        {
            _ops.MatMul(Model.Classifier, B.Xb, rows, B.Logits!);
        }
        else
        {
            using var tmp = _ops.Allocate(rows * c.VocabSize);
            _ops.MatMul(Model.Classifier, B.Xb, rows, tmp);
            _ops.Copy(tmp, 0, B.Logits!, logitOffset, rows * c.VocabSize);
        }
        CheckFinite(B.Logits!, logitOffset, rows * c.VocabSize, -1, "final norm and classifier");
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
        _ops.RmsNorm(B.X, layer.AttentionNorm, c.NormEpsilon, n, B.Xb);
        Plan.Observer?.OnLinearInput(l, LinearKind.Query, B.Xb, n);
        bool ownKv = layer.SharesKvWith < 0;
        if (ownKv)
        {
            _ops.MatMul([layer.Query, layer.Key, layer.Value], B.Xb, n, [B.Q, B.K, B.V]);
            _ops.AddBias(B.K, layer.KeyBias, n);
            _ops.AddBias(B.V, layer.ValueBias, n);
            _ops.Rope(B.K, n, layer.KvHeads, Rope, positions);
        }
        else
        {
            _ops.MatMul(layer.Query, B.Xb, n, B.Q);
        }
        _ops.AddBias(B.Q, layer.QueryBias, n);
        _ops.Rope(B.Q, n, layer.Heads, Rope, positions);
        int cacheLayer = ownKv ? l : layer.SharesKvWith;
        _ops.Attention(cache, l, cacheLayer, ownKv, B.Q, B.K, B.V, n, layer.Heads, layer.KvHeads, positions, B.Attention);
        _lastAttention = (cacheLayer, layer.Heads, layer.KvHeads);
        Plan.HeadMask?.Apply(_ops, B.Attention, l, layer.Heads, c.HeadDim, n);
        Plan.Observer?.OnLinearInput(l, LinearKind.Output, B.Attention, n);
        _ops.MatMul(layer.Output, B.Attention, n, B.Projection);
        _ops.AddInPlace(B.X, B.Projection, n * c.Dim);
    }

    private void MlpBlock(int l, LlamaLayer layer, int n, bool prompt, CancellationToken cancellationToken)
    {
        var c = Model.Config;
        _ops.RmsNorm(B.X, layer.FfnNorm, c.NormEpsilon, n, B.Xb);
        if (Plan.Mlp?.TryRun(this, l, layer, B.Xb, n, prompt, B.Projection) != true)
        {
            Plan.Observer?.OnLinearInput(l, LinearKind.Gate, B.Xb, n);
            _ops.MatMul([layer.Gate, layer.Up], B.Xb, n, [B.Gate, B.Up]);
            _ops.SwiGlu(B.Gate, B.Up, n * c.HiddenDim, B.H);
            cancellationToken.ThrowIfCancellationRequested(); // the MLP's two matmuls are a prefill's longest steps
            Plan.Observer?.OnLinearInput(l, LinearKind.Down, B.H, n);
            _ops.MatMul(layer.Down, B.H, n, B.Projection);
        }
        _ops.AddInPlace(B.X, B.Projection, n * c.Dim);
    }

    /// <summary>Copies the logits of row <paramref name="row"/> of the last forward to the host.</summary>
    public void ReadLogits(int row, Span<float> destination) => _ops.Download(Logits, row * Model.Config.VocabSize, destination[..Model.Config.VocabSize]);

    /// <summary>Greedy token of row <paramref name="row"/> computed on the backend (no logits download).</summary>
    public int ArgMax(int row) => _ops.ArgMax(Logits, row * Model.Config.VocabSize, Model.Config.VocabSize);

    public void Dispose() => _buffers?.Dispose();
}
