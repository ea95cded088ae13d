using System.Buffers.Binary;
using System.Text;
using Kernels.Runtime.Model;
using Kernels.Simd.Quantized;

namespace Kernels.Runtime.IO;

/// <summary>ggml tensor types: every code llama.cpp's gguf.cpp accepts (codes 4, 5 and 31-33, 36-38 were removed from GGUF).</summary>
public enum GgmlType : uint
{
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35,
}

/// <summary>Block geometry of every ggml type (ggml.c's type_traits: elements and bytes per block).</summary>
public static class GgmlTypes
{
    /// <summary>Elements and bytes of one block of <paramref name="type"/>, or null for a code ggml does not define.</summary>
    public static (int Elements, int Bytes)? Block(GgmlType type) => type switch
    {
        GgmlType.F32 or GgmlType.I32 => (1, 4),
        GgmlType.F16 or GgmlType.BF16 or GgmlType.I16 => (1, 2),
        GgmlType.I8 => (1, 1),
        GgmlType.I64 or GgmlType.F64 => (1, 8),
        GgmlType.Q4_0 or GgmlType.IQ4_NL => (32, 18),
        GgmlType.Q4_1 => (32, 20),
        GgmlType.Q5_0 => (32, 22),
        GgmlType.Q5_1 => (32, 24),
        GgmlType.Q8_0 => (32, 34),
        GgmlType.Q8_1 => (32, 36),
        GgmlType.Q2_K => (256, 84),
        GgmlType.Q3_K or GgmlType.IQ3_S => (256, 110),
        GgmlType.Q4_K => (256, 144),
        GgmlType.Q5_K => (256, 176),
        GgmlType.Q6_K => (256, 210),
        GgmlType.Q8_K => (256, 292),
        GgmlType.IQ2_XXS or GgmlType.TQ2_0 => (256, 66),
        GgmlType.IQ2_XS => (256, 74),
        GgmlType.IQ2_S => (256, 82),
        GgmlType.IQ3_XXS => (256, 98),
        GgmlType.IQ1_S => (256, 50),
        GgmlType.IQ1_M => (256, 56),
        GgmlType.IQ4_XS => (256, 136),
        GgmlType.TQ1_0 => (256, 54),
        _ => null,
    };
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

    /// <summary>Bytes of the tensor's data, for any type ggml defines (the reader checked the row is whole blocks).</summary>
    public long DataBytes => GgmlTypes.Block(Type) is { } b ? ElementCount / b.Elements * b.Bytes : 0;

    /// <summary>Bytes of the tensor's data; throws for types this runtime does not load.</summary>
    public long ByteSize(string path) => IsLoadable ? DataBytes
        : throw new ModelFormatException(path, $"tensor {Name}: element type {Type} is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q2_K-Q6_K are)");
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

    private readonly Dictionary<string, GgufTensorInfo> _byName = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    /// <summary>The tensor named <paramref name="name"/>, or null; a tensor found is counted as used (see <see cref="UnusedTensors"/>).</summary>
    public GgufTensorInfo? FindTensor(string name)
    {
        if (!_byName.TryGetValue(name, out var t))
        {
            return null;
        }
        _used.Add(name);
        return t;
    }

    /// <summary>Tensors no <see cref="FindTensor"/> call asked for: a model loader that used them all found nothing left over.</summary>
    public IEnumerable<GgufTensorInfo> UnusedTensors => Tensors.Where(t => !_used.Contains(t.Name));

    /// <summary>Pointer to a tensor's data after checking it lies inside the file.</summary>
    public byte* TensorData(GgufTensorInfo t)
    {
        long start = DataOffset + t.Offset;
        File.CheckRange(start, t.ByteSize(Path), $"tensor {t.Name} data");
        return File.Pointer + start;
    }

    /// <summary>
    /// The value of <paramref name="key"/> as <typeparamref name="T"/>, or default when absent. Numbers
    /// convert between GGUF's integer and float types only when the value fits exactly (a uint64
    /// 2^32+2 is not the int 2); anything else, strings included, is a <see cref="ModelFormatException"/> naming the key.
    /// </summary>
    public T? Get<T>(string key)
    {
        if (!Metadata.TryGetValue(key, out object? v))
        {
            return default;
        }
        var target = Nullable.GetUnderlyingType(typeof(T)) ?? typeof(T);
        if (v is T same)
        {
            return same;
        }
        bool numeric = v is byte or sbyte or ushort or short or uint or int or ulong or long or float or double;
        bool targetNumeric = target == typeof(int) || target == typeof(long) || target == typeof(uint) || target == typeof(ulong) || target == typeof(float) || target == typeof(double);
        if (numeric && targetNumeric)
        {
            bool integerTarget = target != typeof(float) && target != typeof(double);
            if (integerTarget && v is float or double)
            {
                throw new ModelFormatException(Path, $"metadata {key} is a {GgufTypeName(v)} ({v}), expected an integer");
            }
            try
            {
                object converted = Convert.ChangeType(v, target, System.Globalization.CultureInfo.InvariantCulture);
                return (T)converted;
            }
            catch (OverflowException)
            {
                throw new ModelFormatException(Path, $"metadata {key} = {v} does not fit {GgufTypeName(target)}");
            }
        }
        throw new ModelFormatException(Path, $"metadata {key} is a {GgufTypeName(v)}, expected {GgufTypeName(target)}");
    }

    /// <summary>The integer <paramref name="key"/>, which must be present and lie in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public long GetRequiredInt(string key, long min = long.MinValue, long max = long.MaxValue) =>
        Metadata.ContainsKey(key) ? GetInt(key, 0, min, max) : throw new ModelFormatException(Path, $"required metadata key {key} is missing");

    /// <summary>The integer <paramref name="key"/> in [<paramref name="min"/>, <paramref name="max"/>], or <paramref name="fallback"/> when absent.</summary>
    public long GetInt(string key, long fallback, long min = long.MinValue, long max = long.MaxValue)
    {
        if (!Metadata.ContainsKey(key))
        {
            return fallback;
        }
        long v = Get<long>(key);
        return v >= min && v <= max ? v : throw new ModelFormatException(Path, $"metadata {key} = {v} is outside [{min}, {max}]");
    }

    /// <summary>The finite float <paramref name="key"/> in [<paramref name="min"/>, <paramref name="max"/>], or <paramref name="fallback"/> when absent.</summary>
    public float GetFloat(string key, float fallback, float min, float max)
    {
        if (!Metadata.ContainsKey(key))
        {
            return fallback;
        }
        float v = Get<float>(key);
        return float.IsFinite(v) && v >= min && v <= max ? v : throw new ModelFormatException(Path, $"metadata {key} = {v} is outside [{min:G}, {max:G}]");
    }

    private static string GgufTypeName(object v) => GgufTypeName(v.GetType());

    private static string GgufTypeName(Type t) => t == typeof(string) ? "string" : t == typeof(bool) ? "bool"
        : t.IsArray ? "array" : t == typeof(float) ? "f32" : t == typeof(double) ? "f64" : t == typeof(int) ? "i32" : t == typeof(uint) ? "u32"
        : t == typeof(long) ? "i64" : t == typeof(ulong) ? "u64" : t.Name.ToLowerInvariant();

    private long _pos;

    private void Need(long bytes, string what)
    {
        if (bytes < 0 || bytes > File.Length - _pos)
        {
            throw new ModelFormatException(Path, $"truncated or corrupt header while reading {what} at byte {_pos} (needs {bytes} bytes, file has {File.Length})");
        }
    }

    private uint U32(string what) { Need(4, what); uint v = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(File.Pointer + _pos, 4)); _pos += 4; return v; }
    private ulong U64(string what) { Need(8, what); ulong v = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(File.Pointer + _pos, 8)); _pos += 8; return v; }

    /// <summary>A count of items of at least <paramref name="minItemBytes"/> each: more than the rest of the file could hold is corrupt.</summary>
    private long Count(string what, long minItemBytes)
    {
        ulong v = U64(what);
        if (v > (ulong)((File.Length - _pos) / Math.Max(1, minItemBytes)))
        {
            throw new ModelFormatException(Path, $"{what} = {v} is more than the {File.Length - _pos} bytes left can hold (corrupt header?)");
        }
        return (long)v;
    }

    private string Str(string what)
    {
        long len = Count(what + " length", 1);
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
        // Smallest possible entries: a tensor (empty name, rank, one dim, type, offset), a key-value (empty key, type, one byte).
        long tensorCount = Count("tensor count", 8 + 4 + 8 + 4 + 8);
        long kvCount = Count("metadata count", 8 + 4 + 1);
        if (tensorCount > MaxEntries || kvCount > MaxEntries)
        {
            throw new ModelFormatException(Path, $"{tensorCount} tensors and {kvCount} metadata keys: more than the {MaxEntries} this reader accepts (corrupt header?)");
        }
        for (long i = 0; i < kvCount; i++)
        {
            string key = Str($"metadata key #{i}");
            if (Metadata.ContainsKey(key))
            {
                throw new ModelFormatException(Path, $"metadata key {key} appears twice");
            }
            uint type = U32($"type of {key}");
            Metadata[key] = type == ArrayType ? Array(key) : Value(type, key);
        }
        if (Metadata.TryGetValue("general.alignment", out object? a))
        {
            if (a is not uint al || al == 0 || (al & (al - 1)) != 0 || al > 1 << 20)
            {
                throw new ModelFormatException(Path, $"metadata general.alignment must be a u32 power of two up to 2^20, not {GgufTypeName(a)} {a}");
            }
            Alignment = (int)al;
        }
        for (long i = 0; i < tensorCount; i++)
        {
            var t = TensorInfo(i);
            if (!_byName.TryAdd(t.Name, t))
            {
                throw new ModelFormatException(Path, $"tensor {t.Name} appears twice in the tensor table");
            }
            Tensors.Add(t);
        }
        DataOffset = (_pos + Alignment - 1) / Alignment * Alignment;
        // As gguf.cpp: each tensor starts where the previous one ended, padded to the alignment,
        // so no two tensors overlap, nothing lies between them, and the data fits in the file.
        long expected = 0;
        foreach (var t in Tensors)
        {
            if (t.Offset != expected)
            {
                throw new ModelFormatException(Path, $"tensor {t.Name}: data offset {t.Offset}, expected {expected} (tensors must follow each other, aligned to {Alignment}: overlapping or misplaced data)");
            }
            long bytes = t.DataBytes;
            File.CheckRange(DataOffset + t.Offset, bytes, $"tensor {t.Name} ({t.Type} {t.Shape})");
            expected += (bytes + Alignment - 1) / Alignment * Alignment;
        }
    }

    private GgufTensorInfo TensorInfo(long index)
    {
        string name = Str($"tensor #{index} name");
        if (Encoding.UTF8.GetByteCount(name) >= 64)
        {
            throw new ModelFormatException(Path, $"tensor #{index} name '{name[..Math.Min(name.Length, 80)]}' is longer than ggml's 63 bytes");
        }
        uint nDims = U32($"tensor {name} rank");
        if (nDims is 0 or > 4)
        {
            throw new ModelFormatException(Path, $"tensor {name}: rank {nDims} is invalid (1 to 4)");
        }
        var dims = new long[nDims];
        long elements = 1;
        for (int d = 0; d < nDims; d++)
        {
            ulong ne = U64($"tensor {name} dim {d}");
            if (ne == 0 || ne > long.MaxValue || elements > long.MaxValue / (long)ne)
            {
                throw new ModelFormatException(Path, $"tensor {name}: dimension {d} = {ne} is zero or makes the element count overflow int64");
            }
            dims[d] = (long)ne;
            elements *= (long)ne;
        }
        uint code = U32($"tensor {name} type");
        var type = (GgmlType)code;
        if (GgmlTypes.Block(type) is not { } block || !Enum.IsDefined(type))
        {
            throw new ModelFormatException(Path, $"tensor {name}: type code {code} is not a ggml type");
        }
        if (dims[0] % block.Elements != 0)
        {
            throw new ModelFormatException(Path, $"tensor {name}: {type} row length {dims[0]} is not a multiple of its block of {block.Elements}");
        }
        if (elements / block.Elements > long.MaxValue / block.Bytes)
        {
            throw new ModelFormatException(Path, $"tensor {name}: {elements} {type} elements overflow the byte size");
        }
        ulong offset = U64($"tensor {name} offset");
        if (offset > long.MaxValue)
        {
            throw new ModelFormatException(Path, $"tensor {name}: offset {offset} is invalid");
        }
        return new GgufTensorInfo(name, dims, type, (long)offset);
    }

    private const uint ArrayType = 9;

    /// <summary>Tensors or keys a header may list (a 70B model has under 1,000 tensors).</summary>
    private const long MaxEntries = 1 << 20;

    private object Value(uint type, string key) => type switch
    {
        0 => Byte(key),
        1 => (sbyte)Byte(key),
        2 => (ushort)Small(2, key),
        3 => (short)Small(2, key),
        4 => U32(key),
        5 => (int)U32(key),
        6 => BitConverter.UInt32BitsToSingle(U32(key)),
        7 => Bool(key),
        8 => Str(key),
        10 => U64(key),
        11 => (long)U64(key),
        12 => BitConverter.UInt64BitsToDouble(U64(key)),
        ArrayType => throw new ModelFormatException(Path, $"metadata {key}: arrays of arrays are not allowed in GGUF"),
        _ => throw new ModelFormatException(Path, $"metadata {key}: unknown value type {type}"),
    };

    private static int ElementBytes(uint type) => type switch
    {
        0 or 1 or 7 => 1,
        2 or 3 => 2,
        4 or 5 or 6 => 4,
        10 or 11 or 12 => 8,
        _ => 8, // strings: at least their 8-byte length
    };

    private byte Byte(string what) { Need(1, what); return File.Pointer[_pos++]; }

    private bool Bool(string what)
    {
        byte b = Byte(what);
        return b <= 1 ? b == 1 : throw new ModelFormatException(Path, $"metadata {what}: bool byte {b} is neither 0 nor 1");
    }

    private uint Small(int bytes, string what)
    {
        Need(bytes, what);
        uint v = bytes == 2 ? BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(File.Pointer + _pos, 2)) : File.Pointer[_pos];
        _pos += bytes;
        return v;
    }

    /// <summary>An array of scalars or strings; the count is checked against the bytes left before anything is allocated.</summary>
    private object Array(string key)
    {
        uint elementType = U32($"{key} array type");
        if (elementType == ArrayType)
        {
            throw new ModelFormatException(Path, $"metadata {key}: arrays of arrays are not allowed in GGUF");
        }
        if (elementType > 12)
        {
            throw new ModelFormatException(Path, $"metadata {key}: unknown array element type {elementType}");
        }
        long count = Count($"{key} array length", ElementBytes(elementType));
        if (elementType == 8)
        {
            var strings = new string[count];
            for (long i = 0; i < count; i++)
            {
                strings[i] = Str($"{key}[{i}]");
            }
            return strings;
        }
        // Scalars become typed arrays (never boxed one by one), so an array costs what its bytes do.
        Need(count * ElementBytes(elementType), key);
        var bytes = new ReadOnlySpan<byte>(File.Pointer + _pos, (int)(count * ElementBytes(elementType)));
        _pos += bytes.Length;
        return elementType switch
        {
            0 => bytes.ToArray(),
            1 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, sbyte>(bytes).ToArray(),
            2 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(bytes).ToArray(),
            3 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, short>(bytes).ToArray(),
            4 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, uint>(bytes).ToArray(),
            5 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(bytes).ToArray(),
            6 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray(),
            7 => Bools(bytes, key),
            10 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(bytes).ToArray(),
            11 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(bytes).ToArray(),
            _ => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(bytes).ToArray(),
        };
    }

    private bool[] Bools(ReadOnlySpan<byte> bytes, string key)
    {
        var result = new bool[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
        {
            result[i] = bytes[i] <= 1 ? bytes[i] == 1 : throw new ModelFormatException(Path, $"metadata {key}[{i}]: bool byte {bytes[i]} is neither 0 nor 1");
        }
        return result;
    }

    /// <summary>An integer array of any GGUF integer element type as longs, or null for anything else.</summary>
    public static long[]? IntegerArray(object value)
    {
        // By exact type: the CLR lets sbyte[] match a byte[] pattern (and int[]/uint[], long[]/ulong[]).
        var type = value.GetType();
        return type == typeof(byte[]) ? ((byte[])value).Select(x => (long)x).ToArray()
            : type == typeof(sbyte[]) ? ((sbyte[])value).Select(x => (long)x).ToArray()
            : type == typeof(ushort[]) ? ((ushort[])value).Select(x => (long)x).ToArray()
            : type == typeof(short[]) ? ((short[])value).Select(x => (long)x).ToArray()
            : type == typeof(uint[]) ? ((uint[])value).Select(x => (long)x).ToArray()
            : type == typeof(int[]) ? ((int[])value).Select(x => (long)x).ToArray()
            : type == typeof(long[]) ? (long[])value
            : type == typeof(ulong[]) && ((ulong[])value).All(x => x <= long.MaxValue) ? ((ulong[])value).Select(x => (long)x).ToArray()
            : null;
    }

    public void Dispose() => File.Dispose();
}
