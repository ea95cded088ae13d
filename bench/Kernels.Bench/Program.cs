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
    public static void Main(string[] args)
    {
        if (args.Length > 0 && args[0] is "cancel-latency" or "compat" or "serve-load")
        {
            try
            {
                if (args[0] == "compat")
                {
                    Compat.Run(args[1..]);
                }
                else if (args[0] == "serve-load")
                {
                    ServeLoad.Run(args[1..]);
                }
                else
                {
                    CancelLatency.Run(args[1..]);
                }
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine(e.Message);
                Environment.ExitCode = 1;
            }
            return;
        }
        if (args.Length > 0 && args[0] is "side-by-side" or "side-by-side-quant")
        {
            try
            {
                if (args[0] == "side-by-side")
                {
                    SideBySide.Run(args[1..]);
                }
                else
                {
                    QuantizedSideBySide.Run(args[1..]);
                }
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine(e.Message);
                Environment.ExitCode = 1;
            }
            return;
        }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, BenchConfig.Create());
    }
}
