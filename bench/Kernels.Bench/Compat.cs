using System.Text.Json;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.IO;

namespace Kernels.Bench;

/// <summary>
/// <c>compat MODEL TOKENS PEER.f32 [OUT.json] [positions]</c>: teacher-forced logits of this runtime
/// against llama.cpp's (from bench/peers/teacher-forced, float32 [n, vocab]) on the same GGUF and
/// token ids: next-token argmax agreement and the largest logit difference over the first
/// <c>positions</c> (default 64). Used by bench/peers/compat.sh.
/// </summary>
public static class Compat
{
    public static void Run(string[] args)
    {
        if (args.Length is < 3 or > 5)
        {
            throw new ArgumentException("usage: compat MODEL.gguf TOKENS.txt PEER.f32 [OUT.json] [positions]");
        }
        var tokens = File.ReadAllText(args[1]).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)
            .Select(t => int.TryParse(t, out int id) ? id : throw new ArgumentException($"{args[1]}: '{t}' is not a token id")).ToArray();
        int positions = 64;
        if (args.Length == 5 && !int.TryParse(args[4], out positions))
        {
            throw new ArgumentException($"positions '{args[4]}' is not an integer");
        }
        if (positions < 1 || positions > tokens.Length)
        {
            throw new ArgumentException($"positions {positions} must lie in [1, {tokens.Length}] (the token count)");
        }
        using var model = ModelLoader.Load(args[0]);
        int vocab = model.Config.VocabSize;
        var peer = File.ReadAllBytes(args[2]);
        if (peer.Length != (long)tokens.Length * vocab * sizeof(float))
        {
            throw new ArgumentException($"{args[2]}: {peer.Length} bytes, expected {tokens.Length} x {vocab} floats");
        }
        using var ops = new HostOps();
        using var transformer = new Transformer(model, ops, maxBatch: tokens.Length);
        using var cache = transformer.CreateCache(tokens.Length);
        transformer.Forward(tokens, 0, cache, LogitsMode.All);
        var ours = new float[vocab];
        var theirs = new float[vocab];
        int agree = 0;
        double maxDiff = 0, maxMagnitude = 0, sumDiff = 0;
        var disagreements = new List<object>();
        for (int t = 0; t < positions; t++)
        {
            transformer.ReadLogits(t, ours);
            Buffer.BlockCopy(peer, t * vocab * sizeof(float), theirs, 0, vocab * sizeof(float));
            int a = Kernels.Simd.VectorMath.ArgMax(ours), b = Kernels.Simd.VectorMath.ArgMax(theirs);
            if (a == b)
            {
                agree++;
            }
            else
            {
                disagreements.Add(new { position = t, kernels = a, llama_cpp = b, margin = theirs[b] - theirs[a] });
            }
            for (int i = 0; i < vocab; i++)
            {
                double d = Math.Abs(ours[i] - theirs[i]);
                maxDiff = Math.Max(maxDiff, d);
                sumDiff += d;
                maxMagnitude = Math.Max(maxMagnitude, Math.Abs(theirs[i]));
            }
        }
        var result = new
        {
            model = args[0],
            positions,
            argmax_agree = agree,
            max_abs_logit_diff = maxDiff,
            mean_abs_logit_diff = sumDiff / ((double)positions * vocab),
            max_abs_logit = maxMagnitude,
            disagreements,
        };
        Console.WriteLine($"{Path.GetFileName(args[0])}: argmax agrees at {agree}/{positions} positions; max |logit diff| {maxDiff:G3} (mean {result.mean_abs_logit_diff:G3}, largest |logit| {maxMagnitude:G3})");
        if (args.Length >= 4)
        {
            AtomicFile.WriteAllText(args[3], JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
        }
    }
}
