using System.Buffers.Binary;
using System.Text;
using Google.Protobuf;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;

namespace Kernels.Tests.Hostile;

/// <summary>Tiny valid files of every format the runtime reads, written by the project's own writers (no shared data needed).</summary>
internal static class HostileFixtures
{
    // 2 layers, 4 heads, 2 KV heads, head dim 4, vocab 40.
    public static readonly SyntheticShape Shape = new("hostile", 16, 32, 2, 4, 2, 40, 64);

    public static LlamaModel Model(int seed = 3)
    {
        var model = SyntheticModel.Create(Shape, ElementType.F32, null, seed);
        model.Vocabulary = Vocabulary();
        return model;
    }

    /// <summary>&lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the letters a-z, space and a few merges.</summary>
    public static Vocabulary Vocabulary()
    {
        var pieces = new List<string> { "<unk>", "<s>", "</s>" };
        pieces.AddRange(Enumerable.Range('a', 26).Select(c => ((char)c).ToString()));
        pieces.AddRange(new[] { " ", " a", " b", "ab", "ba", "abc", " the", "he", "th", "er", "in" });
        var bytes = pieces.Select(p => Encoding.UTF8.GetBytes(p)).ToArray();
        var scores = pieces.Select((_, i) => -(float)i).ToArray();
        var kinds = pieces.Select((_, i) => i switch { 0 => TokenKind.Unknown, 1 or 2 => TokenKind.Control, _ => TokenKind.Normal }).ToArray();
        return new Vocabulary(bytes, scores, kinds, 1, 2, 0, "fixture");
    }

    public static void WriteGguf(string path)
    {
        using var model = Model();
        GgufWriter.WriteModel(model, path, ElementType.F32);
    }

    /// <summary>A llama2.c version-0 checkpoint: header, then small random float32 arrays of exactly the size run.c reads.</summary>
    public static void WriteBin(string path, int seed = 4)
    {
        var c = SyntheticModel.Config(Shape);
        long bytes = Llama2cCheckpoint.ExpectedBytes(c, sharedClassifier: true);
        var data = new byte[bytes];
        int[] header = { c.Dim, c.HiddenDim, c.Layers, c.Heads, c.KvHeads, c.VocabSize, c.MaxSequenceLength };
        for (int i = 0; i < header.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(4 * i), header[i]);
        }
        var r = new Random(seed);
        for (long o = Llama2cCheckpoint.HeaderBytes; o < bytes; o += 4)
        {
            BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan((int)o), (r.NextSingle() - 0.5f) * 0.2f);
        }
        File.WriteAllBytes(path, data);
    }

    /// <summary>A llama2.c tokenizer.bin for the fixture vocabulary.</summary>
    public static void WriteTokenizerBin(string path)
    {
        var v = Vocabulary();
        using var w = new BinaryWriter(File.Create(path));
        w.Write(v.Pieces.Max(p => p.Length));
        for (int i = 0; i < v.Count; i++)
        {
            w.Write(v.Scores[i]);
            w.Write(v.Pieces[i].Length);
            w.Write(v.Pieces[i]);
        }
    }

    /// <summary>A SentencePiece ModelProto (pieces with scores and types, a BPE trainer spec with unk/bos/eos ids).</summary>
    public static void WriteSentencePieceModel(string path)
    {
        var v = Vocabulary();
        using var ms = new MemoryStream();
        var o = new CodedOutputStream(ms);
        for (int i = 0; i < v.Count; i++)
        {
            using var pm = new MemoryStream();
            var p = new CodedOutputStream(pm);
            p.WriteTag(1, WireFormat.WireType.LengthDelimited);
            p.WriteString(Encoding.UTF8.GetString(v.Pieces[i]).Replace(' ', '\u2581'));
            p.WriteTag(2, WireFormat.WireType.Fixed32);
            p.WriteFloat(v.Scores[i]);
            p.WriteTag(3, WireFormat.WireType.Varint);
            p.WriteEnum((int)v.Kinds[i]);
            p.Flush();
            o.WriteTag(1, WireFormat.WireType.LengthDelimited);
            o.WriteBytes(ByteString.CopyFrom(pm.ToArray()));
        }
        using (var tm = new MemoryStream())
        {
            var t = new CodedOutputStream(tm);
            t.WriteTag(3, WireFormat.WireType.Varint); // model_type = BPE
            t.WriteEnum(2);
            t.WriteTag(35, WireFormat.WireType.Varint); // byte_fallback
            t.WriteBool(false);
            t.WriteTag(40, WireFormat.WireType.Varint);
            t.WriteInt32(0);
            t.WriteTag(41, WireFormat.WireType.Varint);
            t.WriteInt32(1);
            t.WriteTag(42, WireFormat.WireType.Varint);
            t.WriteInt32(2);
            t.Flush();
            o.WriteTag(2, WireFormat.WireType.LengthDelimited);
            o.WriteBytes(ByteString.CopyFrom(tm.ToArray()));
        }
        using (var nm = new MemoryStream())
        {
            var n = new CodedOutputStream(nm);
            n.WriteTag(1, WireFormat.WireType.LengthDelimited); // name
            n.WriteString("identity");
            n.WriteTag(3, WireFormat.WireType.Varint); // add_dummy_prefix
            n.WriteBool(true);
            n.WriteTag(4, WireFormat.WireType.Varint); // remove_extra_whitespaces
            n.WriteBool(false);
            n.WriteTag(5, WireFormat.WireType.Varint); // escape_whitespaces
            n.WriteBool(true);
            n.Flush();
            o.WriteTag(3, WireFormat.WireType.LengthDelimited);
            o.WriteBytes(ByteString.CopyFrom(nm.ToArray()));
        }
        o.Flush();
        File.WriteAllBytes(path, ms.ToArray());
    }

    /// <summary>An HF folder; with <paramref name="sharded"/> the tensors are split over two files listed by an index.</summary>
    public static void WriteHf(string folder, bool sharded = false)
    {
        using var model = Model();
        HfFolder.Write(model, folder, ElementType.F32);
        if (!sharded)
        {
            return;
        }
        var (tensors, _) = Safetensors.ReadHeader(Path.Combine(folder, "model.safetensors"));
        var bytes = File.ReadAllBytes(Path.Combine(folder, "model.safetensors"));
        var halves = tensors.Select((t, i) => (t, shard: i % 2)).GroupBy(x => x.shard);
        var map = new Dictionary<string, string>();
        foreach (var g in halves)
        {
            string name = $"model-0000{g.Key + 1}-of-00002.safetensors";
            Safetensors.Write(Path.Combine(folder, name), g.Select(x => (x.t.Name, x.t.Shape, x.t.DType, bytes.AsSpan((int)x.t.Offset, (int)x.t.ByteLength).ToArray())));
            foreach (var x in g)
            {
                map[x.t.Name] = name;
            }
        }
        File.Delete(Path.Combine(folder, "model.safetensors"));
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"),
            System.Text.Json.JsonSerializer.Serialize(new { metadata = new { total_size = bytes.Length }, weight_map = map }));
    }
}

/// <summary>Byte positions of a GGUF header's fields, so tests can corrupt exactly one of them.</summary>
internal sealed class GgufLayout
{
    public sealed record Entry(string Key, int KeyAt, int TypeAt, int ValueAt, int End);

    public sealed record TensorEntry(string Name, int NameAt, int RankAt, int DimsAt, int TypeAt, int OffsetAt, int End);

    public List<Entry> Entries { get; } = new();
    public List<TensorEntry> Tensors { get; } = new();
    public int HeaderEnd { get; private set; }
    public int Alignment { get; private set; } = 32;
    public int DataStart => (HeaderEnd + Alignment - 1) / Alignment * Alignment;

    public static GgufLayout Read(byte[] b)
    {
        var l = new GgufLayout();
        int p = 8;
        long tensors = BitConverter.ToInt64(b, p);
        long kvs = BitConverter.ToInt64(b, p + 8);
        p += 16;
        string Str(ref int at)
        {
            int len = (int)BitConverter.ToInt64(b, at);
            string s = Encoding.UTF8.GetString(b, at + 8, len);
            at += 8 + len;
            return s;
        }
        int Skip(uint type, int at)
        {
            switch (type)
            {
                case 0 or 1 or 7: return at + 1;
                case 2 or 3: return at + 2;
                case 4 or 5 or 6: return at + 4;
                case 10 or 11 or 12: return at + 8;
                case 8: Str(ref at); return at;
                case 9:
                    uint et = BitConverter.ToUInt32(b, at);
                    long n = BitConverter.ToInt64(b, at + 4);
                    at += 12;
                    for (long i = 0; i < n; i++)
                    {
                        at = Skip(et, at);
                    }
                    return at;
                default: throw new InvalidOperationException($"type {type}");
            }
        }
        for (long i = 0; i < kvs; i++)
        {
            int keyAt = p;
            string key = Str(ref p);
            int typeAt = p;
            uint type = BitConverter.ToUInt32(b, p);
            int end = Skip(type, p + 4);
            l.Entries.Add(new Entry(key, keyAt, typeAt, p + 4, end));
            if (key == "general.alignment")
            {
                l.Alignment = (int)BitConverter.ToUInt32(b, p + 4);
            }
            p = end;
        }
        for (long i = 0; i < tensors; i++)
        {
            int nameAt = p;
            string name = Str(ref p);
            int rankAt = p;
            int rank = (int)BitConverter.ToUInt32(b, p);
            int typeAt = p + 4 + 8 * rank;
            l.Tensors.Add(new TensorEntry(name, nameAt, rankAt, p + 4, typeAt, typeAt + 4, typeAt + 12));
            p = typeAt + 12;
        }
        l.HeaderEnd = p;
        return l;
    }

    public Entry Key(string key) => Entries.Single(e => e.Key == key);

    public TensorEntry Tensor(string name) => Tensors.Single(t => t.Name == name);

    /// <summary>
    /// Replaces header bytes [at, end) with <paramref name="replacement"/> and re-pads so the data
    /// section starts aligned again (tensor offsets are relative to it, so they stay right).
    /// </summary>
    public byte[] Splice(byte[] file, int at, int end, ReadOnlySpan<byte> replacement, int countDelta = 0, bool tensorCount = false)
    {
        var header = new List<byte>(file.AsSpan(0, at).ToArray());
        header.AddRange(replacement.ToArray());
        header.AddRange(file.AsSpan(end, HeaderEnd - end).ToArray());
        var h = header.ToArray();
        if (countDelta != 0)
        {
            int field = tensorCount ? 8 : 16;
            BinaryPrimitives.WriteInt64LittleEndian(h.AsSpan(field), BitConverter.ToInt64(h, field) + countDelta);
        }
        int start = (h.Length + Alignment - 1) / Alignment * Alignment;
        var result = new byte[start + file.Length - DataStart];
        h.CopyTo(result, 0);
        file.AsSpan(DataStart).CopyTo(result.AsSpan(start));
        return result;
    }

    public static byte[] GgufString(string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        return BitConverter.GetBytes((ulong)b.Length).Concat(b).ToArray();
    }

    /// <summary>A key-value entry: key, type code, value bytes.</summary>
    public static byte[] KeyValue(string key, uint type, byte[] value) =>
        GgufString(key).Concat(BitConverter.GetBytes(type)).Concat(value).ToArray();
}
