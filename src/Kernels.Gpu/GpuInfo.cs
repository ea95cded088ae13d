using ILGPU;
using ILGPU.Runtime;

namespace Kernels.Gpu;

/// <summary>Lists the ILGPU devices this process can see (the GPU kernels arrive with issue F).</summary>
public static class GpuInfo
{
    /// <summary>One line per device: type, name, memory.</summary>
    public static IReadOnlyList<string> Devices()
    {
        using var context = Context.Create(b => b.Default());
        return context.Devices.Select(d => $"{d.AcceleratorType}: {d.Name} ({d.MemorySize / (1 << 20)} MiB, warp {d.WarpSize})").ToList();
    }
}
