using System.Buffers.Binary;
using System.Text;
using Kernels.Runtime.Model;
using Kernels.Simd.Quantized;

namespace Kernels.Runtime.IO;

/// <summary>ggml tensor types (the subset a reader must name in errors; see <see cref="GgufTensorInfo.IsLoadable"/>).</summary>
public enum GgmlType : uint
{
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
}

/// <summary>One tensor's header entry. <see cref="Dims"/> are innermost first (ne0 = row length).</summary>
public sealed record GgufTensorInfo(string Name, long[] Dims, GgmlType Type, long Offset)
{
    public long ElementCount => Dims.Aggregate(1L, (a, b) => a * b);

    public string Shape => "[" + string.Join(", ", Dims.Reverse()) + "]";

    /// <summary>The block format of a quantized tensor, or null for float and unsupported types.</summary>
    public QuantType? Quantization => Type switch
    {
        GgmlType.Q8_0 => QuantType.Q8_0,
        GgmlType.Q4_0 => QuantType.Q4_0,
        GgmlType.Q4_1 => QuantType.Q4_1,
        GgmlType.Q5_0 => QuantType.Q5_0,
        GgmlType.Q5_1 => QuantType.Q5_1,
        GgmlType.Q2_K => QuantType.Q2_K,
        GgmlType.Q3_K => QuantType.Q3_K,
        GgmlType.Q4_K => QuantType.Q4_K,
        GgmlType.Q5_K => QuantType.Q5_K,
        GgmlType.Q6_K => QuantType.Q6_K,
        _ => null,
    };

    /// <summary>Whether this reader can size and load the tensor's data.</summary>
    public bool IsLoadable => Type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.I8 || Quantization is not null;

    /// <summary>Bytes of the tensor's data; throws for types this reader does not load, and for
    /// quantized rows that are not whole blocks.</summary>
    public long ByteSize(string path)
    {
        if (Quantization is { } q)
        {
            int k = q.BlockElements();
            if (Dims[0] % k != 0)
            {
                throw new ModelFormatException(path, $"tensor {Name}: {Type} row length {Dims[0]} is not a multiple of its block of {k}");
            }
            return ElementCount / k * q.BlockBytes();
        }
        return Type switch
        {
            GgmlType.F32 => ElementCount * 4,
            GgmlType.F16 or GgmlType.BF16 => ElementCount * 2,
            GgmlType.I8 => ElementCount, // raw bytes: the arrays of compact N:M matrices (docs/formats.md)
            _ => throw new ModelFormatException(path, $"tensor {Name}: element type {Type} is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q2_K-Q6_K are)"),
        };
    }
}

/// <summary>
/// GGUF v2/v3 reader: parses the header, metadata and tensor table of a memory-mapped file;
/// tensor data is only touched when a loader asks for it. Every read is bounds-checked so a
/// truncated or corrupt file fails with a message naming the file and what was being read.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian

    private GgufFile(MappedFile file) => File = file;

    public MappedFile File { get; }
    public string Path => File.Path;
    public uint Version { get; private set; }
    public Dictionary<string, object> Metadata { get; } = new(StringComparer.Ordinal);
    public List<GgufTensorInfo> Tensors { get; } = new();
    public int Alignment { get; private set; } = 32;
    public long DataOffset { get; private set; }

    public static bool LooksLikeGguf(string path)
    {
        using var fs = System.IO.File.OpenRead(path);
        Span<byte> b = stackalloc byte[4];
        return fs.Read(b) == 4 && BinaryPrimitives.ReadUInt32LittleEndian(b) == Magic;
    }

    /// <param name="memory">Mapped for headers and inspection; <see cref="WeightMemory.HugePages"/> to run the weights.</param>
    public static GgufFile Open(string path, WeightMemory memory = WeightMemory.Mapped)
    {
        var file = new MappedFile(path, memory);
        var gguf = new GgufFile(file);
        try
        {
            gguf.Parse();
            return gguf;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public GgufTensorInfo? FindTensor(string name) => Tensors.Find(t => t.Name == name);

    /// <summary>Pointer to a tensor's data after checking it lies inside the file.</summary>
    public byte* TensorData(GgufTensorInfo t)
    {
        long start = DataOffset + t.Offset;
        File.CheckRange(start, t.ByteSize(Path), $"tensor {t.Name} data");
        return File.Pointer + start;
    }

    public T? Get<T>(string key)
    {
        if (!Metadata.TryGetValue(key, out object? v))
        {
            return default;
        }
        try
        {
            return (T)Convert.ChangeType(v, Nullable.GetUnderlyingType(typeof(T)) ?? typeof(T), System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is InvalidCastException or FormatException or OverflowException)
        {
            throw new ModelFormatException(Path, $"metadata {key} has type {v.GetType().Name}, expected {typeof(T).Name}");
        }
    }

    public long GetRequiredInt(string key) =>
        Metadata.ContainsKey(key) ? Get<long>(key) : throw new ModelFormatException(Path, $"required metadata key {key} is missing");

    private long _pos;

    private void Need(long bytes, string what)
    {
        if (bytes < 0 || _pos + bytes > File.Length)
        {
            throw new ModelFormatException(Path, $"truncated or corrupt header while reading {what} at byte {_pos} (needs {bytes} bytes, file has {File.Length})");
        }
    }

    private uint U32(string what) { Need(4, what); uint v = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(File.Pointer + _pos, 4)); _pos += 4; return v; }
    private ulong U64(string what) { Need(8, what); ulong v = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(File.Pointer + _pos, 8)); _pos += 8; return v; }

    private long Count(string what, long max)
    {
        ulong v = U64(what);
        if (v > (ulong)max)
        {
            throw new ModelFormatException(Path, $"{what} = {v} is implausible (corrupt header?)");
        }
        return (long)v;
    }

    private string Str(string what)
    {
        long len = Count(what + " length", File.Length - _pos);
        Need(len, what);
        string s = Encoding.UTF8.GetString(File.Pointer + _pos, (int)len);
        _pos += len;
        return s;
    }

    private void Parse()
    {
        if (File.Length < 24)
        {
            throw new ModelFormatException(Path, "file too short to be GGUF");
        }
        if (U32("magic") != Magic)
        {
            throw new ModelFormatException(Path, "not a GGUF file (bad magic)");
        }
        Version = U32("version");
        if (Version is not (2 or 3))
        {
            throw new ModelFormatException(Path, $"GGUF version {Version} is not supported (2 and 3 are)");
        }
        long tensorCount = Count("tensor count", 1 << 24);
        long kvCount = Count("metadata count", 1 << 24);
        for (long i = 0; i < kvCount; i++)
        {
            string key = Str($"metadata key #{i}");
            uint type = U32($"type of {key}");
            Metadata[key] = Value(type, key);
        }
        if (Metadata.TryGetValue("general.alignment", out object? a))
        {
            long al = Convert.ToInt64(a, System.Globalization.CultureInfo.InvariantCulture);
            if (al <= 0 || (al & (al - 1)) != 0 || al > 1 << 20)
            {
                throw new ModelFormatException(Path, $"general.alignment {al} is not a power of two");
            }
            Alignment = (int)al;
        }
        for (long i = 0; i < tensorCount; i++)
        {
            string name = Str($"tensor #{i} name");
            uint nDims = U32($"tensor {name} rank");
            if (nDims is 0 or > 4)
            {
                throw new ModelFormatException(Path, $"tensor {name}: rank {nDims} is invalid");
            }
            var dims = new long[nDims];
            for (int d = 0; d < nDims; d++)
            {
                dims[d] = Count($"tensor {name} dim {d}", 1L << 40);
            }
            uint type = U32($"tensor {name} type");
            long offset = Count($"tensor {name} offset", File.Length);
            Tensors.Add(new GgufTensorInfo(name, dims, (GgmlType)type, offset));
        }
        DataOffset = (_pos + Alignment - 1) / Alignment * Alignment;
        foreach (var t in Tensors)
        {
            if (t.Offset % Alignment != 0)
            {
                throw new ModelFormatException(Path, $"tensor {t.Name}: offset {t.Offset} is not aligned to {Alignment}");
            }
            if (t.IsLoadable)
            {
                File.CheckRange(DataOffset + t.Offset, t.ByteSize(Path), $"tensor {t.Name} ({t.Type} {t.Shape})");
            }
        }
    }

    private object Value(uint type, string key) => type switch
    {
        0 => Byte(key),
        1 => (sbyte)Byte(key),
        2 => (ushort)Small(2, key),
        3 => (short)Small(2, key),
        4 => U32(key),
        5 => (int)U32(key),
        6 => BitConverter.UInt32BitsToSingle(U32(key)),
        7 => Byte(key) != 0,
        8 => Str(key),
        9 => Array(key),
        10 => U64(key),
        11 => (long)U64(key),
        12 => BitConverter.UInt64BitsToDouble(U64(key)),
        _ => throw new ModelFormatException(Path, $"metadata {key}: unknown value type {type}"),
    };

    private byte Byte(string what) { Need(1, what); return File.Pointer[_pos++]; }

    private uint Small(int bytes, string what)
    {
        Need(bytes, what);
        uint v = bytes == 2 ? BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(File.Pointer + _pos, 2)) : File.Pointer[_pos];
        _pos += bytes;
        return v;
    }

    private object Array(string key)
    {
        uint elementType = U32($"{key} array type");
        long count = Count($"{key} array length", File.Length - _pos);
        switch (elementType)
        {
            case 8:
                var strings = new string[count];
                for (long i = 0; i < count; i++)
                {
                    strings[i] = Str($"{key}[{i}]");
                }
                return strings;
            case 6:
                Need(count * 4, key);
                var floats = new ReadOnlySpan<float>(File.Pointer + _pos, (int)count).ToArray();
                _pos += count * 4;
                return floats;
            case 5:
                Need(count * 4, key);
                var ints = new ReadOnlySpan<int>(File.Pointer + _pos, (int)count).ToArray();
                _pos += count * 4;
                return ints;
            default:
                var values = new object[count];
                for (long i = 0; i < count; i++)
                {
                    values[i] = Value(elementType, $"{key}[{i}]");
                }
                return values;
        }
    }

    public void Dispose() => File.Dispose();
}
