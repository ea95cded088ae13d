using System.Security.Cryptography;
using System.Text.Json;
using Kernels.Runtime.Compute;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>
/// llama.cpp's quantized GGUF files (../shared/data/quant): every tensor dequantizes to the
/// oracle's bits, the files load as models, and their logits match a dequantized F32 copy.
/// </summary>
public sealed unsafe class QuantizedGgufTests
{
    public static readonly string[] Files = { "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K" };

    public static IEnumerable<object[]> FileNames() => Files.Select(f => new object[] { f });

    private static string QuantFile(string name) => Path.Combine(TestData.Folder, "quant", name);

    [DataTheory]
    [MemberData(nameof(FileNames))]
    public void Every_tensor_reproduces_the_dequantization_oracle(string type)
    {
        string file = $"tiny-{type}.gguf";
        using var json = JsonDocument.Parse(File.ReadAllText(QuantFile($"tiny-{type}.dequant.json")));
        var expected = json.RootElement.GetProperty(file);
        using var gguf = GgufFile.Open(QuantFile(file));
        Assert.Equal(expected.EnumerateObject().Count(), gguf.Tensors.Count);
        var seenTypes = new HashSet<GgmlType>();
        foreach (var t in gguf.Tensors)
        {
            var oracle = expected.GetProperty(t.Name);
            Assert.Equal(oracle.GetProperty("type").GetString(), t.Type.ToString());
            seenTypes.Add(t.Type);
            var values = new float[t.ElementCount];
            byte* data = gguf.TensorData(t);
            fixed (float* v = values)
            {
                if (t.Quantization is { } q)
                {
                    long rows = t.ElementCount / t.Dims[0];
                    long rowBytes = q.RowBytes(t.Dims[0]);
                    for (long r = 0; r < rows; r++)
                    {
                        Dequantization.Row(q, data + r * rowBytes, v + r * t.Dims[0], (int)t.Dims[0]);
                    }
                }
                else
                {
                    Assert.Equal(GgmlType.F32, t.Type);
                    new ReadOnlySpan<float>(data, values.Length).CopyTo(values);
                }
            }
            string sha = Convert.ToHexString(SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()))).ToLowerInvariant();
            Assert.True(oracle.GetProperty("sha256_f32").GetString() == sha, $"{file} {t.Name} ({t.Type}): sha256 {sha} differs from the oracle");
        }
        Assert.Contains(seenTypes, t => t != GgmlType.F32);
    }

    /// <summary>
    /// tiny-Q8_0 / Q4_0 / Q6_K / Q4_K_M are llama-quantize's output for tiny-f32.gguf: quantizing
    /// the F32 tensors with <see cref="Quantization"/> reproduces every Q8_0, Q4_0, Q4_K and Q6_K
    /// tensor byte for byte.
    /// </summary>
    [DataTheory]
    [InlineData("Q8_0", "Q8_0", 15)]
    [InlineData("Q4_0", "Q4_0", 14)]
    [InlineData("Q6_K", "Q6_K", 15)]
    [InlineData("Q4_K_M", "Q4_K", 8)]
    [InlineData("Q4_K_M", "Q6_K", 3)]
    public void Quantizer_writes_the_bytes_llama_quantize_wrote(string file, string type, int minTensors)
    {
        using var source = GgufFile.Open(QuantFile("tiny-f32.gguf"));
        using var quantized = GgufFile.Open(QuantFile($"tiny-{file}.gguf"));
        int compared = 0;
        foreach (var t in quantized.Tensors.Where(t => t.Quantization?.ToString() == type))
        {
            var f32 = source.Tensors.Single(s => s.Name == t.Name);
            Assert.Equal(GgmlType.F32, f32.Type);
            var q = t.Quantization!.Value;
            int columns = (int)t.Dims[0];
            long rows = t.ElementCount / columns, rowBytes = q.RowBytes(columns);
            var mine = new byte[rowBytes];
            for (long r = 0; r < rows; r++)
            {
                Quantization.QuantizeRow(q, new ReadOnlySpan<float>((float*)source.TensorData(f32) + r * columns, columns), mine);
                var theirs = new ReadOnlySpan<byte>(quantized.TensorData(t) + r * rowBytes, (int)rowBytes);
                Assert.True(theirs.SequenceEqual(mine), $"{t.Name} row {r}: quantized bytes differ from llama-quantize's");
            }
            compared++;
        }
        Assert.True(compared >= minTensors, $"only {compared} {type} tensors compared");
    }

    [DataTheory]
    [MemberData(nameof(FileNames))]
    public void Quantized_files_run_like_their_dequantized_copy(string type)
    {
        using var tmp = new TempDir();
        using var quantized = ModelLoader.Load(QuantFile($"tiny-{type}.gguf"));
        Assert.IsType<QuantizedMatrix>(quantized.Layers[0].Gate);
        GgufWriter.WriteModel(quantized, tmp.File("dequantized.gguf"), ElementType.F32);
        using var dense = ModelLoader.Load(tmp.File("dequantized.gguf"));
        Assert.IsType<DenseMatrix>(dense.Layers[0].Gate);

        int[] prompt = { 1, 403, 407, 261, 378, 260, 412, 271, 300, 289 };
        using var ops = new HostOps();
        var q = ModelFixtures.TeacherForcedLogits(quantized, ops, prompt, Enumerable.Range(0, prompt.Length), batched: true);
        var qSingle = ModelFixtures.TeacherForcedLogits(quantized, ops, prompt, Enumerable.Range(0, prompt.Length), batched: false);
        var d = ModelFixtures.TeacherForcedLogits(dense, ops, prompt, Enumerable.Range(0, prompt.Length), batched: true);
        // Integer kernels (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K; llama-quantize keeps output.weight in Q6_K for
        // every type here) round activations to int8 per block of 32, as llama.cpp does: the logits
        // move by a few percent of their range at most, about 0.5 % on average. A wiring error
        // (wrong tensor, stride or layout) moves them by their whole range.
        for (int p = 0; p < prompt.Length; p++)
        {
            float scale = d[p].Max(MathF.Abs);
            double meanError = 0;
            for (int i = 0; i < d[p].Length; i++)
            {
                Assert.True(MathF.Abs(q[p][i] - d[p][i]) <= 0.05f * scale, $"{type} position {p} logit {i}: {q[p][i]} vs dequantized {d[p][i]} (max |logit| {scale})");
                // (Batches take other kernels than single tokens: int8 tiles, or exact float panels from 16 tokens on.)
                Assert.True(MathF.Abs(q[p][i] - qSingle[p][i]) <= 0.05f * scale, $"{type} position {p} logit {i}: batched {q[p][i]} vs one token at a time {qSingle[p][i]}");
                meanError += MathF.Abs(q[p][i] - d[p][i]) / d[p].Length;
            }
            Assert.True(meanError <= 0.01 * scale, $"{type} position {p}: mean |logit error| {meanError} > 1 % of {scale}");
        }
    }

    [Fact]
    public void Quantized_rows_that_are_not_whole_blocks_name_the_tensor()
    {
        using var tmp = new TempDir();
        new GgufWriter().AddTensor("blk.0.ffn_down.weight", new long[] { 2, 48 }, GgmlType.Q4_0, new byte[2 * 2 * 18]).Write(tmp.File("bad.gguf"));
        var e = Assert.Throws<ModelFormatException>(() => GgufFile.Open(tmp.File("bad.gguf")));
        Assert.Contains("blk.0.ffn_down.weight", e.Message);
        Assert.Contains("not a multiple of its block of 32", e.Message);
    }

    [Fact]
    public void Quantized_data_that_does_not_fit_in_the_file_names_the_tensor()
    {
        using var tmp = new TempDir();
        // Two rows of one Q8_0 block need 68 bytes; the file holds 34.
        new GgufWriter().AddTensor("output.weight", new long[] { 2, 32 }, GgmlType.Q8_0, new byte[34]).Write(tmp.File("short.gguf"));
        var e = Assert.Throws<ModelFormatException>(() => GgufFile.Open(tmp.File("short.gguf")));
        Assert.Contains("output.weight", e.Message);
    }

    [Fact]
    public void Types_outside_the_supported_set_are_refused_by_name_on_load()
    {
        var info = new GgufTensorInfo("blk.3.attn_q.weight", new long[] { 256, 4 }, GgmlType.IQ2_XS, 0);
        Assert.False(info.IsLoadable);
        var e = Assert.Throws<ModelFormatException>(() => info.ByteSize("model.gguf"));
        Assert.Contains("blk.3.attn_q.weight", e.Message);
        Assert.Contains("IQ2_XS", e.Message);
    }
}
