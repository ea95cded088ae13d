using System.CommandLine;
using System.Text;
using Kernels.Runtime.Chat;
using Microsoft.Extensions.AI;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary>
/// <c>kernels chat</c>: a conversation with a model through <see cref="LocalChatClient"/>. The KV
/// cache is kept between turns (only each new turn is prefilled). Reads stdin line by line when it
/// is not a terminal, so it can be scripted: one user message per line, one reply per message.
/// </summary>
internal static class ChatCommand
{
    public static Command Create()
    {
        var common = new CommonOptions();
        var run = new SessionCliOptions();
        var template = new Option<string?>("--chat-template") { Description = $"Chat format: {ChatTemplate.Names} (default: recognised from the model's tokenizer.chat_template)" };
        var system = new Option<string?>("--system") { Description = "System message that opens the conversation" };
        var temperature = new Option<float>("--temperature", "-t") { Description = "0 = greedy", DefaultValueFactory = _ => 0.8f }.InRange(0f, 100f);
        var topP = new Option<float>("--top-p", "-p") { Description = "Nucleus sampling threshold (1 = off)", DefaultValueFactory = _ => 0.95f }.InRange(0f, 1f, minExclusive: true);
        var seed = new Option<long?>("--seed", "-s") { Description = "Sampling seed (default: time)" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Most tokens per reply", DefaultValueFactory = _ => 256 }.InRange(1, int.MaxValue);
        var command = new Command("chat", "Chat with a model (interactive; reads one message per line from stdin when it is not a terminal)");
        common.AddTo(command);
        run.AddTo(command);
        command.Options.Add(template);
        command.Options.Add(system);
        command.Options.Add(temperature);
        command.Options.Add(topP);
        command.Options.Add(seed);
        command.Options.Add(maxTokens);
        command.SetAction(async (parse, cancellationToken) =>
        {
            try
            {
                using var model = common.Load(parse);
                var tokenizer = CommonOptions.LoadTokenizer(model, parse.GetValue(common.Tokenizer));
                using var ops = CommonOptions.CreateOps(parse.GetValue(common.Device)!);
                var options = new LocalChatOptions
                {
                    Template = parse.GetValue(template) is { } name ? ChatTemplate.ByName(name) : null,
                    Inference = run.Build(parse, model, maxBatch: 256, prunedBatch: model.Config.MaxSequenceLength),
                };
                using var client = new LocalChatClient(model, ops, tokenizer, options);
                Console.Error.WriteLine($"chat: {client.ModelId}, template {client.Template.Name}; /reset forgets the conversation, /exit or end of input quits");
                var messages = new List<ChatMessage>();
                if (parse.GetValue(system) is { } s)
                {
                    messages.Add(new ChatMessage(ChatRole.System, s));
                }
                var request = new ChatOptions { Temperature = parse.GetValue(temperature), TopP = parse.GetValue(topP), Seed = parse.GetValue(seed), MaxOutputTokens = parse.GetValue(maxTokens) };
                var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = true };
                bool interactive = !Console.IsInputRedirected;
                while (true)
                {
                    string? line = interactive ? AnsiConsole.Prompt(new TextPrompt<string>("[bold]>[/]").AllowEmpty()) : await Console.In.ReadLineAsync(cancellationToken);
                    if (line is null || line.Trim() == "/exit")
                    {
                        return 0;
                    }
                    if (line.Trim() == "/reset")
                    {
                        messages.RemoveAll(m => m.Role != ChatRole.System);
                        client.Reset();
                        continue;
                    }
                    if (line.Trim().Length == 0)
                    {
                        continue;
                    }
                    messages.Add(new ChatMessage(ChatRole.User, line));
                    var reply = new StringBuilder();
                    UsageDetails? usage = null;
                    await foreach (var update in client.GetStreamingResponseAsync(messages, request, cancellationToken))
                    {
                        stdout.Write(update.Text);
                        reply.Append(update.Text);
                        usage = update.Contents.OfType<UsageContent>().FirstOrDefault()?.Details ?? usage;
                    }
                    stdout.Write('\n');
                    messages.Add(new ChatMessage(ChatRole.Assistant, reply.ToString()));
                    Console.Error.WriteLine($"[{usage?.InputTokenCount} prompt tokens, {client.LastPrefillTokens} prefilled ({client.LastReusedTokens} kept from earlier turns), {usage?.OutputTokenCount} generated]");
                }
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
