using ILGPU;

namespace Kernels.Gpu;

/// <summary>
/// Weight elements on the device stored as F32 or as F16 bits: exactly one of the two views holds
/// data (the other is a one-element placeholder), chosen once at upload.
/// </summary>
public readonly struct ElementsView
{
    public ElementsView(ArrayView<float> f32, ArrayView<ushort> f16, bool half)
    {
        F32 = f32;
        F16 = f16;
        Half = half ? 1 : 0;
    }

    public ArrayView<float> F32 { get; }

    public ArrayView<ushort> F16 { get; }

    /// <summary>1 when the F16 view holds the elements (an int: kernel arguments stay blittable).</summary>
    public int Half { get; }

    public float this[long index] => Half != 0 ? GpuKernelBodies.HalfToFloat(F16[index]) : F32[index];
}

/// <summary>A row-major dense matrix [Rows, Columns] on the device (as ILGPU's own matrix views: a readonly struct passed to kernels by value).</summary>
public readonly struct DenseView : ITileWeights
{
    public DenseView(ElementsView elements, int rows, int columns)
    {
        Elements = elements;
        Rows = rows;
        Columns = columns;
    }

    public ElementsView Elements { get; }

    public int Rows { get; }

    public int Columns { get; }

    /// <summary>W[r, c].</summary>
    public float At(int r, int c) => Elements[(long)r * Columns + c];
}

/// <summary>
/// An input-axis N:M matrix on the device in the compressed layout of
/// <see cref="Kernels.Simd.Matrices.NmSparseMatrix"/>: kept values (16-bit ones interleaved by
/// <see cref="Kernels.Simd.Matrices.NmLayout"/>), in-group index bits, and a dense tail for the
/// columns past the last whole group.
/// </summary>
public readonly struct SparseView : ITileWeights
{
    public SparseView(ElementsView values, ArrayView<uint> meta, ElementsView tail, SparseShape shape)
    {
        Values = values;
        Meta = meta;
        Tail = tail;
        Shape = shape;
    }

    public ElementsView Values { get; }

    public ArrayView<uint> Meta { get; }

    public ElementsView Tail { get; }

    public SparseShape Shape { get; }

    /// <summary>Kept value k of row r.</summary>
    public float Kept(int r, int k) =>
        Values[(long)r * Shape.ValueStride + (Values.Half == 0 ? k : Kernels.Simd.Matrices.NmLayout.StorageIndex(k, Shape.Kept))];

    /// <summary>The input column kept value k of row r multiplies.</summary>
    public int Column(int r, int k) => k / (Shape.M / 2) * Shape.M + IndexOf((long)r * (Shape.MetaStride / 4), k);

    /// <summary>Dense tail element c (column Grouped + c) of row r.</summary>
    public float TailAt(int r, int c) => Tail[(long)r * Shape.TailColumns + c];

    /// <summary>W[r, c] (0 for a pruned position).</summary>
    public float At(int r, int c)
    {
        if (c >= Shape.Grouped)
        {
            return TailAt(r, c - Shape.Grouped);
        }
        int n2 = Shape.M / 2, g = c / Shape.M, i = c % Shape.M;
        long metaWord = (long)r * (Shape.MetaStride / 4);
        for (int j = 0; j < n2; j++)
        {
            int k = g * n2 + j;
            if (IndexOf(metaWord, k) == i)
            {
                return Kept(r, k);
            }
        }
        return 0f;
    }

    /// <summary>In-group index of kept value k from the row's metadata words (2-bit fields for 2:4, 3-bit for 4:8).</summary>
    private int IndexOf(long rowWord, int k)
    {
        if (Shape.M == 4)
        {
            return (int)((Meta[rowWord + (k >> 4)] >> (2 * (k & 15))) & 3u);
        }
        // 4:8: 3-bit fields, 48 bits per block of 16; a field may straddle two words.
        int bit = 48 * (k >> 4) + 3 * (k & 15), offset = bit & 31;
        uint low = Meta[rowWord + (bit >> 5)] >> offset;
        uint high = offset > 29 ? Meta[rowWord + (bit >> 5) + 1] << (32 - offset) : 0u;
        return (int)((low | high) & 7u);
    }
}
