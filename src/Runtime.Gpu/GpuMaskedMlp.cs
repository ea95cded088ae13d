using ILGPU.Runtime;
using Kernels.Gpu;
using Kernels.Simd;

namespace Kernels.Runtime.Gpu;

/// <summary>A layer's column-major gateᵀ, upᵀ and downᵀ on the device, for the masked SwiGLU kernels of dynamic input pruning.</summary>
internal sealed class GpuMaskedMlp : IDisposable
{
    /// <summary>Uploads <paramref name="host"/> and disposes it: the host copy is only a staging buffer.</summary>
    public GpuMaskedMlp(Accelerator a, ColumnMajorMlp host)
    {
        using (host)
        {
            GateT = new GpuMatrix(a, host.GateT);
            UpT = new GpuMatrix(a, host.UpT);
            DownT = new GpuMatrix(a, host.DownT);
        }
    }

    /// <summary>[dim, hidden].</summary>
    public GpuMatrix GateT { get; }

    /// <summary>[dim, hidden].</summary>
    public GpuMatrix UpT { get; }

    /// <summary>[hidden, dim].</summary>
    public GpuMatrix DownT { get; }

    public long Bytes => GateT.Bytes + UpT.Bytes + DownT.Bytes;

    public void Dispose()
    {
        GateT.Dispose();
        UpT.Dispose();
        DownT.Dispose();
    }
}
