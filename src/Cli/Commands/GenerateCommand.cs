using Kernels.Runtime.Compute;
using System.CommandLine;
using System.Text;
using Kernels.Runtime.Inference;

namespace Kernels.Cli.Commands;

/// <summary><c>kernels generate</c>: text on stdout exactly as llama2.c prints it, statistics on stderr.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var common = new CommonOptions();
        var prompt = new Option<string>("--prompt", "-i") { Description = "Prompt text (BOS is prepended)", DefaultValueFactory = _ => "" };
        var steps = new Option<int>("--steps", "-n") { Description = "Positions to run, prompt included (0 = the model's context)", DefaultValueFactory = _ => 256 }.InRange(0, int.MaxValue);
        var temperature = new Option<float>("--temperature", "-t") { Description = "0 = greedy", DefaultValueFactory = _ => 1.0f }.InRange(0f, 100f);
        var topP = new Option<float>("--top-p", "-p") { Description = "Nucleus sampling threshold (1 = off)", DefaultValueFactory = _ => 0.9f }.InRange(0f, 1f, minExclusive: true);
        var seed = new Option<ulong?>("--seed", "-s") { Description = "Sampling seed (default: time)" };
        var profile = new Option<bool>("--profile") { Description = "Print on stderr where each decode step and the prompt's prefill spend their time (QKV, attention, output projection, gate/up, down, norms+RoPE, LM head, sampling, thread hand-off; GB/s per matmul class)" };
        var command = new Command("generate", "Generate text from a prompt");
        var kv = new KvOptions();
        var dip = new DipCliOptions();
        var arch = new ArchCliOptions();
        common.AddTo(command);
        kv.AddTo(command);
        dip.AddTo(command);
        arch.AddTo(command);
        command.Options.Add(prompt);
        command.Options.Add(steps);
        command.Options.Add(temperature);
        command.Options.Add(topP);
        command.Options.Add(seed);
        command.Options.Add(profile);
        command.SetAction(async (parse, cancellationToken) =>
        {
            try
            {
                using var model = common.Load(parse);
                var tokenizer = CommonOptions.LoadTokenizer(model, parse.GetValue(common.Tokenizer));
                var profiler = parse.GetValue(profile) ? new Kernels.Runtime.Profiling.ForwardProfiler() : null;
                using var ops = profiler is null ? CommonOptions.CreateOps(parse.GetValue(common.Device)!)
                    : new Kernels.Runtime.Profiling.ProfilingOps(CommonOptions.CreateOps(parse.GetValue(common.Device)!), model, profiler);
                if (dip.Get(parse) is not null)
                {
                    ops.Require(BackendFeature.DynamicInputPruning, "--dip-keep");
                }
                using var dipMlp = dip.Get(parse) is { } dipOptions ? new Kernels.Runtime.Dip.DipMlp(model, dipOptions) : null;
                arch.ApplyToModel(parse, model);
                var tokenPruning = arch.TokenPruning(parse, model);
                // Token pruning scores the whole prompt in one batch.
                using var transformer = new Transformer(model, ops, maxBatch: tokenPruning is null ? 256 : model.Config.MaxSequenceLength);
                transformer.Plan = transformer.Plan with { Mlp = dipMlp };
                transformer.Plan = transformer.Plan with { TokenPruning = tokenPruning is { } pruneOptions ? new PromptTokenPruner(pruneOptions) : null };
                if (dipMlp is not null)
                {
                    Console.Error.WriteLine($"dip: keep {dipMlp.Options.Keep:0.###} -> {dipMlp.KeepInputs} of {model.Config.Dim} inputs, {dipMlp.KeepHidden} of {model.Config.HiddenDim} intermediate per token" + (dipMlp.Options.CacheAware ? $", cache-aware gamma {dipMlp.Options.Gamma} ({dipMlp.Options.Cache}, {dipMlp.Options.CacheFraction:P0} resident)" : ""));
                }
                var generator = new TextGenerator(transformer, tokenizer) { Profiler = profiler };
                if (kv.Get(parse) is { } kvOptions)
                {
                    generator.Kv = Kernels.Runtime.Caching.Policies.KvEvictionPolicy.Create(kvOptions);
                }
                var options = new GenerationOptions
                {
                    Steps = parse.GetValue(steps),
                    Temperature = parse.GetValue(temperature),
                    TopP = parse.GetValue(topP),
                    Seed = parse.GetValue(seed) ?? (ulong)DateTime.UtcNow.Ticks,
                };
                var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = true };
                await foreach (string piece in generator.GenerateAsync(parse.GetValue(prompt) ?? "", options, cancellationToken))
                {
                    stdout.Write(piece);
                }
                stdout.Write('\n');
                var s = generator.LastStats!;
                ArchCliOptions.ReportPrefill(transformer);
                if (generator.Kv is { } controller && generator.LastCache is IKvMemory hc)
                {
                    Console.Error.WriteLine($"kv: {controller.Options.Policy} budget {controller.Budget} tokens/head ({controller.Heavy} heavy + {controller.Recent} recent), " +
                                            $"{controller.Evicted} evicted, K/V storage held {hc.BytesHeld} bytes (+{hc.StatisticsBytes} bytes of positions/scores)");
                }
                Console.Error.WriteLine($"prompt: {s.PromptTokens} tokens in {s.PrefillTime.TotalMilliseconds:F1} ms ({s.PrefillTokensPerSecond:F1} tok/s); " +
                                        $"generated: {s.GeneratedTokens} tokens, achieved tok/s: {s.DecodeTokensPerSecond:F2}");
                if (profiler is not null)
                {
                    foreach (var phase in new[] { profiler.Prefill, profiler.Decode })
                    {
                        if (phase.Steps > 0)
                        {
                            CliConsole.Err.Write(ProfileTable.Create(phase.Name, phase));
                        }
                    }
                }
                return 0;
            }
            catch (OperationCanceledException)
            {
                Console.Error.WriteLine("cancelled");
                return 130;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return CliConsole.Fail(e);
            }
        });
        return command;
    }
}
