using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;
using Kernels.Runtime.Session;
using Kernels.Runtime.Tokenization;

namespace Kernels.Runtime.Caching;

/// <summary>One planted-fact prompt: context tokens (with the fact), query tokens, the answer among candidates.</summary>
public sealed record NeedleTrial(int[] Context, int[] Query, int AnswerToken, int[] CandidateTokens, double Depth);

/// <summary>Accuracy of one policy/budget on the needle trials.</summary>
public sealed record NeedleResult(int Trials, int Correct, double Chance)
{
    public double Accuracy => Trials == 0 ? double.NaN : (double)Correct / Trials;
}

/// <summary>
/// A retrieval check that the cache policy cannot game: stories from the text with a planted
/// fact "There was a kid named {Name}." at a random depth, followed (after eviction, token by
/// token) by the query "The kid was named"; the answer counts when the planted name's first
/// token has the highest logit among all candidate names (chance = 1/candidates). Names,
/// depths and filler are drawn from a seeded generator, so every policy sees the same trials.
/// (A character's name is the fact a TinyStories-sized model is trained to carry through a story.)
/// </summary>
public static class NeedleRetrieval
{
    private static readonly string[] Names = { "Lily", "Ben", "Tom", "Sue", "Max", "Mia", "Sam", "Anna", "Tim", "Lucy", "Jack", "Sara", "Amy", "Bob", "Kate", "Zoe" };

    public static IReadOnlyList<NeedleTrial> Build(ITokenizer tokenizer, string text, int trials, int contextTokens, int seed = 11)
    {
        // Candidates whose first token after "named" is unique (so one logit decides).
        int[] prefix = tokenizer.Encode("was named", false, false);
        var candidates = new List<(string Name, int Token)>();
        foreach (var a in Names)
        {
            int[] t = tokenizer.Encode("was named " + a, false, false);
            if (t.Length > prefix.Length && t.AsSpan(0, prefix.Length).SequenceEqual(prefix))
            {
                int first = t[prefix.Length];
                if (candidates.All(c => c.Token != first))
                {
                    candidates.Add((a, first));
                }
            }
        }
        if (candidates.Count < 2)
        {
            throw new InvalidOperationException("fewer than two candidate answers tokenize distinctly");
        }
        var stories = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var rng = new Random(seed);
        var result = new List<NeedleTrial>();
        for (int i = 0; i < trials; i++)
        {
            var (name, answer) = candidates[rng.Next(candidates.Count)];
            // Filler: consecutive stories from a random start until the token budget is reached.
            var sentences = new List<string>();
            int start = rng.Next(stories.Length);
            int used = 0;
            for (int s = start; used < contextTokens - 32; s = (s + 1) % stories.Length)
            {
                foreach (var sentence in stories[s].Split(". ", StringSplitOptions.RemoveEmptyEntries))
                {
                    // Filler never mentions a candidate name (the answer must come from the planted fact).
                    if (candidates.Any(c => sentence.Contains(c.Name, StringComparison.Ordinal)))
                    {
                        continue;
                    }
                    sentences.Add(sentence.TrimEnd('.') + ".");
                    used += tokenizer.Encode(sentence, false, false).Length + 1;
                    if (used >= contextTokens - 32)
                    {
                        break;
                    }
                }
            }
            double depth = 0.1 + 0.8 * rng.NextDouble();
            int at = (int)(depth * sentences.Count);
            sentences.Insert(at, $"There was a kid named {name}.");
            string context = string.Join(" ", sentences);
            int[] ctx = tokenizer.Encode(context, addBos: true, addEos: false);
            if (ctx.Length > contextTokens)
            {
                ctx = ctx[..contextTokens];
            }
            // "\n" is a byte token that never merges, so the query tokenizes the same on its own.
            int[] full = tokenizer.Encode(context + "\nThe kid was named", true, false);
            int[] query = full[tokenizer.Encode(context, true, false).Length..];
            result.Add(new NeedleTrial(ctx, query, answer, candidates.Select(c => c.Token).ToArray(), (double)at / sentences.Count));
        }
        return result;
    }

    /// <summary>Runs every trial through <paramref name="session"/> (its KV policy evicts after the context and after each query token).</summary>
    public static NeedleResult Run(InferenceSession session, IReadOnlyList<NeedleTrial> trials, CancellationToken cancellationToken = default)
    {
        int correct = 0;
        var logits = new float[session.Model.Config.VocabSize];
        foreach (var trial in trials)
        {
            cancellationToken.ThrowIfCancellationRequested();
            session.Reset();
            session.Prefill(trial.Context, LogitsMode.None, cancellationToken);
            foreach (int q in trial.Query)
            {
                session.Step(q, cancellationToken);
            }
            session.ReadLogits(logits);
            int best = trial.CandidateTokens.MaxBy(t => logits[t]);
            correct += best == trial.AnswerToken ? 1 : 0;
        }
        return new NeedleResult(trials.Count, correct, trials.Count == 0 ? 0 : 1.0 / trials[0].CandidateTokens.Length);
    }
}
