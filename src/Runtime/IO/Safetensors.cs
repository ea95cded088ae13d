using System.Buffers.Binary;
using System.Text.Json;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;

namespace Kernels.Runtime.IO;

/// <summary>One tensor entry of a safetensors header; <see cref="Offset"/> is absolute in the file.</summary>
public sealed record SafetensorsTensor(string Name, string DType, long[] Shape, long Offset, long ByteLength, string File)
{
    public ElementType ElementType(string path) => DType switch
    {
        "F32" => Kernels.Simd.Matrices.ElementType.F32,
        "F16" => Kernels.Simd.Matrices.ElementType.F16,
        "BF16" => Kernels.Simd.Matrices.ElementType.BF16,
        _ => throw new ModelFormatException(path, $"tensor {Name}: dtype {DType} is not supported (F32, F16 and BF16 are)"),
    };
}

/// <summary>safetensors: u64 header length, JSON header {name: {dtype, shape, data_offsets}}, then data.</summary>
public static class Safetensors
{
    /// <summary>Reads only the header (no tensor data).</summary>
    public static (List<SafetensorsTensor> Tensors, Dictionary<string, string> Metadata) ReadHeader(string path)
    {
        using var fs = File.OpenRead(path);
        Span<byte> lenBytes = stackalloc byte[8];
        if (fs.Read(lenBytes) != 8)
        {
            throw new ModelFormatException(path, "file shorter than the 8-byte safetensors header length");
        }
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (headerLen == 0 || headerLen > 100_000_000 || (long)headerLen > fs.Length - 8)
        {
            throw new ModelFormatException(path, $"header length {headerLen} is invalid for a {fs.Length}-byte file (not safetensors, or truncated)");
        }
        var json = new byte[headerLen];
        fs.ReadExactly(json);
        long dataStart = 8 + (long)headerLen;
        var tensors = new List<SafetensorsTensor>();
        var meta = new Dictionary<string, string>();
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, "header is not valid JSON", e);
        }
        using (doc)
        {
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        meta[m.Name] = m.Value.ToString();
                    }
                    continue;
                }
                try
                {
                    string dtype = prop.Value.GetProperty("dtype").GetString()!;
                    long[] shape = prop.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                    var offs = prop.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                    if (offs.Length != 2 || offs[0] < 0 || offs[1] < offs[0] || dataStart + offs[1] > fs.Length)
                    {
                        throw new ModelFormatException(path, $"tensor {prop.Name}: data_offsets [{string.Join(",", offs)}] outside the {fs.Length - dataStart}-byte data section (truncated?)");
                    }
                    long elementSize = dtype switch { "F32" or "I32" or "U32" => 4, "F16" or "BF16" or "I16" or "U16" => 2, "F64" or "I64" or "U64" => 8, _ => 1 };
                    long count = shape.Aggregate(1L, (a, b) => a * b);
                    if (count * elementSize != offs[1] - offs[0])
                    {
                        throw new ModelFormatException(path, $"tensor {prop.Name}: {offs[1] - offs[0]} bytes do not hold shape [{string.Join(", ", shape)}] of {dtype}");
                    }
                    tensors.Add(new SafetensorsTensor(prop.Name, dtype, shape, dataStart + offs[0], offs[1] - offs[0], path));
                }
                catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
                {
                    throw new ModelFormatException(path, $"tensor {prop.Name}: malformed header entry", e);
                }
            }
        }
        return (tensors, meta);
    }

    /// <summary>Writes tensors (name, shape, dtype, raw little-endian bytes) as one safetensors file.</summary>
    public static void Write(string path, IEnumerable<(string Name, long[] Shape, string DType, byte[] Data)> tensors)
    {
        var list = tensors.ToList();
        var header = new Dictionary<string, object>();
        long offset = 0;
        foreach (var t in list)
        {
            header[t.Name] = new Dictionary<string, object> { ["dtype"] = t.DType, ["shape"] = t.Shape, ["data_offsets"] = new[] { offset, offset + t.Data.Length } };
            offset += t.Data.Length;
        }
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        int pad = (8 - json.Length % 8) % 8;
        AtomicFile.Write(path, fs =>
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)(json.Length + pad));
            fs.Write(len);
            fs.Write(json);
            for (int i = 0; i < pad; i++)
            {
                fs.WriteByte((byte)' ');
            }
            foreach (var t in list)
            {
                fs.Write(t.Data);
            }
        });
    }
}
