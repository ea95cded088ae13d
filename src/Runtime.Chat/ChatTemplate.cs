using System.Text;
using Microsoft.Extensions.AI;

namespace Kernels.Runtime.Chat;

/// <summary>
/// Renders a conversation into the text a chat model was trained on. Special markers are written as
/// text and encoded with special-token parsing; BOS comes from the tokenizer, not the template.
/// The formats follow llama.cpp's <c>llm_chat_apply_template</c>.
/// </summary>
public abstract class ChatTemplate
{
    /// <summary>The name <c>--chat-template</c> takes.</summary>
    public abstract string Name { get; }

    /// <summary>Markers that end an assistant turn, besides the tokenizer's EOS/EOT (as text, for stop detection).</summary>
    public abstract IReadOnlyList<string> EndMarkers { get; }

    /// <summary>The prompt for <paramref name="messages"/>, ending with the assistant's turn opened when <paramref name="addAssistant"/>.</summary>
    public string Render(IEnumerable<ChatMessage> messages, bool addAssistant = true)
    {
        var sb = new StringBuilder();
        Render(messages.Select(m => (Role(m.Role), m.Text ?? "")).ToList(), sb);
        if (addAssistant)
        {
            OpenAssistant(sb);
        }
        return sb.ToString();
    }

    protected abstract void Render(IReadOnlyList<(string Role, string Text)> messages, StringBuilder sb);

    protected abstract void OpenAssistant(StringBuilder sb);

    private static string Role(ChatRole role) =>
        role == ChatRole.System ? "system" : role == ChatRole.Assistant ? "assistant" : role == ChatRole.User ? "user"
        : throw new ArgumentException($"chat role '{role}' is not supported (system, user, assistant)");

    /// <summary>The templates by name.</summary>
    public static IReadOnlyList<ChatTemplate> All { get; } = [new Llama2Template(), new Llama3Template(), new ChatMlTemplate(), new ZephyrTemplate(), new Phi3Template()];

    public static string Names => string.Join(", ", All.Select(t => t.Name));

    public static ChatTemplate ByName(string name) =>
        All.FirstOrDefault(t => string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"chat template '{name}' is not one of {Names}");

    /// <summary>
    /// Recognises a GGUF <c>tokenizer.chat_template</c> (Jinja text) by its markers, with the rules of
    /// llama.cpp's <c>llm_chat_detect_template</c> for these five formats; null when there is no
    /// template text.
    /// </summary>
    public static ChatTemplate? Detect(string? jinja, string source)
    {
        if (string.IsNullOrEmpty(jinja))
        {
            return null;
        }
        bool Has(string s) => jinja.Contains(s, StringComparison.Ordinal);
        if (Has("<|im_start|>"))
        {
            return ByName("chatml");
        }
        if (Has("<|start_header_id|>") && Has("<|end_header_id|>"))
        {
            return ByName("llama-3");
        }
        if (Has("<|assistant|>") && Has("<|end|>"))
        {
            return ByName("phi-3");
        }
        if (Has("<|user|>") && Has("<|endoftext|>"))
        {
            return ByName("zephyr");
        }
        if (Has("[INST]"))
        {
            return ByName("llama-2");
        }
        throw new ArgumentException($"{source}: tokenizer.chat_template is not one this project recognises ({Names}); choose one with --chat-template");
    }
}

/// <summary>Llama 2 chat with a system block and BOS between turns (llama.cpp's llama2-sys-bos): <c>[INST] &lt;&lt;SYS&gt;&gt;\n…\n&lt;&lt;/SYS&gt;&gt;\n\nuser [/INST]assistant&lt;/s&gt;&lt;s&gt;[INST] …</c>.</summary>
public sealed class Llama2Template : ChatTemplate
{
    public override string Name => "llama-2";

    public override IReadOnlyList<string> EndMarkers => ["</s>"];

    protected override void Render(IReadOnlyList<(string Role, string Text)> messages, StringBuilder sb)
    {
        string? system = null;
        bool first = true;
        foreach (var (role, text) in messages)
        {
            switch (role)
            {
                case "system":
                    system = text;
                    break;
                case "user":
                    // The first [INST] follows the tokenizer's BOS; later turns write theirs.
                    sb.Append(first ? "[INST] " : "<s>[INST] ");
                    if (system is not null)
                    {
                        sb.Append("<<SYS>>\n").Append(system).Append("\n<</SYS>>\n\n");
                        system = null;
                    }
                    sb.Append(text).Append(" [/INST]");
                    first = false;
                    break;
                default:
                    sb.Append(text).Append("</s>");
                    break;
            }
        }
    }

    protected override void OpenAssistant(StringBuilder sb)
    {
    }
}

/// <summary>Llama 3: <c>&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\ntext&lt;|eot_id|&gt;</c>.</summary>
public sealed class Llama3Template : ChatTemplate
{
    public override string Name => "llama-3";

    public override IReadOnlyList<string> EndMarkers => ["<|eot_id|>"];

    protected override void Render(IReadOnlyList<(string Role, string Text)> messages, StringBuilder sb)
    {
        foreach (var (role, text) in messages)
        {
            sb.Append("<|start_header_id|>").Append(role).Append("<|end_header_id|>\n\n").Append(text.Trim()).Append("<|eot_id|>");
        }
    }

    protected override void OpenAssistant(StringBuilder sb) => sb.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/// <summary>ChatML (Qwen, SmolLM): <c>&lt;|im_start|&gt;role\ntext&lt;|im_end|&gt;\n</c>.</summary>
public sealed class ChatMlTemplate : ChatTemplate
{
    public override string Name => "chatml";

    public override IReadOnlyList<string> EndMarkers => ["<|im_end|>"];

    protected override void Render(IReadOnlyList<(string Role, string Text)> messages, StringBuilder sb)
    {
        foreach (var (role, text) in messages)
        {
            sb.Append("<|im_start|>").Append(role).Append('\n').Append(text).Append("<|im_end|>\n");
        }
    }

    protected override void OpenAssistant(StringBuilder sb) => sb.Append("<|im_start|>assistant\n");
}

/// <summary>The formats that tag each turn as <c>&lt;|role|&gt;\ntext END\n</c> and open the reply with <c>&lt;|assistant|&gt;\n</c>.</summary>
public abstract class RoleTagTemplate(string name, string end) : ChatTemplate
{
    public override string Name => name;

    public override IReadOnlyList<string> EndMarkers => [end];

    protected override void Render(IReadOnlyList<(string Role, string Text)> messages, StringBuilder sb)
    {
        foreach (var (role, text) in messages)
        {
            sb.Append("<|").Append(role).Append("|>\n").Append(text).Append(end).Append('\n');
        }
    }

    protected override void OpenAssistant(StringBuilder sb) => sb.Append("<|assistant|>\n");
}

/// <summary>Zephyr as llama.cpp writes it (StableLM-zephyr): turns end with <c>&lt;|endoftext|&gt;</c>.</summary>
public sealed class ZephyrTemplate() : RoleTagTemplate("zephyr", "<|endoftext|>");

/// <summary>Phi-3: turns end with <c>&lt;|end|&gt;</c>.</summary>
public sealed class Phi3Template() : RoleTagTemplate("phi-3", "<|end|>");
