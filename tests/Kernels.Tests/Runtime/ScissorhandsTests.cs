using Kernels.Runtime.Caching;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Model;
using Kernels.Runtime.Session;
using Kernels.Simd.Matrices;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary>Scissorhands as its reference code defines it: window sums divided by the window's query count, then recent window and heavy hitters.</summary>
public sealed class ScissorhandsTests
{
    private static readonly SyntheticShape Shape = SyntheticShape.Small with { Name = "one-head", Dim = 16, Hidden = 32, Layers = 1, Heads = 1, KvHeads = 1, Vocab = 32, MaxSequence = 64 };

    /// <summary>
    /// Prompt of 6 tokens, window W = 4 (queries 2..5), budget 4, recent 1. Hand-set window sums
    /// s = [1.0, 0.9, 1.2, 0.5, 0.8, 0.3]: the reference's means are s / 4 =
    /// [0.25, 0.225, 0.3, 0.125, 0.2, 0.075], so after the prompt it keeps the 3 best: tokens 0, 1, 2.
    /// Dividing each token by its own causal query count (6 − max(p, 2)) instead would rank token 4
    /// (0.8 / 2 = 0.4) and token 5 (0.3 / 1) above token 0 and 1.
    /// </summary>
    [Fact]
    public void The_prompt_score_is_the_window_mean_and_the_best_tokens_stay()
    {
        using var model = SyntheticModel.Create(Shape, ElementType.F32, null, seed: 1);
        using var ops = new HostOps();
        var kv = new KvCacheOptions { Policy = KvPolicyKind.Scissorhands, BudgetTokens = 4, ScissorhandsWindow = 4, ScissorhandsRecent = 1 };
        using var session = InferenceSession.Create(model, ops, new InferenceOptions { Kv = kv, CacheCapacity = 16 });
        var memory = (IKvMemory)session.Cache;
        var policy = session.Policy!;
        policy.BeforePrompt(memory, 6);
        Assert.Equal(2, memory.ScoreFromPosition); // only the last W = 4 queries score
        session.Transformer.Forward([1, 2, 3, 4, 5, 6], 0, session.Cache, Kernels.Runtime.Inference.LogitsMode.Last);
        memory.WriteScores(0, 0, [1.0f, 0.9f, 1.2f, 0.5f, 0.8f, 0.3f]);
        policy.AfterPrompt(memory, 6);
        Assert.Equal([0, 1, 2], memory.Positions(0, 0).ToArray().Order());
        var scores = memory.Scores(0, 0).ToArray();
        var byPosition = memory.Positions(0, 0).ToArray().Zip(scores).ToDictionary(p => p.First, p => p.Second);
        Assert.Equal(0.25f, byPosition[0], 6);
        Assert.Equal(0.225f, byPosition[1], 6);
        Assert.Equal(0.3f, byPosition[2], 6);
        Assert.Equal(0, memory.ScoreFromPosition); // decode steps score again
    }

    /// <summary>
    /// Token by token (constrained perplexity, needle): the first Budget tokens play the prompt and
    /// the after-prompt step runs once they are in, so the window applies to them and later steps
    /// accumulate from every query, as after a real prompt.
    /// </summary>
    [Fact]
    public void A_stepped_sequence_runs_the_after_prompt_step_once_its_prompt_is_in()
    {
        using var model = SyntheticModel.Create(Shape, ElementType.F32, null, seed: 1);
        using var ops = new HostOps();
        var kv = new KvCacheOptions { Policy = KvPolicyKind.Scissorhands, BudgetTokens = 8, ScissorhandsWindow = 3, ScissorhandsRecent = 2 };
        using var session = InferenceSession.Create(model, ops, new InferenceOptions { Kv = kv, CacheCapacity = 32 });
        var memory = (IKvMemory)session.Cache;
        session.StartSequence(20);
        Assert.Equal(5, memory.ScoreFromPosition); // the window covers the last 3 of the 8 prompt tokens
        for (int t = 0; t < 7; t++)
        {
            session.Step(t + 1);
        }
        Assert.Equal(5, memory.ScoreFromPosition);
        session.Step(8); // the 8th token completes the prompt: the window means are taken, then scoring opens
        Assert.Equal(0, memory.ScoreFromPosition);
        Assert.Equal(7, memory.Positions(0, 0).Length); // evicted to Budget − 1, room for the next token
        for (int t = 8; t < 20; t++)
        {
            session.Step(t + 1);
            Assert.Equal(7, memory.Positions(0, 0).Length);
        }
    }
}
