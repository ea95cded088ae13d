using System.CommandLine;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;
using Kernels.Runtime.Simplification;

namespace Kernels.Cli.Commands;

/// <summary>--kv-share and --token-prune* options (generate, perplexity; bench has its own sweep forms).</summary>
internal sealed class ArchCliOptions
{
    public readonly Option<string?> KvShare = new("--kv-share") { Description = "Cross-layer KV sharing: every:S (CLA-style) or layer:source pairs such as 3:1,4:2 (`kernels analyze kv-share` finds pairs)" };
    public readonly Option<double?> TokenPrune = new Option<double?>("--token-prune") { Description = "SDTP token pruning of the prompt: per-stage keep ratio r (0.9 = the paper's; cumulative keep r^stages)" }.InRange(0.0, 1.0, minExclusive: true);
    public readonly Option<string?> TokenPruneLayers = new("--token-prune-layers") { Description = "Stage layers (default: every 3 layers from layer 4; every layer from 1 in models under 8 layers)" };
    public readonly Option<int> TokenPruneWindow = new Option<int>("--token-prune-window") { Description = "Last prompt queries whose attention scores the tokens", DefaultValueFactory = _ => 32 }.InRange(1, 1 << 20);
    public readonly Option<string> TokenPruneSaliency = new("--token-prune-saliency") { Description = "attention (received from the last prompt queries) | attention-vnorm (x ‖v‖₁) | predictor (SDTP's trained MLP, with --token-prune-predictor) | random (control)", DefaultValueFactory = _ => "attention" };
    public readonly Option<string?> TokenPrunePredictor = new("--token-prune-predictor") { Description = "Saliency predictor GGUF written by `kernels train-sdtp` (for --token-prune-saliency predictor; its stages are the default stage layers)" };

    public void AddTo(Command c)
    {
        foreach (var o in new Option[] { KvShare, TokenPrune, TokenPruneLayers, TokenPruneWindow, TokenPruneSaliency, TokenPrunePredictor })
        {
            c.Options.Add(o);
        }
    }

    /// <summary>Applies --kv-share to the model (before a transformer is built) and reports it.</summary>
    public void ApplyToModel(ParseResult parse, LlamaModel model)
    {
        if (parse.GetValue(KvShare) is { } spec)
        {
            var shares = KvSharer.Parse(spec, model.Layers.Count);
            KvSharer.Apply(model, shares);
            Console.Error.WriteLine($"kv-share: {shares.Count} of {model.Layers.Count} layers read another layer's cache ({string.Join(", ", shares.OrderBy(x => x.Key).Select(x => $"{x.Key}<-{x.Value}"))})");
        }
    }

    /// <summary>The token-pruning options, or null.</summary>
    public TokenPruneOptions? TokenPruning(ParseResult parse, LlamaModel model)
    {
        if (parse.GetValue(TokenPrune) is not { } ratio)
        {
            return null;
        }
        var saliency = ParseSaliency(parse.GetValue(TokenPruneSaliency)!);
        var predictorPath = parse.GetValue(TokenPrunePredictor);
        if (predictorPath is not null && saliency != TokenSaliencyKind.Predictor)
        {
            throw new ArgumentException($"--token-prune-predictor is used only with --token-prune-saliency predictor (got {parse.GetValue(TokenPruneSaliency)})");
        }
        var predictor = predictorPath is null ? null : SaliencyPredictor.Load(predictorPath);
        var o = TokenPruneOptions.Parse(ratio.ToString(System.Globalization.CultureInfo.InvariantCulture), parse.GetValue(TokenPruneLayers), model.Layers.Count,
            parse.GetValue(TokenPruneWindow), saliency, predictor);
        predictor?.Validate(model, o.StageLayers);
        Console.Error.WriteLine($"token-prune: r {o.Ratio:0.###} at layers {string.Join(",", o.StageLayers)} -> cumulative keep {o.FinalKeep:F3}, window {o.Window}, saliency {o.Saliency}");
        return o;
    }

    public static TokenSaliencyKind ParseSaliency(string s) => s.ToLowerInvariant() switch
    {
        "attention" => TokenSaliencyKind.Attention,
        "attention-vnorm" => TokenSaliencyKind.AttentionValueNorm,
        "random" => TokenSaliencyKind.Random,
        "predictor" => TokenSaliencyKind.Predictor,
        _ => throw new ArgumentException($"unknown --token-prune-saliency '{s}' (attention, attention-vnorm, predictor, random)"),
    };

    /// <summary>Reports what a pruned prefill did.</summary>
    public static void ReportPrefill(Transformer transformer)
    {
        if (transformer.LastTokenPruning is { } trace)
        {
            Console.Error.WriteLine($"token-prune: {trace.PromptTokens} prompt tokens, per layer {string.Join(",", trace.TokensPerLayer)} ({trace.LayerTokenFraction:P0} of dense layer-token work)");
        }
    }
}
