using BenchmarkDotNet.Running;

namespace Kernels.Bench;

/// <summary>
/// BenchmarkDotNet entry point: <c>dotnet run -c Release --project bench/Kernels.Bench -- --filter '*Gemv*'</c>;
/// <c>-- side-by-side SHAPE N</c> times dense / 2:4 / 4:8 round-robin instead (<see cref="SideBySide"/>),
/// <c>-- side-by-side-quant SHAPE N</c> the quantized formats against dense F16 (<see cref="QuantizedSideBySide"/>),
/// <c>-- cancel-latency [layers] [prompt] [rounds]</c> how fast a cancelled prefill stops (<see cref="CancelLatency"/>),
/// <c>-- compat MODEL TOKENS PEER.f32 [OUT.json]</c> teacher-forced logits against llama.cpp's (<see cref="Compat"/>),
/// <c>-- serve-load URL CLIENTS REQUESTS MAX_TOKENS [OUT.json]</c> load on a running <c>kernels serve</c> (<see cref="ServeLoad"/>).
/// </summary>
public static class Program
{
    /// <summary>The timers and tools that run without BenchmarkDotNet, by their first argument.</summary>
    private static readonly Dictionary<string, Action<string[]>> Tools = new()
    {
        ["side-by-side"] = SideBySide.Run,
        ["side-by-side-quant"] = QuantizedSideBySide.Run,
        ["cancel-latency"] = CancelLatency.Run,
        ["compat"] = Compat.Run,
        ["serve-load"] = ServeLoad.Run,
    };

    public static void Main(string[] args)
    {
        if (args.Length > 0 && Tools.TryGetValue(args[0], out var tool))
        {
            try
            {
                tool(args[1..]);
            }
            catch (Exception e) when (e is ArgumentException or IOException or Kernels.Runtime.Model.ModelFormatException or System.Net.Http.HttpRequestException)
            {
                // Bad arguments, a missing or broken file, an unreachable server: one line, no stack trace.
                Console.Error.WriteLine(e.Message);
                Environment.ExitCode = 1;
            }
            return;
        }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, BenchConfig.Create());
    }
}
