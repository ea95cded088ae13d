using Kernels.Runtime.Compute;

namespace Kernels.Runtime.Simplification;

/// <summary>Training-free token saliency and the keep-set rule of SDTP stages.</summary>
public static unsafe class TokenSaliency
{
    /// <summary>
    /// saliency[i] = Σ over the last w batch queries and every query head of the attention that
    /// query gives batch token i (× ‖v_i‖₁ when <paramref name="weightByValueNorm"/>), computed
    /// with the same attention kernel as the forward pass over the layer's cached keys: queries
    /// attend causally to every cached slot, only the batch's own slots are scored.
    /// </summary>
    /// <param name="cache">Cache whose layer <paramref name="cacheLayer"/> holds the batch's keys/values in its last n slots.</param>
    /// <param name="queries">[w, heads·headDim] rotated queries of the batch's last w tokens.</param>
    /// <param name="n">Tokens in the batch.</param>
    /// <param name="saliency">[n] result.</param>
    public static void Score(IKvMemory cache, int cacheLayer, ReadOnlySpan<float> queries, int n, int heads, int kvHeads, bool weightByValueNorm, Span<float> saliency)
    {
        int d = cache.HeadDim;
        int w = queries.Length / (heads * d);
        if (saliency.Length != n || w < 1 || w > n || queries.Length != w * heads * d)
        {
            throw new ArgumentException($"saliency needs [n={n}] scores and [w, {heads}·{d}] queries with 1 ≤ w ≤ n (got {saliency.Length} and {queries.Length})");
        }
        saliency.Clear();
        int group = heads / kvHeads;
        for (int g = 0; g < kvHeads; g++)
        {
            var cachedKeys = cache.Keys(cacheLayer, g);
            var cachedValues = cache.Values(cacheLayer, g);
            int count0 = cachedKeys.Length / d;
            int baseCount = count0 - n;
            if (baseCount < 0)
            {
                throw new InvalidOperationException($"layer {cacheLayer} head {g} caches {count0} tokens, fewer than the batch's {n}");
            }
            var received = new float[count0];
            var scores = new float[count0];
            var output = new float[d];
            float[]? norms = null;
            if (weightByValueNorm)
            {
                norms = new float[count0];
                fixed (float* v = cachedValues)
                {
                    for (int s = 0; s < count0; s++)
                    {
                        norms[s] = Kernels.Simd.Attention.L1Norm(v + (long)s * d, d);
                    }
                }
            }
            fixed (float* q = queries)
            fixed (float* keys = cachedKeys)
            fixed (float* values = cachedValues)
            fixed (float* sc = scores)
            fixed (float* o = output)
            fixed (float* r = received)
            fixed (float* vn = norms)
            {
                for (int i = 0; i < w; i++)
                {
                    int count = baseCount + (n - w + i) + 1;
                    for (int j = 0; j < group; j++)
                    {
                        int h = g * group + j;
                        Kernels.Simd.Attention.Attend(q + ((long)i * heads + h) * d, keys, values, count, d, sc, o, r, vn);
                    }
                }
            }
            for (int t = 0; t < n; t++)
            {
                saliency[t] += received[baseCount + t];
            }
        }
    }

    /// <summary>
    /// Rows to keep (ascending): every row at a position below <paramref name="sinkTokens"/>, every
    /// row among the prompt's most recent ⌈recentFraction·promptLength⌉ positions (at least the
    /// last), then the highest-saliency remaining rows until <paramref name="target"/> rows are
    /// kept (ties: earlier row first).
    /// </summary>
    /// <param name="positions">[rows] position of each current row.</param>
    /// <param name="promptEnd">Position one past the prompt's last token.</param>
    public static int[] SelectKept(ReadOnlySpan<float> saliency, ReadOnlySpan<int> positions, int promptLength, int promptEnd, int target,
        int sinkTokens, double recentFraction)
    {
        int rows = positions.Length;
        int recent = Math.Max(1, (int)Math.Ceiling(recentFraction * promptLength));
        var keep = new bool[rows];
        int kept = 0;
        var candidates = new List<int>(rows);
        for (int i = 0; i < rows; i++)
        {
            if (positions[i] < sinkTokens || positions[i] >= promptEnd - recent)
            {
                keep[i] = true;
                kept++;
            }
            else
            {
                candidates.Add(i);
            }
        }
        var scores = saliency.ToArray();
        candidates.Sort((a, b) => scores[b].CompareTo(scores[a]) is var c && c != 0 ? c : a.CompareTo(b));
        for (int k = 0; k < candidates.Count && kept < target; k++)
        {
            keep[candidates[k]] = true;
            kept++;
        }
        var result = new int[kept];
        for (int i = 0, j = 0; i < rows; i++)
        {
            if (keep[i])
            {
                result[j++] = i;
            }
        }
        return result;
    }
}
