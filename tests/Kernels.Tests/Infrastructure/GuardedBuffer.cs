using System.Runtime.InteropServices;

namespace Kernels.Tests.Infrastructure;

/// <summary>
/// A float buffer whose last element ends exactly at an inaccessible page (mmap + mprotect
/// PROT_NONE), with canaries before it: a SIMD over-read past the end crashes the test process
/// (a loud failure) and an over-write before the start is caught by the canary check.
/// </summary>
public sealed unsafe class GuardedBuffer : IDisposable
{
    private const int PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2;
    private const int MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20;
    private const float Canary = -7.77e7f;
    private const int CanaryCount = 16;

    [DllImport("libc", SetLastError = true)]
    private static extern IntPtr mmap(IntPtr addr, nuint length, int prot, int flags, int fd, nint offset);

    [DllImport("libc", SetLastError = true)]
    private static extern int mprotect(IntPtr addr, nuint length, int prot);

    [DllImport("libc", SetLastError = true)]
    private static extern int munmap(IntPtr addr, nuint length);

    private readonly IntPtr _base;
    private readonly nuint _total;
    private readonly float* _data;
    private readonly float[]? _fallback;
    private GCHandle _pin;

    public GuardedBuffer(int length)
    {
        Length = length;
        if (OperatingSystem.IsLinux())
        {
            nuint page = (nuint)Environment.SystemPageSize;
            nuint bytes = (nuint)((length + CanaryCount) * sizeof(float));
            nuint dataPages = (bytes + page - 1) / page;
            _total = (dataPages + 1) * page;
            _base = mmap(IntPtr.Zero, _total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (_base == new IntPtr(-1))
            {
                throw new InvalidOperationException("mmap failed");
            }
            byte* guard = (byte*)_base + dataPages * page;
            if (mprotect((IntPtr)guard, page, PROT_NONE) != 0)
            {
                throw new InvalidOperationException("mprotect failed");
            }
            _data = (float*)guard - length;
        }
        else
        {
            _fallback = new float[length + 2 * CanaryCount];
            _pin = GCHandle.Alloc(_fallback, GCHandleType.Pinned);
            _data = (float*)_pin.AddrOfPinnedObject() + CanaryCount;
            for (int i = 0; i < CanaryCount; i++)
            {
                _data[length + i] = Canary;
            }
        }
        for (int i = 1; i <= CanaryCount; i++)
        {
            _data[-i] = Canary;
        }
    }

    public int Length { get; }

    public float* Pointer => _data;

    public Span<float> Span => new(_data, Length);

    /// <summary>True when no canary was overwritten.</summary>
    public bool CanariesIntact()
    {
        for (int i = 1; i <= CanaryCount; i++)
        {
            if (_data[-i] != Canary)
            {
                return false;
            }
        }
        if (_fallback is not null)
        {
            for (int i = 0; i < CanaryCount; i++)
            {
                if (_data[Length + i] != Canary)
                {
                    return false;
                }
            }
        }
        return true;
    }

    public void Dispose()
    {
        if (_fallback is null)
        {
            munmap(_base, _total);
        }
        else if (_pin.IsAllocated)
        {
            _pin.Free();
        }
    }
}
