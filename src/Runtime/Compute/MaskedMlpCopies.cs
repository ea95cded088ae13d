using Kernels.Runtime.Model;
using Kernels.Simd;
using Kernels.Simd.Matrices;

namespace Kernels.Runtime.Compute;

/// <summary>
/// A backend's column-major copies of SwiGLU MLPs for masked SwiGLU (dynamic input pruning), one
/// per layer. Pruning and compression replace a layer's matrices in place, so a copy is keyed by
/// the layer and checked against the gate/up/down it was built from; a stale copy is rebuilt.
/// </summary>
/// <typeparam name="T">The backend's form of the copy (host memory, device buffers).</typeparam>
public sealed class MaskedMlpCopies<T> : IDisposable where T : class, IDisposable
{
    private readonly Dictionary<LlamaLayer, Entry> _copies = new(ReferenceEqualityComparer.Instance);
    private readonly Func<ColumnMajorMlp, T> _adopt;

    private sealed record Entry(WeightMatrix Gate, WeightMatrix Up, WeightMatrix Down, T Copy);

    /// <param name="adopt">Turns a freshly built host copy into the backend's form; it owns the host copy from then on.</param>
    public MaskedMlpCopies(Func<ColumnMajorMlp, T> adopt) => _adopt = adopt;

    /// <summary>The copy of <paramref name="layer"/>'s current MLP, built on first use.</summary>
    public T Get(LlamaLayer layer)
    {
        lock (_copies)
        {
            if (_copies.TryGetValue(layer, out var e) && ReferenceEquals(e.Gate, layer.Gate) && ReferenceEquals(e.Up, layer.Up) && ReferenceEquals(e.Down, layer.Down))
            {
                return e.Copy;
            }
            e?.Copy.Dispose();
            // The copy keeps the model's storage type (F16 stays F16); other formats are widened to F32.
            var type = layer.Gate is DenseMatrix d ? d.ElementType : ElementType.F32;
            var copy = _adopt(new ColumnMajorMlp(layer.Gate, layer.Up, layer.Down, type));
            _copies[layer] = new Entry(layer.Gate, layer.Up, layer.Down, copy);
            return copy;
        }
    }

    public void Dispose()
    {
        lock (_copies)
        {
            foreach (var e in _copies.Values)
            {
                e.Copy.Dispose();
            }
            _copies.Clear();
        }
    }
}
