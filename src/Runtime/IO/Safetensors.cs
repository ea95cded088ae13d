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
            doc = JsonDocument.Parse(json, HfFolder.StrictJson);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, "header is not valid JSON", e);
        }
        using (doc)
        {
            try
            {
                ReadEntries(doc, path, dataStart, tensors, meta);
            }
            catch (InvalidOperationException e)
            {
                // System.Text.Json reports invalid UTF-8 inside names and strings only when they are read.
                throw new ModelFormatException(path, $"header is not valid JSON text: {e.Message}", e);
            }
        }
        CheckCoverage(path, tensors, dataStart, fs.Length);
        return (tensors, meta);
    }

    private static void ReadEntries(JsonDocument doc, string path, long dataStart, List<SafetensorsTensor> tensors, Dictionary<string, string> meta)
    {
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, "header must be a JSON object");
        }
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (prop.Value.ValueKind != JsonValueKind.Object)
                {
                    throw new ModelFormatException(path, "__metadata__ must be an object of strings");
                }
                foreach (var m in prop.Value.EnumerateObject())
                {
                    meta[m.Name] = m.Value.ToString();
                }
                continue;
            }
            if (tensors.Any(t => t.Name == prop.Name))
            {
                throw new ModelFormatException(path, $"tensor {prop.Name} appears twice in the header");
            }
            tensors.Add(Entry(path, prop, dataStart));
        }
    }

    private static void CheckCoverage(string path, List<SafetensorsTensor> tensors, long dataStart, long fileLength)
    {
        // As the safetensors library: the entries cover the data section back to back, from its
        // first byte to the end of the file, so no two tensors share bytes and none is hidden.
        long next = dataStart;
        foreach (var t in tensors.OrderBy(t => t.Offset).ThenBy(t => t.ByteLength))
        {
            if (t.Offset != next)
            {
                throw new ModelFormatException(path, $"tensor {t.Name}: data_offsets start at {t.Offset - dataStart}, expected {next - dataStart} (overlapping tensors or a gap in the data)");
            }
            next += t.ByteLength;
        }
        if (next != fileLength)
        {
            throw new ModelFormatException(path, $"the tensors end at byte {next} but the file has {fileLength} (truncated, or data no tensor describes)");
        }
    }

    private static SafetensorsTensor Entry(string path, JsonProperty prop, long dataStart)
    {
        try
        {
            string dtype = prop.Value.GetProperty("dtype").GetString() ?? throw new InvalidOperationException("dtype is null");
            long elementSize = dtype switch
            {
                "F64" or "I64" or "U64" => 8,
                "F32" or "I32" or "U32" => 4,
                "F16" or "BF16" or "I16" or "U16" => 2,
                "I8" or "U8" or "BOOL" or "F8_E4M3" or "F8_E5M2" => 1,
                _ => throw new ModelFormatException(path, $"tensor {prop.Name}: unknown dtype '{dtype}'"),
            };
            long count = 1;
            var shape = new List<long>();
            foreach (var e in prop.Value.GetProperty("shape").EnumerateArray())
            {
                long d = e.GetInt64();
                if (d < 0 || d > 0 && count > long.MaxValue / elementSize / d)
                {
                    throw new ModelFormatException(path, $"tensor {prop.Name}: shape entry {d} is negative or makes the size overflow");
                }
                count *= d;
                shape.Add(d);
            }
            var offs = prop.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            if (offs.Length != 2 || offs[0] < 0 || offs[1] < offs[0])
            {
                throw new ModelFormatException(path, $"tensor {prop.Name}: data_offsets [{string.Join(",", offs)}] must be two byte offsets, begin ≤ end");
            }
            if (count * elementSize != offs[1] - offs[0])
            {
                throw new ModelFormatException(path, $"tensor {prop.Name}: {offs[1] - offs[0]} bytes do not hold shape [{string.Join(", ", shape)}] of {dtype}");
            }
            return new SafetensorsTensor(prop.Name, dtype, shape.ToArray(), dataStart + offs[0], offs[1] - offs[0], path);
        }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new ModelFormatException(path, $"tensor {prop.Name}: malformed header entry (needs dtype, shape and data_offsets)", e);
        }
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
