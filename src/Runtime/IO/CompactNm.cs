using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;

namespace Kernels.Runtime.IO;

/// <summary>
/// The compact N:M GGUF (docs/formats.md): a compressed linear NAME is stored as the arrays the
/// kernels read — <c>NAME.nm_values</c> and <c>NAME.nm_index</c> (I8, raw bytes, each followed
/// by 64 spare bytes for whole-vector reads) and <c>NAME.nm_tail</c> (float, when the shape has a
/// dense tail) — described by the string array <c>kernels.nm.NAME</c> = [axis, pattern, value
/// type, rows, columns]. Loading builds views over the file image: no conversion, no copy.
/// </summary>
internal static unsafe class CompactNm
{
    public const string VersionKey = "kernels.nm.version";
    public const uint Version = 1;
    private const string Prefix = "kernels.nm.";
    private const int Spare = 64;

    /// <summary>Adds a compressed matrix's arrays and description; false for other formats.</summary>
    public static bool TryAdd(GgufWriter w, string name, WeightMatrix m)
    {
        (string Axis, NmPattern Pattern, string Values, NmParts Parts)? entry = m switch
        {
            NmSparseMatrix s => ("input", s.Pattern, s.ValueType.ToString(), s.Parts),
            NmQuantizedMatrix q => ("input", q.Pattern, q.ValueType.ToString(), q.Parts),
            NmOutputSparseMatrix o => ("output", o.Pattern, o.ValueType.ToString(), o.Parts),
            _ => null,
        };
        if (entry is not { } e)
        {
            return false;
        }
        w.Add(Prefix + name, new[] { e.Axis, e.Pattern.ToString(), e.Values, m.Rows.ToString(), m.Columns.ToString() });
        AddRaw(w, name + ".nm_values", e.Parts.Values);
        AddRaw(w, name + ".nm_index", e.Parts.Index);
        if (e.Parts.Tail is { } t)
        {
            long bytes = (long)t.Rows * t.Columns * t.ElementType.Size();
            w.AddTensor(name + ".nm_tail", new long[] { t.Rows, t.Columns }, GgufWriter.TypeOf(t.ElementType), bytes, s => Copy(t.Data, bytes, s));
        }
        return true;
    }

    private static void AddRaw(GgufWriter w, string name, NativeBuffer b) =>
        w.AddTensor(name, new long[] { b.ByteLength + Spare }, GgmlType.I8, b.ByteLength + Spare, s =>
        {
            Copy((byte*)b.Pointer, b.ByteLength, s);
            s.Write(new byte[Spare]);
        });

    private static void Copy(byte* data, long bytes, Stream s)
    {
        for (long done = 0; done < bytes; done += 1 << 30)
        {
            s.Write(new ReadOnlySpan<byte>(data + done, (int)Math.Min(1 << 30, bytes - done)));
        }
    }

    /// <summary>The compressed matrix stored under <paramref name="name"/>, or null when the file holds it in a standard form.</summary>
    public static WeightMatrix? TryLoad(GgufFile gguf, string name, int rows, int columns)
    {
        if (!gguf.Metadata.TryGetValue(Prefix + name, out object? value))
        {
            return null;
        }
        ModelFormatException Bad(string why) => new(gguf.Path, $"tensor {name} (compact N:M): {why}");
        gguf.Metadata.TryGetValue(VersionKey, out object? version);
        if (version is not uint v || v != Version)
        {
            throw Bad($"{VersionKey} is {version ?? "missing"}; this reader knows version {Version}");
        }
        if (value is not string[] { Length: 5 } spec)
        {
            throw Bad($"metadata {Prefix}{name} must be 5 strings [axis, pattern, value type, rows, columns]");
        }
        if (!int.TryParse(spec[3], out int r) || !int.TryParse(spec[4], out int c) || r <= 0 || c <= 0)
        {
            throw Bad($"rows '{spec[3]}' and columns '{spec[4]}' must be positive integers");
        }
        if (c != columns || rows >= 0 && r != rows)
        {
            throw Bad($"shape [{r}, {c}], expected [{(rows >= 0 ? rows : "*")}, {columns}]");
        }
        NmPattern pattern;
        try
        {
            pattern = NmPattern.Parse(spec[1]);
        }
        catch (Exception e) when (e is FormatException or NotSupportedException)
        {
            throw Bad(e.Message);
        }
        var values = Raw(gguf, name + ".nm_values", Bad);
        var index = Raw(gguf, name + ".nm_index", Bad);
        var tail = gguf.FindTensor(name + ".nm_tail") is { } t ? Tail(gguf, t, Bad) : null;
        var parts = new NmParts(values, index, tail);
        try
        {
            return (spec[0], spec[2]) switch
            {
                ("input", "Q8_0") => NmQuantizedMatrix.FromParts(name, r, c, pattern, QuantType.Q8_0, parts),
                ("input", "Q4_0") => NmQuantizedMatrix.FromParts(name, r, c, pattern, QuantType.Q4_0, parts),
                ("input", _) => NmSparseMatrix.FromParts(name, r, c, pattern, FloatType(spec[2], Bad), parts),
                ("output", _) => NmOutputSparseMatrix.FromParts(name, r, c, pattern, FloatType(spec[2], Bad), parts),
                _ => throw Bad($"axis '{spec[0]}' is not input or output"),
            };
        }
        catch (ArgumentException e)
        {
            throw Bad(e.Message);
        }
    }

    private static ElementType FloatType(string text, Func<string, ModelFormatException> bad) =>
        Enum.TryParse(text, out ElementType type) && Enum.IsDefined(type)
            ? type
            : throw bad($"value type '{text}' is not F32, F16, BF16, Q8_0 or Q4_0");

    /// <summary>An I8 array without its 64 spare bytes, as a view over the file image.</summary>
    private static NativeBuffer Raw(GgufFile gguf, string name, Func<string, ModelFormatException> bad)
    {
        var t = gguf.FindTensor(name) ?? throw bad($"tensor {name} is missing");
        if (t.Type != GgmlType.I8 || t.Dims.Length != 1 || t.Dims[0] < Spare)
        {
            throw bad($"tensor {name} must be a 1-D I8 array of at least {Spare} bytes, got {t.Type} {t.Shape}");
        }
        return NativeBuffer.View(gguf.TensorData(t), t.Dims[0] - Spare, gguf.File);
    }

    private static DenseMatrix Tail(GgufFile gguf, GgufTensorInfo t, Func<string, ModelFormatException> bad)
    {
        if (t.Dims.Length != 2 || t.Type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
        {
            throw bad($"tensor {t.Name} must be a 2-D F32/F16/BF16 matrix, got {t.Type} {t.Shape}");
        }
        var type = t.Type switch { GgmlType.F32 => ElementType.F32, GgmlType.F16 => ElementType.F16, _ => ElementType.BF16 };
        return new DenseMatrix(t.Name, (int)t.Dims[1], (int)t.Dims[0], type, gguf.TensorData(t), gguf.File);
    }
}
