using System.Diagnostics;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;

namespace Kernels.Runtime.Pruning;

/// <summary>One pruned linear: name, shape, zeros after pruning.</summary>
public sealed record PrunedLinear(string Name, int Rows, int Columns, long Zeros)
{
    public double Sparsity => (double)Zeros / ((long)Rows * Columns);
}

public sealed record PruneResult(PruneSpec Spec, IReadOnlyList<PrunedLinear> Linears, TimeSpan Elapsed, int CalibrationTokens);

/// <summary>
/// The sequential block-wise pruning pipeline shared by Wanda, SparseGPT and DaSS: capture the
/// inputs of block 0 for every calibration window; then for each block (a) run the DENSE block
/// with statistics hooks on each linear's input, (b) prune the block's target linears from those
/// statistics, (c) re-run the now pruned block to produce the next block's inputs.
/// </summary>
public static class SequentialPruner
{
    public static PruneResult Prune(LlamaModel model, CalibrationSet? calibration, PruneSpec spec, IProgress<float>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        bool needsData = spec.Method != PruneMethod.Magnitude;
        if (needsData && calibration is null)
        {
            throw new ArgumentException($"{spec.Method} needs calibration data");
        }
        if (spec.Sparsity.Pattern is { } pat && !pat.IsSupported)
        {
            throw new NotSupportedException($"pattern {pat} is not supported");
        }
        var pruned = new List<PrunedLinear>();
        int dim = model.Config.Dim;
        int maxLen = calibration?.Windows.Max(w => w.Length) ?? 1;
        using var ops = new HostOps();
        using var transformer = new Transformer(model, ops, maxBatch: maxLen);
        using var cache = transformer.CreateCache(maxLen);
        var hidden = needsData ? calibration!.Windows.Select(w => transformer.Embed(w)).ToList() : new List<float[]>();
        var observer = new StatisticsObserver(transformer.Ops, spec.Method == PruneMethod.SparseGpt);
        for (int l = 0; l < model.Layers.Count; l++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var layer = model.Layers[l];
            if (needsData)
            {
                // (a) statistics from the dense block.
                observer.Begin(l, model);
                transformer.Plan = transformer.Plan with { Observer = observer };
                foreach (var h in hidden)
                {
                    cache.Reset();
                    var copy = (float[])h.Clone();
                    transformer.ForwardLayer(l, copy, 0, cache);
                }
                transformer.Plan = transformer.Plan with { Observer = null };
            }
            // (b) prune.
            PruneLayer(l, layer, observer, spec, pruned);
            if (needsData)
            {
                // (c) pruned block outputs feed the next block.
                foreach (var h in hidden)
                {
                    cache.Reset();
                    transformer.ForwardLayer(l, h, 0, cache);
                }
            }
            progress?.Report((l + 1f) / model.Layers.Count);
        }
        model.Revalidate();
        return new PruneResult(spec, pruned, clock.Elapsed, calibration?.Tokens ?? 0);
    }

    private static void PruneLayer(int l, LlamaLayer layer, StatisticsObserver stats, PruneSpec spec, List<PrunedLinear> log)
    {
        bool all = spec.Scope == PruneScope.All;
        if (all)
        {
            layer.Query = PruneLinear(layer.Query, $"blk.{l}.attn_q", LinearKind.Query, stats, spec, log);
            layer.Key = PruneLinear(layer.Key, $"blk.{l}.attn_k", LinearKind.Query, stats, spec, log);
            layer.Value = PruneLinear(layer.Value, $"blk.{l}.attn_v", LinearKind.Query, stats, spec, log);
            layer.Output = PruneLinear(layer.Output, $"blk.{l}.attn_output", LinearKind.Output, stats, spec, log);
        }
        layer.Gate = PruneLinear(layer.Gate, $"blk.{l}.ffn_gate", LinearKind.Gate, stats, spec, log, gateOrUp: true);
        layer.Up = PruneLinear(layer.Up, $"blk.{l}.ffn_up", LinearKind.Gate, stats, spec, log, gateOrUp: true);
        layer.Down = PruneLinear(layer.Down, $"blk.{l}.ffn_down", LinearKind.Down, stats, spec, log);
    }

    private static WeightMatrix PruneLinear(WeightMatrix m, string name, LinearKind input, StatisticsObserver stats, PruneSpec spec,
        List<PrunedLinear> log, bool gateOrUp = false)
    {
        int rows = m.Rows, cols = m.Columns;
        float[] w = m.ToDenseArray();
        var sp = spec.Sparsity;
        switch (spec.Method)
        {
            case PruneMethod.SparseGpt:
                SparseGpt.Prune(w, rows, cols, stats.Get(input).Hessian(), sp, spec.BlockSize, spec.PercentDamp);
                break;
            case PruneMethod.Dass when gateOrUp:
            {
                // |W_ij| · ‖h_i‖^α, compared within each input column, groups of M rows (intermediate neurons).
                var h = stats.Get(LinearKind.Down);
                var scores = new float[w.Length];
                for (int i = 0; i < rows; i++)
                {
                    float scale = (float)Math.Pow(h.Norm(i), spec.Alpha);
                    for (int j = 0; j < cols; j++)
                    {
                        scores[(long)i * cols + j] = MathF.Abs(w[(long)i * cols + j]) * scale;
                    }
                }
                PruningMasks.Apply(w, sp.Pattern is { } p ? PruningMasks.NmAlongColumns(scores, rows, cols, p) : PruningMasks.UnstructuredAlongColumns(scores, rows, cols, sp.Ratio));
                break;
            }
            default:
            {
                // Magnitude: |W|. Wanda, and DaSS's down_proj (and its attention linears under --scope all): |W_ij| · ‖X_j‖.
                var scores = new float[w.Length];
                InputStatistics? x = spec.Method == PruneMethod.Magnitude ? null : stats.Get(input);
                for (int i = 0; i < rows; i++)
                {
                    for (int j = 0; j < cols; j++)
                    {
                        scores[(long)i * cols + j] = MathF.Abs(w[(long)i * cols + j]) * (x is null ? 1f : (float)x.Norm(j));
                    }
                }
                PruningMasks.Apply(w, sp.Pattern is { } p ? PruningMasks.NmAlongRows(scores, rows, cols, p) : PruningMasks.UnstructuredAlongRows(scores, rows, cols, sp.Ratio));
                break;
            }
        }
        long zeros = w.LongCount(v => v == 0f);
        log.Add(new PrunedLinear(name, rows, cols, zeros));
        var type = m is DenseMatrix d ? d.ElementType : ElementType.F32;
        var result = DenseMatrix.FromSingle(m.Name, rows, cols, w, type);
        m.Dispose();
        return result;
    }

    /// <summary>Collects input statistics of one layer's linears during step (a).</summary>
    private sealed class StatisticsObserver(Compute.ITransformerOps ops, bool hessian) : IForwardObserver
    {
        private readonly Dictionary<LinearKind, InputStatistics> _stats = new();
        private float[] _input = Array.Empty<float>();
        private int _layer = -1;

        public void Begin(int layer, LlamaModel model)
        {
            _layer = layer;
            _stats.Clear();
            var l = model.Layers[layer];
            var c = model.Config;
            _stats[LinearKind.Query] = new InputStatistics(c.Dim, hessian);
            _stats[LinearKind.Output] = new InputStatistics(l.Heads * c.HeadDim, hessian);
            _stats[LinearKind.Gate] = new InputStatistics(c.Dim, hessian);
            _stats[LinearKind.Down] = new InputStatistics(c.HiddenDim, hessian);
        }

        public InputStatistics Get(LinearKind kind) =>
            _stats.TryGetValue(kind, out var s) ? s : throw new InvalidOperationException($"no statistics for {kind} input (calibration did not run)");

        public void OnBlockInput(int layer, Compute.DeviceTensor x, int n)
        {
        }

        public void OnLinearInput(int layer, LinearKind kind, Compute.DeviceTensor input, int n)
        {
            if (layer == _layer && _stats.TryGetValue(kind, out var s))
            {
                // Read through the backend (a host copy), as every observer does.
                int count = n * s.Dimension;
                if (_input.Length < count)
                {
                    _input = new float[count];
                }
                ops.Download(input, 0, _input.AsSpan(0, count));
                s.Add(_input.AsSpan(0, count), n);
            }
        }
    }
}
