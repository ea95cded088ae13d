using Kernels.Runtime.Model;

namespace Kernels.Runtime.Tokenization;

/// <summary>
/// llama.cpp's pre-tokenizers by their GGUF name (<c>tokenizer.ggml.pre</c>), with the regular
/// expressions of llama.cpp's <c>llm_tokenizer_bpe</c> (src/llama-vocab.cpp, b4747) in .NET syntax.
/// </summary>
/// <remarks>
/// .NET matches UTF-16 code units, so a character class cannot hold a range above U+FFFF: the one
/// pattern that lists such letters (deepseek-llm) spells them as surrogate-pair alternatives.
/// </remarks>
public static class PreTokenizers
{
    private const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

    private const string Llama3 = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string Qwen2 = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string CjkRuns = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+";

    /// <summary>deepseek-llm's letter class: llama.cpp's list of Latin, Greek, Cyrillic, ... ranges.</summary>
    private const string DeepSeekLetters =
        @"\s?(?:[\u0041-\u005A\u0061-\u007A\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A]"
        + @"|\uD801[\uDC00-\uDC4F\uDCB0-\uDCD3\uDCD8-\uDCFB]|\uD803[\uDC80-\uDCB2\uDCC0-\uDCF2]|\uD806[\uDCA0-\uDCDF]|\uD83A[\uDD00-\uDD43])+";

    private static readonly Dictionary<string, (string[] Patterns, bool IgnoreMerges)> Table = new(StringComparer.Ordinal)
    {
        // llama.cpp's LLAMA_VOCAB_PRE_TYPE_DEFAULT (also used when the key is missing).
        ["default"] = (new[] { @"[\p{P}\$\+<=>\^~\|]+", Gpt2, @"\p{N}+", "[0-9][0-9][0-9]" }, false),
        ["gpt-2"] = (new[] { Gpt2 }, false),
        ["mpt"] = (new[] { Gpt2 }, false),
        ["olmo"] = (new[] { Gpt2 }, false),
        ["llama-bpe"] = (new[] { Llama3 }, true),
        ["llama3"] = (new[] { Llama3 }, true),
        ["llama-v3"] = (new[] { Llama3 }, true),
        ["qwen2"] = (new[] { Qwen2 }, false),
        ["deepseek-r1-qwen"] = (new[] { Qwen2 }, false),
        ["stablelm2"] = (new[] { Qwen2 }, false),
        ["deepseek-llm"] = (new[] { "[\r\n]", DeepSeekLetters, "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+", @"\s+\z", CjkRuns, @"\p{N}+" }, false),
        ["deepseek-coder"] = (new[] { "[\r\n]", @"\s?\p{L}+", @"\s?\p{P}+", CjkRuns, @"\p{N}" }, false),
        ["falcon"] = (new[] { @"[\p{P}\$\+<=>\^~\|`]+", Gpt2, "[0-9][0-9][0-9]" }, false),
        ["starcoder"] = (new[] { @"\p{N}", Gpt2 }, false),
        ["refact"] = (new[] { @"\p{N}", Gpt2 }, false),
        ["smollm"] = (new[] { @"\p{N}", Gpt2 }, false),
    };

    /// <summary>The names this project implements.</summary>
    public static IEnumerable<string> Names => Table.Keys;

    /// <summary>The pre-tokenizer called <paramref name="name"/>, or null when the project does not know it.</summary>
    public static PreTokenization? Find(string name) =>
        Table.TryGetValue(name, out var p) ? new PreTokenization(name, p.Patterns, p.IgnoreMerges) : null;
}
