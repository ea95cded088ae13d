using Kernels.Simd.Matrices;

namespace Kernels.Runtime.IO;

/// <summary>
/// Q/K row orders for the two RoPE conventions. The runtime rotates interleaved pairs (2i, 2i+1)
/// as Meta's checkpoints, llama2.c and GGUF do; HF transformers rotates halves (i, i + d/2), and
/// its conversion script permutes Q/K rows accordingly. Converting rows between the two layouts
/// makes both conventions produce identical attention.
/// </summary>
public static unsafe class RopeLayout
{
    /// <summary>Row of a half-split (HF) head that holds interleaved row <paramref name="interleavedRow"/>.</summary>
    public static int HalfSplitRowFor(int interleavedRow, int headDim)
    {
        int head = interleavedRow / headDim, d = interleavedRow % headDim;
        return head * headDim + (d % 2) * (headDim / 2) + d / 2;
    }

    /// <summary>A per-row vector (a Q or K bias) from half-split to interleaved order.</summary>
    public static float[] HalfSplitToInterleaved(float[] source, int headDim) =>
        Enumerable.Range(0, source.Length).Select(r => source[HalfSplitRowFor(r, headDim)]).ToArray();

    /// <summary>A per-row vector from interleaved to half-split order.</summary>
    public static float[] InterleavedToHalfSplit(float[] source, int headDim)
    {
        var result = new float[source.Length];
        for (int r = 0; r < source.Length; r++)
        {
            result[HalfSplitRowFor(r, headDim)] = source[r];
        }
        return result;
    }

    /// <summary>Copy of <paramref name="source"/> with rows permuted from HF half-split order to interleaved order.</summary>
    public static DenseMatrix HalfSplitToInterleaved(DenseMatrix source, int headDim) =>
        Permute(source, headDim, (dst, hd) => HalfSplitRowFor(dst, hd));

    /// <summary>Copy of <paramref name="source"/> with rows permuted from interleaved order to HF half-split order.</summary>
    public static DenseMatrix InterleavedToHalfSplit(DenseMatrix source, int headDim)
    {
        var inverse = new int[source.Rows];
        for (int r = 0; r < source.Rows; r++)
        {
            inverse[HalfSplitRowFor(r, headDim)] = r;
        }
        return Permute(source, headDim, (dst, _) => inverse[dst]);
    }

    /// <summary>
    /// Any matrix from half-split to interleaved row order (or back, with <paramref name="toHalfSplit"/>):
    /// dense and block-quantized rows are moved as stored bytes; other formats (N:M compressed) are
    /// densified to F32 first.
    /// </summary>
    public static WeightMatrix Permuted(WeightMatrix source, int headDim, bool toHalfSplit = false)
    {
        if (source is QuantizedMatrix q)
        {
            var inverse = Inverse(q.Rows, headDim);
            var result = new QuantizedMatrix(q.Name, q.Rows, q.Columns, q.Type);
            for (int r = 0; r < q.Rows; r++)
            {
                Buffer.MemoryCopy(q.Row(toHalfSplit ? inverse[r] : HalfSplitRowFor(r, headDim)), result.Row(r), q.RowStrideBytes, q.RowStrideBytes);
            }
            return result;
        }
        var dense = source as DenseMatrix ?? DenseMatrix.FromSingle(source.Name, source.Rows, source.Columns, source.ToDenseArray());
        var permuted = toHalfSplit ? InterleavedToHalfSplit(dense, headDim) : HalfSplitToInterleaved(dense, headDim);
        if (!ReferenceEquals(dense, source))
        {
            dense.Dispose();
        }
        return permuted;
    }

    private static int[] Inverse(int rows, int headDim)
    {
        var inverse = new int[rows];
        for (int r = 0; r < rows; r++)
        {
            inverse[HalfSplitRowFor(r, headDim)] = r;
        }
        return inverse;
    }

    private static DenseMatrix Permute(DenseMatrix source, int headDim, Func<int, int, int> sourceRowOf)
    {
        if (source.Rows % headDim != 0)
        {
            throw new ArgumentException($"{source.Name}: {source.Rows} rows are not whole heads of {headDim}");
        }
        var result = new DenseMatrix(source.Name, source.Rows, source.Columns, source.ElementType);
        long stride = source.RowStrideBytes;
        for (int r = 0; r < source.Rows; r++)
        {
            Buffer.MemoryCopy(source.Row(sourceRowOf(r, headDim)), result.Row(r), stride, stride);
        }
        return result;
    }
}
