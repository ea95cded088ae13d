namespace Kernels.Simd.Matrices;

/// <summary>Storage type of weight values. Activations are always float32.</summary>
public enum ElementType
{
    F32,
    F16,
    BF16,
}

public static class ElementTypeExtensions
{
    public static int Size(this ElementType type) => type switch
    {
        ElementType.F32 => 4,
        ElementType.F16 => 2,
        ElementType.BF16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown element type."),
    };

    /// <summary>Reads element <paramref name="index"/> of a raw array of this type as float.</summary>
    public static unsafe float ReadAsSingle(this ElementType type, void* data, long index) => type switch
    {
        ElementType.F32 => ((float*)data)[index],
        ElementType.F16 => Vectors.HalfBits.HalfToSingle(((ushort*)data)[index]),
        ElementType.BF16 => Vectors.HalfBits.BFloat16ToSingle(((ushort*)data)[index]),
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    /// <summary>Writes <paramref name="value"/> (rounded to nearest even) as element <paramref name="index"/>.</summary>
    public static unsafe void WriteFromSingle(this ElementType type, void* data, long index, float value)
    {
        switch (type)
        {
            case ElementType.F32: ((float*)data)[index] = value; break;
            case ElementType.F16: ((ushort*)data)[index] = Vectors.HalfBits.SingleToHalf(value); break;
            case ElementType.BF16: ((ushort*)data)[index] = Vectors.HalfBits.SingleToBFloat16(value); break;
            default: throw new ArgumentOutOfRangeException(nameof(type));
        }
    }
}
