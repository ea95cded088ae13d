using System.Globalization;

namespace Kernels.Runtime.Simplification;

/// <summary>
/// SDTP-style token pruning during prefill (Tao et al., arXiv 2504.04514) with the training-free
/// saliency proxy: at each stage layer the prompt tokens are scored by the attention the last
/// <see cref="Window"/> prompt queries of the previous layer give them (mean over heads,
/// optionally × ‖v‖₁ as in VATP); the lowest-scoring ones are dropped and skip every later layer.
/// Stage s keeps ⌈r^s · n⌉ of the n prompt tokens; the first <see cref="SinkTokens"/> positions
/// and the most recent <see cref="RecentFraction"/> of the prompt are always kept.
/// </summary>
public sealed record TokenPruneOptions
{
    /// <summary>Per-stage keep ratio r (cumulative keep after stage s is r^s).</summary>
    public double Ratio { get; init; } = 0.9;

    /// <summary>Layers before which a stage prunes (ascending, ≥ 1: layer 0 has no attention to score with).</summary>
    public required IReadOnlyList<int> StageLayers { get; init; }

    public int SinkTokens { get; init; } = 4;

    public double RecentFraction { get; init; } = 0.1;

    /// <summary>Number of last prompt queries whose attention scores the tokens (SnapKV-style observation window).</summary>
    public int Window { get; init; } = 32;

    /// <summary>How tokens are scored.</summary>
    public TokenSaliencyKind Saliency { get; init; } = TokenSaliencyKind.Attention;

    /// <summary>The trained predictor <see cref="TokenSaliencyKind.Predictor"/> scores with (one stage per stage layer).</summary>
    public SaliencyPredictor? Predictor { get; init; }

    /// <summary>Seed of <see cref="TokenSaliencyKind.Random"/>.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Cumulative keep ratio after the last stage.</summary>
    public double FinalKeep => Math.Pow(Ratio, StageLayers.Count);

    /// <summary>
    /// The paper's schedule scaled to a model: a stage every 3 layers starting at layer 4 (4, 7, …),
    /// or every layer from 1 when the model has fewer than 8 layers (too shallow for the spacing).
    /// </summary>
    public static IReadOnlyList<int> DefaultStages(int layers) =>
        layers < 8 ? Enumerable.Range(1, Math.Max(0, layers - 1)).ToArray()
                   : Enumerable.Range(0, layers).Where(l => l >= 4 && (l - 4) % 3 == 0).ToArray();

    /// <summary>The per-stage ratio r with r^stages = <paramref name="finalKeep"/>.</summary>
    public static double RatioForFinalKeep(double finalKeep, int stages) => stages == 0 ? 1 : Math.Pow(finalKeep, 1.0 / stages);

    /// <summary>Checks the options against a model with <paramref name="layers"/> layers.</summary>
    public TokenPruneOptions Validated(int layers)
    {
        if (!(Ratio > 0 && Ratio <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(Ratio), $"token-prune ratio {Ratio} must be in (0, 1]");
        }
        if (SinkTokens < 0 || !(RecentFraction >= 0 && RecentFraction <= 1) || Window < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Window), "sink tokens ≥ 0, recent fraction in [0, 1] and window ≥ 1 are required");
        }
        if (Saliency == TokenSaliencyKind.Predictor && Predictor is null)
        {
            throw new ArgumentException("--token-prune-saliency predictor needs a trained predictor (--token-prune-predictor FILE, written by `kernels train-sdtp`)");
        }
        int previous = 0;
        foreach (int l in StageLayers)
        {
            if (l <= previous || l >= layers)
            {
                throw new ArgumentOutOfRangeException(nameof(StageLayers), $"token-prune stage layers must be ascending within 1..{layers - 1} (got {string.Join(",", StageLayers)})");
            }
            previous = l;
        }
        return this;
    }

    /// <summary>"4,7,10" → [4, 7, 10]; anything else is an <see cref="ArgumentException"/> naming <paramref name="option"/>.</summary>
    public static int[] ParseLayers(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0)
        {
            throw new ArgumentException($"{option}: '{text}' lists no layer (expected e.g. 4,7,10)");
        }
        return parts.Select(p => int.TryParse(p, NumberStyles.Integer, CultureInfo.InvariantCulture, out int layer) ? layer
            : throw new ArgumentException($"{option}: '{p}' is not a layer index (expected e.g. 4,7,10)")).ToArray();
    }

    /// <summary>Parses "--token-prune 0.9" plus an optional "4,7,10" stage list (default <see cref="DefaultStages"/>).</summary>
    /// <remarks>With a <paramref name="predictor"/> and no stage list, the stages are the predictor's.</remarks>
    public static TokenPruneOptions Parse(string ratio, string? stages, int layers, int window = 32, TokenSaliencyKind saliency = TokenSaliencyKind.Attention,
        SaliencyPredictor? predictor = null) => new TokenPruneOptions
    {
        Ratio = double.Parse(ratio, CultureInfo.InvariantCulture),
        StageLayers = !string.IsNullOrWhiteSpace(stages) ? ParseLayers(stages, "--token-prune-layers")
            : predictor is not null && saliency == TokenSaliencyKind.Predictor ? predictor.StageLayers : DefaultStages(layers),
        Window = window,
        Saliency = saliency,
        Predictor = predictor,
    }.Validated(layers);
}

/// <summary>Token saliency for SDTP stages.</summary>
public enum TokenSaliencyKind
{
    /// <summary>Attention received from the last w prompt queries (mean over heads).</summary>
    Attention,

    /// <summary>Attention received × ‖v‖₁ (VATP-style).</summary>
    AttentionValueNorm,

    /// <summary>Uniformly random scores (control: what the sink/recent rule alone achieves).</summary>
    Random,

    /// <summary>SDTP's learned predictor: a small MLP per stage on each token's hidden state (<see cref="SaliencyPredictor"/>).</summary>
    Predictor,
}
