using Xunit;

namespace Kernels.Tests.Infrastructure;

/// <summary>
/// The shared test data folder (<c>../shared/data</c> beside the repository). Tests that need it
/// use <see cref="DataFactAttribute"/>/<see cref="DataTheoryAttribute"/>, which report them as
/// skipped, with the reason, when the folder is absent.
/// </summary>
public static class TestData
{
    public static readonly string RepositoryRoot = FindRoot();

    public static readonly string Folder = Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "data"));

    public static bool Available => File.Exists(Path.Combine(Folder, "stories260K.bin"));

    public static string MissingReason => $"test data folder not found at {Folder} (expected ../shared/data beside the repository; see README)";

    public static string File_(string name) => Path.Combine(Folder, name);

    public static string Reference(string name) => Path.Combine(Folder, "reference", name);

    public static string Stories260KBin => File_("stories260K.bin");
    public static string Stories260KGguf => File_("stories260K.gguf");
    public static string Tok512 => File_("tok512.bin");

    public static int[] ReadInts(string path) =>
        File.ReadAllText(path).Split((char[])[' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Kernels.sln")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName ?? throw new InvalidOperationException("Kernels.sln not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>A fact that is skipped (with the path it looked in) when ../shared/data is absent.</summary>
public sealed class DataFactAttribute : FactAttribute
{
    public DataFactAttribute()
    {
        if (!TestData.Available)
        {
            Skip = TestData.MissingReason;
        }
    }
}

/// <summary>A theory that is skipped (with the path it looked in) when ../shared/data is absent.</summary>
public sealed class DataTheoryAttribute : TheoryAttribute
{
    public DataTheoryAttribute()
    {
        if (!TestData.Available)
        {
            Skip = TestData.MissingReason;
        }
    }
}

/// <summary>Temporary directory deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "kernels-tests-" + Guid.NewGuid().ToString("N")));

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
