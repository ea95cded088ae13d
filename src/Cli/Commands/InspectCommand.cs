using System.CommandLine;
using Kernels.Runtime.IO;
using Spectre.Console;

namespace Kernels.Cli.Commands;

/// <summary><c>kernels inspect</c>: metadata and tensor table from headers only.</summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("path") { Description = "Model file (.bin, .gguf) or HF folder" };
        var all = new Option<bool>("--all") { Description = "List every tensor (default: first 60)" };
        var command = new Command("inspect", "List a model's metadata and tensors without loading weights") { path, all };
        command.SetAction(parse =>
        {
            try
            {
                var summary = ModelInspector.Inspect(parse.GetValue(path)!);
                var o = CliConsole.Out;
                o.MarkupLine($"[bold]{Markup.Escape(summary.Path)}[/]: {Markup.Escape(summary.Format)}, {summary.Tensors.Count} tensors");
                var meta = new Table().AddColumns("key", "value").Title("metadata");
                foreach (var kv in summary.Metadata)
                {
                    meta.AddRow(Markup.Escape(kv.Key), Markup.Escape(kv.Value));
                }
                o.Write(meta);
                var tensors = new Table().AddColumns("name", "dtype", "shape").Title("tensors");
                var list = parse.GetValue(all) ? summary.Tensors : summary.Tensors.Take(60).ToList();
                foreach (var t in list)
                {
                    tensors.AddRow(Markup.Escape(t.Name), Markup.Escape(t.DType), Markup.Escape(t.ShapeText));
                }
                o.Write(tensors);
                if (list.Count < summary.Tensors.Count)
                {
                    o.MarkupLine($"... {summary.Tensors.Count - list.Count} more (--all)");
                }
                return 0;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return CliConsole.Fail(e);
            }
        });
        return command;
    }
}
