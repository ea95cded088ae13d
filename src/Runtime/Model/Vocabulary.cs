using System.Text;

namespace Kernels.Runtime.Model;

/// <summary>SentencePiece token kinds (GGUF tokenizer.ggml.token_type values).</summary>
public enum TokenKind
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>
/// A SentencePiece-BPE vocabulary as llama2.c and GGUF store it: byte-string pieces (spaces
/// as plain spaces, not U+2581), merge scores, kinds and special ids.
/// </summary>
public sealed class Vocabulary
{
    public Vocabulary(byte[][] pieces, float[] scores, TokenKind[]? kinds, int bos, int eos, int unknown, string source)
    {
        if (pieces.Length != scores.Length || kinds is not null && kinds.Length != pieces.Length)
        {
            throw new ModelFormatException(source, $"vocabulary arrays disagree: {pieces.Length} pieces, {scores.Length} scores, {kinds?.Length} kinds");
        }
        if (pieces.Length == 0)
        {
            throw new ModelFormatException(source, "the vocabulary is empty");
        }
        foreach (var (name, id) in new[] { ("bos", bos), ("eos", eos), ("unknown", unknown) })
        {
            if ((uint)id >= (uint)pieces.Length)
            {
                throw new ModelFormatException(source, $"{name} token id {id} is outside the {pieces.Length}-token vocabulary");
            }
        }
        Pieces = pieces;
        Scores = scores;
        Kinds = kinds ?? InferKinds(pieces);
        Bos = bos;
        Eos = eos;
        Unknown = unknown;
        Source = source;
    }

    public byte[][] Pieces { get; }
    public float[] Scores { get; }
    public TokenKind[] Kinds { get; }
    public int Bos { get; }
    public int Eos { get; }
    public int Unknown { get; }
    public string Source { get; }
    public int Count => Pieces.Length;

    public string PieceText(int id) => Encoding.UTF8.GetString(Pieces[id]);

    private static TokenKind[] InferKinds(byte[][] pieces)
    {
        var kinds = new TokenKind[pieces.Length];
        for (int i = 0; i < pieces.Length; i++)
        {
            kinds[i] = IsBytePiece(pieces[i], out _) ? TokenKind.Byte : TokenKind.Normal;
        }
        return kinds;
    }

    /// <summary>True for a "&lt;0xHH&gt;" byte-fallback piece.</summary>
    public static bool IsBytePiece(ReadOnlySpan<byte> piece, out byte value)
    {
        value = 0;
        if (piece.Length != 6 || piece[0] != '<' || piece[1] != '0' || piece[2] != 'x' || piece[5] != '>')
        {
            return false;
        }
        return byte.TryParse(Encoding.ASCII.GetString(piece.Slice(3, 2)), System.Globalization.NumberStyles.HexNumber, null, out value);
    }
}
