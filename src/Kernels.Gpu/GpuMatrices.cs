using ILGPU;
using ILGPU.Runtime;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;

namespace Kernels.Gpu;

/// <summary>A dense weight matrix on the device: F32, or F16 kept as raw bits (widened in the kernels). BF16 is widened to F32 at upload.</summary>
public sealed unsafe class GpuMatrix : IDisposable
{
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _f32;
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense>? _f16;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _empty32;
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense> _empty16;

    public GpuMatrix(Accelerator a, WeightMatrix m)
    {
        Rows = m.Rows;
        Columns = m.Columns;
        _empty32 = a.Allocate1D<float>(1);
        _empty16 = a.Allocate1D<ushort>(1);
        if (m is DenseMatrix { ElementType: ElementType.F16 } d)
        {
            _f16 = a.Allocate1D<ushort>(Math.Max(1, (long)Rows * Columns));
            _f16.View.SubView(0, (long)Rows * Columns).CopyFromCPU(ref *(ushort*)d.Data, (long)Rows * Columns);
            Half = 1;
        }
        else if (m is DenseMatrix { ElementType: ElementType.F32 } f)
        {
            _f32 = a.Allocate1D<float>(Math.Max(1, (long)Rows * Columns));
            _f32.View.SubView(0, (long)Rows * Columns).CopyFromCPU(ref *(float*)f.Data, (long)Rows * Columns);
        }
        else
        {
            // BF16 and other formats (e.g. output-axis N:M) run as dense F32 on the device.
            _f32 = a.Allocate1D<float>(Math.Max(1, (long)Rows * Columns));
            _f32.CopyFromCPU(m.ToDenseArray());
        }
    }

    /// <summary>Uploads a float array [rows, cols].</summary>
    public GpuMatrix(Accelerator a, float[] values, int rows, int columns)
    {
        Rows = rows;
        Columns = columns;
        _empty32 = a.Allocate1D<float>(1);
        _empty16 = a.Allocate1D<ushort>(1);
        _f32 = a.Allocate1D<float>(Math.Max(1, values.LongLength));
        _f32.CopyFromCPU(values);
    }

    public int Rows { get; }
    public int Columns { get; }
    public int Half { get; }
    public ArrayView<float> F32 => (_f32 ?? _empty32).View;
    public ArrayView<ushort> F16 => (_f16 ?? _empty16).View;
    public long Bytes => (long)Rows * Columns * (Half != 0 ? 2 : 4);

    /// <summary>What kernels take.</summary>
    public DenseView View => new(new ElementsView(F32, F16, Half != 0), Rows, Columns);

    public void Dispose()
    {
        _f32?.Dispose();
        _f16?.Dispose();
        _empty32.Dispose();
        _empty16.Dispose();
    }
}

/// <summary>An input-axis N:M matrix on the device in the compressed layout of <see cref="NmSparseMatrix"/> (values, index bits, dense tail).</summary>
public sealed unsafe class GpuSparseMatrix : IDisposable
{
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _f32, _tail32;
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense> _f16, _tail16;
    private readonly MemoryBuffer1D<uint, Stride1D.Dense> _meta;

    public GpuSparseMatrix(Accelerator a, NmSparseMatrix m)
    {
        Shape = new SparseShape
        {
            Rows = m.Rows, Columns = m.Columns, M = m.Pattern.M, Kept = m.KeptPerRow,
            ValueStride = m.ValueStride, MetaStride = m.MetaStride, TailColumns = m.TailColumns, Grouped = m.Groups * m.Pattern.M,
        };
        long values = (long)m.Rows * m.ValueStride;
        bool half = m.ValueType == ElementType.F16;
        Half = half ? 1 : 0;
        byte* raw = m.RawValues;
        _f32 = a.Allocate1D<float>(half ? 1 : Math.Max(1, values));
        _f16 = a.Allocate1D<ushort>(half ? Math.Max(1, values) : 1);
        if (m.ValueType == ElementType.F32)
        {
            _f32.View.SubView(0, values).CopyFromCPU(ref *(float*)raw, values);
        }
        else if (half)
        {
            _f16.View.SubView(0, values).CopyFromCPU(ref *(ushort*)raw, values);
        }
        else
        {
            throw new NotSupportedException($"{m.Name}: BF16 sparse values are not supported on the GPU backend (F32 and F16 are)");
        }
        long metaWords = (long)m.Rows * m.MetaStride / 4;
        _meta = a.Allocate1D<uint>(Math.Max(1, metaWords));
        _meta.View.SubView(0, metaWords).CopyFromCPU(ref *(uint*)m.RawMeta, metaWords);
        long tail = (long)m.Rows * m.TailColumns;
        _tail32 = a.Allocate1D<float>(half ? 1 : Math.Max(1, tail));
        _tail16 = a.Allocate1D<ushort>(half ? Math.Max(1, tail) : 1);
        if (m.TailColumns > 0)
        {
            var tailValues = new float[tail];
            for (int r = 0; r < m.Rows; r++)
            {
                for (int c = 0; c < m.TailColumns; c++)
                {
                    tailValues[(long)r * m.TailColumns + c] = m.GetElement(r, m.Groups * m.Pattern.M + c);
                }
            }
            if (half)
            {
                _tail16.View.SubView(0, tail).CopyFromCPU(tailValues.Select(v => BitConverter.HalfToUInt16Bits((System.Half)v)).ToArray());
            }
            else
            {
                _tail32.View.SubView(0, tail).CopyFromCPU(tailValues);
            }
        }
        Bytes = m.ByteSize;
    }

    public SparseShape Shape { get; }
    public int Half { get; }
    public long Bytes { get; }
    public ArrayView<float> F32 => _f32.View;
    public ArrayView<ushort> F16 => _f16.View;
    public ArrayView<uint> Meta => _meta.View;
    public ArrayView<float> Tail32 => _tail32.View;
    public ArrayView<ushort> Tail16 => _tail16.View;

    /// <summary>What kernels take.</summary>
    public SparseView View => new(new ElementsView(F32, F16, Half != 0), Meta, new ElementsView(Tail32, Tail16, Half != 0), Shape);

    public void Dispose()
    {
        _f32.Dispose();
        _f16.Dispose();
        _meta.Dispose();
        _tail32.Dispose();
        _tail16.Dispose();
    }
}

/// <summary>The device KV cache: keys/values [layers][kvHeads][capacity][headDim], ‖v‖₁ and received attention per slot.</summary>
public sealed class GpuKvStorage : IDisposable
{
    public GpuKvStorage(Accelerator a, int layers, int kvHeads, int capacity, int headDim)
    {
        Shape = new KvShape { KvHeads = kvHeads, Capacity = capacity, HeadDim = headDim };
        long slots = (long)layers * kvHeads * capacity;
        Keys = a.Allocate1D<float>(slots * headDim);
        Values = a.Allocate1D<float>(slots * headDim);
        Norms = a.Allocate1D<float>(slots);
        Received = a.Allocate1D<float>(slots);
        Received.MemSetToZero();
    }

    public KvShape Shape { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> Keys { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> Values { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> Norms { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> Received { get; }

    public long Bytes => (Keys.Length + Values.Length) * sizeof(float);

    public void Dispose()
    {
        Keys.Dispose();
        Values.Dispose();
        Norms.Dispose();
        Received.Dispose();
    }
}

/// <summary>A Q8_0 or Q4_0 matrix on the device, its blocks copied as they are in memory (and in the GGUF): no widening at upload.</summary>
public sealed unsafe class GpuQuantizedMatrix : IDisposable
{
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _blocks;

    public GpuQuantizedMatrix(Accelerator a, QuantizedMatrix m)
    {
        Kind = KindOf(m.Name, m.Type);
        Rows = m.Rows;
        Columns = m.Columns;
        RowBytes = m.RowStrideBytes;
        Bytes = Rows * RowBytes;
        _blocks = a.Allocate1D<byte>(Math.Max(1, Bytes));
        if (Bytes > 0)
        {
            _blocks.View.SubView(0, Bytes).CopyFromCPU(ref *m.Data, Bytes);
        }
    }

    /// <summary>Whether <paramref name="type"/> has a device kernel (other formats are widened to F32 at upload).</summary>
    public static bool Supports(QuantType type) => type is QuantType.Q8_0 or QuantType.Q4_0;

    internal static int KindOf(string name, QuantType type) => type switch
    {
        QuantType.Q8_0 => QuantBlocks.Q8_0,
        QuantType.Q4_0 => QuantBlocks.Q4_0,
        _ => throw new NotSupportedException($"{name}: {type} has no GPU kernel (Q8_0 and Q4_0 do)"),
    };

    public int Kind { get; }
    public int Rows { get; }
    public int Columns { get; }
    public long RowBytes { get; }
    public long Bytes { get; }

    /// <summary>What kernels take.</summary>
    public QuantizedView View => new(new QuantBlocks(_blocks.View, Kind), Rows, Columns, RowBytes);

    public void Dispose() => _blocks.Dispose();
}

/// <summary>An input-axis N:M matrix with Q8_0 / Q4_0 kept values on the device (<see cref="NmQuantizedMatrix"/>'s layout: value blocks, index bits, F32 tail).</summary>
public sealed unsafe class GpuNmQuantizedMatrix : IDisposable
{
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _values;
    private readonly MemoryBuffer1D<uint, Stride1D.Dense> _meta;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _tail;
    private readonly int _kind;
    private readonly long _valueRowBytes;

    public GpuNmQuantizedMatrix(Accelerator a, NmQuantizedMatrix m)
    {
        _kind = GpuQuantizedMatrix.KindOf(m.Name, m.ValueType);
        Shape = new SparseShape
        {
            Rows = m.Rows, Columns = m.Columns, M = m.Pattern.M, Kept = m.KeptPerRow,
            ValueStride = m.ValueStride, MetaStride = m.MetaStride, TailColumns = m.TailColumns, Grouped = m.Groups * m.Pattern.M,
        };
        _valueRowBytes = m.ValueRowBytes;
        var parts = m.Parts;
        long values = m.Rows * m.ValueRowBytes;
        _values = a.Allocate1D<byte>(Math.Max(1, values));
        if (values > 0)
        {
            _values.View.SubView(0, values).CopyFromCPU(ref *(byte*)parts.Values.Pointer, values);
        }
        long metaWords = (long)m.Rows * m.MetaStride / 4;
        _meta = a.Allocate1D<uint>(Math.Max(1, metaWords));
        if (metaWords > 0)
        {
            _meta.View.SubView(0, metaWords).CopyFromCPU(ref *(uint*)parts.Index.Pointer, metaWords);
        }
        long tail = (long)m.Rows * m.TailColumns;
        _tail = a.Allocate1D<float>(Math.Max(1, tail));
        if (tail > 0)
        {
            _tail.CopyFromCPU(parts.Tail!.ToDenseArray());
        }
        Bytes = m.ByteSize;
    }

    public SparseShape Shape { get; }
    public long Bytes { get; }

    /// <summary>What kernels take.</summary>
    public NmQuantizedView View => new(new QuantBlocks(_values.View, _kind), _valueRowBytes, _meta.View, _tail.View, Shape);

    public void Dispose()
    {
        _values.Dispose();
        _meta.Dispose();
        _tail.Dispose();
    }
}
