using Kernels.Simd.Matrices;

namespace Kernels.Runtime.Model;

/// <summary>
/// The single in-memory representation every loader produces and every backend runs:
/// configuration, weights (memory-mapped views where the file layout allows), optional
/// embedded vocabulary and the file's metadata.
/// </summary>
public sealed class LlamaModel : IDisposable
{
    private readonly List<IDisposable> _owned = new();
    private readonly object _gate = new();
    private int _users;
    private bool _disposed;

    public LlamaModel(LlamaConfig config, WeightMatrix embedding, IReadOnlyList<LlamaLayer> layers, float[] finalNorm,
        WeightMatrix classifier, string source)
    {
        Config = config;
        TokenEmbedding = embedding;
        Layers = layers.ToList();
        FinalNorm = finalNorm;
        Classifier = classifier;
        Source = source;
        Validate();
    }

    public LlamaConfig Config { get; private set; }
    public WeightMatrix TokenEmbedding { get; }              // [vocab, dim]; rows are read by CopyRow
    public List<LlamaLayer> Layers { get; }
    public float[] FinalNorm { get; }                        // [dim]
    public WeightMatrix Classifier { get; }                  // [vocab, dim]; may be TokenEmbedding itself
    public bool SharedClassifier => ReferenceEquals(Classifier, TokenEmbedding);
    /// <summary>The embedded byte-level BPE vocabulary (GGUF gpt2 tokenizer), when the file carries one.</summary>
    public ByteLevelVocabulary? ByteLevelVocabulary { get; set; }

    public Vocabulary? Vocabulary { get; set; }
    public string Source { get; }
    public Dictionary<string, string> Metadata { get; } = new();

    /// <summary>Keeps <paramref name="resource"/> (a mapping, a buffer) alive as long as the model.</summary>
    public void Own(IDisposable resource) => _owned.Add(resource);

    /// <summary>Called after structural edits (layer removal); keeps <see cref="Config"/> consistent.</summary>
    public void SyncConfig() => Config = Config with { Layers = Layers.Count };

    /// <summary>Total bytes of all weights (what a decode step streams, embedding row aside).</summary>
    public long WeightBytes => Layers.Sum(l => l.Linears().Sum(x => x.Matrix.ByteSize)) + (SharedClassifier ? TokenEmbedding.ByteSize : TokenEmbedding.ByteSize + Classifier.ByteSize);

    private void Validate()
    {
        var c = Config;
        void Check(bool ok, string tensor, string problem)
        {
            if (!ok)
            {
                throw new ModelFormatException(Source, $"tensor {tensor}: {problem}");
            }
        }
        Check(TokenEmbedding.Rows == c.VocabSize && TokenEmbedding.Columns == c.Dim, "token_embd", $"shape [{TokenEmbedding.Rows}, {TokenEmbedding.Columns}], expected [{c.VocabSize}, {c.Dim}]");
        Check(Classifier.Rows == c.VocabSize && Classifier.Columns == c.Dim, "output", $"shape [{Classifier.Rows}, {Classifier.Columns}], expected [{c.VocabSize}, {c.Dim}]");
        Check(FinalNorm.Length == c.Dim, "output_norm", $"length {FinalNorm.Length}, expected {c.Dim}");
        Check(Layers.Count == c.Layers, "blk.*", $"{Layers.Count} layers, config says {c.Layers}");
        for (int i = 0; i < Layers.Count; i++)
        {
            var l = Layers[i];
            string p = $"blk.{i}.";
            int qd = l.Heads * c.HeadDim, kvd = l.KvHeads * c.HeadDim;
            Check(l.KvHeads > 0 && l.Heads % l.KvHeads == 0, p + "attn", $"{l.Heads} heads not a multiple of {l.KvHeads} kv heads");
            Check(l.AttentionNorm.Length == c.Dim, p + "attn_norm", $"length {l.AttentionNorm.Length}, expected {c.Dim}");
            Check(l.FfnNorm.Length == c.Dim, p + "ffn_norm", $"length {l.FfnNorm.Length}, expected {c.Dim}");
            CheckShape(l.Query, qd, c.Dim, p + "attn_q");
            CheckShape(l.Key, kvd, c.Dim, p + "attn_k");
            CheckShape(l.Value, kvd, c.Dim, p + "attn_v");
            CheckShape(l.Output, c.Dim, qd, p + "attn_output");
            CheckShape(l.Gate, c.HiddenDim, c.Dim, p + "ffn_gate");
            CheckShape(l.Up, c.HiddenDim, c.Dim, p + "ffn_up");
            CheckShape(l.Down, c.Dim, c.HiddenDim, p + "ffn_down");
            foreach (var (bias, rows, name) in new[] { (l.QueryBias, qd, "attn_q.bias"), (l.KeyBias, kvd, "attn_k.bias"), (l.ValueBias, kvd, "attn_v.bias") })
            {
                Check(bias is null || bias.Length == rows, p + name, $"length {bias?.Length}, expected {rows}");
            }
            int source = l.SharesKvWith;
            Check(source == -1 || source >= 0 && source < i && Layers[source].SharesKvWith == -1 && Layers[source].KvHeads == l.KvHeads,
                p + "attn (kernels.kv_share_source)",
                $"shares the KV cache of layer {source}: must be -1 or an earlier layer with its own cache and the same {l.KvHeads} kv heads");
        }

        void CheckShape(WeightMatrix m, int rows, int cols, string name) =>
            Check(m.Rows == rows && m.Columns == cols, name, $"shape [{m.Rows}, {m.Columns}], expected [{rows}, {cols}]");
    }

    /// <summary>Re-runs the shape checks after an edit (pruning, head removal).</summary>
    public void Revalidate() => Validate();

    /// <summary>
    /// Marks the weights in use until the returned lease is disposed (each forward pass holds one):
    /// <see cref="Dispose"/> waits for running passes instead of freeing memory under them, and a
    /// disposed model throws <see cref="ObjectDisposedException"/>.
    /// </summary>
    public Lease Use()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _users++;
        }
        return new Lease(this);
    }

    public bool IsDisposed => Volatile.Read(ref _disposed);

    /// <summary>A forward pass's hold on the weights.</summary>
    public readonly struct Lease(LlamaModel model) : IDisposable
    {
        public void Dispose()
        {
            lock (model._gate)
            {
                if (--model._users == 0)
                {
                    Monitor.PulseAll(model._gate);
                }
            }
        }
    }

    /// <summary>Frees the weights once every running forward pass has finished (new ones are refused from now on).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            while (_users > 0)
            {
                Monitor.Wait(_gate);
            }
        }
        var seen = new HashSet<object>(ReferenceEqualityComparer.Instance);
        void D(IDisposable? d)
        {
            if (d is not null && seen.Add(d))
            {
                d.Dispose();
            }
        }
        D(TokenEmbedding);
        D(Classifier);
        foreach (var l in Layers)
        {
            foreach (var (_, m) in l.Linears())
            {
                D(m);
            }
        }
        foreach (var o in _owned)
        {
            D(o);
        }
    }
}
