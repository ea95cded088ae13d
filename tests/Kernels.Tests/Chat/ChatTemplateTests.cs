using Kernels.Runtime.Chat;
using Microsoft.Extensions.AI;
using Xunit;

namespace Kernels.Tests.Chat;

/// <summary>The five chat formats render llama.cpp's strings (tests/test-chat-template.cpp's conversation) and are recognised from their Jinja templates.</summary>
public sealed class ChatTemplateTests
{
    private static readonly ChatMessage[] Conversation =
    [
        new(ChatRole.System, "You are a helpful assistant"),
        new(ChatRole.User, "Hello"),
        new(ChatRole.Assistant, "Hi there"),
        new(ChatRole.User, "Who are you"),
        new(ChatRole.Assistant, "   I am an assistant   "),
        new(ChatRole.User, "Another question"),
    ];

    [Theory]
    [InlineData("chatml", "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n")]
    [InlineData("llama-3", "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")]
    [InlineData("llama-2", "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] Who are you [/INST]   I am an assistant   </s><s>[INST] Another question [/INST]")]
    [InlineData("zephyr", "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n<|assistant|>\nHi there<|endoftext|>\n<|user|>\nWho are you<|endoftext|>\n<|assistant|>\n   I am an assistant   <|endoftext|>\n<|user|>\nAnother question<|endoftext|>\n<|assistant|>\n")]
    [InlineData("phi-3", "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n")]
    public void Each_template_renders_llama_cpps_string(string name, string expected) =>
        Assert.Equal(expected, ChatTemplate.ByName(name).Render(Conversation));

    [Theory]
    [InlineData("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}", "chatml")]
    [InlineData("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}", "llama-3")]
    [InlineData("{{ '<|user|>\\n' + message['content'] + '<|end|>\\n<|assistant|>\\n' }}", "phi-3")]
    [InlineData("{{ '<|user|>\\n' + message['content'] + '<|endoftext|>' }}{{ '<|assistant|>\\n' }}", "zephyr")]
    [InlineData("{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}", "llama-2")]
    public void Gguf_templates_are_recognised_by_their_markers(string jinja, string name) =>
        Assert.Equal(name, ChatTemplate.Detect(jinja, "m.gguf")!.Name);

    [Fact]
    public void An_unknown_template_or_name_lists_the_choices()
    {
        var e = Assert.Throws<ArgumentException>(() => ChatTemplate.Detect("{{ '### Human: ' + message }}", "m.gguf"));
        Assert.Contains("m.gguf", e.Message);
        Assert.Contains("chatml", e.Message);
        Assert.Contains("llama-3", Assert.Throws<ArgumentException>(() => ChatTemplate.ByName("alpaca")).Message);
        Assert.Null(ChatTemplate.Detect(null, "m.gguf"));
        Assert.Throws<ArgumentException>(() => ChatTemplate.ByName("chatml").Render([new ChatMessage(ChatRole.Tool, "x")]));
    }
}
