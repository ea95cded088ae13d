using System.Diagnostics;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;
using Kernels.Tests.Cli;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Hostile;

/// <summary>Every writer goes through <see cref="AtomicFile"/>: a killed or failing write leaves the old file, never a partial one.</summary>
public sealed class AtomicWriteTests
{
    [Fact]
    public void A_writer_killed_mid_write_leaves_the_old_file_and_a_finished_one_leaves_the_new()
    {
        using var tmp = new TempDir();
        // ~140 MB of F32 weights: quantizing and writing them takes long enough to be interrupted.
        var shape = new SyntheticShape("kill", 512, 1376, 12, 8, 8, 4096, 256);
        using (var model = SyntheticModel.Create(shape, ElementType.F32, null, seed: 2))
        {
            GgufWriter.WriteModel(model, tmp.File("in.gguf"), ElementType.F32);
        }
        string destination = tmp.File("out.gguf");
        byte[] old = "the old file"u8.ToArray();
        File.WriteAllBytes(destination, old);

        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "kernels.dll"), "quantize", tmp.File("in.gguf"), destination, "--type", "q8_0" })
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        _ = p.StandardOutput.ReadToEndAsync();
        var childErrors = new System.Text.StringBuilder();
        p.ErrorDataReceived += (_, e) => childErrors.AppendLine(e.Data);
        p.BeginErrorReadLine();
        // Kill it once its temporary file holds data: the write is under way.
        var clock = Stopwatch.StartNew();
        bool writing = false;
        while (!p.HasExited && clock.Elapsed < TimeSpan.FromMinutes(2))
        {
            if (new DirectoryInfo(tmp.Path).EnumerateFiles().Any(f => f.Name.StartsWith(".out.gguf.", StringComparison.Ordinal) && f.Name.EndsWith(".tmp", StringComparison.Ordinal) && f.Length > 0))
            {
                writing = true;
                p.Kill(entireProcessTree: true);
                break;
            }
            Thread.Sleep(1);
        }
        p.WaitForExit();
        Assert.True(writing, "the writer finished before it could be interrupted (or never started writing): " + childErrors);
        Assert.Equal(old, File.ReadAllBytes(destination));
        Assert.Single(Directory.GetFiles(tmp.Path, "out.gguf*"));

        // Run to the end: the destination is the complete new file.
        var (code, _, stderr) = CliTests.Run("quantize", tmp.File("in.gguf"), destination, "--type", "q8_0");
        Assert.True(code == 0, stderr);
        using var loaded = Kernels.Runtime.IO.ModelLoader.Load(destination, memory: WeightMemory.Mapped);
        Assert.Equal(12, loaded.Layers.Count);
    }

    [Fact]
    public void A_failing_writer_leaves_the_destination_and_no_temporary_file()
    {
        using var tmp = new TempDir();
        string destination = tmp.File("x.json");
        File.WriteAllText(destination, "old");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(destination, fs =>
        {
            fs.Write(new byte[4096]);
            throw new InvalidOperationException("disk full (simulated)");
        }));
        Assert.Equal("old", File.ReadAllText(destination));
        Assert.Single(Directory.GetFiles(tmp.Path));
    }
}
