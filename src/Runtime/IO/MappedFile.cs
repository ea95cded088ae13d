using System.IO.MemoryMappedFiles;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;

namespace Kernels.Runtime.IO;

/// <summary>How a model file's bytes are made addressable.</summary>
public enum WeightMemory
{
    /// <summary>
    /// Read the whole file into anonymous memory backed by transparent huge pages (the default
    /// for loading models). Decode streams every weight each step: with 4 KiB page-cache pages
    /// the same kernels ran 25-40 % slower here (TLB misses of a guest's nested page walk on
    /// every 4 KiB), and the first forward pass paid the page faults of the whole file.
    /// </summary>
    HugePages,

    /// <summary>Map the file (lazy, shares the page cache): headers, inspection, fixtures.</summary>
    Mapped,
}

/// <summary>A whole file, read-only, exposing its first byte as a pointer: mapped, or read into huge-page memory.</summary>
public sealed unsafe class MappedFile : IDisposable
{
    private const long ReadChunk = 16L << 20;

    private readonly MemoryMappedFile? _file;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly NativeBuffer? _copy;
    private byte* _pointer;

    public MappedFile(string path, WeightMemory memory = WeightMemory.Mapped)
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
        // A file that would not fit in memory next to everything else is mapped instead (it could not run at speed anyway).
        Memory = memory == WeightMemory.HugePages && Length > GC.GetGCMemoryInfo().TotalAvailableMemoryBytes * 9 / 10 ? WeightMemory.Mapped : memory;
        if (Memory == WeightMemory.HugePages)
        {
            _copy = NativeBuffer.Mapped(Length);
            try
            {
                ReadAll(path, (byte*)_copy.Pointer, Length);
            }
            catch
            {
                _copy.Dispose();
                throw;
            }
            _pointer = (byte*)_copy.Pointer;
            return;
        }
        _file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _pointer);
        _pointer += _view.PointerOffset;
    }

    public string Path { get; }

    public long Length { get; }

    /// <summary>How the bytes are held (a file too large for memory is mapped even when huge pages were asked for).</summary>
    public WeightMemory Memory { get; }

    public byte* Pointer => _pointer != null ? _pointer : throw new ObjectDisposedException(Path);

    /// <summary>Reads the file in 16 MiB pieces on every core (page-cache copies run at memory speed per core).</summary>
    private static void ReadAll(string path, byte* destination, long length)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        int chunks = (int)((length + ReadChunk - 1) / ReadChunk);
        Parallel.For(0, chunks, c =>
        {
            long offset = c * ReadChunk;
            int count = (int)Math.Min(ReadChunk, length - offset);
            for (int done = 0; done < count;)
            {
                int read = RandomAccess.Read(handle, new Span<byte>(destination + offset + done, count - done), offset + done);
                if (read <= 0)
                {
                    throw new ModelFormatException(path, $"the file ended at byte {offset + done} while reading {length} bytes (changed while loading?)");
                }
                done += read;
            }
        });
    }

    /// <summary>
    /// Returns the physical memory behind [offset, offset + bytes) to the system once nothing reads
    /// it any more (a matrix replaced by its compressed form). Only whole pages inside the range are
    /// released; reading them again gives zeros. No effect on a mapped file.
    /// </summary>
    public void Release(long offset, long bytes) => _copy?.Release(offset, bytes);

    /// <summary>Throws a <see cref="ModelFormatException"/> naming <paramref name="what"/> unless [offset, offset+bytes) lies in the file.</summary>
    public void CheckRange(long offset, long bytes, string what)
    {
        if (offset < 0 || bytes < 0 || offset > Length || bytes > Length - offset)
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
        if (_pointer != null && _view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
        _pointer = null;
        _view?.Dispose();
        _file?.Dispose();
        _copy?.Dispose();
    }
}
