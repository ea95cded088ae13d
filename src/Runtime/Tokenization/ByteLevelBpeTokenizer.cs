using System.Text;
using System.Text.RegularExpressions;
using Kernels.Runtime.Model;
using Microsoft.ML.Tokenizers;

namespace Kernels.Runtime.Tokenization;

/// <summary>
/// Byte-level BPE as llama.cpp's <c>llm_tokenizer_bpe</c> runs it (GPT-2, Llama 3, Qwen2, SmolLM,
/// DeepSeek, Falcon, StarCoder): special and added tokens are cut out of the text first, the rest is
/// split into words by the pre-tokenizer's regular expressions, and each word is encoded by
/// Microsoft.ML.Tokenizers' <see cref="Microsoft.ML.Tokenizers.BpeTokenizer"/> (byte-level, merges
/// by rank). With <see cref="PreTokenization.IgnoreMerges"/> a word that is itself a token is taken
/// whole (Llama 3).
/// </summary>
/// <remarks>
/// Added (user-defined) tokens are always matched in the text; control tokens (BOS, EOS,
/// <c>&lt;|im_start|&gt;</c>, ...) only when <c>parseSpecial</c> is set, as llama.cpp's
/// <c>parse_special</c>. Longer special tokens are matched first.
/// </remarks>
public sealed class ByteLevelBpeTokenizer : ITokenizer
{
    private readonly ByteLevelVocabulary _vocab;
    private readonly Microsoft.ML.Tokenizers.BpeTokenizer _bpe;
    private readonly Regex[] _split;
    private readonly int[] _specials;
    private readonly byte[][] _pieces;

    public ByteLevelBpeTokenizer(ByteLevelVocabulary vocabulary)
    {
        _vocab = vocabulary;
        var tokens = vocabulary.Tokens;
        // Words arrive already split: the BPE must take each whole (its default pre-tokenizer would split at spaces).
        _bpe = Microsoft.ML.Tokenizers.BpeTokenizer.Create(new BpeOptions(vocabulary.Ids) { Merges = vocabulary.Merges, ByteLevel = true, PreTokenizer = new WholeWord() });
        _split = vocabulary.Pre.Patterns.Select(p => new Regex(p, RegexOptions.CultureInvariant | RegexOptions.Compiled)).ToArray();
        _specials = Enumerable.Range(0, tokens.Length)
            .Where(i => vocabulary.Kinds[i] is TokenKind.Control or TokenKind.UserDefined or TokenKind.Unknown && tokens[i].Length > 0)
            .OrderByDescending(i => Encoding.UTF8.GetByteCount(tokens[i])).ThenBy(i => i)
            .ToArray();
        _pieces = new byte[tokens.Length][];
        for (int i = 0; i < tokens.Length; i++)
        {
            _pieces[i] = vocabulary.Kinds[i] switch
            {
                // Control tokens print nothing (llama.cpp's token_to_piece without special).
                TokenKind.Control or TokenKind.Unknown or TokenKind.Unused => Array.Empty<byte>(),
                TokenKind.UserDefined => Encoding.UTF8.GetBytes(tokens[i]),
                _ => ByteLevelAlphabet.TryDecode(tokens[i]) ?? Encoding.UTF8.GetBytes(tokens[i]),
            };
        }
    }

    public ByteLevelVocabulary Vocabulary => _vocab;

    public int VocabSize => _vocab.Count;

    /// <summary>BOS id, or -1 when the vocabulary has none.</summary>
    public int Bos => _vocab.Special.Bos ?? -1;

    /// <summary>EOS id, or -1 when the vocabulary has none.</summary>
    public int Eos => _vocab.Special.Eos ?? -1;

    public string Description => $"byte-level BPE, pre-tokenizer {_vocab.Pre.Name}, {_vocab.Count} tokens, {_vocab.Merges.Length} merges from {_vocab.Source}";

    public bool AddBosByDefault => _vocab.Special.AddBos && _vocab.Special.Bos is not null;

    public bool IsEndOfGeneration(int token) => token == _vocab.Special.Eos || token == _vocab.Special.Eot;

    public int[] Encode(string text, bool addBos, bool addEos) => Encode(text, addBos, addEos, parseSpecial: false);

    public int[] Encode(string text, bool addBos, bool addEos, bool parseSpecial)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 2);
        if (addBos && _vocab.Special.Bos is int bos)
        {
            ids.Add(bos);
        }
        foreach (var (start, length, special) in Partition(text, parseSpecial))
        {
            if (special >= 0)
            {
                ids.Add(special);
            }
            else
            {
                EncodeText(text.Substring(start, length), ids);
            }
        }
        if (addEos && _vocab.Special.Eos is int eos)
        {
            ids.Add(eos);
        }
        return ids.ToArray();
    }

    /// <summary>The words the pre-tokenizer cuts <paramref name="text"/> into (before BPE).</summary>
    public IReadOnlyList<string> PreTokenize(string text)
    {
        var pieces = new List<string> { text };
        foreach (var regex in _split)
        {
            var next = new List<string>(pieces.Count * 2);
            foreach (string piece in pieces)
            {
                int at = 0;
                for (var m = regex.Match(piece); m.Success; m = m.NextMatch())
                {
                    if (m.Length == 0)
                    {
                        continue;
                    }
                    if (m.Index > at)
                    {
                        next.Add(piece[at..m.Index]);
                    }
                    next.Add(m.Value);
                    at = m.Index + m.Length;
                }
                if (at < piece.Length)
                {
                    next.Add(piece[at..]);
                }
            }
            pieces = next;
        }
        return pieces;
    }

    private void EncodeText(string text, List<int> ids)
    {
        foreach (string word in PreTokenize(text))
        {
            if (_vocab.Pre.IgnoreMerges && _vocab.Ids.TryGetValue(ByteLevelAlphabet.Encode(word), out int whole))
            {
                ids.Add(whole);
                continue;
            }
            ids.AddRange(_bpe.EncodeToIds(word));
        }
    }

    /// <summary>Added tokens always; control and unknown ones only with <paramref name="parseSpecial"/>.</summary>
    private List<(int Start, int Length, int Special)> Partition(string text, bool parseSpecial) =>
        SpecialTokenPartition.Split(text, _specials
            .Where(id => parseSpecial || _vocab.Kinds[id] is not (TokenKind.Control or TokenKind.Unknown))
            .Select(id => (id, _vocab.Tokens[id])));

    public string Spelling(int token) =>
        (uint)token < (uint)_pieces.Length && _vocab.Kinds[token] is TokenKind.Control or TokenKind.Unknown or TokenKind.Unused
            ? _vocab.Tokens[token]
            : Encoding.UTF8.GetString(DecodePiece(-1, token));

    public ReadOnlySpan<byte> DecodePiece(int previous, int token)
    {
        if ((uint)token >= (uint)_pieces.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(token), $"token {token} outside the vocabulary of {_pieces.Length}");
        }
        return _pieces[token];
    }

    /// <summary>A pre-tokenizer that keeps its input as one piece.</summary>
    private sealed class WholeWord : PreTokenizer
    {
        public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => [(0, text.Length)];

        public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => [(0, text.Length)];
    }
}
