namespace Kernels.Runtime.Dip;

public enum ColumnCachePolicy
{
    /// <summary>No cache: every column read comes from flash.</summary>
    None,
    Lru,
    Lfu,

    /// <summary>Oracle (next use farthest in the future); simulator only, it needs the whole mask sequence.</summary>
    Belady,
}

/// <summary>
/// Dynamic input pruning settings: overall MLP density, its split between the gate/up input and
/// the down input, and cache-aware masking (γ-penalised scores of non-resident columns).
/// </summary>
public sealed record DipOptions
{
    /// <summary>Overall MLP density (2·keep_up + keep_down)/3; 1 = dense.</summary>
    public double Keep { get; init; } = 1.0;

    /// <summary>Explicit density of the gate/up input (overrides the split of <see cref="Keep"/>).</summary>
    public double? KeepUp { get; init; }

    /// <summary>Explicit density of the down input.</summary>
    public double? KeepDown { get; init; }

    /// <summary>Score multiplier of columns not resident in DRAM (1 = plain DIP).</summary>
    public double Gamma { get; init; } = 1.0;

    /// <summary>Live cache policy for cache-aware masking (LRU or LFU).</summary>
    public ColumnCachePolicy Cache { get; init; } = ColumnCachePolicy.Lru;

    /// <summary>Resident columns per masked matrix as a fraction of its columns (the DRAM budget's share).</summary>
    public double CacheFraction { get; init; } = 0.5;

    /// <summary>Resident gate/up input columns per layer (overrides <see cref="CacheFraction"/>; the simulator's DRAM split gives it).</summary>
    public int? InputCacheColumns { get; init; }

    /// <summary>Resident down input columns per layer (overrides <see cref="CacheFraction"/>).</summary>
    public int? HiddenCacheColumns { get; init; }

    /// <summary>The highest raw scores exempt from the γ penalty.</summary>
    public int FixedTopN { get; init; }

    /// <summary>Use the masked kernels even at keep 1 (tests).</summary>
    public bool ForceMasked { get; init; }

    /// <summary>Also prune the MLP of prompt tokens during generation's prefill (default: only generated tokens and scored batches).</summary>
    public bool PrunePrompt { get; init; }

    public (double Up, double Down) Densities =>
        KeepUp is { } u && KeepDown is { } d ? (u, d) : Split(Keep);

    public bool IsDense => Densities.Up >= 1 && Densities.Down >= 1 && !ForceMasked;

    public bool CacheAware => Gamma < 1 && Cache is ColumnCachePolicy.Lru or ColumnCachePolicy.Lfu;

    /// <summary>
    /// The seed code's closed form: keep_up = σ(0.98499·logit(keep) + 0.29976),
    /// keep_down = 3·(keep − ⅔·keep_up), so that (2·keep_up + keep_down)/3 = keep.
    /// </summary>
    public static (double Up, double Down) Split(double keep)
    {
        if (keep >= 1)
        {
            return (1, 1);
        }
        if (!(keep > 0))
        {
            throw new ArgumentOutOfRangeException(nameof(keep), "keep must be in (0, 1]");
        }
        double logit = Math.Log(keep / (1 - keep));
        double up = 1 / (1 + Math.Exp(-(0.98499 * logit + 0.29976)));
        double down = 3 * (keep - 2.0 / 3.0 * up);
        return (Math.Clamp(up, 0, 1), Math.Clamp(down, 0, 1));
    }

    public static ColumnCachePolicy ParseCache(string s) => s.ToLowerInvariant() switch
    {
        "none" => ColumnCachePolicy.None,
        "lru" => ColumnCachePolicy.Lru,
        "lfu" => ColumnCachePolicy.Lfu,
        "belady" => ColumnCachePolicy.Belady,
        _ => throw new ArgumentException($"unknown cache policy '{s}' (lru, lfu, belady, none)"),
    };
}
