using Kernels.Simd.Matrices;
using Kernels.Simd.Vectors;

namespace Kernels.Simd;

/// <summary>Widening of F16/BF16 arrays to float (SIMD, exact).</summary>
public static unsafe class Conversion
{
    /// <summary>Converts <paramref name="count"/> elements of <paramref name="type"/> at <paramref name="source"/> to float.</summary>
    public static void ToSingle(ElementType type, void* source, float* destination, int count)
    {
        if (type == ElementType.F32)
        {
            Buffer.MemoryCopy(source, destination, (long)count * 4, (long)count * 4);
            return;
        }
        var kernel = new WidenKernel { Type = type, Source = (ushort*)source, Destination = destination, Count = count };
        SimdDispatch.Run(ref kernel);
    }

    private struct WidenKernel : IWidthKernel
    {
        public ElementType Type;
        public ushort* Source;
        public float* Destination;
        public int Count;

        public readonly void Vector<TTier, TVec>() where TTier : struct, IFloatVector<TVec> where TVec : unmanaged =>
            Widen<TTier, TVec>(Type, Source, Destination, Count);

        public readonly void Scalar() => WidenScalar(Type, Source, Destination, 0, Count);
    }

    /// <summary>Span overload of <see cref="ToSingle(ElementType, void*, float*, int)"/> for F16.</summary>
    public static void HalfToSingle(ReadOnlySpan<Half> source, Span<float> destination)
    {
        if (destination.Length < source.Length)
        {
            ThrowHelper.DestinationTooShort();
        }
        fixed (Half* s = source)
        fixed (float* d = destination)
        {
            ToSingle(ElementType.F16, s, d, source.Length);
        }
    }

    private static void Widen<TTier, TVec>(ElementType type, ushort* s, float* d, int count)
        where TTier : struct, IFloatVector<TVec> where TVec : unmanaged
    {
        int i = 0;
        if (count >= TTier.Count)
        {
            for (; i <= count - TTier.Count; i += TTier.Count)
            {
                TTier.Store(d + i, type == ElementType.F16 ? TTier.LoadHalf(s + i) : TTier.LoadBFloat16(s + i));
            }
            if (i < count)
            {
                // Overlapping last vector: element-wise, so recomputing lanes is harmless.
                i = count - TTier.Count;
                TTier.Store(d + i, type == ElementType.F16 ? TTier.LoadHalf(s + i) : TTier.LoadBFloat16(s + i));
                return;
            }
        }
        WidenScalar(type, s, d, i, count);
    }

    private static void WidenScalar(ElementType type, ushort* s, float* d, int from, int count)
    {
        for (int i = from; i < count; i++)
        {
            d[i] = type == ElementType.F16 ? HalfBits.HalfToSingle(s[i]) : HalfBits.BFloat16ToSingle(s[i]);
        }
    }
}
