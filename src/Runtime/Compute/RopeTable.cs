namespace Kernels.Runtime.Compute;

/// <summary>
/// cos/sin of pos·θ^(-2i/headDim) for every position and pair, computed in float exactly as
/// llama2.c's run.c does (powf, then pos·freq, then cosf/sinf), so positions rotate bit-identically.
/// Rows are computed on first use and the table grows geometrically: its size follows the
/// positions a run reaches, not the context length a file claims.
/// </summary>
public sealed class RopeTable
{
    private const int MinRows = 1024;
    private readonly float[] _freq;
    private readonly object _grow = new();
    private float[] _cos = Array.Empty<float>();
    private float[] _sin = Array.Empty<float>();
    private int _rows;

    public RopeTable(int headDim, int positions, float theta, Model.RopeScaling? scaling = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(headDim, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(positions, 1);
        HeadDim = headDim;
        Positions = positions;
        _freq = new float[headDim / 2];
        for (int i = 0; i < _freq.Length; i++)
        {
            _freq[i] = scaling is null ? 1.0f / MathF.Pow(theta, 2 * i / (float)headDim) : scaling.Frequency(theta, i, headDim);
        }
    }

    public int HeadDim { get; }

    /// <summary>Positions the table may be asked for (the model's context).</summary>
    public int Positions { get; }

    public ReadOnlySpan<float> Cos(int position)
    {
        int offset = CheckedOffset(position);
        return Rows(position + 1).Cos.AsSpan(offset, HeadDim / 2);
    }

    public ReadOnlySpan<float> Sin(int position)
    {
        int offset = CheckedOffset(position);
        return Rows(position + 1).Sin.AsSpan(offset, HeadDim / 2);
    }

    /// <summary>Cosines and sines [rows ≥ <paramref name="count"/>, HeadDim/2] (for device upload).</summary>
    public (float[] Cos, float[] Sin) Rows(int count)
    {
        if ((uint)count > (uint)Positions)
        {
            throw new ArgumentOutOfRangeException(nameof(count), $"position {count - 1} is beyond the model's context of {Positions}");
        }
        if (count <= Volatile.Read(ref _rows))
        {
            return (Volatile.Read(ref _cos), Volatile.Read(ref _sin)); // written before the row count
        }
        lock (_grow)
        {
            if (count > _rows)
            {
                Grow((int)Math.Min(Positions, Math.Max(count, Math.Max(MinRows, 2L * _rows))));
            }
            return (_cos, _sin);
        }
    }

    private void Grow(int rows)
    {
        int half = HeadDim / 2;
        var cos = new float[(long)rows * half];
        var sin = new float[(long)rows * half];
        System.Array.Copy(_cos, cos, (long)_rows * half);
        System.Array.Copy(_sin, sin, (long)_rows * half);
        for (int pos = _rows; pos < rows; pos++)
        {
            for (int i = 0; i < half; i++)
            {
                float val = pos * _freq[i];
                cos[(long)pos * half + i] = MathF.Cos(val);
                sin[(long)pos * half + i] = MathF.Sin(val);
            }
        }
        // Arrays first, then the row count: a reader that sees the new count also sees the new arrays.
        Volatile.Write(ref _cos, cos);
        Volatile.Write(ref _sin, sin);
        Volatile.Write(ref _rows, rows);
    }

    private int CheckedOffset(int position)
    {
        if ((uint)position >= (uint)Positions)
        {
            throw new ArgumentOutOfRangeException(nameof(position), $"position {position} is beyond the model's context of {Positions}");
        }
        return position * (HeadDim / 2);
    }
}
