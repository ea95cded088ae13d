using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Pruning;
using Kernels.Simd;

namespace Kernels.Runtime.Simplification;

/// <summary>Settings of <see cref="SaliencyPredictorTrainer"/>.</summary>
public sealed record SaliencyTrainingOptions
{
    /// <summary>Hidden width of each stage's MLP; null = dim / 4 (the reproduction's d → d/4 → 1), at least 8.</summary>
    public int? Hidden { get; init; }

    /// <summary>Optimizer steps per stage.</summary>
    public int Steps { get; init; } = 600;

    /// <summary>Token pairs per step (both from one calibration window: ranking is within a sequence).</summary>
    public int PairsPerStep { get; init; } = 256;

    /// <summary>Adam step size.</summary>
    public double LearningRate { get; init; } = 3e-3;

    public int Seed { get; init; } = 1;

    /// <summary>First positions never pruned at inference (left out of the pairs, as they never compete).</summary>
    public int SinkTokens { get; init; } = 4;

    /// <summary>Most recent share never pruned at inference (left out of the pairs).</summary>
    public double RecentFraction { get; init; } = 0.1;
}

/// <summary>Which queries' attention teaches the predictor.</summary>
public enum SaliencyTeacher
{
    /// <summary>t_i = Σ_{l ≥ L} Σ_heads Σ_{q ≥ i} A^l_{q,i} / (n − i): every query that sees token i, averaged (a plain sum favours early tokens for their causal count).</summary>
    AllQueries,

    /// <summary>
    /// t_i = Σ_{l ≥ L} Σ_heads Σ_{q ≥ P} A^l_{q,i} for the tokens i &lt; P before the window's last
    /// share: the queries a pruned prompt's continuation would bring, which the tokens of the prompt
    /// (only they compete) must serve.
    /// </summary>
    LaterQueries,
}

/// <summary>What one stage's training reached: pairwise ranking agreement with the teacher.</summary>
public sealed record SaliencyStageReport(int Layer, int Hidden, double FinalLoss, double TrainPairAccuracy, double HeldOutPairAccuracy, int TrainWindows, int HeldOutWindows);

/// <summary>
/// Trains SDTP's per-stage saliency predictors with the paper's pairwise logistic ranking loss
/// L = Σ log(1 + exp(−(π_i − π_j)·sign(t_i − t_j))). The paper's teacher is gradient × input of
/// the LM loss, which needs backpropagation through the model; this runtime has none, so the
/// teacher is attention saliency in the layers a pruned token would skip (stage before layer L:
/// layers l ≥ L, summed over heads), from one of two query sets (<see cref="SaliencyTeacher"/>).
/// The backbone is frozen and only forward passes are needed; the paper's Gumbel-softmax masking
/// and its CE and MSE terms are left out (they need the same backpropagation).
/// </summary>
public static class SaliencyPredictorTrainer
{
    public static string Describe(SaliencyTeacher teacher, double laterQueryFraction) => teacher == SaliencyTeacher.AllQueries
        ? "attention received from all queries in the layers the token would skip (mean over the queries that see it)"
        : $"attention received from the last {laterQueryFraction:P0} of each window's queries in the layers the token would skip (the earlier tokens compete)";

    /// <summary>One calibration window's stage inputs (normalized) and teacher saliencies; <paramref name="Length"/> tokens play the prompt whose tokens compete.</summary>
    public sealed record Window(int Length, float[][] Inputs, float[][] Teacher);

    /// <summary>First query position of the later share of an n-token window.</summary>
    public static int LaterQueriesStart(int n, double fraction) => Math.Clamp((int)Math.Round((1 - fraction) * n), 1, n - 1);

    /// <summary>Runs each window once, dense, recording the hidden states entering every stage layer and the attention each token receives.</summary>
    /// <param name="laterQueryFraction">With <see cref="SaliencyTeacher.LaterQueries"/>: the share of each window whose queries score the tokens before it (which then form the window's prompt).</param>
    public static List<Window> Collect(Transformer transformer, CalibrationSet data, IReadOnlyList<int> stageLayers, SaliencyTeacher teacher = SaliencyTeacher.LaterQueries,
        double laterQueryFraction = 0.25, CancellationToken cancellationToken = default)
    {
        if (!(laterQueryFraction > 0 && laterQueryFraction < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(laterQueryFraction), $"the later-query share {laterQueryFraction} must be in (0, 1)");
        }
        var model = transformer.Model;
        transformer.Ops.Require(BackendFeature.KvMemory, "train-sdtp (the teacher reads attention from the KV cache)");
        if (model.Layers.Any(l => l.SharesKvWith >= 0))
        {
            throw new NotSupportedException("train-sdtp reads each layer's attention from its own cache: train on the model before cross-layer KV sharing");
        }
        new TokenPruneOptions { StageLayers = stageLayers }.Validated(model.Layers.Count);
        if (data.Windows.Max(w => w.Length) > transformer.MaxBatch)
        {
            throw new ArgumentException($"calibration windows of {data.Windows.Max(w => w.Length)} tokens exceed the transformer's batch of {transformer.MaxBatch} (each window must run as one chunk)");
        }
        int dim = model.Config.Dim;
        var windows = new List<Window>();
        var plan = transformer.Plan;
        try
        {
            foreach (var tokens in data.Windows)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int n = tokens.Length;
                var capture = new StageInputs(transformer.Ops, stageLayers, n, dim);
                transformer.Plan = plan with { Observer = capture, TokenPruning = null };
                using var cache = transformer.CreateCache(n);
                var memory = (IKvMemory)cache; // KvMemory: this backend's caches are IKvMemory
                memory.Scoring = KvScoring.Attention;
                int from = teacher == SaliencyTeacher.LaterQueries ? LaterQueriesStart(n, laterQueryFraction) : 0;
                memory.ScoreFromPosition = from;
                transformer.Forward(tokens, 0, cache, LogitsMode.None);
                // received[l][i]: Σ over heads and queries of the attention token i got in layer l.
                var received = new double[model.Layers.Count][];
                for (int l = 0; l < model.Layers.Count; l++)
                {
                    received[l] = new double[n];
                    for (int g = 0; g < memory.KvHeads(l); g++)
                    {
                        var positions = memory.Positions(l, g);
                        var scores = memory.Scores(l, g);
                        for (int s = 0; s < positions.Length; s++)
                        {
                            received[l][positions[s]] += scores[s];
                        }
                    }
                }
                var targets = stageLayers.Select(layer =>
                {
                    var t = new float[n];
                    for (int i = 0; i < n; i++)
                    {
                        double sum = 0;
                        for (int l = layer; l < model.Layers.Count; l++)
                        {
                            sum += received[l][i];
                        }
                        // All queries: the mean over the n − i that see token i. Later queries: all of them see every earlier token.
                        t[i] = (float)(teacher == SaliencyTeacher.AllQueries ? sum / (n - i) : sum);
                    }
                    return t;
                }).ToArray();
                windows.Add(new Window(teacher == SaliencyTeacher.LaterQueries ? from : n, capture.Inputs, targets));
            }
        }
        finally
        {
            transformer.Plan = plan;
        }
        return windows;
    }

    /// <summary>Trains one predictor per stage on the collected windows (every 5th window held out when there are at least 5).</summary>
    /// <param name="teacher">What the windows' targets are (<see cref="Describe"/>), stored with the predictor.</param>
    public static (SaliencyPredictor Predictor, IReadOnlyList<SaliencyStageReport> Reports) Train(IReadOnlyList<Window> windows, IReadOnlyList<int> stageLayers, int dim,
        SaliencyTrainingOptions options, string teacher, CancellationToken cancellationToken = default)
    {
        if (windows.Count == 0)
        {
            throw new ArgumentException("no calibration windows to train on");
        }
        if (options.Steps < 1 || options.PairsPerStep < 1 || !(options.LearningRate > 0))
        {
            throw new ArgumentOutOfRangeException(nameof(options), "steps, pairs per step and learning rate must be positive");
        }
        int hidden = options.Hidden ?? Math.Max(8, dim / 4);
        var heldOut = windows.Count >= 5 ? windows.Where((_, i) => i % 5 == 4).ToList() : windows.ToList();
        var train = windows.Count >= 5 ? windows.Where((_, i) => i % 5 != 4).ToList() : windows.ToList();
        var stages = new List<SaliencyPredictor.Stage>();
        var reports = new List<SaliencyStageReport>();
        for (int s = 0; s < stageLayers.Count; s++)
        {
            var (stage, loss) = TrainStage(train, s, stageLayers[s], dim, hidden, options, cancellationToken);
            stages.Add(stage);
            reports.Add(new SaliencyStageReport(stageLayers[s], hidden, loss,
                PairAccuracy(stage, train, s, dim, options), PairAccuracy(stage, heldOut, s, dim, options), train.Count, windows.Count >= 5 ? heldOut.Count : 0));
        }
        return (new SaliencyPredictor(dim, stages, teacher), reports);
    }

    /// <summary>Positions that compete for a place at inference: after the sinks, before the recent share.</summary>
    private static (int From, int To) Candidates(int n, SaliencyTrainingOptions o) =>
        (Math.Min(o.SinkTokens, n), Math.Max(Math.Min(o.SinkTokens, n), n - Math.Max(1, (int)Math.Ceiling(o.RecentFraction * n))));

    private static (SaliencyPredictor.Stage Stage, double Loss) TrainStage(List<Window> train, int s, int layer, int dim, int hidden, SaliencyTrainingOptions o, CancellationToken ct)
    {
        var rng = new Random(o.Seed * 7919 + layer);
        float Normal(double std) => (float)(std * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        var w1 = Enumerable.Range(0, hidden * dim).Select(_ => Normal(Math.Sqrt(2.0 / (dim + hidden)))).ToArray();
        var b1 = new float[hidden];
        var w2 = Enumerable.Range(0, hidden).Select(_ => Normal(Math.Sqrt(1.0 / hidden))).ToArray();
        var stage = new SaliencyPredictor.Stage(layer, w1, b1, w2, 0f);
        // b₂ shifts every π alike and drops out of the ranking loss: it stays 0.
        var parameters = new[] { w1, b1, w2 };
        var adam = parameters.Select(p => (M: new float[p.Length], V: new float[p.Length])).ToArray();
        var grads = parameters.Select(p => new float[p.Length]).ToArray();
        double emaLoss = double.NaN;
        var usable = train.Where(w => Candidates(w.Length, o) is var c && c.To - c.From >= 2).ToList();
        if (usable.Count == 0)
        {
            throw new ArgumentException($"calibration windows are too short: none has two tokens between the {o.SinkTokens} sinks and the recent {o.RecentFraction:P0}");
        }
        for (int step = 1; step <= o.Steps; step++)
        {
            ct.ThrowIfCancellationRequested();
            foreach (var g in grads)
            {
                Array.Clear(g);
            }
            var window = usable[rng.Next(usable.Count)];
            var (from, to) = Candidates(window.Length, o);
            var teacher = window.Teacher[s];
            var inputs = window.Inputs[s];
            // Each token's forward once (π and the activations the backward needs), then the pair losses' dL/dπ per token, then one backward per token.
            var forward = new Dictionary<int, (float Pi, float[] Z, float[] A)>();
            var dpi = new Dictionary<int, float>();
            float Pi(int i)
            {
                if (!forward.TryGetValue(i, out var f))
                {
                    var (zi, ai) = (new float[hidden], new float[hidden]);
                    forward[i] = f = (stage.Forward(inputs.AsSpan(i * dim, dim), zi, ai), zi, ai);
                }
                return f.Pi;
            }
            double loss = 0;
            int pairs = 0;
            for (int p = 0; p < o.PairsPerStep; p++)
            {
                int i = rng.Next(from, to), j = rng.Next(from, to);
                if (teacher[i] == teacher[j])
                {
                    continue;
                }
                float y = teacher[i] > teacher[j] ? 1f : -1f;
                float margin = y * (Pi(i) - Pi(j));
                loss += Softplus(-margin);
                float g = -y * Sigmoid(-margin); // dL/dπ_i; dL/dπ_j = −g
                dpi[i] = dpi.GetValueOrDefault(i) + g;
                dpi[j] = dpi.GetValueOrDefault(j) - g;
                pairs++;
            }
            if (pairs == 0)
            {
                continue;
            }
            foreach (var (i, d) in dpi)
            {
                float gradient = d / pairs;
                var u = inputs.AsSpan(i * dim, dim);
                var (_, z, a) = forward[i];
                for (int k = 0; k < hidden; k++)
                {
                    grads[2][k] += gradient * a[k];
                    float dz = gradient * w2[k] * SaliencyPredictor.GeluDerivative(z[k]);
                    grads[1][k] += dz;
                    VectorMath.Axpy(dz, u, grads[0].AsSpan(k * dim, dim));
                }
            }
            for (int q = 0; q < parameters.Length; q++)
            {
                AdamStep(parameters[q], grads[q], adam[q].M, adam[q].V, step, (float)o.LearningRate);
            }
            double mean = loss / pairs;
            emaLoss = double.IsNaN(emaLoss) ? mean : 0.95 * emaLoss + 0.05 * mean;
        }
        return (stage, emaLoss);
    }

    /// <summary>Share of token pairs (among the candidates, ties in the teacher left out) that π orders as the teacher does: 20,000 pairs, fixed seed.</summary>
    public static double PairAccuracy(SaliencyPredictor.Stage stage, IReadOnlyList<Window> windows, int s, int dim, SaliencyTrainingOptions o)
    {
        var rng = new Random(12345);
        var z = new float[stage.Hidden];
        var a = new float[stage.Hidden];
        var scored = windows.Where(w => Candidates(w.Length, o) is var c && c.To - c.From >= 2).Select(w =>
        {
            var pi = new float[w.Length];
            for (int i = 0; i < w.Length; i++)
            {
                pi[i] = stage.Forward(w.Inputs[s].AsSpan(i * dim, dim), z, a);
            }
            return (Window: w, Pi: pi);
        }).ToList();
        if (scored.Count == 0)
        {
            return double.NaN;
        }
        int agree = 0, total = 0;
        for (int p = 0; p < 20_000; p++)
        {
            var (w, pi) = scored[rng.Next(scored.Count)];
            var (from, to) = Candidates(w.Length, o);
            int i = rng.Next(from, to), j = rng.Next(from, to);
            float ti = w.Teacher[s][i], tj = w.Teacher[s][j];
            if (ti == tj)
            {
                continue;
            }
            total++;
            agree += (ti > tj) == (pi[i] > pi[j]) ? 1 : 0;
        }
        return total == 0 ? double.NaN : agree / (double)total;
    }

    private static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

    private static double Softplus(float x) => x > 20 ? x : Math.Log(1 + Math.Exp(x));

    private static void AdamStep(float[] p, float[] g, float[] m, float[] v, int t, float lr)
    {
        const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
        float c1 = 1 - MathF.Pow(b1, t), c2 = 1 - MathF.Pow(b2, t);
        for (int i = 0; i < p.Length; i++)
        {
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
            p[i] -= lr * (m[i] / c1) / (MathF.Sqrt(v[i] / c2) + eps);
        }
    }

    /// <summary>Normalized hidden states entering each stage layer, [n, dim] per stage.</summary>
    private sealed class StageInputs(ITransformerOps ops, IReadOnlyList<int> stageLayers, int n, int dim) : IForwardObserver
    {
        public float[][] Inputs { get; } = stageLayers.Select(_ => new float[n * dim]).ToArray();

        public void OnBlockInput(int layer, DeviceTensor x, int rows)
        {
            int s = IndexOf(layer);
            if (s < 0)
            {
                return;
            }
            var raw = new float[rows * dim];
            ops.Download(x, 0, raw);
            for (int i = 0; i < rows; i++)
            {
                SaliencyPredictor.Normalize(raw.AsSpan(i * dim, dim), Inputs[s].AsSpan(i * dim, dim));
            }
        }

        public void OnLinearInput(int layer, LinearKind kind, DeviceTensor input, int rows)
        {
        }

        private int IndexOf(int layer)
        {
            for (int s = 0; s < stageLayers.Count; s++)
            {
                if (stageLayers[s] == layer)
                {
                    return s;
                }
            }
            return -1;
        }
    }
}
