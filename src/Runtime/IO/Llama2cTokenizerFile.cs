using System.Buffers.Binary;
using Kernels.Runtime.Model;

namespace Kernels.Runtime.IO;

/// <summary>
/// llama2.c tokenizer files: int32 max_token_length, then per token float32 score, int32 length
/// and the piece bytes. The token count is not stored: it is the model's vocabulary size.
/// </summary>
public static class Llama2cTokenizerFile
{
    public static Vocabulary Read(string path, int vocabSize)
    {
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException e)
        {
            throw new FileNotFoundException($"{path}: tokenizer file not found", path, e);
        }
        if (data.Length < 4)
        {
            throw new ModelFormatException(path, "tokenizer file shorter than its 4-byte header");
        }
        int maxLen = BinaryPrimitives.ReadInt32LittleEndian(data);
        if (maxLen <= 0 || maxLen > 1024)
        {
            throw new ModelFormatException(path, $"max_token_length {maxLen} is implausible (not a llama2.c tokenizer?)");
        }
        var pieces = new byte[vocabSize][];
        var scores = new float[vocabSize];
        int pos = 4;
        for (int i = 0; i < vocabSize; i++)
        {
            if (pos + 8 > data.Length)
            {
                throw new ModelFormatException(path, $"truncated at token {i} of {vocabSize} (the model's vocabulary is larger than this tokenizer)");
            }
            scores[i] = BinaryPrimitives.ReadSingleLittleEndian(data.AsSpan(pos));
            int len = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(pos + 4));
            pos += 8;
            if (len < 0 || len > maxLen || pos + len > data.Length)
            {
                throw new ModelFormatException(path, $"token {i}: piece length {len} is invalid (max {maxLen}, {data.Length - pos} bytes left)");
            }
            pieces[i] = data.AsSpan(pos, len).ToArray();
            pos += len;
        }
        if (pos != data.Length)
        {
            throw new ModelFormatException(path, $"{data.Length - pos} bytes left after {vocabSize} tokens: this tokenizer does not match the model's vocabulary size");
        }
        return new Vocabulary(pieces, scores, null, bos: 1, eos: 2, unknown: 0, source: path);
    }
}
