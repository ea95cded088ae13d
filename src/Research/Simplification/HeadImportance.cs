using System.Numerics.Tensors;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Pruning;

namespace Kernels.Runtime.Simplification;

/// <summary>
/// Per-query-head importance from calibration text (Michel et al. 2019's cheaper proxies):
/// the mean ‖Att_h(x)·W_O^(h)‖₂ of the head's contribution to the residual stream, and the
/// perplexity increase when the head alone is masked. Scores are [layer][head].
/// </summary>
public static class HeadImportance
{
    /// <summary>Mean over calibration tokens of ‖W_O[:, head h] · att_h‖₂ for every layer and head.</summary>
    public static double[][] OutputNorm(Transformer transformer, CalibrationSet data, CancellationToken cancellationToken = default)
    {
        var model = transformer.Model;
        var observer = new OutputNormObserver(transformer);
        var previous = transformer.Plan;
        transformer.Plan = transformer.Plan with { Observer = observer };
        try
        {
            using var cache = transformer.CreateCache(data.Windows.Max(w => w.Length));
            foreach (var window in data.Windows)
            {
                cancellationToken.ThrowIfCancellationRequested();
                cache.Reset();
                transformer.Forward(window, 0, cache, LogitsMode.None);
            }
        }
        finally
        {
            transformer.Plan = previous;
        }
        return model.Layers.Select((l, i) => observer.Sums[i].Select(s => s / Math.Max(1, observer.Tokens[i])).ToArray()).ToArray();
    }

    /// <summary>Calibration perplexity with head (l, h) alone masked, minus the unmasked perplexity.</summary>
    public static double[][] PerplexityIncrease(Transformer transformer, CalibrationSet data, out double basePerplexity,
        IProgress<float>? progress = null, CancellationToken cancellationToken = default)
    {
        var model = transformer.Model;
        var previous = transformer.Plan;
        try
        {
            transformer.Plan = previous with { HeadMask = null };
            double baseline = WindowPerplexity.Evaluate(transformer, data, cancellationToken);
            int total = model.Layers.Sum(l => l.Heads), done = 0;
            var result = new double[model.Layers.Count][];
            for (int l = 0; l < model.Layers.Count; l++)
            {
                result[l] = new double[model.Layers[l].Heads];
                for (int h = 0; h < result[l].Length; h++)
                {
                    transformer.Plan = transformer.Plan with { HeadMask = new HeadMask(new HashSet<(int, int)> { (l, h) }) };
                    result[l][h] = WindowPerplexity.Evaluate(transformer, data, cancellationToken) - baseline;
                    progress?.Report(++done / (float)total);
                }
            }
            basePerplexity = baseline;
            return result;
        }
        finally
        {
            transformer.Plan = previous;
        }
    }

    /// <summary>Divides each layer's scores by their L2 norm (Michel et al.) so layers are comparable in a global ranking.</summary>
    public static double[][] NormalizePerLayer(double[][] scores) => scores.Select(layer =>
    {
        double norm = Math.Sqrt(layer.Sum(v => v * v));
        return norm > 0 ? layer.Select(v => v / norm).ToArray() : layer.ToArray();
    }).ToArray();

    private sealed class OutputNormObserver : IForwardObserver
    {
        private readonly Transformer _transformer;
        private readonly float[]?[] _outputT; // per layer W_Oᵀ [heads·headDim, dim]
        private float[] _att = Array.Empty<float>();

        public OutputNormObserver(Transformer transformer)
        {
            _transformer = transformer;
            var layers = transformer.Model.Layers;
            Sums = layers.Select(l => new double[l.Heads]).ToArray();
            Tokens = new long[layers.Count];
            _outputT = new float[layers.Count][];
        }

        public double[][] Sums { get; }
        public long[] Tokens { get; }

        public void OnBlockInput(int layer, DeviceTensor x, int n)
        {
        }

        public void OnLinearInput(int layer, LinearKind kind, DeviceTensor input, int n)
        {
            if (kind != LinearKind.Output)
            {
                return;
            }
            var l = _transformer.Model.Layers[layer];
            int d = _transformer.Model.Config.HeadDim, dim = _transformer.Model.Config.Dim, width = l.Heads * d;
            var wt = _outputT[layer] ??= Transposed(l.Output);
            if (_att.Length < n * width)
            {
                _att = new float[n * width];
            }
            _transformer.Ops.Download(input, 0, _att.AsSpan(0, n * width));
            var y = new float[dim];
            for (int t = 0; t < n; t++)
            {
                for (int h = 0; h < l.Heads; h++)
                {
                    Array.Clear(y);
                    for (int j = 0; j < d; j++)
                    {
                        int c = h * d + j;
                        TensorPrimitives.MultiplyAdd(wt.AsSpan(c * dim, dim), _att[t * width + c], y, y);
                    }
                    Sums[layer][h] += TensorPrimitives.Norm(y);
                }
            }
            Tokens[layer] += n;
        }

        private static float[] Transposed(Kernels.Simd.Matrices.WeightMatrix w)
        {
            var t = new float[w.Rows * w.Columns];
            var row = new float[w.Columns];
            for (int r = 0; r < w.Rows; r++)
            {
                w.CopyRow(r, row);
                for (int c = 0; c < w.Columns; c++)
                {
                    t[c * w.Rows + r] = row[c];
                }
            }
            return t;
        }
    }
}
