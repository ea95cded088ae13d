using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;
using Kernels.Runtime.Chat;
using Kernels.Runtime.Compute;
using Kernels.Runtime.IO;
using Kernels.Runtime.Tokenization;
using Kernels.Tests.Infrastructure;
using Microsoft.Extensions.AI;
using Xunit;

namespace Kernels.Tests.Packaging;

/// <summary>
/// The libraries as a NuGet consumer gets them: <c>dotnet pack</c> into out/packages, then
/// samples/ChatConsole restored from that folder (package references, not project references),
/// built and run on stories260K. Its reply must be the one this build's client gives.
/// </summary>
public sealed class PackageTests
{
    private static readonly string[] Packages = ["Kernels.Simd", "Kernels.Gpu", "Kernels.Runtime", "Kernels.Runtime.Gpu", "Kernels.Runtime.Chat", "Kernels.Server"];

    private static (int Code, string Out, string Err) Dotnet(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = TestData.RepositoryRoot };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(600_000))
        {
            p.Kill(true);
            Assert.Fail($"dotnet {string.Join(' ', args)} timed out");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [DataFact]
    public async Task The_packages_carry_their_metadata_and_the_sample_built_on_them_answers_like_this_build()
    {
        string feed = Path.Combine(TestData.RepositoryRoot, "out", "packages");
        if (Directory.Exists(feed))
        {
            Directory.Delete(feed, recursive: true);
        }
        var pack = Dotnet("pack", "Kernels.sln", "-c", "Release", "--no-build", "-o", feed, "--nologo");
        Assert.True(pack.Code == 0, pack.Out + pack.Err);
        foreach (string id in Packages)
        {
            string nupkg = Path.Combine(feed, $"{id}.0.18.0.nupkg");
            Assert.True(File.Exists(nupkg), $"{id}: no package in {feed}");
            Assert.True(File.Exists(Path.ChangeExtension(nupkg, ".snupkg")), $"{id}: no symbol package");
            using var zip = ZipFile.OpenRead(nupkg);
            var nuspec = XDocument.Load(zip.GetEntry($"{id}.nuspec")!.Open());
            XNamespace ns = nuspec.Root!.Name.Namespace;
            var meta = nuspec.Root.Element(ns + "metadata")!;
            Assert.Equal("MIT", meta.Element(ns + "license")?.Value);
            Assert.Equal("README.md", meta.Element(ns + "readme")?.Value);
            Assert.NotNull(zip.GetEntry("README.md"));
            Assert.Equal("git", meta.Element(ns + "repository")?.Attribute("type")?.Value);
            Assert.False(string.IsNullOrWhiteSpace(meta.Element(ns + "description")?.Value), $"{id}: no description");
            Assert.NotNull(zip.GetEntry($"lib/net10.0/{id}.dll"));
        }

        string sample = Path.Combine(TestData.RepositoryRoot, "samples", "ChatConsole");
        // The sample restores into its own obj/packages: drop the Kernels packages there so this pack is the one used.
        string restored = Path.Combine(sample, "obj", "packages");
        if (Directory.Exists(restored))
        {
            foreach (string dir in Directory.GetDirectories(restored, "kernels.*"))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
        var run = Dotnet("run", "--project", sample, "-c", "Release", "--", TestData.Stories260KGguf, "llama-2");
        Assert.True(run.Code == 0, run.Out + run.Err);
        Assert.True(File.Exists(Path.Combine(sample, "obj", "packages", "kernels.runtime.chat", "0.18.0", "kernels.runtime.chat.0.18.0.nupkg")),
            "the sample restored Kernels.Runtime.Chat from the folder feed");

        using var model = ModelLoader.Load(TestData.Stories260KGguf);
        using var ops = new HostOps();
        using var client = new LocalChatClient(model, ops, TokenizerLoader.Load(model, null), new LocalChatOptions { Template = ChatTemplate.ByName("llama-2") });
        var expected = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Tell me a story about a cat")], new ChatOptions { Temperature = 0, MaxOutputTokens = 32 });
        Assert.Equal(expected.Text, run.Out.TrimEnd('\n', '\r'));
        Assert.Contains("32 generated", run.Err);
    }
}
