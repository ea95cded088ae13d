using System.Runtime.InteropServices;

namespace Kernels.Simd.Matrices;

/// <summary>A zero-initialised, 64-byte aligned block of native memory (cache-line and zmm aligned).</summary>
public sealed unsafe class NativeBuffer : IDisposable
{
    public const int Alignment = 64;

    private void* _pointer;

    public NativeBuffer(long byteLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteLength);
        ByteLength = byteLength;
        // Round the allocation up so SIMD code may read whole vectors of the last line.
        nuint size = (nuint)Math.Max(Alignment, (byteLength + Alignment - 1) / Alignment * Alignment);
        _pointer = NativeMemory.AlignedAlloc(size, Alignment);
        NativeMemory.Clear(_pointer, size);
        GC.AddMemoryPressure((long)size);
        AllocatedBytes = (long)size;
    }

    public long ByteLength { get; }

    internal long AllocatedBytes { get; }

    public void* Pointer => _pointer != null ? _pointer : throw new ObjectDisposedException(nameof(NativeBuffer));

    public Span<T> AsSpan<T>() where T : unmanaged => new(Pointer, checked((int)(ByteLength / sizeof(T))));

    public static NativeBuffer Of<T>(long count) where T : unmanaged => new(count * sizeof(T));

    public void Dispose()
    {
        if (_pointer != null)
        {
            NativeMemory.AlignedFree(_pointer);
            _pointer = null;
            GC.RemoveMemoryPressure(AllocatedBytes);
        }
        GC.SuppressFinalize(this);
    }

    ~NativeBuffer()
    {
        if (_pointer != null)
        {
            NativeMemory.AlignedFree(_pointer);
        }
    }
}
