using BenchmarkDotNet.Running;

namespace Kernels.Bench;

/// <summary>
/// BenchmarkDotNet entry point: <c>dotnet run -c Release --project bench/Kernels.Bench -- --filter '*Gemv*'</c>;
/// <c>-- side-by-side SHAPE N</c> times dense / 2:4 / 4:8 round-robin instead (<see cref="SideBySide"/>).
/// </summary>
public static class Program
{
    public static void Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "side-by-side")
        {
            try
            {
                SideBySide.Run(args[1..]);
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
