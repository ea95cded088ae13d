using Kernels.Runtime.Benchmarking;
using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Model;
using Kernels.Runtime.Profiling;
using Kernels.Simd.Matrices;
using Kernels.Tests.Infrastructure;
using Xunit;

namespace Kernels.Tests.Runtime;

/// <summary><c>--profile</c>: the parts of a step, measured one by one, add up to the step measured as a whole.</summary>
public sealed class ProfilingTests
{
    private static readonly SyntheticShape Shape = SyntheticShape.Small with { Vocab = 4096 };

    [Fact]
    public void Decode_and_prefill_parts_add_up_to_the_step_time()
    {
        using var model = SyntheticModel.Create(Shape, ElementType.F16, null, seed: 3);
        using var ops = new HostOps();
        var result = ModelBenchmark.Run(model, ops, new ModelBenchmarkOptions { DecodeTokens = 12, PrefillTokens = 48, PrefillRepeats = 2, Profile = true });
        var profiler = result.Profile!;
        foreach (var (phase, steps) in new[] { (profiler.Decode, 10), (profiler.Prefill, 2) })
        {
            Assert.Equal(steps, phase.Steps);
            Assert.True(phase.StepMs > 0);
            Assert.InRange(phase.PartsMs, 0.9 * phase.StepMs, 1.1 * phase.StepMs);
            // Every matmul class ran once per layer (Q/K/V and gate/up each as one operation) and read its weights.
            foreach (var part in new[] { ProfilePart.Qkv, ProfilePart.OutputProjection, ProfilePart.GateUp, ProfilePart.Down })
            {
                Assert.True(phase.CallsPerStep(part) >= Shape.Layers, $"{phase.Name} {part}: {phase.CallsPerStep(part)} calls per step");
                Assert.True(phase.GBps(part) > 0, $"{phase.Name} {part}: no bytes");
                Assert.True(phase.PartMs(part) > 0);
            }
            Assert.Equal(Shape.Layers, phase.CallsPerStep(ProfilePart.Attention));
            Assert.Equal(1, phase.CallsPerStep(ProfilePart.LmHead));
        }
        // Bytes of a decode step's matmuls: every block linear once, and the classifier.
        long expected = model.Layers.Sum(l => l.Linears().Sum(x => x.Matrix.ByteSize)) + model.Classifier.ByteSize;
        double counted = new[] { ProfilePart.Qkv, ProfilePart.OutputProjection, ProfilePart.GateUp, ProfilePart.Down, ProfilePart.LmHead }
            .Sum(p => profiler.Decode.BytesPerStep(p));
        Assert.Equal(expected, counted);
        Assert.Equal(1, profiler.Decode.CallsPerStep(ProfilePart.Sampling));
    }

    [Fact]
    public void Profiling_does_not_change_the_logits_and_reports_nothing_outside_steps()
    {
        using var model = SyntheticModel.Create(Shape with { Layers = 2 }, ElementType.F32, null, seed: 5);
        int[] tokens = { 1, 7, 99, 3000, 12 };
        float[] Run(ITransformerOps ops)
        {
            using var t = new Transformer(model, ops);
            using var cache = t.CreateCache(16);
            t.Forward(tokens, 0, cache, LogitsMode.Last);
            var l = new float[model.Config.VocabSize];
            t.ReadLogits(0, l);
            return l;
        }
        var profiler = new ForwardProfiler();
        using var plain = new HostOps();
        using var profiled = new ProfilingOps(new HostOps(), model, profiler);
        Assert.Equal(Run(plain), Run(profiled));
        Assert.Equal(0, profiler.Decode.Steps + profiler.Prefill.Steps);
        Assert.Equal(0, profiler.Prefill.PartsMs);
        Assert.True(profiled.Supports(BackendFeature.KvMemory | BackendFeature.DynamicInputPruning | BackendFeature.TokenPruning));
    }
}
