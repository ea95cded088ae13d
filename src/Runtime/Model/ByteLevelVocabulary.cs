using Kernels.Runtime.IO;

namespace Kernels.Runtime.Model;

/// <summary>
/// A byte-level BPE vocabulary (GGUF <c>tokenizer.ggml.model = gpt2</c>, or an HF
/// <c>tokenizer.json</c> with a ByteLevel pre-tokenizer): tokens spelled in GPT-2's byte-to-unicode
/// alphabet, merges by rank ("a b", first = highest priority), token kinds, special ids, and the
/// pre-tokenizer's name (llama.cpp's <c>tokenizer.ggml.pre</c>) or its regular expressions.
/// </summary>
public sealed class ByteLevelVocabulary
{
    /// <param name="mergesKey">Where the merges came from, for error messages (a GGUF key or a JSON path).</param>
    public ByteLevelVocabulary(string[] tokens, string[] merges, TokenKind[] kinds, PreTokenization pre, SpecialTokens special, string source, string mergesKey)
    {
        if (tokens.Length == 0)
        {
            throw new ModelFormatException(source, "the vocabulary is empty");
        }
        if (kinds.Length != tokens.Length)
        {
            throw new ModelFormatException(source, $"vocabulary arrays disagree: {tokens.Length} tokens, {kinds.Length} token types");
        }
        var ids = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++)
        {
            // The first id wins for a repeated spelling (llama.cpp's token_to_id keeps the first too).
            ids.TryAdd(tokens[i], i);
        }
        Ids = ids;
        for (int r = 0; r < merges.Length; r++)
        {
            string m = merges[r];
            int space = m.IndexOf(' ', 1);
            if (space <= 0 || space == m.Length - 1 || m.IndexOf(' ', space + 1) >= 0)
            {
                throw new ModelFormatException(source, $"{mergesKey}[{r}] = '{m}' is not two tokens separated by one space");
            }
            string left = m[..space], right = m[(space + 1)..];
            foreach (var part in new[] { left, right })
            {
                if (!ids.ContainsKey(part))
                {
                    throw new ModelFormatException(source, $"{mergesKey}[{r}] = '{m}' names '{part}', which is not a token of the vocabulary");
                }
            }
            if (!ids.ContainsKey(left + right))
            {
                throw new ModelFormatException(source, $"{mergesKey}[{r}] = '{m}' makes '{left + right}', which is not a token of the vocabulary");
            }
        }
        foreach (var (name, id) in special.Named())
        {
            if (id is int v && (uint)v >= (uint)tokens.Length)
            {
                throw new ModelFormatException(source, $"{name} token id {v} is outside the {tokens.Length}-token vocabulary");
            }
        }
        Tokens = tokens;
        Merges = merges;
        Kinds = kinds;
        Pre = pre;
        Special = special;
        Source = source;
    }

    public string[] Tokens { get; }

    public string[] Merges { get; }

    public TokenKind[] Kinds { get; }

    public PreTokenization Pre { get; }

    public SpecialTokens Special { get; }

    public string Source { get; }

    /// <summary>Token spelling → id.</summary>
    public IReadOnlyDictionary<string, int> Ids { get; }

    public int Count => Tokens.Length;
}

/// <summary>
/// How text is split into words before BPE: llama.cpp's sequence of regular expressions (each
/// splits the pieces the previous one left; unmatched text stays a piece of its own), and whether a
/// word that is itself a token skips the merges (Llama 3's <c>ignore_merges</c>).
/// </summary>
public sealed record PreTokenization(string Name, IReadOnlyList<string> Patterns, bool IgnoreMerges);

/// <summary>Special token ids (null when the vocabulary has none) and whether encoding adds BOS/EOS by default.</summary>
public sealed record SpecialTokens(int? Bos, int? Eos, int? Eot, int? Unknown, bool AddBos, bool AddEos)
{
    public IEnumerable<(string Name, int? Id)> Named() => new[] { ("bos", Bos), ("eos", Eos), ("eot", Eot), ("unknown", Unknown) };
}
