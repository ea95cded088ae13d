using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>The blocked causal attention of prompts, in the forward pass, against the scalar reference backend.</summary>
public sealed class PrefillAttentionTests
{
    /// <summary>Head size 64 (the blocked kernel's case), GQA 2 query heads per KV head.</summary>
    private static readonly SyntheticShape Shape = SyntheticShape.Small with { Layers = 2, Vocab = 512 };

    private static float[][] Logits(LlamaModel model, ITransformerOps ops, int[] tokens, int split)
    {
        using var t = new Transformer(model, ops, maxBatch: 64);
        using var cache = t.CreateCache(tokens.Length);
        var rows = new List<float[]>();
        foreach (var (from, to) in new[] { (0, split), (split, tokens.Length) }.Where(r => r.Item2 > r.Item1))
        {
            t.Forward(tokens.AsSpan(from, to - from), from, cache, LogitsMode.All);
            for (int r = 0; r < to - from; r++)
            {
                var l = new float[model.Config.VocabSize];
                t.ReadLogits(r, l);
                rows.Add(l);
            }
        }
        return rows.ToArray();
    }

    [Theory]
    [InlineData(40, 40)]
    [InlineData(40, 23)]
    [InlineData(33, 1)]
    public void Batched_prompts_match_the_reference_backend(int length, int split)
    {
        using var model = SyntheticModel.Create(Shape, ElementType.F32, null, seed: 9);
        var tokens = Enumerable.Range(0, length).Select(i => (i * 7919 + 3) % Shape.Vocab).ToArray();
        using var simd = new HostOps();
        using var reference = new ReferenceOps();
        var expected = Logits(model, reference, tokens, split);
        var actual = Logits(model, simd, tokens, split);
        for (int t = 0; t < length; t++)
        {
            Tolerance.AllClose(expected[t], actual[t], 2e-4f, 2e-4f, $"token {t}");
        }
    }
}
