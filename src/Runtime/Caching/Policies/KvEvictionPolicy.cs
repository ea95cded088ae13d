using Kernels.Runtime.Compute;
using Kernels.Runtime.Inference;

namespace Kernels.Runtime.Caching.Policies;

/// <summary>
/// A budgeted KV eviction policy. The budget is fixed from the prompt; after the prompt and after
/// every decode step each (layer, KV head) is evicted to budget − 1 entries — really removed from
/// storage through the cache's own operations (<see cref="IKvMemory"/>), not masked — so the next
/// token attends to at most the budget. The (recent − 1) newest positions always stay; the
/// subclass chooses what fills the rest. With GQA a KV head keeps one token set for its group.
/// </summary>
public abstract class KvEvictionPolicy
{
    protected KvEvictionPolicy(KvCacheOptions options) => Options = options;

    public KvCacheOptions Options { get; }

    /// <summary>Tokens per layer and KV head the cache may hold while attending (after the prompt).</summary>
    public int Budget { get; private set; } = int.MaxValue;

    public int Recent { get; private set; }

    public int Heavy => Budget - Recent;

    /// <summary>Entries evicted so far (all layers and heads).</summary>
    public long Evicted { get; private set; }

    /// <summary>The policy <paramref name="options"/> names (<see cref="KeepAllPolicy"/> for none).</summary>
    public static KvEvictionPolicy Create(KvCacheOptions options) => options.Policy switch
    {
        KvPolicyKind.None => new KeepAllPolicy(options),
        KvPolicyKind.H2O => new H2OPolicy(options),
        KvPolicyKind.Vatp => new VatpPolicy(options),
        KvPolicyKind.Scissorhands => new ScissorhandsPolicy(options),
        KvPolicyKind.Streaming => new StreamingLlmPolicy(options),
        KvPolicyKind.VatpScissorhands => new VatpScissorhandsPolicy(options),
        _ => throw new ArgumentOutOfRangeException(nameof(options), $"unknown KV policy {options.Policy}"),
    };

    /// <summary>What the cache must accumulate for this policy.</summary>
    protected abstract KvScoring Scoring { get; }

    /// <summary>The recent share of a budget.</summary>
    protected abstract int RecentFor(int budget);

    /// <summary>A cache on the transformer's backend that accumulates what this policy scores.</summary>
    public IKvMemory CreateCache(Transformer transformer, int capacity)
    {
        transformer.Ops.Require(BackendFeature.KvMemory | Options.RequiredFeatures, $"--kv-policy {KvCacheOptions.PolicyName(Options.Policy)}");
        var cache = (IKvMemory)transformer.CreateCache(capacity); // KvMemory: the backend's caches are IKvMemory
        cache.Scoring = Scoring;
        cache.ScorePerQueryHead = Options.PerQueryHead && Scoring != KvScoring.None;
        Attach(transformer);
        return cache;
    }

    /// <summary>Called once the cache exists (StreamingLLM keeps the RoPE table to re-rotate its sinks).</summary>
    protected virtual void Attach(Transformer transformer)
    {
    }

    /// <summary>Fixes the budget from the prompt length.</summary>
    public virtual void BeforePrompt(IKvMemory cache, int promptLength)
    {
        SetBudget(cache, promptLength);
        OnBeforePrompt(cache, promptLength);
    }

    /// <summary>
    /// A sequence run token by token (constrained perplexity): the budget comes from the whole
    /// <paramref name="length"/>, and its first <see cref="Budget"/> tokens, which fit the cache, play
    /// the prompt; the caller runs <see cref="AfterPrompt"/> once they are in (returns their count).
    /// </summary>
    public int BeforeSequence(IKvMemory cache, int length)
    {
        SetBudget(cache, length);
        int prompt = Math.Min(Budget, length);
        OnBeforePrompt(cache, prompt);
        return prompt;
    }

    private void SetBudget(IKvMemory cache, int length)
    {
        Budget = Math.Max(2, Options.BudgetTokens ?? (int)Math.Floor(Options.BudgetFraction * length));
        Recent = RecentFor(Budget);
        cache.GrowthCap = Budget;
    }

    protected virtual void OnBeforePrompt(IKvMemory cache, int promptLength)
    {
    }

    /// <summary>After the prompt: evicts to the budget and trims storage to it (+1 slot for the next token).</summary>
    public virtual void AfterPrompt(IKvMemory cache, int promptLength)
    {
        OnAfterPrompt(cache, promptLength);
        Evict(cache);
        ForEachHead(cache, (l, g) => cache.Trim(l, g, Budget + 1));
    }

    protected virtual void OnAfterPrompt(IKvMemory cache, int promptLength)
    {
    }

    /// <summary>After each decode step.</summary>
    public virtual void AfterStep(IKvMemory cache) => Evict(cache);

    /// <summary>Marks, among the slots not yet kept, the <paramref name="room"/> that fill the non-recent share.</summary>
    protected abstract void ChooseOlder(IKvMemory cache, int layer, int kvHead, bool[] keep, int room);

    /// <summary>
    /// Decode fast path (exactly one entry must go, the recent window is contiguous): the slot to
    /// evict among positions below <paramref name="windowStart"/>, or -1 to take the general path.
    /// </summary>
    protected abstract int ChooseVictim(IKvMemory cache, int layer, int kvHead, int windowStart);

    /// <summary>Before entries of (layer, head) are removed (StreamingLLM records its sinks).</summary>
    protected virtual void BeforeKeep(IKvMemory cache, int layer, int kvHead)
    {
    }

    /// <summary>After entries of (layer, head) were removed (StreamingLLM repositions its sinks).</summary>
    protected virtual void AfterKeep(IKvMemory cache, int layer, int kvHead)
    {
    }

    private void Evict(IKvMemory cache)
    {
        int target = Budget - 1;
        ForEachHead(cache, (l, g) =>
        {
            int n = cache.Positions(l, g).Length;
            if (n <= target || n == target + 1 && TryEvictOne(cache, l, g))
            {
                return;
            }
            var keep = new bool[n];
            // Recent: the (recent − 1) highest positions.
            var positions = cache.Positions(l, g).ToArray();
            var byPosition = Enumerable.Range(0, n).OrderByDescending(s => positions[s]).ToArray();
            int recentKeep = Math.Min(Math.Max(0, Recent - 1), n);
            for (int i = 0; i < recentKeep; i++)
            {
                keep[byPosition[i]] = true;
            }
            ChooseOlder(cache, l, g, keep, target - recentKeep);
            Evicted += n - keep.Count(k => k);
            BeforeKeep(cache, l, g);
            cache.Keep(l, g, keep);
            AfterKeep(cache, l, g);
        });
    }

    private bool TryEvictOne(IKvMemory cache, int l, int g)
    {
        var positions = cache.Positions(l, g);
        int maxPos = int.MinValue;
        foreach (int p in positions)
        {
            maxPos = Math.Max(maxPos, p);
        }
        int recentKeep = Math.Max(0, Recent - 1);
        int windowStart = maxPos - recentKeep + 1;
        int inWindow = 0;
        foreach (int p in positions)
        {
            inWindow += p >= windowStart ? 1 : 0;
        }
        if (inWindow != recentKeep)
        {
            return false; // window not contiguous: take the general path
        }
        int victim = ChooseVictim(cache, l, g, windowStart);
        if (victim < 0)
        {
            return false;
        }
        var keep = new bool[positions.Length];
        Array.Fill(keep, true);
        keep[victim] = false;
        BeforeKeep(cache, l, g);
        cache.Keep(l, g, keep);
        Evicted++;
        AfterKeep(cache, l, g);
        return true;
    }

    protected static void ForEachHead(IKvMemory cache, Action<int, int> action)
    {
        for (int l = 0; l < cache.Layers; l++)
        {
            for (int g = 0; g < cache.KvHeads(l); g++)
            {
                action(l, g);
            }
        }
    }
}
