using System.CommandLine;
using Kernels.Runtime.Caching;

namespace Kernels.Cli.Commands;

/// <summary>--kv-policy and budget options (generate, perplexity).</summary>
internal sealed class KvOptions
{
    public readonly Option<string> Policy = new("--kv-policy") { Description = "KV-cache eviction: vatp | vatp-scissorhands | h2o | scissorhands | streaming | none", DefaultValueFactory = _ => "none" };
    public readonly Option<string> Budget = new("--kv-budget") { Description = "KV budget per layer and KV head: fraction of the prompt (perplexity: of the context), or a token count", DefaultValueFactory = _ => "0.5" };
    public readonly Option<double> Recent = new Option<double>("--kv-recent") { Description = "Share of the budget kept as the most recent tokens (heavy hitters get the rest)", DefaultValueFactory = _ => 0.5 }.InRange(0.0, 1.0);
    public readonly Option<int> Protect = new Option<int>("--kv-protect") { Description = "VATP and vatp-scissorhands: first tokens never evicted (attention sinks)", DefaultValueFactory = _ => 20 }.InRange(0, 1 << 26);
    public readonly Option<string> Norm = new("--kv-norm") { Description = "VATP: value norm l1 | l2 | linf", DefaultValueFactory = _ => "l1" };
    public readonly Option<bool> PerQueryHead = new("--kv-per-query-head") { Description = "Score each query head of a GQA group separately; the KV head keeps the union of their choices inside its budget" };
    public readonly Option<int> Sinks = new Option<int>("--kv-sinks") { Description = "StreamingLLM: attention sinks kept", DefaultValueFactory = _ => 4 }.InRange(0, 1 << 26);

    public void AddTo(Command c)
    {
        c.Options.Add(Policy);
        c.Options.Add(Budget);
        c.Options.Add(Recent);
        c.Options.Add(Protect);
        c.Options.Add(Sinks);
        c.Options.Add(Norm);
        c.Options.Add(PerQueryHead);
    }

    private static ValueNormKind ParseNorm(string text)
    {
        try
        {
            return KvCacheOptions.ParseValueNorm(text);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"--kv-norm: {e.Message}", e);
        }
    }

    public KvCacheOptions? Get(ParseResult parse)
    {
        var kind = KvCacheOptions.ParsePolicy(parse.GetValue(Policy)!);
        if (kind == KvPolicyKind.None)
        {
            return null;
        }
        return new KvCacheOptions
        {
            Policy = kind,
            RecentFraction = parse.GetValue(Recent),
            ProtectedTokens = parse.GetValue(Protect),
            SinkTokens = parse.GetValue(Sinks),
            ValueNorm = ParseNorm(parse.GetValue(Norm)!),
            PerQueryHead = parse.GetValue(PerQueryHead),
        }.WithBudget(parse.GetValue(Budget)!, "--kv-budget");
    }
}
