using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Session;
using Kernels.Runtime.IO;
using Kernels.Runtime.Model;
using Kernels.Runtime.Tokenization;
using Kernels.Tests.Infrastructure;

namespace Kernels.Tests.Runtime;

/// <summary>Helpers to run stories260K the way the reference did.</summary>
internal static class ModelFixtures
{
    public static (LlamaModel Model, ITokenizer Tokenizer) LoadStoriesBin()
    {
        var model = ModelLoader.Load(TestData.Stories260KBin);
        return (model, TokenizerLoader.Load(model, TestData.Tok512));
    }

    public static string Generate(LlamaModel model, ITokenizer tokenizer, ITransformerOps ops, string prompt, int steps)
    {
        using var session = InferenceSession.Create(model, ops, new InferenceOptions());
        var generator = new TextGenerator(session, tokenizer);
        var sb = new System.Text.StringBuilder();
        var task = Task.Run(async () =>
        {
            await foreach (var piece in generator.GenerateAsync(prompt, new GenerationOptions { Steps = steps, Temperature = 0 }))
            {
                sb.Append(piece);
            }
        });
        task.GetAwaiter().GetResult();
        return sb.Append('\n').ToString();
    }

    /// <summary>Logits after the last of <paramref name="tokens"/>, prefilled through a fresh session on <paramref name="ops"/>.</summary>
    public static float[] PrefillLogits(LlamaModel model, ITransformerOps ops, int[] tokens, InferenceOptions? options = null)
    {
        using var session = InferenceSession.Create(model, ops, options ?? new InferenceOptions());
        session.Prefill(tokens);
        var logits = new float[model.Config.VocabSize];
        session.ReadLogits(logits);
        return logits;
    }

    /// <summary>Teacher-forced logits for the reference token stream at the given positions.</summary>
    public static Dictionary<int, float[]> TeacherForcedLogits(LlamaModel model, ITransformerOps ops, int[] tokens, IEnumerable<int> positions, bool batched)
    {
        var want = positions.ToHashSet();
        var result = new Dictionary<int, float[]>();
        using var transformer = new Transformer(model, ops, maxBatch: 128);
        using var cache = transformer.CreateCache();
        int vocab = model.Config.VocabSize;
        if (batched)
        {
            transformer.Forward(tokens, 0, cache, LogitsMode.All);
            foreach (int p in want)
            {
                var l = new float[vocab];
                transformer.ReadLogits(p, l);
                result[p] = l;
            }
            return result;
        }
        for (int pos = 0; pos < tokens.Length; pos++)
        {
            transformer.Forward(new[] { tokens[pos] }, pos, cache, LogitsMode.Last);
            if (want.Contains(pos))
            {
                var l = new float[vocab];
                transformer.ReadLogits(0, l);
                result[pos] = l;
            }
        }
        return result;
    }

    /// <summary>Parses reference/logits_once.txt: pos → (input, argmax, logits).</summary>
    public static Dictionary<int, (int Input, int ArgMax, float[] Logits)> ReferenceLogits()
    {
        var r = new Dictionary<int, (int, int, float[])>();
        foreach (string line in File.ReadAllLines(TestData.Reference("logits_once.txt")))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 4)
            {
                continue;
            }
            r[int.Parse(f[0])] = (int.Parse(f[1]), int.Parse(f[2]), f.Skip(3).Select(s => float.Parse(s, System.Globalization.CultureInfo.InvariantCulture)).ToArray());
        }
        return r;
    }
}
