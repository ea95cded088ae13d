using System.Text;

namespace Kernels.Runtime.Tokenization;

/// <summary>
/// GPT-2's byte-to-unicode alphabet: byte-level BPE vocabularies spell every byte as one printable
/// character (printable Latin-1 bytes as themselves, the other 68 bytes as U+0100 onwards), so a
/// token is a string and a space is 'Ġ'.
/// </summary>
public static class ByteLevelAlphabet
{
    private static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByte = Enumerable.Range(0, 256).ToDictionary(b => ByteToChar[b], b => (byte)b);

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = (char)(printable ? b : next++);
        }
        return map;
    }

    /// <summary>The one character that spells byte <paramref name="b"/>.</summary>
    public static string Spelling(byte b) => ByteToChar[b].ToString();

    /// <summary>The spelling of the UTF-8 bytes of <paramref name="text"/> in the alphabet.</summary>
    public static string Encode(string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
        {
            chars[i] = ByteToChar[bytes[i]];
        }
        return new string(chars);
    }

    /// <summary>The bytes a token spells, or null when a character is outside the alphabet (an added token written as plain text).</summary>
    public static byte[]? TryDecode(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!CharToByte.TryGetValue(token[i], out bytes[i]))
            {
                return null;
            }
        }
        return bytes;
    }
}
