using System.Text;

namespace Kernels.Runtime.Text;

/// <summary>Reads a byte range of a UTF-8 text file, optionally snapped to paragraph boundaries ("\n\n").</summary>
public static class TextSource
{
    /// <summary>Parses "start:end" (bytes; either side may be empty).</summary>
    public static (long Start, long? End) ParseRange(string? range)
    {
        if (string.IsNullOrEmpty(range))
        {
            return (0, null);
        }
        var parts = range.Split(':');
        if (parts.Length != 2)
        {
            throw new FormatException($"'{range}' is not a byte range start:end");
        }
        long start = parts[0].Length == 0 ? 0 : long.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture);
        long? end = parts[1].Length == 0 ? null : long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
        if (start < 0 || end < start)
        {
            throw new FormatException($"byte range {range} is empty or negative");
        }
        return (start, end);
    }

    /// <summary>
    /// Bytes [start, end) of the file; with <paramref name="snapToParagraphs"/> the start moves
    /// forward past the next "\n\n" (unless it is 0) and the end back to just after the previous
    /// one, so the text holds whole stories/paragraphs.
    /// </summary>
    public static string Read(string path, long start, long? end, bool snapToParagraphs)
    {
        byte[] all = File.ReadAllBytes(path);
        long s = Math.Min(start, all.Length), e = Math.Min(end ?? all.Length, all.Length);
        if (snapToParagraphs)
        {
            if (s > 0)
            {
                int i = IndexOf(all, s, e);
                s = i >= 0 ? i + 2 : e;
            }
            if (e < all.Length)
            {
                int j = LastIndexOf(all, s, e);
                e = j >= 0 ? j + 2 : s;
            }
        }
        if (e <= s)
        {
            throw new ArgumentException($"{path}: byte range [{start}, {end}) holds no complete paragraph");
        }
        return Encoding.UTF8.GetString(all, (int)s, (int)(e - s));
    }

    private static int IndexOf(byte[] b, long from, long to)
    {
        for (long i = from; i + 1 < to; i++)
        {
            if (b[i] == '\n' && b[i + 1] == '\n')
            {
                return (int)i;
            }
        }
        return -1;
    }

    private static int LastIndexOf(byte[] b, long from, long to)
    {
        for (long i = to - 2; i >= from; i--)
        {
            if (b[i] == '\n' && b[i + 1] == '\n')
            {
                return (int)i;
            }
        }
        return -1;
    }
}
