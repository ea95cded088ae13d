using Kernels.Gpu;
using Kernels.Runtime.Gpu;

namespace Kernels.Runtime.Compute;

/// <summary>Backend selection: cpu (SIMD), reference (scalar), ilgpu-cpu, cuda, opencl, auto (CUDA, then OpenCL, else cpu).</summary>
public static class Backends
{
    public static readonly string[] Names = { "cpu", "reference", "ilgpu-cpu", "cuda", "opencl", "auto" };

    public static ITransformerOps Create(string name)
    {
        switch (name.ToLowerInvariant())
        {
            case "cpu":
                return new HostOps();
            case "reference":
                return new ReferenceOps();
            case "ilgpu-cpu":
                return Gpu(GpuKind.IlgpuCpu);
            case "cuda":
                return Gpu(GpuKind.Cuda);
            case "opencl":
                return Gpu(GpuKind.OpenCL);
            case "auto":
                foreach (var kind in new[] { GpuKind.Cuda, GpuKind.OpenCL })
                {
                    if (GpuDevice.TryCreate(kind, out _) is { } device)
                    {
                        return new GpuOps(device);
                    }
                }
                return new HostOps();
            default:
                throw new ArgumentException($"unknown device '{name}' ({string.Join(", ", Names)})");
        }
    }

    private static GpuOps Gpu(GpuKind kind) =>
        GpuDevice.TryCreate(kind, out string reason) is { } device ? new GpuOps(device) : throw new InvalidOperationException($"--device {kind}: {reason}");
}
