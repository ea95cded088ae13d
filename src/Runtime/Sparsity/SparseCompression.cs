using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;

namespace Kernels.Runtime.Sparsity;

/// <summary>What happened to one linear layer during compression.</summary>
public sealed record CompressionEntry(string Tensor, string Before, string After, long BytesBefore, long BytesAfter);

/// <summary>
/// Replaces the block linear layers of a model that hold an N:M pattern by the compressed
/// formats: input-axis groups → <see cref="NmSparseMatrix"/> (Q8_0 / Q4_0 weights →
/// <see cref="NmQuantizedMatrix"/>), output-axis groups (DaSS gate/up) → <see cref="NmOutputSparseMatrix"/>. Matrices without a pattern stay dense; embedding and
/// classifier are never compressed. A compressed model computes the same function (its zeros
/// are skipped, not approximated).
/// </summary>
public static class SparseCompression
{
    /// <param name="patterns">Patterns to look for, most compressed first (default 2:4, 4:8).</param>
    /// <param name="allowOutputAxis">Also look for output-axis groups.</param>
    /// <param name="keptValues">Q8_0 / Q4_0: float matrices with an input-axis pattern and rows of
    /// whole blocks become <see cref="NmQuantizedMatrix"/> of that type (output-axis groups are then
    /// not looked for).</param>
    public static IReadOnlyList<CompressionEntry> CompressDetected(LlamaModel model, IReadOnlyList<NmPattern>? patterns = null,
        bool allowOutputAxis = true, IProgress<float>? progress = null, QuantType? keptValues = null)
    {
        allowOutputAxis &= keptValues is null;
        patterns ??= new[] { NmPattern.TwoFour, NmPattern.FourEight };
        var log = new List<CompressionEntry>();
        int done = 0, total = model.Layers.Count * 7;
        for (int l = 0; l < model.Layers.Count; l++)
        {
            var layer = model.Layers[l];
            layer.Query = Convert(layer.Query, $"blk.{l}.attn_q", patterns, allowOutputAxis, log, keptValues);
            layer.Key = Convert(layer.Key, $"blk.{l}.attn_k", patterns, allowOutputAxis, log, keptValues);
            layer.Value = Convert(layer.Value, $"blk.{l}.attn_v", patterns, allowOutputAxis, log, keptValues);
            layer.Output = Convert(layer.Output, $"blk.{l}.attn_output", patterns, allowOutputAxis, log, keptValues);
            layer.Gate = Convert(layer.Gate, $"blk.{l}.ffn_gate", patterns, allowOutputAxis, log, keptValues);
            layer.Up = Convert(layer.Up, $"blk.{l}.ffn_up", patterns, allowOutputAxis, log, keptValues);
            layer.Down = Convert(layer.Down, $"blk.{l}.ffn_down", patterns, allowOutputAxis, log, keptValues);
            done += 7;
            progress?.Report((float)done / Math.Max(1, total));
        }
        model.Revalidate();
        return log;
    }

    private static WeightMatrix Convert(WeightMatrix m, string name, IReadOnlyList<NmPattern> patterns, bool output, List<CompressionEntry> log, QuantType? keptValues)
    {
        if (m is QuantizedMatrix quantized)
        {
            return ConvertQuantized(quantized, name, patterns, log);
        }
        if (m is not DenseMatrix dense)
        {
            return m;
        }
        foreach (var p in patterns)
        {
            WeightMatrix? result = null;
            if (dense.Columns >= p.M && NmSparseMatrix.Satisfies(dense, p))
            {
                // Quantized kept values where the standard writer would quantize the matrix (rows of whole
                // blocks), so a compact file holds the numbers its standard twin holds after --sparse auto.
                result = keptValues is { } q && dense.Columns % q.BlockElements() == 0
                    ? NmQuantizedMatrix.Compress(dense, p, q)
                    : NmSparseMatrix.Compress(dense, p, dense.ElementType);
            }
            else if (output && dense.Rows >= p.M && NmOutputSparseMatrix.Satisfies(dense, p))
            {
                result = NmOutputSparseMatrix.Compress(dense, p, dense.ElementType);
            }
            if (result is not null)
            {
                unsafe
                {
                    return Replace(dense, dense.Owner, dense.Data, result, name, log);
                }
            }
        }
        return m;
    }

    /// <summary>
    /// Q8_0 / Q4_0 matrices with an input-axis pattern become N:M blocks of the same type. Files
    /// written by <c>prune --quantize</c> (one scale per 64 columns) convert exactly; other files'
    /// kept values are requantized with a scale over each 32 kept values.
    /// </summary>
    private static WeightMatrix ConvertQuantized(QuantizedMatrix m, string name, IReadOnlyList<NmPattern> patterns, List<CompressionEntry> log)
    {
        if (m.Type is not (QuantType.Q8_0 or QuantType.Q4_0))
        {
            return m;
        }
        foreach (var p in patterns)
        {
            if (m.Columns >= p.M && NmSparseMatrix.Satisfies(m, p))
            {
                unsafe
                {
                    return Replace(m, m.Owner, m.Data, NmQuantizedMatrix.Compress(m, p, m.Type), name, log);
                }
            }
        }
        return m;
    }

    /// <summary>
    /// Logs the replacement and disposes <paramref name="before"/>; when it viewed a model file read
    /// into memory, hands its pages back (nothing reads the uncompressed form any more).
    /// </summary>
    private static unsafe WeightMatrix Replace(WeightMatrix before, object? owner, byte* data, WeightMatrix after, string name, List<CompressionEntry> log)
    {
        log.Add(new CompressionEntry(name, before.Format, after.Format, before.ByteSize, after.ByteSize));
        if (owner is IO.MappedFile file)
        {
            file.Release(data - file.Pointer, before.ByteSize);
        }
        before.Dispose();
        return after;
    }
}
