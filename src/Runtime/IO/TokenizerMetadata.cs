using Google.Protobuf;
using Kernels.Runtime.Model;

namespace Kernels.Runtime.IO;

/// <summary>
/// A vocabulary as GGUF <c>tokenizer.*</c> metadata, ready to embed into a written model so
/// that llama.cpp and this runtime tokenize the same way. Sources: a GGUF (its
/// <c>tokenizer.*</c> keys copied verbatim, e.g. llama.cpp's <c>ggml-vocab-llama-spm.gguf</c>)
/// or a SentencePiece <c>tokenizer.model</c> (pieces, scores and types read from the protobuf).
/// </summary>
public sealed record TokenizerMetadata(IReadOnlyList<KeyValuePair<string, object>> Entries, int TokenCount, string Source)
{
    /// <summary>Reads the vocabulary of <paramref name="path"/> (.gguf or SentencePiece .model).</summary>
    public static TokenizerMetadata Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path}: vocabulary file not found", path);
        }
        return GgufFile.LooksLikeGguf(path) ? FromGguf(path) : FromSentencePieceModel(path);
    }

    private static TokenizerMetadata FromGguf(string path)
    {
        using var gguf = GgufFile.Open(path);
        var entries = gguf.Metadata.Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal))
            .OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        if (gguf.Metadata.GetValueOrDefault("tokenizer.ggml.tokens") is not string[] tokens || tokens.Length == 0)
        {
            throw new ModelFormatException(path, "tokenizer.ggml.tokens is missing, empty or not a string array");
        }
        return new TokenizerMetadata(entries, tokens.Length, path);
    }

    /// <summary>
    /// SentencePiece ModelProto: field 1 = repeated SentencePiece {1: piece, 2: score, 3: type};
    /// field 2 = TrainerSpec, whose fields 40-42 are unk/bos/eos ids (defaults 0, 1, 2).
    /// </summary>
    private static TokenizerMetadata FromSentencePieceModel(string path)
    {
        var pieces = new List<string>();
        var scores = new List<float>();
        var types = new List<int>();
        int unk = 0, bos = 1, eos = 2;
        try
        {
            var input = new CodedInputStream(File.ReadAllBytes(path));
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                switch (WireFormat.GetTagFieldNumber(tag))
                {
                    case 1 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited:
                        ReadPiece(new CodedInputStream(input.ReadBytes().ToByteArray()), pieces, scores, types);
                        break;
                    case 2 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited:
                        ReadTrainerIds(new CodedInputStream(input.ReadBytes().ToByteArray()), ref unk, ref bos, ref eos);
                        break;
                    default:
                        input.SkipLastField();
                        break;
                }
            }
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new ModelFormatException(path, "not a SentencePiece model (protobuf ModelProto) or a GGUF vocabulary", e);
        }
        if (pieces.Count == 0)
        {
            throw new ModelFormatException(path, "no vocabulary pieces (not a SentencePiece model or a GGUF vocabulary?)");
        }
        foreach (var (name, id) in new[] { ("unk", unk), ("bos", bos), ("eos", eos) })
        {
            if ((uint)id >= (uint)pieces.Count)
            {
                throw new ModelFormatException(path, $"{name} id {id} outside the {pieces.Count}-piece vocabulary");
            }
        }
        var entries = new List<KeyValuePair<string, object>>
        {
            new("tokenizer.ggml.model", "llama"),
            new("tokenizer.ggml.tokens", pieces.ToArray()),
            new("tokenizer.ggml.scores", scores.ToArray()),
            new("tokenizer.ggml.token_type", types.ToArray()),
            new("tokenizer.ggml.bos_token_id", (uint)bos),
            new("tokenizer.ggml.eos_token_id", (uint)eos),
            new("tokenizer.ggml.unknown_token_id", (uint)unk),
            new("tokenizer.ggml.add_bos_token", true),
            new("tokenizer.ggml.add_eos_token", false),
        };
        return new TokenizerMetadata(entries, pieces.Count, path);
    }

    private static void ReadPiece(CodedInputStream input, List<string> pieces, List<float> scores, List<int> types)
    {
        string piece = "";
        float score = 0;
        int type = (int)TokenKind.Normal;
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: piece = input.ReadString(); break;
                case 2: score = input.ReadFloat(); break;
                case 3: type = input.ReadEnum(); break;
                default: input.SkipLastField(); break;
            }
        }
        pieces.Add(piece);
        scores.Add(score);
        types.Add(type);
    }

    private static void ReadTrainerIds(CodedInputStream input, ref int unk, ref int bos, ref int eos)
    {
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 40: unk = input.ReadInt32(); break;
                case 41: bos = input.ReadInt32(); break;
                case 42: eos = input.ReadInt32(); break;
                default: input.SkipLastField(); break;
            }
        }
    }

    /// <summary>
    /// The vocabulary beside this repository (<c>../shared/data</c>, searched upward from
    /// <paramref name="start"/>): llama.cpp's Llama-2 vocabulary GGUF, else the SentencePiece
    /// model. Null when neither exists.
    /// </summary>
    public static string? FindLlama2(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
        {
            foreach (string candidate in new[] { "shared/data/vocab/ggml-vocab-llama-spm.gguf", "shared/data/tokenizer.model" })
            {
                string p = Path.Combine(dir.FullName, candidate);
                if (File.Exists(p))
                {
                    return p;
                }
            }
        }
        return null;
    }
}
