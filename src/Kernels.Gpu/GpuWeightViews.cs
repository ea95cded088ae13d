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
public readonly struct SparseView : ITileWeights, INmWeights
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
    public int Column(int r, int k) => k / (Shape.M / 2) * Shape.M + NmIndex.Of(Meta, (long)r * (Shape.MetaStride / 4), Shape.M, k);

    /// <summary>Dense tail element c (column Grouped + c) of row r.</summary>
    public float TailAt(int r, int c) => Tail[(long)r * Shape.TailColumns + c];

    /// <summary>W[r, c] (0 for a pruned position).</summary>
    public float At(int r, int c) => NmIndex.Element(this, Meta, r, c);
}

/// <summary>The N:M index bits shared by every input-axis N:M format (<see cref="Kernels.Simd.Matrices.NmSparseMatrix"/>'s layout).</summary>
internal static class NmIndex
{
    /// <summary>In-group index of kept value k from the row's metadata words (2-bit fields for 2:4, 3-bit for 4:8).</summary>
    public static int Of(ArrayView<uint> meta, long rowWord, int m, int k)
    {
        if (m == 4)
        {
            return (int)((meta[rowWord + (k >> 4)] >> (2 * (k & 15))) & 3u);
        }
        // 4:8: 3-bit fields, 48 bits per block of 16; a field may straddle two words.
        int bit = 48 * (k >> 4) + 3 * (k & 15), offset = bit & 31;
        uint low = meta[rowWord + (bit >> 5)] >> offset;
        uint high = offset > 29 ? meta[rowWord + (bit >> 5) + 1] << (32 - offset) : 0u;
        return (int)((low | high) & 7u);
    }

    /// <summary>W[r, c] of an N:M matrix (0 for a pruned position): the dense tail, or the kept value whose index is c's place in its group.</summary>
    public static float Element<TWeights>(TWeights w, ArrayView<uint> meta, int r, int c) where TWeights : struct, INmWeights
    {
        var s = w.Shape;
        if (c >= s.Grouped)
        {
            return w.TailAt(r, c - s.Grouped);
        }
        int n2 = s.M / 2, g = c / s.M, i = c % s.M;
        long metaWord = (long)r * (s.MetaStride / 4);
        for (int j = 0; j < n2; j++)
        {
            int k = g * n2 + j;
            if (Of(meta, metaWord, s.M, k) == i)
            {
                return w.Kept(r, k);
            }
        }
        return 0f;
    }
}

/// <summary>
/// llama.cpp's 32-element blocks, as stored in a GGUF: Q8_0 is an F16 scale and 32 int8 values
/// (34 bytes), Q4_0 an F16 scale and 16 bytes of nibbles (18 bytes; element j &lt; 16 is the low
/// nibble of byte j, element j + 16 its high nibble, both offset by 8). Read byte by byte: the
/// blocks are not 4-byte aligned.
/// </summary>
public readonly struct QuantBlocks
{
    public const int Q8_0 = 0, Q4_0 = 1;

    public QuantBlocks(ArrayView<byte> data, int kind)
    {
        Data = data;
        Kind = kind;
    }

    public ArrayView<byte> Data { get; }

    /// <summary><see cref="Q8_0"/> or <see cref="Q4_0"/> (an int: kernel arguments stay blittable).</summary>
    public int Kind { get; }

    public int BlockBytes => Kind == Q8_0 ? 34 : 18;

    /// <summary>Element k of the block row starting at byte <paramref name="rowByte"/>.</summary>
    public float Element(long rowByte, int k)
    {
        long at = rowByte + (long)(k >> 5) * BlockBytes;
        int i = k & 31;
        float scale = GpuKernelBodies.HalfToFloat((ushort)(Data[at] | (Data[at + 1] << 8)));
        int q;
        if (Kind == Q8_0)
        {
            q = (sbyte)Data[at + 2 + i];
        }
        else
        {
            int b = Data[at + 2 + (i & 15)];
            q = (i < 16 ? b & 15 : b >> 4) - 8;
        }
        return scale * q;
    }
}

/// <summary>A block-quantized matrix [Rows, Columns] on the device, rows of <see cref="RowBytes"/> bytes (Columns a multiple of 32).</summary>
public readonly struct QuantizedView : ITileWeights
{
    public QuantizedView(QuantBlocks blocks, int rows, int columns, long rowBytes)
    {
        Blocks = blocks;
        Rows = rows;
        Columns = columns;
        RowBytes = rowBytes;
    }

    public QuantBlocks Blocks { get; }

    public int Rows { get; }

    public int Columns { get; }

    public long RowBytes { get; }

    public float At(int r, int c) => Blocks.Element(r * RowBytes, c);
}

/// <summary>
/// An input-axis N:M matrix whose kept values are Q8_0 / Q4_0 blocks
/// (<see cref="Kernels.Simd.Matrices.NmQuantizedMatrix"/>): value blocks per row, the shared index
/// bits, and an F32 dense tail.
/// </summary>
public readonly struct NmQuantizedView : ITileWeights, INmWeights
{
    public NmQuantizedView(QuantBlocks values, long valueRowBytes, ArrayView<uint> meta, ArrayView<float> tail, SparseShape shape)
    {
        Values = values;
        ValueRowBytes = valueRowBytes;
        Meta = meta;
        Tail = tail;
        Shape = shape;
    }

    public QuantBlocks Values { get; }

    public long ValueRowBytes { get; }

    public ArrayView<uint> Meta { get; }

    public ArrayView<float> Tail { get; }

    public SparseShape Shape { get; }

    public float Kept(int r, int k) => Values.Element(r * ValueRowBytes, k);

    public int Column(int r, int k) => k / (Shape.M / 2) * Shape.M + NmIndex.Of(Meta, (long)r * (Shape.MetaStride / 4), Shape.M, k);

    public float TailAt(int r, int c) => Tail[(long)r * Shape.TailColumns + c];

    /// <summary>W[r, c] (0 for a pruned position).</summary>
    public float At(int r, int c) => NmIndex.Element(this, Meta, r, c);
}
