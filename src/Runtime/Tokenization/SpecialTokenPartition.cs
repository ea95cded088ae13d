namespace Kernels.Runtime.Tokenization;

/// <summary>
/// Cuts special tokens out of a text before it is tokenized, as llama.cpp's
/// <c>tokenizer_st_partition</c>: each special token in turn (longest first, the caller's order)
/// splits every plain fragment at its occurrences.
/// </summary>
public static class SpecialTokenPartition
{
    /// <summary>Fragments in order: (start, length, -1) for plain text, (start, length, id) for a special token.</summary>
    public static List<(int Start, int Length, int Special)> Split(string text, IEnumerable<(int Id, string Text)> specials)
    {
        var fragments = new List<(int Start, int Length, int Special)> { (0, text.Length, -1) };
        foreach (var (id, s) in specials)
        {
            if (s.Length == 0)
            {
                continue;
            }
            for (int f = 0; f < fragments.Count; f++)
            {
                var (start, length, special) = fragments[f];
                if (special >= 0)
                {
                    continue;
                }
                int hit = text.IndexOf(s, start, length, StringComparison.Ordinal);
                if (hit < 0)
                {
                    continue;
                }
                // Replace the fragment by [before, token, after]; the loop continues with "after".
                var replacement = new List<(int, int, int)>(3);
                if (hit > start)
                {
                    replacement.Add((start, hit - start, -1));
                }
                replacement.Add((hit, s.Length, id));
                int end = hit + s.Length;
                if (end < start + length)
                {
                    replacement.Add((end, start + length - end, -1));
                }
                fragments.RemoveAt(f);
                fragments.InsertRange(f, replacement);
                f += replacement.Count - 2; // the loop's f++ lands on the last piece
            }
        }
        return fragments;
    }
}
