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
