using System.Text.Json;
using Kernels.Runtime.Model;
using Kernels.Runtime.Tokenization;

namespace Kernels.Runtime.IO;

/// <summary>
/// Reads a Hugging Face <c>tokenizer.json</c> whose model is byte-level BPE (Llama 3, Qwen2,
/// SmolLM, GPT-2 style) into a <see cref="ByteLevelVocabulary"/>; special ids and add-BOS come
/// from <c>tokenizer_config.json</c> beside it, or from the post-processor's template.
/// </summary>
public static class HfTokenizerJson
{
    /// <summary>The GPT-2 regex HF's ByteLevel pre-tokenizer applies when <c>use_regex</c> is true.</summary>
    private const string Gpt2Original = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>HF's original split patterns and the llama.cpp pre-tokenizer each is (llama.cpp's versions are rewritten for its regex engine).</summary>
    private static readonly Dictionary<string, string> KnownSplits = new(StringComparer.Ordinal)
    {
        [@"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"] = "llama-bpe",
        [@"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"] = "qwen2",
    };

    public static ByteLevelVocabulary Read(string path)
    {
        using var doc = Parse(path);
        var root = doc.RootElement;
        var model = Member(root, "model", path, JsonValueKind.Object);
        string type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "BPE";
        if (type != "BPE")
        {
            throw new ModelFormatException(path, $"model.type '{type}' is not supported (byte-level BPE only)");
        }
        var pre = PreTokenization(root, path);

        // Vocabulary: model.vocab plus added_tokens, ids dense from 0.
        var byId = new SortedDictionary<int, (string Text, TokenKind Kind)>();
        foreach (var entry in Member(model, "vocab", path, JsonValueKind.Object).EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
            {
                throw new ModelFormatException(path, $"model.vocab['{entry.Name}'] is not a non-negative integer id");
            }
            if (!byId.TryAdd(id, (entry.Name, TokenKind.Normal)))
            {
                throw new ModelFormatException(path, $"model.vocab: id {id} is given to both '{byId[id].Text}' and '{entry.Name}'");
            }
        }
        if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var a in added.EnumerateArray())
            {
                if (!a.TryGetProperty("id", out var idElement) || !idElement.TryGetInt32(out int id) || id < 0
                    || !a.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                {
                    throw new ModelFormatException(path, $"added_tokens[{i}] needs an integer id and a string content");
                }
                bool isSpecial = a.TryGetProperty("special", out var sp) && sp.ValueKind == JsonValueKind.True;
                // An added token overrides a vocab entry with its id (its kind is what matters).
                byId[id] = (content.GetString()!, isSpecial ? TokenKind.Control : TokenKind.UserDefined);
                i++;
            }
        }
        if (byId.Count == 0)
        {
            throw new ModelFormatException(path, "model.vocab is empty");
        }
        int count = byId.Keys.Max() + 1;
        if (count != byId.Count)
        {
            int missing = Enumerable.Range(0, count).First(i => !byId.ContainsKey(i));
            throw new ModelFormatException(path, $"token ids are not contiguous: id {missing} is missing (ids run to {count - 1})");
        }
        var tokens = byId.Values.Select(v => v.Text).ToArray();
        var kinds = byId.Values.Select(v => v.Kind).ToArray();
        var merges = Merges(Member(model, "merges", path, JsonValueKind.Array), path);
        if (model.TryGetProperty("ignore_merges", out var ignore) && ignore.ValueKind == JsonValueKind.True)
        {
            pre = pre with { IgnoreMerges = true };
        }
        var special = SpecialTokens(root, tokens, path);
        return new ByteLevelVocabulary(tokens, merges, kinds, pre, special, path, "model.merges");
    }

    /// <summary>
    /// Writes <paramref name="vocabulary"/> as <c>tokenizer.json</c> and <c>tokenizer_config.json</c>
    /// in <paramref name="folder"/> (HF's layout: known pre-tokenizers as HF spells them, added
    /// tokens for every non-normal kind) and returns the tokenizer.json path.
    /// </summary>
    public static string Write(string folder, ByteLevelVocabulary vocabulary)
    {
        Directory.CreateDirectory(folder);
        var v = vocabulary;
        object ByteLevel(bool useRegex) => new Dictionary<string, object> { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = useRegex };
        object Split(string pattern) => new Dictionary<string, object> { ["type"] = "Split", ["pattern"] = new Dictionary<string, string> { ["Regex"] = pattern }, ["behavior"] = "Isolated", ["invert"] = false };
        object Sequence(params object[] steps) => new Dictionary<string, object> { ["type"] = "Sequence", ["pretokenizers"] = steps };
        string? original = KnownSplits.FirstOrDefault(k => k.Value == v.Pre.Name || v.Pre.Name is "llama3" or "llama-v3" && k.Value == "llama-bpe").Key;
        object pre = v.Pre.Name switch
        {
            "gpt-2" or "mpt" or "olmo" => ByteLevel(true),
            "smollm" or "starcoder" or "refact" => Sequence(new Dictionary<string, object> { ["type"] = "Digits", ["individual_digits"] = true }, ByteLevel(true)),
            _ when original is not null => Sequence(Split(original), ByteLevel(false)),
            _ => Sequence(v.Pre.Patterns.Select(Split).Append(ByteLevel(false)).ToArray()),
        };
        var vocab = new Dictionary<string, int>(v.Count);
        var added = new List<object>();
        for (int i = 0; i < v.Count; i++)
        {
            if (v.Kinds[i] is TokenKind.Normal or TokenKind.Byte)
            {
                vocab.TryAdd(v.Tokens[i], i);
            }
            else
            {
                added.Add(new Dictionary<string, object> { ["id"] = i, ["content"] = v.Tokens[i], ["special"] = v.Kinds[i] != TokenKind.UserDefined });
            }
        }
        var model = new Dictionary<string, object> { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = v.Merges, ["ignore_merges"] = v.Pre.IgnoreMerges };
        var root = new Dictionary<string, object?> { ["version"] = "1.0", ["added_tokens"] = added, ["normalizer"] = null, ["pre_tokenizer"] = pre, ["decoder"] = ByteLevel(true), ["model"] = model };
        var options = new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        string path = Path.Combine(folder, "tokenizer.json");
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(root, options));
        var config = new Dictionary<string, object?>
        {
            ["bos_token"] = v.Special.Bos is int b ? v.Tokens[b] : null,
            ["eos_token"] = v.Special.Eos is int e ? v.Tokens[e] : null,
            ["add_bos_token"] = v.Special.AddBos,
            ["add_eos_token"] = v.Special.AddEos,
        };
        AtomicFile.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), JsonSerializer.Serialize(config, options));
        return path;
    }

    private static JsonDocument Parse(string path)
    {
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path), HfFolder.StrictJson);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"not valid JSON: {e.Message}");
        }
    }

    private static JsonElement Member(JsonElement e, string name, string path, JsonValueKind kind) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == kind ? v
            : throw new ModelFormatException(path, $"'{name}' is missing or not a JSON {kind.ToString().ToLowerInvariant()}");

    /// <summary>Merges as "a b" strings or as [a, b] pairs (newer tokenizers).</summary>
    private static string[] Merges(JsonElement merges, string path)
    {
        var list = new List<string>(merges.GetArrayLength());
        foreach (var m in merges.EnumerateArray())
        {
            list.Add(m.ValueKind switch
            {
                JsonValueKind.String => m.GetString()!,
                JsonValueKind.Array when m.GetArrayLength() == 2 && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String => $"{m[0].GetString()} {m[1].GetString()}",
                _ => throw new ModelFormatException(path, $"model.merges[{list.Count}] is neither \"a b\" nor [\"a\", \"b\"]"),
            });
        }
        return list.ToArray();
    }

    /// <summary>The split patterns of the pre-tokenizer (ByteLevel, Split, Digits, or a Sequence of them), named after llama.cpp's when they are one of its.</summary>
    private static PreTokenization PreTokenization(JsonElement root, string path)
    {
        var patterns = new List<string>();
        bool byteLevel = false;
        void Visit(JsonElement p)
        {
            string type = p.TryGetProperty("type", out var t) ? t.GetString() ?? "" : "";
            switch (type)
            {
                case "Sequence":
                    foreach (var inner in Member(p, "pretokenizers", path, JsonValueKind.Array).EnumerateArray())
                    {
                        Visit(inner);
                    }
                    break;
                case "ByteLevel":
                    byteLevel = true;
                    if (p.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.True)
                    {
                        throw new ModelFormatException(path, "pre_tokenizer ByteLevel with add_prefix_space is not supported");
                    }
                    if (!p.TryGetProperty("use_regex", out var ur) || ur.ValueKind != JsonValueKind.False)
                    {
                        patterns.Add(Gpt2Original);
                    }
                    break;
                case "Split":
                    string behavior = p.TryGetProperty("behavior", out var b) ? b.GetString() ?? "" : "";
                    bool invert = p.TryGetProperty("invert", out var inv) && inv.ValueKind == JsonValueKind.True;
                    if (behavior != "Isolated" || invert || !p.TryGetProperty("pattern", out var pat) || !pat.TryGetProperty("Regex", out var regex))
                    {
                        throw new ModelFormatException(path, $"pre_tokenizer Split must isolate a Regex pattern (behavior '{behavior}', invert {invert} is not supported)");
                    }
                    patterns.Add(regex.GetString()!);
                    break;
                case "Digits":
                    patterns.Add(p.TryGetProperty("individual_digits", out var ind) && ind.ValueKind == JsonValueKind.True ? @"\p{N}" : @"\p{N}+");
                    break;
                default:
                    throw new ModelFormatException(path, $"pre_tokenizer type '{type}' is not supported (ByteLevel, Split, Digits, Sequence)");
            }
        }
        Visit(Member(root, "pre_tokenizer", path, JsonValueKind.Object));
        if (!byteLevel)
        {
            throw new ModelFormatException(path, "the pre-tokenizer has no ByteLevel step: not a byte-level BPE tokenizer (SentencePiece models load from tokenizer.model)");
        }
        string? name = patterns switch
        {
            [Gpt2Original] => "gpt-2",
            [@"\p{N}", Gpt2Original] => "smollm",
            [var one] when KnownSplits.TryGetValue(one, out var known) => known,
            _ => null,
        };
        // A known pre-tokenizer runs llama.cpp's patterns, so GGUF and HF forms of a model split alike.
        return name is not null && PreTokenizers.Find(name) is { } p ? p
            : new PreTokenization("hf-custom", patterns, IgnoreMerges: false);
    }

    /// <summary>BOS/EOS from tokenizer_config.json (token strings) or the post-processor template; EOT by llama.cpp's names.</summary>
    private static SpecialTokens SpecialTokens(JsonElement root, string[] tokens, string path)
    {
        int? Find(string? text) => text is null ? null : Array.IndexOf(tokens, text) is >= 0 and var i ? i : null;
        string? bosText = null, eosText = null;
        bool? addBos = null, addEos = null;
        string config = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "tokenizer_config.json");
        if (File.Exists(config))
        {
            using var c = Parse(config);
            bosText = TokenText(c.RootElement, "bos_token");
            eosText = TokenText(c.RootElement, "eos_token");
            addBos = Bool(c.RootElement, "add_bos_token");
            addEos = Bool(c.RootElement, "add_eos_token");
        }
        // TemplateProcessing that starts with a special token adds it as BOS (Llama 3's <|begin_of_text|>).
        if (root.TryGetProperty("post_processor", out var post) && post.ValueKind == JsonValueKind.Object
            && post.TryGetProperty("single", out var single) && single.ValueKind == JsonValueKind.Array && single.GetArrayLength() > 0
            && single[0].TryGetProperty("SpecialToken", out var first) && first.TryGetProperty("id", out var firstId))
        {
            bosText ??= firstId.GetString();
            addBos ??= true;
        }
        int? eot = Array.FindIndex(tokens, t => t is "<|eot_id|>" or "<|im_end|>" or "<|end|>" or "<end_of_turn>" or "<|endoftext|>" or "<EOT>") is >= 0 and var e ? e : null;
        var bos = Find(bosText);
        var eos = Find(eosText);
        if (bosText is not null && bos is null || eosText is not null && eos is null)
        {
            throw new ModelFormatException(config, $"bos_token '{bosText}' / eos_token '{eosText}' is not a token of {path}");
        }
        return new SpecialTokens(bos, eos ?? eot, eot, null, addBos ?? false, addEos ?? false);
    }

    private static string? TokenText(JsonElement e, string name) =>
        !e.TryGetProperty(name, out var v) ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) ? c.GetString()
        : null;

    private static bool? Bool(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;
}
