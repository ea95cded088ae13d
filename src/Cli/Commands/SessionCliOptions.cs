using System.CommandLine;
using Kernels.Runtime.Model;
using Kernels.Runtime.Session;

namespace Kernels.Cli.Commands;

/// <summary>
/// The options that shape an inference session (--kv-*, --dip-*, --kv-share, --token-prune*),
/// turned into one <see cref="InferenceOptions"/> record the same way for every command that runs a model.
/// </summary>
internal sealed class SessionCliOptions
{
    public readonly KvOptions Kv = new();
    public readonly DipCliOptions Dip = new();
    public readonly ArchCliOptions Arch = new();

    public void AddTo(Command command)
    {
        Kv.AddTo(command);
        Dip.AddTo(command);
        Arch.AddTo(command);
    }

    /// <summary>
    /// Applies --kv-share to the model and returns the session options; <paramref name="maxBatch"/>
    /// is the prefill chunk (token pruning needs <paramref name="prunedBatch"/>: the whole prompt).
    /// </summary>
    public InferenceOptions Build(ParseResult parse, LlamaModel model, int maxBatch, int prunedBatch, int? cacheCapacity = null)
    {
        Arch.ApplyToModel(parse, model);
        var tokenPruning = Arch.TokenPruning(parse, model);
        return new InferenceOptions
        {
            MaxBatch = tokenPruning is null ? maxBatch : prunedBatch,
            CacheCapacity = cacheCapacity,
            Kv = Kv.Get(parse),
            Dip = Dip.Get(parse),
            TokenPruning = tokenPruning,
        };
    }

    /// <summary>One line on stderr for what DIP keeps (when it runs).</summary>
    public static void Report(InferenceSession session)
    {
        if (session.Dip is { } dip)
        {
            var c = session.Model.Config;
            Console.Error.WriteLine($"dip: keep {dip.Options.Keep:0.###} -> {dip.KeepInputs} of {c.Dim} inputs, {dip.KeepHidden} of {c.HiddenDim} intermediate per token" +
                                    (dip.Options.CacheAware ? $", cache-aware gamma {dip.Options.Gamma} ({dip.Options.Cache}, {dip.Options.CacheFraction:P0} resident)" : ""));
        }
    }
}
