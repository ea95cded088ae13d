using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace Kernels.Gpu;

/// <summary>Accelerator kinds the GPU backend can run on.</summary>
public enum GpuKind
{
    /// <summary>ILGPU's CPU accelerator (simulated warps; runs the GPU kernels without a GPU).</summary>
    IlgpuCpu,
    Cuda,
    OpenCL,
}

/// <summary>
/// One ILGPU context and accelerator plus its loaded kernels. Kernels are compiled and loaded
/// once per accelerator and reused for every launch (ILGPU compiles on first load: ~0.1 s each).
/// </summary>
public sealed class GpuDevice : IDisposable
{
    private GpuDevice(Context context, Accelerator accelerator, GpuKind kind)
    {
        Context = context;
        Accelerator = accelerator;
        Kind = kind;
        Kernels = new GpuKernels(accelerator);
    }

    public Context Context { get; }
    public Accelerator Accelerator { get; }
    public GpuKind Kind { get; }
    public GpuKernels Kernels { get; }

    public string Description => $"{Kind} {Accelerator.Name} ({Accelerator.MemorySize / (1 << 20)} MiB, warp {Accelerator.WarpSize}, {Accelerator.MaxNumThreadsPerGroup} threads/group)";

    /// <summary>The CPU accelerator's device preset: ILGPU_CPU_TEST_KIND (Default, Nvidia, AMD, LegacyAMD, Intel), Nvidia if unset (32-wide warps, 1024 threads per group).</summary>
    public static CPUDeviceKind CpuKind =>
        Enum.TryParse<CPUDeviceKind>(Environment.GetEnvironmentVariable("ILGPU_CPU_TEST_KIND"), true, out var k) ? k : CPUDeviceKind.Nvidia;

    /// <summary>Creates the accelerator, or returns null (with the reason) when no such device exists.</summary>
    public static GpuDevice? TryCreate(GpuKind kind, out string reason)
    {
        Context? context = null;
        try
        {
            context = Context.Create(b =>
            {
                b.EnableAlgorithms();
                switch (kind)
                {
                    case GpuKind.IlgpuCpu: b.CPU(CpuKind); break;
                    case GpuKind.Cuda: b.Cuda(); break;
                    case GpuKind.OpenCL: b.OpenCL(); break;
                }
            });
            var wanted = kind switch
            {
                GpuKind.Cuda => AcceleratorType.Cuda,
                GpuKind.OpenCL => AcceleratorType.OpenCL,
                _ => AcceleratorType.CPU,
            };
            Device? device = context.Devices.FirstOrDefault(d => d.AcceleratorType == wanted);
            if (device is null)
            {
                reason = $"no {kind} device found";
                context.Dispose();
                return null;
            }
            var accelerator = device.CreateAccelerator(context);
            reason = "";
            return new GpuDevice(context, accelerator, kind);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            reason = $"{kind} unavailable: {e.GetType().Name}: {e.Message}";
            context?.Dispose();
            return null;
        }
    }

    /// <summary>Lists devices ILGPU can see (CUDA, OpenCL, CPU).</summary>
    public static IReadOnlyList<string> ListDevices()
    {
        try
        {
            using var context = Context.Create(b => b.Default());
            return context.Devices.Select(d => $"{d.AcceleratorType}: {d.Name} ({d.MemorySize / (1 << 20)} MiB)").ToList();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new[] { $"device enumeration failed: {e.Message}" };
        }
    }

    public void Dispose()
    {
        Accelerator.Dispose();
        Context.Dispose();
    }
}
