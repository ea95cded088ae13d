using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;

namespace Kernels.Runtime.IO;

/// <summary>
/// Writes a synthetic Llama-shaped model as a GGUF that llama.cpp loads too: llama.cpp's tensor
/// names and metadata, the weights of <see cref="SyntheticModel"/> (same seeds, so the file and
/// the in-memory benchmark model are identical), F32 norms, and an embedded vocabulary. Tensors
/// are generated one at a time while the file is written, so memory stays at one tensor
/// whatever the model size; the file appears only when complete.
/// </summary>
public static class SyntheticGguf
{
    /// <summary>llama.cpp's <c>general.file_type</c> (LLAMA_FTYPE_ALL_F32, MOSTLY_F16, MOSTLY_BF16).</summary>
    private static uint FileType(ElementType type) => type switch
    {
        ElementType.F32 => 0,
        ElementType.F16 => 1,
        ElementType.BF16 => 32,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    /// <summary>
    /// Writes <paramref name="shape"/> (its vocabulary size must equal the vocabulary's) with
    /// <paramref name="type"/> matrices to <paramref name="path"/>.
    /// </summary>
    /// <param name="sparsity">Prune every block linear to this pattern (magnitude, input axis) and
    /// store it compressed (the compact N:M file, docs/formats.md; llama.cpp does not read it).</param>
    /// <param name="quantize">Q8_0 / Q4_0: quantized kept values (with <paramref name="sparsity"/>) or
    /// quantized block linears; embedding and classifier as <c>kernels quantize</c> writes them.</param>
    public static void Write(SyntheticShape shape, ElementType type, TokenizerMetadata vocabulary, string path, int seed = 7,
        IProgress<float>? progress = null, CancellationToken cancellationToken = default, NmPattern? sparsity = null, QuantType? quantize = null)
    {
        if (shape.Vocab != vocabulary.TokenCount)
        {
            throw new ArgumentException($"shape {shape.Name} has a vocabulary of {shape.Vocab} but {vocabulary.Source} holds {vocabulary.TokenCount} tokens");
        }
        var config = SyntheticModel.Config(shape);
        var plan = SyntheticModel.Plan(shape);
        var writer = new GgufWriter
        {
            TensorWritten = (done, total) => progress?.Report((float)done / total),
            Alignment = sparsity is null ? 32 : NativeBuffer.Alignment,
        };
        writer.Add("general.architecture", "llama")
            .Add("general.name", $"synthetic {shape.Name} {type}")
            .Add("general.file_type", FileType(type))
            .Add("llama.context_length", (uint)config.MaxSequenceLength)
            .Add("llama.embedding_length", (uint)config.Dim)
            .Add("llama.block_count", (uint)config.Layers)
            .Add("llama.feed_forward_length", (uint)config.HiddenDim)
            .Add("llama.rope.dimension_count", (uint)config.HeadDim)
            .Add("llama.attention.head_count", (uint)config.Heads)
            .Add("llama.attention.head_count_kv", (uint)config.KvHeads)
            .Add("llama.attention.layer_norm_rms_epsilon", config.NormEpsilon)
            .Add("llama.rope.freq_base", config.RopeTheta)
            .Add("llama.vocab_size", (uint)config.VocabSize)
            .Add("kernels.synthetic_seed", (uint)seed);
        foreach (var (key, value) in vocabulary.Entries)
        {
            writer.Add(key, value);
        }

        if (quantize is not null)
        {
            writer.Add("general.quantization_version", 2u);
        }
        if (sparsity is not null)
        {
            writer.Add(CompactNm.VersionKey, CompactNm.Version);
        }
        var gt = GgufWriter.TypeOf(type);
        var plan2 = quantize is { } qt0 ? QuantizePlan.Like(qt0) : null;
        // Compressed linears are built before writing (their arrays' sizes go into the header):
        // about half the dense bytes at 4-bit, one dense tensor at a time on the way.
        var compressed = new List<WeightMatrix>();
        void Matrix(SyntheticTensor t)
        {
            if (t.Prunable && sparsity is { } p)
            {
                cancellationToken.ThrowIfCancellationRequested();
                // Pruned in float32, then stored in the file's type: SyntheticModel.Create's sparse weights.
                using var pruned = SyntheticModel.RandomDense(t.Name, t.Rows, t.Columns, ElementType.F32, p, t.Seed(seed));
                WeightMatrix m = quantize is { } kq && t.Columns % kq.BlockElements() == 0
                    ? NmQuantizedMatrix.Compress(pruned, p, kq)
                    : NmSparseMatrix.Compress(pruned, p, type);
                compressed.Add(m);
                CompactNm.TryAdd(writer, t.Name, m);
                return;
            }
            QuantType? q = t.Index == 0 ? plan2?.TokenEmbedding : t.Prunable ? plan2?.Linears : plan2?.Classifier;
            if (q is { } qt && t.Columns % qt.BlockElements() == 0)
            {
                writer.AddTensor(t.Name, new long[] { t.Rows, t.Columns }, GgufWriter.TypeOf(qt), t.Rows * qt.RowBytes(t.Columns), s =>
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    using var m = SyntheticModel.Materialize(t, ElementType.F32, seed);
                    GgufWriter.WriteQuantizedRows(m, qt, sparse: false, s);
                });
                return;
            }
            writer.AddTensor(t.Name, new long[] { t.Rows, t.Columns }, gt, (long)t.Rows * t.Columns * type.Size(), s =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var m = SyntheticModel.Materialize(t, type, seed);
                WriteRaw(m, s);
            });
        }
        void Ones(string name) =>
            writer.AddTensor(name, new long[] { config.Dim }, GgmlType.F32, HfFolder.Encode(Enumerable.Repeat(1f, config.Dim).ToArray(), ElementType.F32));

        Matrix(plan[0]);
        for (int l = 0; l < config.Layers; l++)
        {
            int b = 1 + 7 * l;
            Ones($"blk.{l}.attn_norm.weight");
            for (int i = 0; i < 7; i++)
            {
                Matrix(plan[b + i]);
            }
            Ones($"blk.{l}.ffn_norm.weight");
        }
        Ones("output_norm.weight");
        Matrix(plan[^1]);
        try
        {
            writer.Write(path);
        }
        finally
        {
            compressed.ForEach(m => m.Dispose());
        }
    }

    private static unsafe void WriteRaw(DenseMatrix m, Stream s)
    {
        // Chunks of at most 64 MiB: Stream.Write takes a span of int length.
        long total = m.ByteSize;
        for (long off = 0; off < total; off += 1 << 26)
        {
            s.Write(new ReadOnlySpan<byte>(m.Data + off, (int)Math.Min(1 << 26, total - off)));
        }
    }
}
