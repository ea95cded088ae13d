namespace Kernels.Runtime.Compute;

/// <summary>
/// cos/sin of pos·θ^(-2i/headDim) for every position and pair, computed in float exactly as
/// llama2.c's run.c does (powf, then pos·freq, then cosf/sinf), so positions rotate bit-identically.
/// </summary>
public sealed class RopeTable
{
    private readonly float[] _cos;
    private readonly float[] _sin;

    public RopeTable(int headDim, int positions, float theta)
    {
        HeadDim = headDim;
        Positions = positions;
        int half = headDim / 2;
        _cos = new float[(long)positions * half];
        _sin = new float[(long)positions * half];
        for (int i = 0; i < half; i++)
        {
            float freq = 1.0f / MathF.Pow(theta, 2 * i / (float)headDim);
            for (int pos = 0; pos < positions; pos++)
            {
                float val = pos * freq;
                _cos[(long)pos * half + i] = MathF.Cos(val);
                _sin[(long)pos * half + i] = MathF.Sin(val);
            }
        }
    }

    public int HeadDim { get; }
    public int Positions { get; }

    public ReadOnlySpan<float> Cos(int position) => _cos.AsSpan(CheckedOffset(position), HeadDim / 2);

    public ReadOnlySpan<float> Sin(int position) => _sin.AsSpan(CheckedOffset(position), HeadDim / 2);

    /// <summary>All cosines, [Positions, HeadDim/2] (for device upload).</summary>
    public float[] AllCos => _cos;

    public float[] AllSin => _sin;

    private int CheckedOffset(int position)
    {
        if ((uint)position >= (uint)Positions)
        {
            throw new ArgumentOutOfRangeException(nameof(position), $"position {position} is beyond the model's context of {Positions}");
        }
        return position * (HeadDim / 2);
    }
}
