using Kernels.Runtime.Model;

namespace Kernels.Runtime.Dip;

/// <summary>Memory-hierarchy parameters of the simulated device (all overridable).</summary>
public sealed record HwConfig
{
    public string Name { get; init; } = "custom";

    /// <summary>DRAM read bandwidth, bytes/s.</summary>
    public double DramBandwidth { get; init; } = 50e9;

    /// <summary>Flash read bandwidth, bytes/s.</summary>
    public double FlashBandwidth { get; init; } = 4e9;

    /// <summary>DRAM available to the model, bytes.</summary>
    public long DramCapacity { get; init; }

    public int WeightBits { get; init; } = 16;
    public int KvBits { get; init; } = 16;

    /// <summary>DRAM and flash transfers overlap (max) rather than add.</summary>
    public bool ConcurrentIo { get; init; } = true;

    public ColumnCachePolicy Policy { get; init; } = ColumnCachePolicy.Lru;

    public int PromptLength { get; init; } = 128;
    public int SequenceLength { get; init; } = 256;

    /// <summary>
    /// DRAM held for the KV cache: the paper's simulator charges the average length (prompt + seq)/2;
    /// a runtime that must not run out mid-sequence reserves the full length. Reads are at the
    /// average length either way (generation grows the cache from prompt to seq).
    /// </summary>
    public KvReservation KvReservation { get; init; } = KvReservation.AverageLength;

    /// <summary>Phone-class device: LPDDR5 ~50 GB/s, UFS 4.0 ~4 GB/s, DRAM = a fraction of the model's weight bytes.</summary>
    public static HwConfig Phone(long modelBytes, double dramFraction = 0.5) => new()
    {
        Name = $"phone (LPDDR5 50 GB/s, UFS 4.0 4 GB/s, DRAM {dramFraction:P0} of the model)",
        DramBandwidth = 50e9,
        FlashBandwidth = 4e9,
        DramCapacity = (long)(modelBytes * dramFraction),
    };

    public double Combine(double dramSeconds, double flashSeconds) => ConcurrentIo ? Math.Max(dramSeconds, flashSeconds) : dramSeconds + flashSeconds;
}

/// <summary>How much DRAM the simulated KV cache holds.</summary>
public enum KvReservation
{
    /// <summary>(prompt + seq) / 2 tokens, as the DIP paper's simulator charges it.</summary>
    AverageLength,

    /// <summary>seq tokens: the most the cache holds, reserved up front.</summary>
    MaxLength,
}

/// <summary>How the MLP is treated by the simulator.</summary>
public enum MlpMode
{
    /// <summary>All MLP weights read every token (static module).</summary>
    Dense,

    /// <summary>Only masked columns read (DIP / DIP-CA), cached per column.</summary>
    Dynamic,

    /// <summary>A statically pruned MLP of the given density (static module).</summary>
    StaticPruned,
}

public sealed record SimulationResult(
    double SecondsPerToken, double TimeToFirstToken, double HitRate, long StaticBytes, long StaticFromFlashBytes,
    long DynamicCapacityBytes, int GateUpCacheColumns, int DownCacheColumns, double StaticSeconds, double DynamicSeconds)
{
    public double TokensPerSecond => 1 / SecondsPerToken;
}

/// <summary>
/// Bytes-over-bandwidth model of decoding from DRAM + flash (compute ignored), after the DIP
/// paper's simulator: static modules (attention, classifier, KV cache at the average length,
/// and the MLP unless it is dynamic) are placed in DRAM first, any overflow is streamed from flash
/// every token; the remaining DRAM is split equally among the masked linears (gate and up count
/// as two), each caching whole columns; per token a masked linear reads |mask ∩ cache| columns
/// from DRAM and the rest from flash.
/// </summary>
public static class HwSimulator
{
    /// <param name="sequenceStarts">Token indices where a new sequence starts: the column caches are emptied there (null: one sequence).</param>
    /// <param name="staticIndexBitsPerWeight">Statically pruned MLPs: index bits per original weight that locate the kept values (1 for an unstructured bitmap, 0.5 for 2:4 metadata).</param>
    public static SimulationResult Simulate(LlamaConfig c, HwConfig hw, MlpMode mode, IReadOnlyList<TokenLayerMask[]>? masks = null, double staticDensity = 1.0,
        IReadOnlyList<int>? sequenceStarts = null, double staticIndexBitsPerWeight = 0)
    {
        double wb = hw.WeightBits / 8.0, kb = hw.KvBits / 8.0;
        int L = c.Layers, d = c.Dim, F = c.HiddenDim;
        double kvShare = (double)c.KvHeads / c.Heads;
        double head = (double)d * c.VocabSize * wb;
        double attention = (2 + 2 * kvShare) * d * (double)d * L * wb;
        double kvPerToken = d * 2.0 * L * kvShare * kb;
        double kv = (hw.PromptLength + hw.SequenceLength) / 2.0 * kvPerToken;
        double kvHeld = hw.KvReservation == KvReservation.MaxLength ? Math.Max(hw.PromptLength, hw.SequenceLength) * kvPerToken : kv;
        double mlp = 3.0 * d * F * L * wb;
        double mlpIndex = 3.0 * d * F * L * staticIndexBitsPerWeight / 8;
        double others = head + attention + mode switch { MlpMode.Dense => mlp, MlpMode.StaticPruned => mlp * staticDensity + mlpIndex, _ => 0 };
        // Placement uses what is held; each token reads the static modules and the KV at its average length.
        double staticBytes = others + kvHeld;
        double capacity = hw.DramCapacity;
        double staticInDram = Math.Min(staticBytes, capacity);
        double staticFromFlash = staticBytes - staticInDram;
        double readShare = (others + kv) / staticBytes;
        double tStatic = hw.Combine(staticInDram * readShare / hw.DramBandwidth, staticFromFlash * readShare / hw.FlashBandwidth);
        double dynamicCapacity = Math.Max(0, capacity - staticBytes);
        double perLinear = dynamicCapacity / (3.0 * L);
        int gateUpColumns = (int)Math.Min(d, Math.Floor(perLinear / (F * wb)));
        int downColumns = (int)Math.Min(F, Math.Floor(perLinear / (d * wb)));
        // Prompt encoding: every weight once, the dynamic MLP with an empty cache (all flash).
        double ttft = mode == MlpMode.Dynamic ? hw.Combine(staticInDram * readShare / hw.DramBandwidth, (staticFromFlash * readShare + mlp) / hw.FlashBandwidth) : tStatic;
        if (mode != MlpMode.Dynamic)
        {
            return new SimulationResult(tStatic, ttft, 1.0, (long)staticBytes, (long)staticFromFlash, 0, 0, 0, tStatic, 0);
        }
        if (masks is null || masks.Count == 0)
        {
            throw new ArgumentException("dynamic MLP simulation needs the recorded masks");
        }
        var gateUp = Enumerable.Range(0, L).Select(_ => new ColumnCache(d, gateUpColumns, hw.Policy)).ToArray();
        var down = Enumerable.Range(0, L).Select(_ => new ColumnCache(F, downColumns, hw.Policy)).ToArray();
        // Belady: next-use index of every column after every token, per layer and matrix.
        var nextGateUp = hw.Policy == ColumnCachePolicy.Belady ? NextUses(masks, L, d, m => m.InputColumns) : null;
        var nextDown = hw.Policy == ColumnCachePolicy.Belady ? NextUses(masks, L, F, m => m.HiddenColumns) : null;
        double tDynamic = 0;
        long hits = 0, reads = 0;
        var starts = sequenceStarts?.ToHashSet() ?? [];
        for (int t = 0; t < masks.Count; t++)
        {
            if (t > 0 && starts.Contains(t))
            {
                foreach (var cache in gateUp.Concat(down))
                {
                    cache.Reset();
                }
            }
            for (int l = 0; l < L; l++)
            {
                var m = masks[t][l];
                int hg = gateUp[l].Hits(m.InputColumns), hd = down[l].Hits(m.HiddenColumns);
                // gate and up share the mask: two linears, same traffic.
                tDynamic += 2 * hw.Combine(hg * F * wb / hw.DramBandwidth, (m.InputColumns.Length - hg) * F * wb / hw.FlashBandwidth);
                tDynamic += hw.Combine(hd * d * wb / hw.DramBandwidth, (m.HiddenColumns.Length - hd) * d * wb / hw.FlashBandwidth);
                hits += 2L * hg + hd;
                reads += 2L * m.InputColumns.Length + m.HiddenColumns.Length;
                int tt = t, ll = l;
                gateUp[l].Update(m.InputColumns, nextGateUp is null ? null : col => nextGateUp[ll][tt][col]);
                down[l].Update(m.HiddenColumns, nextDown is null ? null : col => nextDown[ll][tt][col]);
            }
        }
        double dyn = tDynamic / masks.Count;
        return new SimulationResult(tStatic + dyn, ttft, reads == 0 ? 0 : (double)hits / reads, (long)staticBytes, (long)staticFromFlash,
            (long)dynamicCapacity, gateUpColumns, downColumns, tStatic, dyn);
    }

    /// <summary>next[layer][t][column]: first token index &gt; t that uses the column (long.MaxValue if none).</summary>
    private static long[][][] NextUses(IReadOnlyList<TokenLayerMask[]> masks, int layers, int columns, Func<TokenLayerMask, int[]> pick)
    {
        var result = new long[layers][][];
        for (int l = 0; l < layers; l++)
        {
            result[l] = new long[masks.Count][];
            var next = Enumerable.Repeat(long.MaxValue, columns).ToArray();
            for (int t = masks.Count - 1; t >= 0; t--)
            {
                result[l][t] = (long[])next.Clone();
                foreach (int c in pick(masks[t][l]))
                {
                    next[c] = t;
                }
            }
        }
        return result;
    }
}
