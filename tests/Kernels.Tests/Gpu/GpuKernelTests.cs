using Kernels.Gpu;
using Kernels.Runtime.Gpu;
using Xunit;

namespace Kernels.Tests.Gpu;

/// <summary>One accelerator per backend class, created once and shared by its tests (kernels load once).</summary>
public abstract class GpuFixture : IDisposable
{
    protected GpuFixture(GpuKind kind) => Device = GpuDevice.TryCreate(kind, out Reason);

    public GpuDevice? Device { get; }

    public readonly string Reason;

    public void Dispose() => Device?.Dispose();
}

public sealed class IlgpuCpuFixture() : GpuFixture(GpuKind.IlgpuCpu);

public sealed class CudaFixture() : GpuFixture(GpuKind.Cuda);

public sealed class OpenClFixture() : GpuFixture(GpuKind.OpenCL);

/// <summary>
/// Backend-agnostic GPU kernel tests: each runs one check of <see cref="GpuSelfTest"/> (the same
/// checks `kernels gpu-selftest` runs from the published bundle). Thin subclasses bind a backend;
/// CUDA and OpenCL skip, with the reason, where no such device exists.
/// </summary>
public abstract class GpuKernelTests(GpuFixture fixture)
{
    private void Check(string name)
    {
        Skip.If(fixture.Device is null, fixture.Reason);
        var check = GpuSelfTest.Checks.Single(c => c.Name == name);
        var result = check.Run(fixture.Device!);
        Assert.True(result.Passed, $"{result.Name}: max error {result.MaxError:E2}; {result.Detail}");
    }

    [SkippableFact] public void Dense_F32() => Check("dense gemv/gemm F32");
    [SkippableFact] public void Dense_F16() => Check("dense gemv/gemm F16");
    [SkippableFact] public void Sparse_2_4_F32() => Check("sparse 2:4 F32");
    [SkippableFact] public void Sparse_2_4_F16() => Check("sparse 2:4 F16");
    [SkippableFact] public void Sparse_4_8_F32() => Check("sparse 4:8 F32");
    [SkippableFact] public void Sparse_4_8_F16() => Check("sparse 4:8 F16");
    [SkippableFact] public void Quantized_Q8_0_Q4_0() => Check("quantized Q8_0 and Q4_0");
    [SkippableFact] public void Nm_quantized() => Check("N:M quantized (2:4, 4:8 x Q8_0, Q4_0)");
    [SkippableFact] public void Elementwise() => Check("rmsnorm, rope, swiglu, add, copy");
    [SkippableFact] public void Softmax_ArgMax() => Check("softmax and argmax");
    [SkippableFact] public void Attention_with_value_norm_weighted_accumulation() => Check("attention + value-norm-weighted accumulation (GQA)");
    [SkippableFact] public void TopK_and_masked_SwiGlu() => Check("top-k and masked swiglu");

    [Fact]
    public void Every_self_test_check_has_a_test() => Assert.Equal(12, GpuSelfTest.Checks.Count);
}

[Collection("ilgpu-cpu")]
public sealed class IlgpuCpuKernelTests(IlgpuCpuFixture f) : GpuKernelTests(f), IClassFixture<IlgpuCpuFixture>;

public sealed class CudaKernelTests(CudaFixture f) : GpuKernelTests(f), IClassFixture<CudaFixture>;

public sealed class OpenClKernelTests(OpenClFixture f) : GpuKernelTests(f), IClassFixture<OpenClFixture>;
