using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;

namespace Kernels.Bench;

/// <summary>Medians and ratios (noisy shared machine), memory diagnoser, environment knobs passed through.</summary>
public static class BenchConfig
{
    public static IConfig Create()
    {
        var job = Job.Default.WithWarmupCount(2).WithIterationCount(11).WithLaunchCount(1);
        foreach (string knob in new[] { "KERNELS_THREADS", "KERNELS_MAX_SIMD_BITS", "KERNELS_BENCH_SHAPES", "KERNELS_BENCH_TOKENS", "DOTNET_PreferredVectorBitWidth", "DOTNET_EnableAVX512", "DOTNET_EnableAVX2" })
        {
            if (Environment.GetEnvironmentVariable(knob) is { } v)
            {
                job = job.WithEnvironmentVariable(knob, v);
            }
        }
        return DefaultConfig.Instance
            .AddJob(job)
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumn(StatisticColumn.Median, StatisticColumn.Min, StatisticColumn.Max)
            .WithSummaryStyle(SummaryStyle.Default.WithRatioStyle(RatioStyle.Trend))
            .WithOptions(ConfigOptions.JoinSummary);
    }
}
