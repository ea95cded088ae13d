using Kernels.Runtime.Tokenization;

namespace Kernels.Runtime.Pruning;

/// <summary>
/// Calibration windows: BOS followed by (length - 1) consecutive tokens of a text, the windows
/// taken back to back from the start of the text (deterministic; the seeds sample random
/// windows of C4, which this project does not have).
/// </summary>
public sealed class CalibrationSet
{
    public CalibrationSet(IReadOnlyList<int[]> windows) => Windows = windows;

    public IReadOnlyList<int[]> Windows { get; }

    public int Tokens => Windows.Sum(w => w.Length);

    public static CalibrationSet FromText(ITokenizer tokenizer, string text, int windows, int length)
    {
        if (windows < 1 || length < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(windows), "need at least one window of at least 2 tokens");
        }
        int[] tokens = tokenizer.Encode(text, addBos: false, addEos: false);
        var result = new List<int[]>();
        for (int start = 0; result.Count < windows && start + length - 1 <= tokens.Length; start += length - 1)
        {
            var w = new int[length];
            w[0] = tokenizer.Bos;
            Array.Copy(tokens, start, w, 1, length - 1);
            result.Add(w);
        }
        if (result.Count == 0)
        {
            throw new ArgumentException($"calibration text has {tokens.Length} tokens, fewer than one window of {length}");
        }
        return new CalibrationSet(result);
    }
}
