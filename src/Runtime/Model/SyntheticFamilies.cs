using System.Text;
using Kernels.Runtime.Tokenization;
using Kernels.Simd.Matrices;

namespace Kernels.Runtime.Model;

/// <summary>Model families the one forward pass runs, as they differ in their files.</summary>
public enum ModelFamily
{
    /// <summary>Llama 1/2: SentencePiece vocabulary, separate classifier.</summary>
    Llama,

    /// <summary>Llama 3.x: rope base 500000 with Llama 3.1 scaling, tied embeddings (3.2), llama-bpe byte-level BPE.</summary>
    Llama3,

    /// <summary>Qwen2 / 2.5: Q/K/V biases, rope base 1e6, tied embeddings, qwen2 byte-level BPE.</summary>
    Qwen2,

    /// <summary>SmolLM2: a Llama with tied embeddings and the smollm byte-level BPE.</summary>
    SmolLM2,

    /// <summary>Mistral 7B v0.1: a Llama with a sliding attention window and a SentencePiece vocabulary.</summary>
    Mistral,
}

/// <summary>
/// Tiny deterministic fixtures of each <see cref="ModelFamily"/> (random weights, the family's
/// metadata, a small vocabulary of its tokenizer kind), for tests and for side-by-side runs with
/// llama.cpp (<c>kernels synth --family</c>).
/// </summary>
public static class SyntheticFamilies
{
    public static LlamaModel Create(ModelFamily family, SyntheticShape shape, ElementType type, NmPattern? sparsity = null, int seed = 1)
    {
        var b = SyntheticModel.Create(shape, type, sparsity, seed);
        bool tied = family is ModelFamily.Llama3 or ModelFamily.Qwen2 or ModelFamily.SmolLM2;
        var config = family switch
        {
            ModelFamily.Llama3 => b.Config with
            {
                RopeTheta = 500000f,
                // Llama 3.1's numbers, with the original context shrunk so that short fixtures reach the scaled band.
                RopeScaling = new RopeScaling(RopeScalingKind.Llama3, 8, 1, 4, Math.Max(16, shape.MaxSequence / 8)),
            },
            ModelFamily.Qwen2 => b.Config with { Architecture = "qwen2", RopeTheta = 1000000f, NormEpsilon = 1e-6f },
            ModelFamily.SmolLM2 => b.Config with { RopeTheta = 100000f },
            ModelFamily.Mistral => b.Config with { SlidingWindow = Math.Max(8, shape.MaxSequence / 2) },
            _ => b.Config,
        };
        if (tied)
        {
            b.Classifier.Dispose();
        }
        if (family == ModelFamily.Qwen2)
        {
            var random = new Random(seed * 7919 + 17);
            float[] Bias(int n) => Enumerable.Range(0, n).Select(_ => (random.NextSingle() - 0.5f) * 0.5f).ToArray();
            foreach (var layer in b.Layers)
            {
                layer.QueryBias = Bias(layer.Query.Rows);
                layer.KeyBias = Bias(layer.Key.Rows);
                layer.ValueBias = Bias(layer.Value.Rows);
            }
        }
        // The weights move to the new model, which owns them from here on.
        var model = new LlamaModel(config, b.TokenEmbedding, b.Layers, b.FinalNorm, tied ? b.TokenEmbedding : b.Classifier, $"synthetic:{family.ToString().ToLowerInvariant()}-{shape.Name}");
        model.Metadata["format"] = $"synthetic {family} {shape.Name} {type}";
        switch (family)
        {
            case ModelFamily.Llama3:
                model.ByteLevelVocabulary = ByteLevel(shape.Vocab, "llama-bpe", "<|begin_of_text|>", "<|eot_id|>", addBos: true);
                break;
            case ModelFamily.Qwen2:
                model.ByteLevelVocabulary = ByteLevel(shape.Vocab, "qwen2", null, "<|im_end|>", addBos: false);
                break;
            case ModelFamily.SmolLM2:
                model.ByteLevelVocabulary = ByteLevel(shape.Vocab, "smollm", "<|im_start|>", "<|im_end|>", addBos: false);
                break;
            default:
                model.Vocabulary = SentencePiece(shape.Vocab);
                break;
        }
        return model;
    }

    /// <summary>Frequent English pairs, merged in this order (enough that words become few tokens).</summary>
    private static readonly string[] MergeOrder = { "Ġ t", "h e", "i n", "e r", "a n", "Ġ a", "o n", "Ġt he", "r e", "Ġ s", "a t", "e n", "o u", "Ġ w", "i s", "Ġ o", "Ġ b", "e d", "Ġ c", "n d" };

    /// <summary>256 byte tokens, <see cref="MergeOrder"/>, the given control tokens, and reserved control tokens up to <paramref name="size"/>.</summary>
    private static ByteLevelVocabulary ByteLevel(int size, string pre, string? bos, string eos, bool addBos)
    {
        var tokens = new List<string>(size);
        for (int b = 0; b < 256; b++)
        {
            tokens.Add(ByteLevelAlphabet.Spelling((byte)b));
        }
        foreach (string m in MergeOrder)
        {
            tokens.Add(m.Replace(" ", ""));
        }
        int normal = tokens.Count;
        int? bosId = null;
        if (bos is not null)
        {
            bosId = tokens.Count;
            tokens.Add(bos);
        }
        int eosId = tokens.Count;
        tokens.Add(eos);
        if (tokens.Count > size)
        {
            throw new ArgumentException($"a {pre} fixture needs a vocabulary of at least {tokens.Count} tokens, not {size}");
        }
        while (tokens.Count < size)
        {
            tokens.Add($"<|reserved_special_token_{tokens.Count}|>");
        }
        var kinds = Enumerable.Range(0, size).Select(i => i < normal ? TokenKind.Normal : TokenKind.Control).ToArray();
        return new ByteLevelVocabulary(tokens.ToArray(), MergeOrder, kinds, PreTokenizers.Find(pre)!,
            new SpecialTokens(bosId, eosId, eosId, null, addBos, false), $"synthetic {pre} vocabulary", "merges");
    }

    /// <summary>A SentencePiece vocabulary: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte pieces, printable ASCII characters and a few words (scores favour longer pieces).</summary>
    private static Vocabulary SentencePiece(int size)
    {
        var pieces = new List<byte[]> { "<unk>"u8.ToArray(), "<s>"u8.ToArray(), "</s>"u8.ToArray() };
        var kinds = new List<TokenKind> { TokenKind.Unknown, TokenKind.Control, TokenKind.Control };
        for (int b = 0; b < 256; b++)
        {
            pieces.Add(Encoding.ASCII.GetBytes($"<0x{b:X2}>"));
            kinds.Add(TokenKind.Byte);
        }
        var words = Enumerable.Range(' ', 95).Select(c => ((char)c).ToString())
            .Concat(new[] { " t", "he", " the", "in", " a", "er", "an", " s", "on", "at" });
        foreach (string w in words)
        {
            if (pieces.Count < size)
            {
                pieces.Add(Encoding.UTF8.GetBytes(w));
                kinds.Add(TokenKind.Normal);
            }
        }
        while (pieces.Count < size)
        {
            pieces.Add(Encoding.ASCII.GetBytes($"<unused{pieces.Count}>"));
            kinds.Add(TokenKind.Unused);
        }
        var scores = pieces.Select((p, i) => kinds[i] == TokenKind.Normal ? p.Length * 10f - i * 0.001f : 0f).ToArray();
        return new Vocabulary(pieces.ToArray(), scores, kinds.ToArray(), 1, 2, 0, "synthetic SentencePiece vocabulary");
    }
}
