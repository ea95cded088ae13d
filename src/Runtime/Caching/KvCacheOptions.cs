using Kernels.Runtime.Compute;

namespace Kernels.Runtime.Caching;

public enum KvPolicyKind
{
    /// <summary>Keep everything.</summary>
    None,

    /// <summary>Heavy hitters by accumulated attention + a recent window (Zhang et al.).</summary>
    H2O,

    /// <summary>Accumulated attention × ‖v‖₁ + a recent window, first tokens protected (Guo et al.).</summary>
    Vatp,

    /// <summary>Mean attention of the last W prompt queries at prefill, then H2O-style; 10 recent tokens (Liu et al.).</summary>
    Scissorhands,

    /// <summary>k sink tokens + a recent window, no scores (Xiao et al.).</summary>
    Streaming,

    /// <summary>VATP's second setting: Scissorhands' prompt window and recent window, scored by attention × ‖v‖, first tokens protected.</summary>
    VatpScissorhands,
}

/// <summary>The value norm VATP multiplies attention by (the paper's ablation: L1 beats L2 and L∞).</summary>
public enum ValueNormKind
{
    L1,
    L2,
    Max,
}

/// <summary>
/// KV-cache budget and policy. The budget is fixed once from the prompt length (or set in
/// tokens) and never grows; it is split into heavy hitters and recent tokens.
/// </summary>
public sealed record KvCacheOptions
{
    public KvPolicyKind Policy { get; init; } = KvPolicyKind.None;

    /// <summary>Budget as a fraction of the prompt length (used when <see cref="BudgetTokens"/> is null).</summary>
    public double BudgetFraction { get; init; } = 0.5;

    /// <summary>Absolute budget in tokens per layer and KV head.</summary>
    public int? BudgetTokens { get; init; }

    /// <summary>Share of the budget given to the most recent tokens (seed default: 25% heavy + 25% recent = 0.5).</summary>
    public double RecentFraction { get; init; } = 0.5;

    /// <summary>VATP: the first tokens are never evicted (sink protection).</summary>
    public int ProtectedTokens { get; init; } = 20;

    /// <summary>StreamingLLM: attention-sink tokens kept at the start.</summary>
    public int SinkTokens { get; init; } = 4;

    /// <summary>Scissorhands: prompt queries whose attention is averaged at prefill.</summary>
    public int ScissorhandsWindow { get; init; } = 400;

    /// <summary>Scissorhands: recent tokens kept.</summary>
    public int ScissorhandsRecent { get; init; } = 10;

    /// <summary>Test hook: ‖v‖₁ forced to 1 (VATP must then equal H2O).</summary>
    public bool UnitValueNorms { get; init; }

    /// <summary>VATP: the norm of each token's value.</summary>
    public ValueNormKind ValueNorm { get; init; } = ValueNormKind.L1;

    /// <summary>
    /// Score each query head of a GQA group separately and keep the union of their choices inside
    /// the KV head's budget (each head nominates its best tokens in turn), as the references do per
    /// head on MHA models; otherwise the group's scores are summed. Equal on MHA models.
    /// </summary>
    public bool PerQueryHead { get; init; }

    /// <summary>Whether the policy accumulates attention × ‖v‖ (VATP and VATP-in-Scissorhands).</summary>
    public bool ValueAware => Policy is KvPolicyKind.Vatp or KvPolicyKind.VatpScissorhands;

    /// <summary>Refuses settings the policy would silently ignore: a value norm without a value-aware policy, per-query-head scoring without scores.</summary>
    public KvCacheOptions Validated()
    {
        if (ValueNorm != ValueNormKind.L1 && !ValueAware)
        {
            throw new ArgumentException($"the value norm ({ValueNorm}, --kv-norm) applies to vatp and vatp-scissorhands, not {PolicyName(Policy)}");
        }
        if (PerQueryHead && Policy is KvPolicyKind.None or KvPolicyKind.Streaming)
        {
            throw new ArgumentException($"per-query-head scoring (--kv-per-query-head) needs a scored policy; {PolicyName(Policy)} keeps no scores");
        }
        return this;
    }

    /// <summary>Backend features this configuration needs beyond none.</summary>
    public BackendFeature RequiredFeatures =>
        Policy == KvPolicyKind.None ? BackendFeature.None
        : BackendFeature.KvMemory
          | (Policy is KvPolicyKind.Scissorhands or KvPolicyKind.VatpScissorhands ? BackendFeature.KvScoreWindow : BackendFeature.None)
          | (PerQueryHead || ValueAware && ValueNorm != ValueNormKind.L1 ? BackendFeature.KvScoreVariants : BackendFeature.None);

    public static KvPolicyKind ParsePolicy(string s) => s.ToLowerInvariant() switch
    {
        "none" => KvPolicyKind.None,
        "h2o" => KvPolicyKind.H2O,
        "vatp" => KvPolicyKind.Vatp,
        "scissorhands" => KvPolicyKind.Scissorhands,
        "streaming" or "streamingllm" => KvPolicyKind.Streaming,
        "vatp-scissorhands" => KvPolicyKind.VatpScissorhands,
        _ => throw new ArgumentException($"unknown KV policy '{s}' (vatp, vatp-scissorhands, h2o, scissorhands, streaming, none)"),
    };

    public static ValueNormKind ParseValueNorm(string s) => s.ToLowerInvariant() switch
    {
        "l1" => ValueNormKind.L1,
        "l2" => ValueNormKind.L2,
        "max" or "linf" or "l-inf" => ValueNormKind.Max,
        _ => throw new ArgumentException($"unknown value norm '{s}' (l1, l2, linf)"),
    };

    /// <summary>The policy's name as the CLI spells it.</summary>
    public static string PolicyName(KvPolicyKind kind) => kind switch
    {
        KvPolicyKind.VatpScissorhands => "vatp-scissorhands",
        _ => kind.ToString().ToLowerInvariant(),
    };

    /// <summary>"0.5" → fraction of the prompt, "128" → tokens.</summary>
    /// <param name="source">Where the text came from (an option name), for the error message.</param>
    public KvCacheOptions WithBudget(string text, string source = "KV budget")
    {
        if (double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v))
        {
            if (v > 0 && v <= 1 && text.Contains('.') || v > 0 && v < 1)
            {
                return this with { BudgetFraction = v, BudgetTokens = null };
            }
            if (v >= 1 && v == Math.Floor(v))
            {
                return this with { BudgetTokens = (int)v };
            }
        }
        throw new FormatException($"{source}: '{text}' is not a KV budget (a fraction in (0, 1] of the prompt, or a token count)");
    }
}
