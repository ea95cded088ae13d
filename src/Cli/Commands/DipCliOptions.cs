using System.CommandLine;
using Kernels.Runtime.Dip;

namespace Kernels.Cli.Commands;

/// <summary>--dip-* options (generate, perplexity, simulate).</summary>
internal sealed class DipCliOptions
{
    public readonly Option<double?> Keep = new Option<double?>("--dip-keep") { Description = "Dynamic input pruning: overall MLP density (0..1], split into gate/up and down densities by the DIP closed form" }.InRange(0.0, 1.0, minExclusive: true);
    public readonly Option<double?> KeepUp = new Option<double?>("--dip-keep-up") { Description = "Explicit gate/up input density (with --dip-keep-down)" }.InRange(0.0, 1.0, minExclusive: true);
    public readonly Option<double?> KeepDown = new Option<double?>("--dip-keep-down") { Description = "Explicit down input density" }.InRange(0.0, 1.0, minExclusive: true);
    public readonly Option<double> Gamma = new Option<double>("--dip-gamma") { Description = "Cache-aware masking: score multiplier of non-resident columns (1 = plain DIP)", DefaultValueFactory = _ => 1.0 }.InRange(0.0, 1.0);
    public readonly Option<string> Cache = new("--dip-cache") { Description = "Resident-column policy: lru | lfu (live), belady (simulator only)", DefaultValueFactory = _ => "lru" };
    public readonly Option<double> CacheFraction = new Option<double>("--dip-cache-fraction") { Description = "Columns of each masked matrix resident in DRAM", DefaultValueFactory = _ => 0.5 }.InRange(0.0, 1.0);
    public readonly Option<int> TopN = new Option<int>("--dip-top-n") { Description = "Highest raw scores exempt from the γ penalty", DefaultValueFactory = _ => 0 }.InRange(0, 1 << 24);
    public readonly Option<bool> PrunePrompt = new("--dip-prune-prompt") { Description = "Also prune the MLP of the prompt's tokens in generate (default: the prompt is prefilled dense in one batch; generated tokens are pruned)" };

    public void AddTo(Command c)
    {
        foreach (var o in new Option[] { Keep, KeepUp, KeepDown, Gamma, Cache, CacheFraction, TopN, PrunePrompt })
        {
            c.Options.Add(o);
        }
    }

    public DipOptions? Get(ParseResult parse)
    {
        double? keep = parse.GetValue(Keep);
        double? up = parse.GetValue(KeepUp), down = parse.GetValue(KeepDown);
        if (keep is null && up is null && down is null)
        {
            return null;
        }
        if (up is null != down is null)
        {
            throw new ArgumentException("--dip-keep-up and --dip-keep-down go together");
        }
        var cache = DipOptions.ParseCache(parse.GetValue(Cache)!);
        if (cache == ColumnCachePolicy.Belady && parse.GetValue(Gamma) < 1)
        {
            throw new ArgumentException("Belady needs the future masks: it is available in `kernels simulate`, not for live cache-aware masking");
        }
        return new DipOptions
        {
            Keep = keep ?? 1.0,
            KeepUp = up,
            KeepDown = down,
            Gamma = parse.GetValue(Gamma),
            Cache = cache,
            CacheFraction = parse.GetValue(CacheFraction),
            FixedTopN = parse.GetValue(TopN),
            PrunePrompt = parse.GetValue(PrunePrompt),
        };
    }
}
