using BenchmarkDotNet.Running;

namespace Kernels.Bench;

/// <summary>BenchmarkDotNet entry point: <c>dotnet run -c Release --project bench/Kernels.Bench -- --filter '*Gemv*'</c>.</summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, BenchConfig.Create());
}
