using System.Runtime.InteropServices;

namespace Kernels.Simd.Matrices;

/// <summary>A zero-initialised, 64-byte aligned block of native memory (cache-line and zmm aligned).</summary>
/// <remarks>
/// On Linux, blocks of 4 MiB and more are mapped with mmap and advised to use transparent huge
/// pages: first-touch page faults dominate building multi-GB weight sets in a VM (measured here:
/// 4.3 s for 2.3 GB with 4 KiB pages), and 2 MiB pages also cut TLB misses when GEMV streams them.
/// </remarks>
public sealed unsafe partial class NativeBuffer : IDisposable
{
    public const int Alignment = 64;
    private const long HugeThreshold = 4L << 20;

    private void* _pointer;
    private readonly bool _mapped;
    private readonly nuint _mappedLength;
    /// <summary>Set for views: what owns the memory (a model file); nothing is freed here.</summary>
    private readonly object? _owner;

    public NativeBuffer(long byteLength) : this(byteLength, byteLength >= HugeThreshold)
    {
    }

    /// <param name="map">Map anonymous memory (advised to use huge pages; pages can be released) whatever the size, on Linux.</param>
    private NativeBuffer(long byteLength, bool map)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteLength);
        ByteLength = byteLength;
        // Round the allocation up so SIMD code may read whole vectors of the last line.
        nuint size = (nuint)Math.Max(Alignment, (byteLength + Alignment - 1) / Alignment * Alignment);
        if (map && OperatingSystem.IsLinux())
        {
            _mappedLength = (size + (2u << 20) - 1) & ~((nuint)(2u << 20) - 1);
            void* p = Mmap(null, _mappedLength, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
            if (p != (void*)-1)
            {
                Madvise(p, _mappedLength, MadvHugePage);
                _pointer = p;
                _mapped = true;
            }
        }
        if (_pointer == null)
        {
            _pointer = NativeMemory.AlignedAlloc(size, Alignment);
            NativeMemory.Clear(_pointer, size);
        }
        AllocatedBytes = _mapped ? (long)_mappedLength : (long)size;
        GC.AddMemoryPressure(AllocatedBytes);
    }

    private NativeBuffer(void* pointer, long byteLength, object owner)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteLength);
        ArgumentNullException.ThrowIfNull(owner);
        if (pointer == null)
        {
            throw new ArgumentException("null pointer", nameof(pointer));
        }
        _pointer = pointer;
        _owner = owner;
        ByteLength = byteLength;
    }

    /// <summary>
    /// A buffer over memory <paramref name="owner"/> keeps alive (a model file read or mapped into
    /// memory): compressed matrices stored in a file are used in place. Disposing it frees nothing.
    /// </summary>
    public static NativeBuffer View(void* pointer, long byteLength, object owner) => new(pointer, byteLength, owner);

    /// <summary>Whether this buffer views memory it does not own.</summary>
    public bool IsView => _owner is not null;

    public long ByteLength { get; }

    internal long AllocatedBytes { get; }

    public void* Pointer => _pointer != null ? _pointer : throw new ObjectDisposedException(nameof(NativeBuffer));

    public Span<T> AsSpan<T>() where T : unmanaged => new(Pointer, checked((int)(ByteLength / sizeof(T))));

    public static NativeBuffer Of<T>(long count) where T : unmanaged => new(count * sizeof(T));

    /// <summary>A block of mapped anonymous memory whatever its size (on Linux), so that <see cref="Release"/> works on it: model files read into memory.</summary>
    public static NativeBuffer Mapped(long byteLength) => new(byteLength, map: true);

    /// <summary>
    /// Gives the physical pages wholly inside [offset, offset + bytes) back to the system
    /// (madvise DONTNEED on a mapped block; reading them afterwards gives zeros). For data nothing
    /// reads any more, such as a weight matrix replaced by its compressed form. No effect on
    /// blocks from the C heap or outside Linux.
    /// </summary>
    public void Release(long offset, long bytes)
    {
        if (!_mapped || bytes <= 0 || offset < 0 || offset > ByteLength || bytes > ByteLength - offset)
        {
            return;
        }
        const long page = 4096;
        long start = ((long)Pointer + offset + page - 1) & ~(page - 1);
        long end = ((long)Pointer + offset + bytes) & ~(page - 1);
        if (end > start)
        {
            Madvise((void*)start, (nuint)(end - start), MadvDontNeed);
        }
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        if (_owner is not null)
        {
            _pointer = null;
            return;
        }
        if (_pointer != null)
        {
            if (_mapped)
            {
                Munmap(_pointer, _mappedLength);
            }
            else
            {
                NativeMemory.AlignedFree(_pointer);
            }
            _pointer = null;
            GC.RemoveMemoryPressure(AllocatedBytes);
        }
    }

    ~NativeBuffer() => Free();

    private const int ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapAnonymous = 0x20, MadvDontNeed = 4, MadvHugePage = 14;

    [LibraryImport("libc", EntryPoint = "mmap")]
    private static partial void* Mmap(void* address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap")]
    private static partial int Munmap(void* address, nuint length);

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);
}
