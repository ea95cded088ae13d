using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Tokenization;
using Kernels.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace Kernels.Tests.Hostile;

/// <summary>
/// Deterministic fuzzing of every reader (seeded mutators per format): each mutant must either load
/// and run correctly or be rejected with a <see cref="ModelFormatException"/> that names the file;
/// no other exception type may escape, nothing may hang, and the managed memory a mutant costs stays
/// below its file size + 64 MB (nothing is sized by a claimed count).
/// </summary>
public sealed class FuzzTests(ITestOutputHelper output) : IDisposable
{
    private const long AllocationSlack = 64L << 20;
    private readonly TempDir _tmp = new();
    private readonly List<string> _failures = new();
    private int _loaded, _rejected;

    public void Dispose() => _tmp.Dispose();

    private static readonly ulong[] Interesting =
    {
        0, 1, 2, 3, 7, 8, 16, 31, 32, 33, 63, 64, 255, 256, 1023, 1024, 4096, 65535, 65536,
        int.MaxValue, 1ul << 31, uint.MaxValue, 1ul << 32, (1ul << 32) + 2, long.MaxValue, 1ul << 63, ulong.MaxValue, ulong.MaxValue - 7,
        BitConverter.SingleToUInt32Bits(float.NaN), BitConverter.SingleToUInt32Bits(float.PositiveInfinity), BitConverter.SingleToUInt32Bits(1e-30f),
    };

    /// <summary>One random byte-level mutation; <paramref name="hot"/> bytes (the header) are hit four times in five.</summary>
    private static byte[] Mutate(byte[] good, Random r, int hot)
    {
        int Pos(int length) => r.Next(5) > 0 && hot > 0 ? r.Next(Math.Min(hot, length)) : r.Next(length);
        var b = (byte[])good.Clone();
        switch (r.Next(7))
        {
            case 0:
                for (int i = 0, n = 1 + r.Next(4); i < n; i++)
                {
                    int p = Pos(b.Length);
                    b[p] ^= (byte)(1 << r.Next(8));
                }
                return b;
            case 1:
            {
                int p = Math.Min(Pos(b.Length) & ~3, b.Length - 8);
                ulong v = Interesting[r.Next(Interesting.Length)];
                if (r.Next(2) == 0)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(p), (uint)v);
                }
                else
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(p), v);
                }
                return b;
            }
            case 2:
                return b[..r.Next(b.Length)];
            case 3:
                return b.Concat(Enumerable.Range(0, 1 + r.Next(64)).Select(_ => (byte)r.Next(256))).ToArray();
            case 4:
            {
                int p = Pos(b.Length), n = Math.Min(1 + r.Next(16), b.Length - p);
                return b[..p].Concat(b[(p + n)..]).ToArray();
            }
            case 5:
            {
                int p = Pos(b.Length), n = Math.Min(1 + r.Next(16), b.Length - p);
                return b[..p].Concat(b.AsSpan(p, n).ToArray()).Concat(b[p..]).ToArray();
            }
            default:
            {
                int p = Pos(b.Length);
                b.AsSpan(p, Math.Min(1 + r.Next(8), b.Length - p)).Fill(r.Next(2) == 0 ? (byte)0xFF : (byte)0);
                return b;
            }
        }
    }

    /// <summary>Field-aware GGUF mutations: a value, a type code, a dim, a tensor type or offset set to an interesting number.</summary>
    private static byte[] MutateGgufField(byte[] good, GgufLayout l, Random r)
    {
        var b = (byte[])good.Clone();
        ulong v = Interesting[r.Next(Interesting.Length)];
        switch (r.Next(6))
        {
            case 0:
            {
                var e = l.Entries[r.Next(l.Entries.Count)];
                int size = Math.Min(e.End - e.ValueAt, r.Next(2) == 0 ? 4 : 8);
                BitConverter.GetBytes(v).AsSpan(0, size).CopyTo(b.AsSpan(e.ValueAt));
                return b;
            }
            case 1:
                BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(l.Entries[r.Next(l.Entries.Count)].TypeAt), (uint)r.Next(16));
                return b;
            case 2:
            {
                var t = l.Tensors[r.Next(l.Tensors.Count)];
                int rank = BitConverter.ToInt32(b, t.RankAt);
                BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(t.DimsAt + 8 * r.Next(rank)), v);
                return b;
            }
            case 3:
                BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(l.Tensors[r.Next(l.Tensors.Count)].TypeAt), (uint)(r.Next(3) == 0 ? v : (ulong)r.Next(40)));
                return b;
            case 4:
            {
                var (a, c) = (l.Tensors[r.Next(l.Tensors.Count)], l.Tensors[r.Next(l.Tensors.Count)]);
                ulong oa = BitConverter.ToUInt64(b, a.OffsetAt);
                BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(a.OffsetAt), BitConverter.ToUInt64(b, c.OffsetAt));
                BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(c.OffsetAt), oa);
                return b;
            }
            default:
                BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(l.Tensors[r.Next(l.Tensors.Count)].RankAt), (uint)r.Next(6));
                return b;
        }
    }

    /// <summary>Text mutations of JSON: a number, string or punctuation replaced, deleted or duplicated.</summary>
    private static string MutateJson(string good, Random r)
    {
        string[] tokens = { "-1", "0", "1e309", "2147483648", "-9223372036854775809", "\"x\"", "null", "[]", "{}", "1.5", "true", "\"../../etc/passwd\"", "\"/etc/hostname\"", "[-3,4]", "9999999999" };
        var sb = new StringBuilder(good);
        int p = r.Next(good.Length);
        switch (r.Next(4))
        {
            case 0:
            {
                // Replace the number or string starting at or after p.
                int s = p;
                while (s < good.Length && !(char.IsDigit(good[s]) || good[s] == '"'))
                {
                    s++;
                }
                if (s == good.Length)
                {
                    return good + tokens[r.Next(tokens.Length)];
                }
                int e = s + 1;
                if (good[s] == '"')
                {
                    while (e < good.Length && good[e] != '"')
                    {
                        e++;
                    }
                    e = Math.Min(e + 1, good.Length);
                }
                else
                {
                    while (e < good.Length && (char.IsDigit(good[e]) || good[e] is '.' or 'e' or '-'))
                    {
                        e++;
                    }
                }
                return good[..s] + tokens[r.Next(tokens.Length)] + good[e..];
            }
            case 1:
                sb.Remove(p, Math.Min(1 + r.Next(8), good.Length - p));
                return sb.ToString();
            case 2:
                sb.Insert(p, "{}[],:\"-0"[r.Next(9)]);
                return sb.ToString();
            default:
                return good[..p] + good[p..Math.Min(good.Length, p + 1 + r.Next(40))] + good[p..];
        }
    }

    /// <summary>Loads or rejects one mutant; anything else is recorded as a failure.</summary>
    private void Expect(string label, string path, long fileBytes, Action run)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            run();
            _loaded++;
        }
        catch (ModelFormatException e) when (e.Message.Contains(path, StringComparison.Ordinal) && e.Problem.Length > 0)
        {
            _rejected++;
        }
        catch (ModelFormatException e)
        {
            _failures.Add($"{label}: ModelFormatException without the path {path}: {e.Message}");
        }
        catch (NonFiniteValuesException e) when (e.Message.Contains(path, StringComparison.Ordinal))
        {
            _loaded++; // a valid file with NaN weights: the forward pass names the layer
        }
        catch (Exception e)
        {
            _failures.Add($"{label}: {e.GetType().Name}: {e.Message}\n{e.StackTrace?.Split('\n').FirstOrDefault(l => l.Contains("Kernels.Runtime", StringComparison.Ordinal))}");
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        if (allocated > fileBytes + AllocationSlack)
        {
            _failures.Add($"{label}: allocated {allocated} bytes for a {fileBytes}-byte input");
        }
    }

    /// <summary>Runs a loaded model: its own tokenizer when it has one, a three-token prefill and one greedy step.</summary>
    private static void Exercise(LlamaModel model)
    {
        if (model.Vocabulary is not null)
        {
            var tokenizer = TokenizerLoader.Load(model, null);
            foreach (int id in tokenizer.Encode("the abc ba", addBos: true, addEos: false))
            {
                _ = tokenizer.DecodePiece(tokenizer.Bos, id).Length;
            }
        }
        using var ops = new HostOps();
        using var t = new Transformer(model, ops, maxBatch: 2);
        using var cache = t.CreateCache();
        int n = Math.Min(3, model.Config.MaxSequenceLength);
        var tokens = Enumerable.Range(1, n).Select(i => i % model.Config.VocabSize).ToArray();
        t.Forward(tokens, 0, cache, LogitsMode.Last);
        int next = t.ArgMax(0);
        Assert.InRange(next, 0, model.Config.VocabSize - 1);
        if (n < model.Config.MaxSequenceLength)
        {
            t.Forward(new[] { next }, n, cache, LogitsMode.Last);
        }
    }

    private void Report(string format, int mutants, Stopwatch clock)
    {
        output.WriteLine($"{format}: {mutants} mutants, {_loaded} loaded and ran, {_rejected} rejected with ModelFormatException, {_failures.Count} failures, {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(_failures.Count == 0, $"{_failures.Count} of {mutants} {format} mutants misbehaved:\n" + string.Join("\n", _failures.Take(15)));
        Assert.Equal(mutants, _loaded + _rejected);
    }

    /// <summary>Writes each mutant of <paramref name="good"/> to one path and runs <paramref name="use"/> on it (after checking the unmutated file passes).</summary>
    private void RunFile(string format, byte[] good, int mutants, int seed, Func<byte[], Random, byte[]> mutate, Action<string> use)
    {
        string path = _tmp.File("mutant." + format);
        File.WriteAllBytes(path, good);
        use(path); // the unmutated file is valid: what fails below fails for its mutation
        var clock = Stopwatch.StartNew();
        var r = new Random(seed);
        for (int i = 0; i < mutants; i++)
        {
            var bytes = mutate(good, r);
            File.WriteAllBytes(path, bytes);
            Expect($"{format} #{i} (seed {seed})", path, bytes.Length, () => use(path));
        }
        Report(format, mutants, clock);
    }

    private static void LoadAndRun(string path)
    {
        using var model = ModelLoader.Load(path, memory: WeightMemory.Mapped);
        Exercise(model);
    }

    private static void EncodeAndDecode(ITokenizer tokenizer)
    {
        foreach (int id in tokenizer.Encode("the abc ba", addBos: true, addEos: true))
        {
            _ = tokenizer.DecodePiece(tokenizer.Bos, id).Length;
        }
    }

    [Fact]
    public void Gguf_mutants_load_correctly_or_fail_naming_the_file()
    {
        HostileFixtures.WriteGguf(_tmp.File("good.gguf"));
        var good = File.ReadAllBytes(_tmp.File("good.gguf"));
        var layout = GgufLayout.Read(good);
        RunFile("gguf", good, 3000, 1501, (g, r) => r.Next(2) == 0 ? Mutate(g, r, layout.HeaderEnd) : MutateGgufField(g, layout, r), LoadAndRun);
    }

    [Fact]
    public void Llama2c_mutants_load_correctly_or_fail_naming_the_file()
    {
        HostileFixtures.WriteBin(_tmp.File("good.bin"));
        RunFile("bin", File.ReadAllBytes(_tmp.File("good.bin")), 600, 1502, (g, r) => Mutate(g, r, Llama2cCheckpoint.HeaderBytes), LoadAndRun);
    }

    [Fact]
    public void Tokenizer_bin_mutants_load_correctly_or_fail_naming_the_file()
    {
        HostileFixtures.WriteTokenizerBin(_tmp.File("good.tok"));
        RunFile("tokenizer.bin", File.ReadAllBytes(_tmp.File("good.tok")), 600, 1503, (g, r) => Mutate(g, r, g.Length),
            path => EncodeAndDecode(new BpeTokenizer(Llama2cTokenizerFile.Read(path, HostileFixtures.Shape.Vocab))));
    }

    [Fact]
    public void SentencePiece_model_mutants_load_correctly_or_fail_naming_the_file()
    {
        HostileFixtures.WriteSentencePieceModel(_tmp.File("good.model"));
        RunFile("tokenizer.model", File.ReadAllBytes(_tmp.File("good.model")), 600, 1504, (g, r) => Mutate(g, r, g.Length), path =>
        {
            Assert.True(TokenizerMetadata.Read(path).TokenCount > 0);
            EncodeAndDecode(new SentencePieceModelTokenizer(path));
        });
    }

    [Fact]
    public void Hf_folder_mutants_load_correctly_or_fail_naming_the_file()
    {
        string folder = _tmp.File("hf");
        HostileFixtures.WriteHf(folder, sharded: true);
        var files = Directory.GetFiles(folder).ToDictionary(f => f, File.ReadAllBytes);
        using (var fixture = ModelLoader.Load(folder, memory: WeightMemory.Mapped))
        {
            Exercise(fixture);
        }
        var clock = Stopwatch.StartNew();
        var r = new Random(1505);
        const int mutants = 1200;
        for (int i = 0; i < mutants; i++)
        {
            var (file, good) = files.ElementAt(r.Next(files.Count));
            byte[] bytes = file.EndsWith(".json", StringComparison.Ordinal)
                ? Encoding.UTF8.GetBytes(MutateJson(Encoding.UTF8.GetString(good), r))
                : Mutate(good, r, 8 + (int)BitConverter.ToUInt64(good, 0));
            File.WriteAllBytes(file, bytes);
            // The error may name the folder or the file inside it.
            Expect($"hf {Path.GetFileName(file)} #{i}", folder, files.Values.Sum(b => (long)b.Length), () =>
            {
                using var model = ModelLoader.Load(folder, memory: WeightMemory.Mapped);
                Exercise(model);
            });
            File.WriteAllBytes(file, good);
        }
        Report("hf folder", mutants, clock);
    }
}
