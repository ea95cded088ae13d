using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;
using Kernels.Simd;
using Kernels.Simd.Matrices;

namespace Kernels.Runtime.Dip;

/// <summary>The columns one token read in one layer: inputs of gate/up, inputs of down.</summary>
public sealed record TokenLayerMask(int[] InputColumns, int[] HiddenColumns);

/// <summary>
/// Dynamic input pruning (DIP) as an MLP override of the forward pass: per token, keep the
/// top-k |x| MLP inputs (read only those columns of gate and up), then the top-k |h| intermediate
/// features (read only those columns of down); with cache-aware masking, scores of columns not
/// resident in the simulated DRAM are multiplied by γ before the top-k. Every token of a batch is
/// masked on its own (perplexity evaluates exactly what decoding would compute).
/// </summary>
public sealed class DipMlp : IMlpOverride, IDisposable
{
    private readonly LlamaModel _model;
    private readonly ITransformerOps _ops;
    private readonly DipOptions _options;
    private readonly ColumnCache?[] _inputCaches, _hiddenCaches;
    private readonly float[] _scores;
    private readonly int[] _scratch;
    private DeviceTensor? _hidden;
    private int[]? _inputs, _hiddenColumns;

    /// <param name="ops">The backend the forward pass runs on: it holds the column-major weights and runs the masked kernels.</param>
    public DipMlp(LlamaModel model, ITransformerOps ops, DipOptions options)
    {
        _model = model;
        _ops = ops;
        _options = options;
        _inputCaches = new ColumnCache?[model.Layers.Count];
        _hiddenCaches = new ColumnCache?[model.Layers.Count];
        var (up, down) = options.Densities;
        KeepInputs = Math.Max(1, (int)Math.Floor(up * model.Config.Dim));
        KeepHidden = Math.Max(1, (int)Math.Floor(down * model.Config.HiddenDim));
        // Scratch reused across calls (decode runs this once per layer and token).
        _scores = new float[Math.Max(model.Config.Dim, model.Config.HiddenDim)];
        _scratch = new int[_scores.Length];
        if (!options.IsDense)
        {
            ops.Require(BackendFeature.DynamicInputPruning, "dynamic input pruning");
            // Column-major copies built up front: building one lazily put seconds into the first decode step.
            foreach (var layer in model.Layers)
            {
                ops.PrepareMaskedMlp(layer);
            }
        }
        if (options.CacheAware)
        {
            for (int l = 0; l < _inputCaches.Length; l++)
            {
                _inputCaches[l] = new ColumnCache(model.Config.Dim, options.InputCacheColumns ?? (int)(options.CacheFraction * model.Config.Dim), options.Cache);
                _hiddenCaches[l] = new ColumnCache(model.Config.HiddenDim, options.HiddenCacheColumns ?? (int)(options.CacheFraction * model.Config.HiddenDim), options.Cache);
            }
        }
    }

    public DipOptions Options => _options;

    /// <summary>k_in: MLP inputs kept per token.</summary>
    public int KeepInputs { get; }

    /// <summary>k_ff: intermediate features kept per token.</summary>
    public int KeepHidden { get; }

    /// <summary>When set, every token's masks are appended: Masks[token][layer].</summary>
    public List<TokenLayerMask[]>? Masks { get; set; }

    /// <summary>Indices into <see cref="Masks"/> where a sequence starts (after <see cref="StartSequence"/>); the first is 0.</summary>
    public List<int> SequenceStarts { get; } = new();

    /// <summary>
    /// A new sequence: the column caches start empty, as the reference evaluates each sequence on its
    /// own, and the masks recorded from here on are marked as a new sequence.
    /// </summary>
    public void StartSequence()
    {
        foreach (var c in _inputCaches.Concat(_hiddenCaches))
        {
            c?.Reset();
        }
        if (Masks is not null && (SequenceStarts.Count == 0 || SequenceStarts[^1] != Masks.Count))
        {
            SequenceStarts.Add(Masks.Count);
        }
    }

    /// <summary>Cache hits and mask sizes seen so far (cache-aware runs): hit rate = Hits / Reads.</summary>
    public long Hits { get; private set; }

    public long Reads { get; private set; }

    /// <remarks>
    /// A prompt runs the dense MLP unless <see cref="DipOptions.PrunePrompt"/>: DIP prunes the MLP
    /// of generated tokens (the paper's setting), and the per-token masked kernels would turn
    /// the prompt's one batched GEMM into a GEMV per token (7-8x slower prompts were measured).
    /// Decode steps and scored batches (perplexity) are pruned token by token.
    /// The masks are chosen on the host from a copy of x and h (the cache-aware scores need the
    /// host-side column caches), so every backend prunes exactly the same columns; a device
    /// backend pays two small downloads per token and layer for it.
    /// </remarks>
    public bool TryRun(Transformer transformer, int layer, LlamaLayer weights, DeviceTensor x, int n, bool prompt, DeviceTensor y)
    {
        if (_options.IsDense || prompt && !_options.PrunePrompt)
        {
            return false;
        }
        if (!ReferenceEquals(transformer.Ops, _ops))
        {
            throw new ArgumentException($"this DIP MLP was built for the {_ops.Name} backend, not {transformer.Ops.Name}", nameof(transformer));
        }
        int dim = _model.Config.Dim, hidden = _model.Config.HiddenDim;
        var h = _hidden ??= _ops.Allocate(hidden);
        for (int t = 0; t < n; t++)
        {
            // Recorded masks keep their arrays; otherwise the selections are reused too.
            var inputs = Masks is null ? _inputs ??= new int[KeepInputs] : new int[KeepInputs];
            _ops.Download(x, t * dim, _scores.AsSpan(0, dim));
            using (Profiling.ForwardProfiler.Time(Profiling.ProfilePart.GateUp))
            {
                Select(_scores.AsSpan(0, dim), _inputCaches[layer], inputs);
            }
            _ops.MaskedGateUp(weights, x, t * dim, inputs, h);
            var hiddenColumns = Masks is null ? _hiddenColumns ??= new int[KeepHidden] : new int[KeepHidden];
            _ops.Download(h, 0, _scores.AsSpan(0, hidden));
            using (Profiling.ForwardProfiler.Time(Profiling.ProfilePart.Down))
            {
                Select(_scores.AsSpan(0, hidden), _hiddenCaches[layer], hiddenColumns);
            }
            _ops.MaskedDown(weights, h, hiddenColumns, y, t * dim);
            if (_options.CacheAware)
            {
                Hits += _inputCaches[layer]!.Hits(inputs) * 2L + _hiddenCaches[layer]!.Hits(hiddenColumns);
                Reads += inputs.Length * 2L + hiddenColumns.Length;
                _inputCaches[layer]!.Update(inputs);
                _hiddenCaches[layer]!.Update(hiddenColumns);
            }
            if (Masks is not null)
            {
                if (layer == 0)
                {
                    Masks.Add(new TokenLayerMask[_model.Layers.Count]);
                }
                // Layer 0 appends each token's entry as it goes; later layers find all n entries of the batch in place.
                Masks[layer == 0 ? Masks.Count - 1 : Masks.Count - n + t][layer] = new TokenLayerMask(inputs, hiddenColumns);
            }
        }
        return true;
    }

    /// <summary>
    /// Top-k of |v| (v is overwritten with the scores), with non-resident columns' scores
    /// multiplied by γ (except the fixed top-n).
    /// </summary>
    private void Select(Span<float> v, ColumnCache? cache, int[] chosen)
    {
        for (int i = 0; i < v.Length; i++)
        {
            v[i] = MathF.Abs(v[i]);
        }
        if (cache is not null)
        {
            int exempt = _options.FixedTopN;
            var top = exempt > 0 ? new int[exempt] : Array.Empty<int>();
            if (exempt > 0)
            {
                TopK.Select(v, Math.Min(exempt, v.Length), top, _scratch);
            }
            float gamma = (float)_options.Gamma;
            for (int i = 0; i < v.Length; i++)
            {
                if (!cache.IsResident(i) && (exempt == 0 || Array.BinarySearch(top, i) < 0))
                {
                    v[i] *= gamma;
                }
            }
        }
        TopK.Select(v, chosen.Length, chosen, _scratch);
    }

    public void Dispose() => _hidden?.Dispose();
}
