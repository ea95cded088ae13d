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

    /// <summary>
    /// llama.cpp's Q8_0 and Q4_0 files keep their blocks on the device (no F32 widening), and prefill
    /// and decode logits match the scalar reference backend, which multiplies the same dequantized
    /// values in F32. A 2:4 N:M-quantized copy of the Q8_0 model does too.
    /// </summary>
    [DataTheory]
    [InlineData("tiny-Q8_0.gguf", false)]
    [InlineData("tiny-Q4_0.gguf", false)]
    [InlineData("tiny-Q8_0.gguf", true)]
    public void Quantized_models_keep_their_blocks_and_match_the_reference_backend(string file, bool twoFour)
    {
        using var device = GpuDevice.TryCreate(GpuKind.IlgpuCpu, out string reason) ?? throw new InvalidOperationException(reason);
        using var model = ModelLoader.Load(Path.Combine(TestData.Folder, "quant", file));
        if (twoFour)
        {
            foreach (var layer in model.Layers)
            {
                layer.Gate = NmQuantized(layer.Gate);
                layer.Up = NmQuantized(layer.Up);
                layer.Down = NmQuantized(layer.Down);
            }
        }
        int[] tokens = Enumerable.Range(0, 12).Select(i => (i * 37 + 5) % model.Config.VocabSize).ToArray();
        using var reference = new ReferenceOps();
        using var gpu = new GpuOps(device);
        var positions = Enumerable.Range(0, tokens.Length).ToArray();
        foreach (bool batched in new[] { true, false })
        {
            var expected = ModelFixtures.TeacherForcedLogits(model, reference, tokens, positions, batched);
            var actual = ModelFixtures.TeacherForcedLogits(model, gpu, tokens, positions, batched);
            foreach (int p in positions)
            {
                Tolerance.AllClose(expected[p], actual[p], 1e-4f, 1e-4f, $"{file}{(twoFour ? " 2:4" : "")} pos {p} batched {batched}");
            }
        }
        // The linears stay at their file size: no F32 copy of a Q8_0 / Q4_0 / N:M-quantized matrix.
        long quantized = model.Layers.Sum(l => l.Linears().Sum(x => x.Matrix.ByteSize));
        long tables = 4L * (model.TokenEmbedding.Rows * (long)model.TokenEmbedding.Columns + model.Classifier.Rows * (long)model.Classifier.Columns);
        Assert.True(gpu.WeightBytes <= quantized + tables, $"{gpu.WeightBytes} bytes on the device for {quantized} bytes of quantized linears and {tables} of F32 tables");
    }

    private static Kernels.Simd.Matrices.WeightMatrix NmQuantized(Kernels.Simd.Matrices.WeightMatrix w)
    {
        var dense = w.ToDenseArray();
        int rows = w.Rows, cols = w.Columns;
        for (int r = 0; r < rows; r++)
        {
            for (int g = 0; g + 4 <= cols; g += 4)
            {
                foreach (int i in Enumerable.Range(0, 4).OrderBy(i => Math.Abs(dense[r * cols + g + i])).Take(2))
                {
                    dense[r * cols + g + i] = 0;
                }
            }
        }
        using var pruned = Kernels.Simd.Matrices.DenseMatrix.FromSingle(w.Name, rows, cols, dense);
        return Kernels.Simd.Matrices.NmQuantizedMatrix.Compress(pruned, Kernels.Simd.Matrices.NmPattern.TwoFour, Kernels.Simd.Quantized.QuantType.Q8_0);
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
