using Kernels.Runtime.Compute;
using System.CommandLine;
using System.Text;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Session;

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
        var run = new SessionCliOptions();
        common.AddTo(command);
        run.AddTo(command);
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
                // Token pruning scores the whole prompt in one batch.
                using var session = InferenceSession.Create(model, ops, run.Build(parse, model, maxBatch: 256, prunedBatch: model.Config.MaxSequenceLength));
                SessionCliOptions.Report(session);
                var generator = new TextGenerator(session, tokenizer) { Profiler = profiler };
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
                ArchCliOptions.ReportPrefill(session.Transformer);
                if (session.Policy is { } policy && session.Options.Kv is not null)
                {
                    Console.Error.WriteLine($"kv: {policy.Options.Policy} budget {policy.Budget} tokens/head ({policy.Heavy} heavy + {policy.Recent} recent), " +
                                            $"{policy.Evicted} evicted, K/V storage held {session.CacheBytes.KvBytes} bytes (+{session.CacheBytes.StatisticsBytes} bytes of positions/scores)");
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
