using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>
/// Finds NaN and ±Inf in float data (weights scanned at load, activations checked per layer): a
/// float is non-finite exactly when its eight exponent bits are all ones, so the test is one AND
/// and one compare per vector, at the tier <see cref="SimdDispatch"/> picks.
/// </summary>
public static unsafe class FiniteCheck
{
    private const uint ExponentMask = 0x7F80_0000;

    /// <summary>Index of the first NaN or infinity in <paramref name="values"/>, or -1 when all are finite.</summary>
    public static int IndexOfNonFinite(ReadOnlySpan<float> values)
    {
        fixed (float* p = values)
        {
            var kernel = new Scan { Values = p, Length = values.Length };
            SimdDispatch.Run(ref kernel, values.Length);
            return kernel.Found;
        }
    }

    /// <summary>True when every value is finite.</summary>
    public static bool AllFinite(ReadOnlySpan<float> values) => IndexOfNonFinite(values) < 0;

    private struct Scan : IWidthKernel
    {
        public float* Values;
        public int Length, Found;

        public void Vector<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
        {
            int c = TTier.Count, i = 0;
            for (; i <= Length - c && !TTier.AnyNonFinite(TTier.Load(Values + i)); i += c)
            {
            }
            // The vector loop stops at the first vector holding a hit (or the tail): locate it exactly.
            Found = Exact(i);
        }

        public void Scalar() => Found = Exact(0);

        private readonly int Exact(int i)
        {
            for (; i < Length; i++)
            {
                if ((BitConverter.SingleToUInt32Bits(Values[i]) & ExponentMask) == ExponentMask)
                {
                    return i;
                }
            }
            return -1;
        }
    }
}
