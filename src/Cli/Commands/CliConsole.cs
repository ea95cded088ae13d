using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary>Spectre consoles: results tables on stdout, progress and statistics on stderr (stdout stays clean for generated text).</summary>
internal static class CliConsole
{
    public static readonly IAnsiConsole Err = Create(Console.Error, Console.IsErrorRedirected);

    public static readonly IAnsiConsole Out = Create(Console.Out, Console.IsOutputRedirected);

    /// <summary>Redirected output (files, CI logs, tests) gets a wide, plain console so tables do not wrap at 80 columns.</summary>
    private static IAnsiConsole Create(TextWriter writer, bool redirected)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = redirected ? AnsiSupport.No : AnsiSupport.Detect,
            ColorSystem = redirected ? ColorSystemSupport.NoColors : ColorSystemSupport.Detect,
        });
        if (redirected)
        {
            console.Profile.Width = 220;
        }
        return console;
    }

    /// <summary>Runs <paramref name="work"/> with a progress bar on stderr (plain when stderr is not a terminal).</summary>
    public static T WithProgress<T>(string title, Func<IProgress<float>, T> work)
    {
        if (Console.IsErrorRedirected)
        {
            return work(new Progress<float>(_ => { }));
        }
        T result = default!;
        Err.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: 1.0);
                result = work(new SyncProgress(v => task.Value = Math.Clamp(v, 0, 1)));
                task.Value = 1.0;
            });
        return result;
    }

    /// <summary>Reports synchronously (Progress&lt;T&gt; posts to the thread pool and can reorder).</summary>
    private sealed class SyncProgress(Action<float> report) : IProgress<float>
    {
        public void Report(float value) => report(value);
    }

    public static int Fail(Exception e)
    {
        Err.MarkupLine($"[red]error:[/] {Markup.Escape(e.Message)}");
        return 1;
    }
}
