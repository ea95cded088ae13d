using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Sparsity;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>Weights read into huge-page memory (the default) or mapped: the same bytes, the same model.</summary>
public sealed unsafe class WeightMemoryTests
{
    private static readonly int[] Prompt = { 1, 403, 407, 261, 378, 260, 412, 271 };

    private static float[] Logits(LlamaModel model)
    {
        using var ops = new HostOps();
        var all = ModelFixtures.TeacherForcedLogits(model, ops, Prompt, new[] { Prompt.Length - 1 }, batched: true);
        return all[Prompt.Length - 1];
    }

    [DataFact]
    public void Every_loader_gives_the_same_model_from_huge_pages_and_from_a_mapping()
    {
        using var tmp = new TempDir();
        using (var source = ModelLoader.Load(TestData.Stories260KBin, memory: WeightMemory.Mapped))
        {
            HfFolder.Write(source, tmp.File("hf"), ElementType.F32);
        }
        foreach (string path in new[] { TestData.Stories260KBin, TestData.Stories260KGguf, tmp.File("hf") })
        {
            using var mapped = ModelLoader.Load(path, memory: WeightMemory.Mapped);
            using var read = ModelLoader.Load(path);
            Assert.Equal(Logits(mapped), Logits(read));
        }
    }

    [DataFact]
    public void Huge_page_copy_holds_the_file_bytes_and_release_zeroes_whole_pages_only()
    {
        string path = TestData.Stories260KGguf;
        using var mapped = new MappedFile(path, WeightMemory.Mapped);
        using var read = new MappedFile(path, WeightMemory.HugePages);
        Assert.Equal(WeightMemory.HugePages, read.Memory);
        Assert.True(mapped.Span(0, (int)mapped.Length).SequenceEqual(read.Span(0, (int)read.Length)));
        // Release [5000, 5000 + 3·4096): the two whole pages inside become zeros, the partial ones keep their bytes.
        read.Release(5000, 3 * 4096);
        var bytes = read.Span(0, (int)read.Length);
        var original = mapped.Span(0, (int)mapped.Length);
        long firstPage = ((long)read.Pointer + 5000 + 4095) & ~4095L, endPage = ((long)read.Pointer + 5000 + 3 * 4096) & ~4095L;
        for (int i = 0; i < bytes.Length; i++)
        {
            long address = (long)read.Pointer + i;
            if (address >= firstPage && address < endPage)
            {
                Assert.Equal(0, bytes[i]);
            }
            else
            {
                Assert.Equal(original[i], bytes[i]);
            }
        }
        mapped.Release(0, mapped.Length); // no effect on a mapping
        Assert.True(mapped.Span(0, 64).SequenceEqual(read.Span(0, 64)));
    }

    /// <summary>Compression hands the dense copies' pages back; the compressed model still computes the same function.</summary>
    [DataFact]
    public void Compressing_a_loaded_model_releases_the_dense_copies_and_keeps_its_function()
    {
        using var tmp = new TempDir();
        using (var model = ModelLoader.Load(TestData.Stories260KBin))
        {
            foreach (var layer in model.Layers)
            {
                layer.Gate = Prune24(layer.Gate);
                layer.Up = Prune24(layer.Up);
            }
            GgufWriter.WriteModel(model, tmp.File("p.gguf"), ElementType.F32);
        }
        using var dense = ModelLoader.Load(tmp.File("p.gguf"), memory: WeightMemory.Mapped);
        var expected = Logits(dense);
        using var compressed = ModelLoader.Load(tmp.File("p.gguf"));
        var gate = (DenseMatrix)compressed.Layers[0].Gate;
        var file = (MappedFile)gate.Owner!;
        long offset = gate.Data - file.Pointer;
        Assert.NotEmpty(SparseCompression.CompressDetected(compressed));
        Assert.IsType<NmSparseMatrix>(compressed.Layers[0].Gate);
        // The dense gate's whole pages are zero now (released); the model no longer reads them.
        long page = ((long)file.Pointer + offset + 4095) & ~4095L;
        Assert.True(page + 4096 <= (long)file.Pointer + offset + gate.ByteSize);
        Assert.True(new ReadOnlySpan<byte>((void*)page, 4096).IndexOfAnyExcept((byte)0) < 0);
        Tolerance.AllClose(expected, Logits(compressed), 1e-5f, 1e-5f, "compressed logits");
    }

    private static DenseMatrix Prune24(WeightMatrix m)
    {
        var values = m.ToDenseArray();
        for (int g = 0; g + 4 <= values.Length; g += 4)
        {
            // Keep the two largest magnitudes of every group of four (groups never straddle rows: 64 and 172 divide by 4).
            var order = Enumerable.Range(g, 4).OrderBy(i => MathF.Abs(values[i])).Take(2).ToArray();
            values[order[0]] = 0f;
            values[order[1]] = 0f;
        }
        return DenseMatrix.FromSingle(m.Name, m.Rows, m.Columns, values);
    }
}
