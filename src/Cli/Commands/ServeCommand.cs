using System.CommandLine;
using Kernels.Runtime.Chat;
using Kernels.Server;
using Microsoft.Extensions.Hosting;

namespace Kernels.Cli.Commands;

/// <summary><c>kernels serve</c>: the OpenAI-compatible local server (<see cref="OpenAiServer"/>) over one model.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var common = new CommonOptions();
        var run = new SessionCliOptions();
        var host = new Option<string>("--host") { Description = "Address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port (0: any free port, printed at start)", DefaultValueFactory = _ => 8080 }.InRange(0, 65535);
        var parallel = new Option<int>("--parallel") { Description = "Requests served at once, each with its own KV cache; more wait in line", DefaultValueFactory = _ => 1 }.InRange(1, 256);
        var template = new Option<string?>("--chat-template") { Description = $"Chat format: {ChatTemplate.Names} (default: recognised from the model's tokenizer.chat_template)" };
        var context = new Option<int?>("--ctx-size", "-c") { Description = "KV cache tokens per slot (default: the model's context)" }.InRange(1, int.MaxValue);
        var command = new Command("serve", "Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health)");
        common.AddTo(command);
        run.AddTo(command);
        command.Options.Add(host);
        command.Options.Add(port);
        command.Options.Add(parallel);
        command.Options.Add(template);
        command.Options.Add(context);
        command.SetAction(async (parse, cancellationToken) =>
        {
            try
            {
                using var model = common.Load(parse);
                var tokenizer = CommonOptions.LoadTokenizer(model, parse.GetValue(common.Tokenizer));
                string device = parse.GetValue(common.Device)!;
                var chatTemplate = parse.GetValue(template) is { } name ? ChatTemplate.ByName(name) : null;
                var inference = run.Build(parse, model, maxBatch: 256, prunedBatch: model.Config.MaxSequenceLength, cacheCapacity: parse.GetValue(context));
                var modelId = Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(parse.GetValue(common.Model)!));
                var backends = new List<IDisposable>();
                var app = OpenAiServer.Build(
                    new ServerOptions { ModelId = modelId, Host = parse.GetValue(host)!, Port = parse.GetValue(port), Parallel = parse.GetValue(parallel) },
                    () =>
                    {
                        var ops = CommonOptions.CreateOps(device);
                        backends.Add(ops);
                        return new LocalChatClient(model, ops, tokenizer, new LocalChatOptions { Template = chatTemplate, Inference = inference, ModelId = modelId });
                    });
                await app.StartAsync(cancellationToken);
                Console.Error.WriteLine($"serve: {modelId} on {string.Join(", ", app.Urls)} ({parse.GetValue(parallel)} parallel); Ctrl+C or SIGTERM stops");
                // The host's console lifetime turns Ctrl+C and SIGTERM into a shutdown: wait for it.
                await app.WaitForShutdownAsync(cancellationToken);
                await app.DisposeAsync();
                backends.ForEach(b => b.Dispose());
                return 0;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return CliConsole.Fail(e);
            }
        });
        return command;
    }
}
