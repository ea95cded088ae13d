using System.Text;
using Kernels.Runtime.Model;
using Microsoft.ML.Tokenizers;

namespace Kernels.Runtime.Tokenization;

/// <summary>
/// A SentencePiece <c>tokenizer.model</c> (protobuf) through Microsoft.ML.Tokenizers'
/// <see cref="LlamaTokenizer"/>: real SentencePiece semantics, including whitespace handling
/// where llama2.c's approximation differs.
/// </summary>
public sealed class SentencePieceModelTokenizer : ITokenizer
{
    private readonly LlamaTokenizer _tokenizer;
    private readonly byte[][] _pieces;
    private readonly string _source;

    public SentencePieceModelTokenizer(string path)
    {
        _source = path;
        FileStream stream;
        try
        {
            stream = File.OpenRead(path);
        }
        catch (FileNotFoundException e)
        {
            throw new FileNotFoundException($"{path}: tokenizer model not found", path, e);
        }
        using (stream)
        {
            try
            {
                _tokenizer = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // Protobuf's own errors derive from IOException and say nothing of the file: name it.
                throw new ModelFormatException(path, $"not a SentencePiece model (protobuf ModelProto) that LlamaTokenizer can read: {e.Message}", e);
            }
        }
        var vocab = _tokenizer.Vocabulary;
        _pieces = new byte[vocab.Count][];
        foreach (var (piece, id) in vocab)
        {
            if ((uint)id < (uint)_pieces.Length)
            {
                string text = piece.Replace('\u2581', ' ');
                _pieces[id] = Vocabulary.IsBytePiece(Encoding.UTF8.GetBytes(text), out byte b) ? new[] { b } : Encoding.UTF8.GetBytes(text);
            }
        }
        for (int i = 0; i < _pieces.Length; i++)
        {
            _pieces[i] ??= Array.Empty<byte>();
        }
    }

    public int VocabSize => _pieces.Length;
    public int Bos => _tokenizer.BeginningOfSentenceId;
    public int Eos => _tokenizer.EndOfSentenceId;
    public string Description => $"SentencePiece model via Microsoft.ML.Tokenizers LlamaTokenizer ({_source})";

    public int[] Encode(string text, bool addBos, bool addEos) =>
        _tokenizer.EncodeToIds(text, addBos, addEos).ToArray();

    public ReadOnlySpan<byte> DecodePiece(int previous, int token)
    {
        if ((uint)token >= (uint)_pieces.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(token), $"token {token} outside the vocabulary of {_pieces.Length}");
        }
        ReadOnlySpan<byte> piece = _pieces[token];
        if (token == Bos || token == Eos)
        {
            return ReadOnlySpan<byte>.Empty;
        }
        if (previous == Bos && piece.Length > 0 && piece[0] == (byte)' ')
        {
            piece = piece[1..];
        }
        return PrintFilter.Apply(piece);
    }
}
