using Kernels.Gpu;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Gpu;
using Kernels.Runtime.IO;
using Kernels.Tests.Infrastructure;
using Kernels.Tests.Runtime;
using Xunit;

namespace Kernels.Tests.Gpu;

[Collection("ilgpu-cpu")]
public sealed class GpuEndToEndTests
{
    [DataFact]
    public void Greedy_generation_on_the_ilgpu_cpu_accelerator_matches_llama2c()
    {
        using var device = GpuDevice.TryCreate(GpuKind.IlgpuCpu, out string reason) ?? throw new InvalidOperationException(reason);
        var (model, tokenizer) = ModelFixtures.LoadStoriesBin();
        using (model)
        {
            using var ops = new GpuOps(device);
            Assert.Equal(File.ReadAllText(TestData.Reference("gen_once_n64.txt")), ModelFixtures.Generate(model, tokenizer, ops, "Once upon a time", 64));
            Assert.True(ops.WeightBytes > 0);
        }
    }

    [DataFact]
    public void Sparse_model_and_prefill_logits_match_the_cpu_backend()
    {
        using var device = GpuDevice.TryCreate(GpuKind.IlgpuCpu, out string reason) ?? throw new InvalidOperationException(reason);
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        SparseModelTests.PruneInPlace(model, Kernels.Simd.Matrices.NmPattern.TwoFour, Kernels.Simd.Matrices.NmAxis.Input);
        Kernels.Runtime.Sparsity.SparseCompression.CompressDetected(model);
        int[] tokens = { 1, 403, 407, 261, 378, 260, 412, 271, 300, 289, 309, 272, 280, 400, 290, 310, 266, 301, 270 };
        using var cpu = new HostOps();
        using var gpu = new GpuOps(device);
        var positions = Enumerable.Range(0, tokens.Length).ToArray();
        var expected = ModelFixtures.TeacherForcedLogits(model, cpu, tokens, positions, batched: true);
        var actual = ModelFixtures.TeacherForcedLogits(model, gpu, tokens, positions, batched: true);
        foreach (int p in positions)
        {
            Tolerance.AllClose(expected[p], actual[p], 0, 1e-4f, $"pos {p}");
        }
    }

    [Fact]
    public void Backend_selection_reports_missing_devices_clearly()
    {
        var e = Record.Exception(() => Backends.Create("cuda"));
        if (e is not null)
        {
            Assert.Contains("Cuda", e.Message);
        }
        Assert.Throws<ArgumentException>(() => Backends.Create("tpu"));
        using var auto = Backends.Create("auto");
        Assert.False(string.IsNullOrEmpty(auto.Name));
    }
}
