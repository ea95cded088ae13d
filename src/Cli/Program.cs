using System.CommandLine;
using Kernels.Cli.Commands;

namespace Kernels.Cli;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var root = new RootCommand("kernels: sparse Llama inference kernels and runtime (dense vs N:M sparse, KV pruning, dynamic input pruning)")
        {
            GenerateCommand.Create(),
            ChatCommand.Create(),
            ServeCommand.Create(),
            PerplexityCommand.Create(),
            InspectCommand.Create(),
            TokenizeCommand.Create(),
            BenchCommand.Create(),
            SynthCommand.Create(),
            QuantizeCommand.Create(),
            PeerReportCommand.Create(),
            PruneCommand.Create(),
            PruneReportCommand.Create(),
            KvReportCommand.Create(),
            SimulateCommand.Create(),
            DipReportCommand.Create(),
            AnalyzeCommand.Create(),
            SimplifyCommands.PruneHeads(),
            SimplifyCommands.DropLayers(),
            ArchReportCommand.Create(),
            TrainSdtpCommand.Create(),
            GpuCommands.SelfTest(),
            GpuCommands.Bench(),
        };
        return await root.Parse(args).InvokeAsync();
    }
}
