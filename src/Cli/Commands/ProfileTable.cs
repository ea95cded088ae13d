using Kernels.Runtime.Profiling;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary>How <c>--profile</c> results are printed and serialized.</summary>
internal static class ProfileTable
{
    private static readonly Dictionary<ProfilePart, string> s_names = new()
    {
        [ProfilePart.Qkv] = "QKV projections",
        [ProfilePart.Attention] = "attention",
        [ProfilePart.OutputProjection] = "output projection",
        [ProfilePart.GateUp] = "gate/up (+SwiGLU)",
        [ProfilePart.Down] = "down",
        [ProfilePart.NormsRope] = "norms + RoPE",
        [ProfilePart.LmHead] = "LM head",
        [ProfilePart.Sampling] = "sampling",
        [ProfilePart.ThreadHandOff] = "thread hand-off",
        [ProfilePart.Other] = "embedding, residuals, copies",
    };

    public static string Name(ProfilePart part) => s_names[part];

    public static Table Create(string title, StepProfile p)
    {
        var table = new Table().Title($"{title}: {p.StepMs:F2} ms per step over {p.Steps} steps ({p.Tokens / (double)Math.Max(1, p.Steps):0.#} tokens each)");
        table.AddColumns("part", "ms/step", "% of step", "calls/step", "weights GB/s");
        foreach (var part in StepProfile.Parts)
        {
            double ms = p.PartMs(part);
            table.AddRow(Name(part), ms.ToString("F3"), $"{100 * ms / p.StepMs:F1}%", p.CallsPerStep(part).ToString("0.#"),
                p.BytesPerStep(part) > 0 ? p.GBps(part).ToString("F1") : "-");
        }
        table.AddRow("[bold]sum of parts[/]", p.PartsMs.ToString("F3"), $"{100 * p.PartsMs / p.StepMs:F1}%", "", "");
        table.AddRow("not inside any part", (p.StepMs - p.PartsMs).ToString("F3"), $"{100 * (p.StepMs - p.PartsMs) / p.StepMs:F1}%", "", "");
        return table;
    }

    public static Dictionary<string, object> Json(ForwardProfiler profiler) =>
        new[] { profiler.Decode, profiler.Prefill }.Where(p => p.Steps > 0).ToDictionary(p => p.Name, p => (object)new Dictionary<string, object>
        {
            ["steps"] = p.Steps,
            ["step_ms"] = p.StepMs,
            ["parts_ms"] = p.PartsMs,
            ["parts"] = StepProfile.Parts.ToDictionary(part => part.ToString(), part => new Dictionary<string, double>
            {
                ["ms"] = p.PartMs(part),
                ["calls"] = p.CallsPerStep(part),
                ["weight_gbps"] = p.GBps(part),
            }),
        });
}
