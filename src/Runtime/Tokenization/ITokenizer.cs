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
