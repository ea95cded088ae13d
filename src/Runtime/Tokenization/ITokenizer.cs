using System.Text;

namespace Kernels.Runtime.Tokenization;

/// <summary>Text ⇄ token ids for a Llama-family model.</summary>
public interface ITokenizer
{
    int VocabSize { get; }
    int Bos { get; }
    int Eos { get; }

    /// <summary>Short description (kind and source file).</summary>
    string Description { get; }

    int[] Encode(string text, bool addBos, bool addEos);

    /// <summary>
    /// Encodes with control tokens written in the text (<c>&lt;|im_start|&gt;</c>, <c>&lt;s&gt;</c>)
    /// recognised as those tokens when <paramref name="parseSpecial"/> is set (llama.cpp's
    /// <c>parse_special</c>). Tokenizers without special-token parsing ignore the flag.
    /// </summary>
    int[] Encode(string text, bool addBos, bool addEos, bool parseSpecial) => Encode(text, addBos, addEos);

    /// <summary>How a token is spelled for display: its decoded piece, or for a control token (which decodes to nothing) its name.</summary>
    string Spelling(int token) => Encoding.UTF8.GetString(DecodePiece(-1, token));

    /// <summary>Whether generation ends at <paramref name="token"/> (byte-level vocabularies: EOS and EOT such as &lt;|eot_id|&gt;, &lt;|im_end|&gt;; SentencePiece: never, llama2.c stops at BOS instead).</summary>
    bool IsEndOfGeneration(int token) => false;

    /// <summary>Whether the vocabulary asks for BOS at the start of a text (GGUF tokenizer.ggml.add_bos_token; SentencePiece Llama: yes).</summary>
    bool AddBosByDefault => true;

    /// <summary>
    /// The bytes llama2.c prints for <paramref name="token"/> following <paramref name="previous"/>:
    /// the piece, without its leading space right after BOS, with byte-fallback pieces turned into
    /// the raw byte, and nothing for non-printable control bytes.
    /// </summary>
    ReadOnlySpan<byte> DecodePiece(int previous, int token);
}

public static class TokenizerExtensions
{
    /// <summary>Decodes a token sequence that starts after <paramref name="previous"/> into text.</summary>
    public static string Decode(this ITokenizer tokenizer, IEnumerable<int> tokens, int previous = -1)
    {
        var bytes = new List<byte>();
        foreach (int t in tokens)
        {
            bytes.AddRange(tokenizer.DecodePiece(previous, t).ToArray());
            previous = t;
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }
}
