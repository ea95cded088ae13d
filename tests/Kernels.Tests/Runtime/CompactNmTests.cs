using System.Text;
using Kernels.Runtime.Compute;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Sparsity;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>
/// The compact N:M GGUF (prune --format nm, docs/formats.md): it loads as views over the file
/// with no conversion and computes exactly what the standard file computes after --sparse auto;
/// corrupt arrays and descriptions fail naming the file and tensor.
/// </summary>
public sealed class CompactNmTests
{
    private static readonly int[] Tokens = { 1, 403, 407, 261, 378, 260, 412, 271, 300 };

    private static float[][] Logits(LlamaModel model)
    {
        using var ops = new HostOps();
        var all = ModelFixtures.TeacherForcedLogits(model, ops, Tokens, Enumerable.Range(0, Tokens.Length), batched: true);
        return Enumerable.Range(0, Tokens.Length).Select(i => all[i]).ToArray();
    }

    private static NmParts? PartsOf(WeightMatrix m) => m switch
    {
        NmSparseMatrix s => s.Parts,
        NmQuantizedMatrix q => q.Parts,
        NmOutputSparseMatrix o => o.Parts,
        _ => null,
    };

    [DataTheory]
    [InlineData("2:4", NmAxis.Input, null)]
    [InlineData("4:8", NmAxis.Input, null)]
    [InlineData("2:4", NmAxis.Output, null)]
    [InlineData("4:8", NmAxis.Output, null)]
    [InlineData("2:4", NmAxis.Input, QuantType.Q8_0)]
    [InlineData("4:8", NmAxis.Input, QuantType.Q4_0)]
    [InlineData("2:4", NmAxis.Output, QuantType.Q4_0)]
    public void Compact_file_loads_as_views_and_computes_what_the_standard_file_computes(string pattern, NmAxis gateUpAxis, QuantType? kept)
    {
        var p = NmPattern.Parse(pattern);
        using var tmp = new TempDir();
        var plan = kept is { } k ? new QuantizePlan(k) : null;
        using (var model = ModelLoader.Load(TestData.Stories260KBin))
        {
            SparseModelTests.PruneInPlace(model, p, gateUpAxis);
            GgufWriter.WriteModel(model, tmp.File("standard.gguf"), ElementType.F32, quantize: plan);
            var log = SparseCompression.CompressDetected(model, keptValues: kept);
            Assert.NotEmpty(log);
            GgufWriter.WriteModel(model, tmp.File("compact.gguf"), ElementType.F32, quantize: plan, compact: true);
        }
        using var standard = ModelLoader.Load(tmp.File("standard.gguf"));
        SparseCompression.CompressDetected(standard);
        using var compact = ModelLoader.Load(tmp.File("compact.gguf"));
        // Nothing left to convert: every compressed linear is a view over the file image.
        Assert.Empty(SparseCompression.CompressDetected(compact));
        var linears = compact.Layers.SelectMany(l => new[] { l.Query, l.Key, l.Value, l.Output, l.Gate, l.Up, l.Down }).ToList();
        var standardLinears = standard.Layers.SelectMany(l => new[] { l.Query, l.Key, l.Value, l.Output, l.Gate, l.Up, l.Down }).ToList();
        for (int i = 0; i < linears.Count; i++)
        {
            Assert.Equal(standardLinears[i].GetType(), linears[i].GetType());
            Assert.Equal(standardLinears[i].Format, linears[i].Format);
            var a = standardLinears[i].ToDenseArray();
            var b = linears[i].ToDenseArray();
            int bad = Enumerable.Range(0, a.Length).FirstOrDefault(j => a[j] != b[j], -1);
            Assert.True(bad < 0, $"{linears[i].Name} ({linears[i].Format}): element {bad} standard {(bad >= 0 ? a[bad] : 0)} compact {(bad >= 0 ? b[bad] : 0)}");
        }
        Assert.All(linears.Select(PartsOf).Where(x => x is not null), parts => Assert.True(parts!.Values.IsView && parts.Index.IsView));
        Assert.Contains(linears, m => (m is NmQuantizedMatrix) == (kept is not null) && PartsOf(m) is not null);
        var expected = Logits(standard);
        var actual = Logits(compact);
        for (int t = 0; t < Tokens.Length; t++)
        {
            if (kept == QuantType.Q4_0)
            {
                // Same values (checked above), but a kept 4-bit value that rounds to 0 reads as pruned in
                // the standard file: --sparse auto may then keep another zero of its group, which can
                // move the group's non-zero to the other slot and change the order of the sum.
                Tolerance.AllClose(expected[t], actual[t], 1e-5f, 1e-5f, $"logits[{t}]");
            }
            else
            {
                Assert.Equal(expected[t], actual[t]);
            }
        }
        Assert.True(new FileInfo(tmp.File("compact.gguf")).Length < new FileInfo(tmp.File("standard.gguf")).Length);
    }

    /// <summary>Writes a compact 2:4 file of stories260K (F32 values; ffn_down's 172 columns are whole groups of 4, no tail) and returns its bytes.</summary>
    private static byte[] CompactBytes(TempDir tmp)
    {
        using var model = ModelLoader.Load(TestData.Stories260KBin);
        SparseModelTests.PruneInPlace(model, NmPattern.TwoFour, NmAxis.Input);
        SparseCompression.CompressDetected(model);
        GgufWriter.WriteModel(model, tmp.File("ok.gguf"), ElementType.F32, compact: true);
        return File.ReadAllBytes(tmp.File("ok.gguf"));
    }

    /// <summary>Offset just after the first occurrence of the GGUF string <paramref name="text"/> (uint64 length + bytes).</summary>
    private static int After(byte[] file, string text)
    {
        var needle = BitConverter.GetBytes((ulong)Encoding.UTF8.GetByteCount(text)).Concat(Encoding.UTF8.GetBytes(text)).ToArray();
        int at = file.AsSpan().IndexOf(needle);
        Assert.True(at >= 0, $"'{text}' not found");
        return at + needle.Length;
    }

    [DataFact]
    public void Short_arrays_and_bad_descriptions_fail_naming_the_tensor()
    {
        using var tmp = new TempDir();
        var good = CompactBytes(tmp);

        // The values array of blk.0.ffn_down.weight declared 100 bytes long: the next array no
        // longer starts where this one ends, which the reader's layout check reports.
        var shortValues = (byte[])good.Clone();
        int dims = After(shortValues, "blk.0.ffn_down.weight.nm_values");
        Assert.Equal(1u, BitConverter.ToUInt32(shortValues, dims));
        BitConverter.GetBytes(100ul).CopyTo(shortValues, dims + 4);
        File.WriteAllBytes(tmp.File("short.gguf"), shortValues);
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(tmp.File("short.gguf")));
        Assert.Contains("blk.0.ffn_down.weight", e.Message);
        Assert.Contains("expected", e.Message);

        // Its value type F32 replaced by an unknown one.
        var badType = (byte[])good.Clone();
        int spec = After(badType, "kernels.nm.blk.0.ffn_down.weight");
        int f32 = badType.AsSpan(spec).IndexOf("F32"u8) + spec;
        badType[f32] = (byte)'X';
        File.WriteAllBytes(tmp.File("type.gguf"), badType);
        e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(tmp.File("type.gguf")));
        Assert.Contains("blk.0.ffn_down.weight", e.Message);
        Assert.Contains("X32", e.Message);

        // An unknown format version.
        var version = (byte[])good.Clone();
        int v = After(version, "kernels.nm.version");
        Assert.Equal(4u, BitConverter.ToUInt32(version, v)); // GGUF type uint32
        BitConverter.GetBytes(2u).CopyTo(version, v + 4);
        File.WriteAllBytes(tmp.File("version.gguf"), version);
        e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(tmp.File("version.gguf")));
        Assert.Contains("kernels.nm.version is 2", e.Message);

        // The index array renamed away: missing.
        var missing = (byte[])good.Clone();
        int name = After(missing, "blk.1.attn_q.weight.nm_index") - 1;
        missing[name] = (byte)'y';
        File.WriteAllBytes(tmp.File("missing.gguf"), missing);
        e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(tmp.File("missing.gguf")));
        Assert.Contains("blk.1.attn_q.weight.nm_index is missing", e.Message);
    }
}
