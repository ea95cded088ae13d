using System.Text;
using Kernels.Runtime.Model;

namespace Kernels.Runtime.Tokenization;

/// <summary>
/// llama2.c's SentencePiece-BPE encoder over a <see cref="Vocabulary"/> (from a llama2.c
/// tokenizer.bin or a GGUF): dummy-prefix space, one token per UTF-8 code point (byte fallback
/// otherwise), then repeatedly merge the adjacent pair whose concatenation is the best-scoring
/// piece, leftmost on ties.
/// </summary>
/// <remarks>
/// run.c rescans all pairs after every merge (O(n²)); this uses a heap of candidate pairs with
/// lazy invalidation, which makes the same choice at every step (highest score, then leftmost
/// position) in O(n log n), so long texts (perplexity) tokenize fast with identical ids.
/// </remarks>
public sealed class BpeTokenizer : ITokenizer
{
    private readonly Vocabulary _vocab;
    private readonly Dictionary<string, int> _ids;
    private readonly int[] _byteTokens = new int[256];
    private readonly byte[][] _decoded;

    /// <summary>Control pieces by their text, longest first (for special-token parsing).</summary>
    private readonly (int Id, string Text)[] _controls;

    public BpeTokenizer(Vocabulary vocabulary)
    {
        _vocab = vocabulary;
        _ids = new Dictionary<string, int>(vocabulary.Count, StringComparer.Ordinal);
        for (int i = 0; i < vocabulary.Count; i++)
        {
            // First occurrence wins, like a binary search over a strcmp-sorted table finds one entry.
            _ids.TryAdd(Key(vocabulary.Pieces[i]), i);
        }
        for (int b = 0; b < 256; b++)
        {
            // llama2.c's byte fallback (id = byte + 3) where the vocabulary has those ids; otherwise <unk>.
            _byteTokens[b] = _ids.TryGetValue(Key(Encoding.ASCII.GetBytes($"<0x{b:X2}>")), out int id) ? id
                : b + 3 < vocabulary.Count ? b + 3 : vocabulary.Unknown;
        }
        _controls = Enumerable.Range(0, vocabulary.Count)
            .Where(i => vocabulary.Kinds[i] == TokenKind.Control && vocabulary.Pieces[i].Length > 0)
            .Select(i => (i, Encoding.UTF8.GetString(vocabulary.Pieces[i])))
            .OrderByDescending(p => p.Item2.Length).ThenBy(p => p.i)
            .ToArray();
        _decoded = new byte[vocabulary.Count][];
        for (int i = 0; i < vocabulary.Count; i++)
        {
            _decoded[i] = Vocabulary.IsBytePiece(vocabulary.Pieces[i], out byte value) ? new[] { value } : vocabulary.Pieces[i];
        }
    }

    public Vocabulary Vocabulary => _vocab;

    public int VocabSize => _vocab.Count;
    public int Bos => _vocab.Bos;
    public int Eos => _vocab.Eos;
    public string Description => $"SentencePiece BPE (llama2.c algorithm), {_vocab.Count} pieces from {_vocab.Source}";

    private static string Key(ReadOnlySpan<byte> bytes) => Encoding.Latin1.GetString(bytes);

    /// <summary>
    /// With <paramref name="parseSpecial"/>, control tokens written in the text (&lt;s&gt;, &lt;/s&gt;, chat
    /// markers) become those tokens, and each text fragment is encoded on its own with the dummy-prefix
    /// space (llama.cpp: a fragment after a special token is prefixed again).
    /// </summary>
    public int[] Encode(string text, bool addBos, bool addEos, bool parseSpecial)
    {
        if (!parseSpecial)
        {
            return Encode(text, addBos, addEos);
        }
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        if (addBos)
        {
            ids.Add(_vocab.Bos);
        }
        foreach (var (start, length, special) in SpecialTokenPartition.Split(text, _controls))
        {
            ids.AddRange(special >= 0 ? [special] : Encode(text.Substring(start, length), false, false));
        }
        if (addEos)
        {
            ids.Add(_vocab.Eos);
        }
        return ids.ToArray();
    }

    public int[] Encode(string text, bool addBos, bool addEos)
    {
        ArgumentNullException.ThrowIfNull(text);
        var tokens = new List<int>(text.Length + 3);
        if (addBos)
        {
            tokens.Add(_vocab.Bos);
        }
        int start = tokens.Count;
        byte[] utf8 = Encoding.UTF8.GetBytes(text);
        if (utf8.Length > 0)
        {
            if (_ids.TryGetValue(" ", out int space))
            {
                tokens.Add(space);
            }
            else
            {
                tokens.Add(_byteTokens[' ']);
            }
        }
        // One token per code point, as run.c groups a lead byte with up to 3 continuation bytes.
        for (int i = 0; i < utf8.Length;)
        {
            int len = 1;
            while (i + len < utf8.Length && (utf8[i + len] & 0xC0) == 0x80 && len < 4)
            {
                len++;
            }
            if (_ids.TryGetValue(Key(utf8.AsSpan(i, len)), out int id))
            {
                tokens.Add(id);
            }
            else
            {
                for (int j = 0; j < len; j++)
                {
                    tokens.Add(_byteTokens[utf8[i + j]]);
                }
            }
            i += len;
        }
        Merge(tokens, start);
        if (addEos)
        {
            tokens.Add(_vocab.Eos);
        }
        return tokens.ToArray();
    }

    private readonly record struct Candidate(float Score, int Left, int LeftVersion, int RightVersion, int Merged);

    private sealed class CandidateOrder : IComparer<(float Score, int Left)>
    {
        public static readonly CandidateOrder Instance = new();

        // Highest score first; leftmost position on ties (run.c's strict '>' keeps the first best pair).
        public int Compare((float Score, int Left) a, (float Score, int Left) b) =>
            a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Left.CompareTo(b.Left);
    }

    private void Merge(List<int> tokens, int start)
    {
        int n = tokens.Count - start;
        if (n < 2)
        {
            return;
        }
        var id = new int[n];
        var prev = new int[n];
        var next = new int[n];
        var version = new int[n];
        for (int i = 0; i < n; i++)
        {
            id[i] = tokens[start + i];
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        var heap = new PriorityQueue<Candidate, (float, int)>(CandidateOrder.Instance);
        void Push(int left)
        {
            int right = next[left];
            if (left < 0 || right < 0)
            {
                return;
            }
            byte[] a = _vocab.Pieces[id[left]], b = _vocab.Pieces[id[right]];
            var key = new byte[a.Length + b.Length];
            a.CopyTo(key, 0);
            b.CopyTo(key, a.Length);
            if (_ids.TryGetValue(Key(key), out int merged))
            {
                float score = _vocab.Scores[merged];
                heap.Enqueue(new Candidate(score, left, version[left], version[right], merged), (score, left));
            }
        }
        for (int i = 0; i + 1 < n; i++)
        {
            Push(i);
        }
        while (heap.TryDequeue(out var c, out _))
        {
            int left = c.Left, right = next[left];
            if (id[left] < 0 || right < 0 || version[left] != c.LeftVersion || version[right] != c.RightVersion)
            {
                continue; // stale: one side has been merged since this pair was scored
            }
            id[left] = c.Merged;
            version[left]++;
            id[right] = -1;
            version[right]++;
            next[left] = next[right];
            if (next[right] >= 0)
            {
                prev[next[right]] = left;
            }
            if (prev[left] >= 0)
            {
                Push(prev[left]);
            }
            Push(left);
        }
        tokens.RemoveRange(start, n);
        for (int i = 0; i >= 0; i = next[i])
        {
            tokens.Add(id[i]);
        }
    }

    public ReadOnlySpan<byte> DecodePiece(int previous, int token)
    {
        if ((uint)token >= (uint)_decoded.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(token), $"token {token} outside the vocabulary of {_decoded.Length}");
        }
        ReadOnlySpan<byte> piece = _decoded[token];
        if (previous == _vocab.Bos && piece.Length > 0 && piece[0] == (byte)' ')
        {
            piece = piece[1..];
        }
        return PrintFilter.Apply(piece);
    }
}

/// <summary>llama2.c's safe_printf rule: a single-byte piece that is an ASCII control character (not whitespace) prints nothing.</summary>
/// <remarks>run.c also drops single bytes ≥ 0x80 (not isprint in the C locale); those are kept here so UTF-8 text survives byte fallback.</remarks>
internal static class PrintFilter
{
    public static ReadOnlySpan<byte> Apply(ReadOnlySpan<byte> piece)
    {
        if (piece.Length == 1)
        {
            byte b = piece[0];
            bool printable = b >= 0x20 && b < 0x7F || b >= 0x80;
            bool space = b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\v' or (byte)'\f' or (byte)'\r';
            if (!printable && !space)
            {
                return ReadOnlySpan<byte>.Empty;
            }
        }
        return piece;
    }
}
