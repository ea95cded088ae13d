using System.IO.MemoryMappedFiles;
using Kernels.Runtime.Model;

namespace Kernels.Runtime.IO;

/// <summary>A read-only memory mapping of a whole file, exposing its first byte as a pointer.</summary>
public sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile? _file;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _pointer;

    public MappedFile(string path)
    {
        Path = path;
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            throw new FileNotFoundException($"{path}: file not found", path);
        }
        Length = info.Length;
        if (Length == 0)
        {
            throw new ModelFormatException(path, "file is empty");
        }
        _file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _pointer);
        _pointer += _view.PointerOffset;
    }

    public string Path { get; }

    public long Length { get; }

    public byte* Pointer => _pointer != null ? _pointer : throw new ObjectDisposedException(Path);

    /// <summary>Throws a <see cref="ModelFormatException"/> naming <paramref name="what"/> unless [offset, offset+bytes) lies in the file.</summary>
    public void CheckRange(long offset, long bytes, string what)
    {
        if (offset < 0 || bytes < 0 || offset + bytes > Length)
        {
            throw new ModelFormatException(Path, $"{what}: needs bytes [{offset}, {offset + bytes}) but the file has {Length} bytes (truncated or corrupt)");
        }
    }

    public ReadOnlySpan<byte> Span(long offset, int length)
    {
        CheckRange(offset, length, "read");
        return new ReadOnlySpan<byte>(_pointer + offset, length);
    }

    public void Dispose()
    {
        if (_pointer != null)
        {
            _view!.SafeMemoryMappedViewHandle.ReleasePointer();
            _pointer = null;
        }
        _view?.Dispose();
        _file?.Dispose();
    }
}
