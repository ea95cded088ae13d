// A chat with a local model through Microsoft.Extensions.AI's IChatClient, using the Kernels
// NuGet packages.
//   dotnet run --project samples/ChatConsole -- MODEL.gguf [chat-template] [message]
using Kernels.Runtime.Chat;
using Kernels.Runtime.Compute;
using Kernels.Runtime.IO;
using Kernels.Runtime.Tokenization;
using Microsoft.Extensions.AI;

if (args.Length is < 1 or > 3)
{
    Console.Error.WriteLine("usage: ChatConsole MODEL.gguf [chat-template] [message]");
    return 2;
}
using var model = ModelLoader.Load(args[0]);
using var backend = new HostOps();
var options = new LocalChatOptions { Template = args.Length > 1 ? ChatTemplate.ByName(args[1]) : null };
using IChatClient client = new LocalChatClient(model, backend, TokenizerLoader.Load(model, null), options);

ChatMessage[] messages = [new(ChatRole.User, args.Length > 2 ? args[2] : "Tell me a story about a cat")];
var request = new ChatOptions { Temperature = 0, MaxOutputTokens = 32 };
await foreach (var update in client.GetStreamingResponseAsync(messages, request))
{
    Console.Write(update.Text);
}
Console.WriteLine();
var response = await client.GetResponseAsync(messages, request);
Console.Error.WriteLine($"{response.Usage?.InputTokenCount} prompt tokens, {response.Usage?.OutputTokenCount} generated, finish: {response.FinishReason}");
return 0;
