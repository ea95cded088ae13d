using System.CommandLine;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;

namespace Kernels.Cli.Commands;

/// <summary>The synthetic-model shape options shared by <c>bench</c> and <c>synth</c>.</summary>
internal sealed class ShapeOptions
{
    public readonly Option<string> Shape = new("--shape") { Description = "Model shape: tinyllama (dim 2048, hidden 5632, 22 layers, 32 heads, 4 KV heads, vocab 32000), 7b, small", DefaultValueFactory = _ => "tinyllama" };
    public readonly Option<int?> Layers = new Option<int?>("--layers") { Description = "Override the number of layers" }.InRange(1, 1024);

    public void AddTo(Command command)
    {
        command.Options.Add(Shape);
        command.Options.Add(Layers);
    }

    public SyntheticShape Get(ParseResult parse)
    {
        var s = SyntheticShape.Parse(parse.GetValue(Shape)!);
        if (parse.GetValue(Layers) is { } l)
        {
            if (l < 1 || l > 1024)
            {
                throw new ArgumentException($"--layers {l}: must be between 1 and 1024");
            }
            s = s with { Layers = l, Name = $"{s.Name}-{l}L" };
        }
        return s;
    }

    /// <summary>Parses one value type name (f32, f16, bf16).</summary>
    public static ElementType ParseType(string text, string option) => text.Trim().ToLowerInvariant() switch
    {
        "f32" => ElementType.F32,
        "f16" => ElementType.F16,
        "bf16" => ElementType.BF16,
        _ => throw new ArgumentException($"{option}: unknown type '{text}' (f32, f16, bf16)"),
    };

    /// <summary>Parses a comma list of value types.</summary>
    public static ElementType[] ParseTypes(string text, string option)
    {
        var types = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(t => ParseType(t, option)).Distinct().ToArray();
        return types.Length > 0 ? types : throw new ArgumentException($"{option}: no value type given (f32, f16, bf16)");
    }
}
