namespace Kernels.Runtime.Model;

/// <summary>A model, tokenizer or weight file that cannot be read: names the file (and tensor) and the problem.</summary>
public sealed class ModelFormatException : Exception
{
    public ModelFormatException(string source, string problem, Exception? inner = null)
        : base($"{source}: {problem}", inner)
    {
        Source = source;
        Problem = problem;
    }

    /// <summary>File, folder or tensor the problem is in.</summary>
    public new string Source { get; }

    public string Problem { get; }
}
