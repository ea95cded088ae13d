namespace Kernels.Simd.Matrices;

/// <summary>
/// The arrays a compressed N:M matrix is made of, in the kernels' layout: kept values, index
/// metadata (index bits, or row masks for output groups) and the dense tail. A file stores
/// them as they are, so loading is a view with no conversion (docs/formats.md).
/// </summary>
public sealed record NmParts(NativeBuffer Values, NativeBuffer Index, DenseMatrix? Tail)
{
    /// <summary>
    /// Checks that views handed to a matrix constructor have the sizes its shape needs and
    /// the tail its shape implies; throws <see cref="ArgumentException"/> naming the matrix.
    /// </summary>
    internal static void Check(string name, NmParts parts, long valueBytes, long indexBytes, int tailRows, int tailColumns, ElementType tailType)
    {
        if (parts.Values.ByteLength < valueBytes)
        {
            ThrowHelper.Argument($"{name}: {parts.Values.ByteLength} bytes of kept values, the shape needs {valueBytes}", nameof(parts));
        }
        if (parts.Index.ByteLength < indexBytes)
        {
            ThrowHelper.Argument($"{name}: {parts.Index.ByteLength} bytes of index metadata, the shape needs {indexBytes}", nameof(parts));
        }
        bool needsTail = tailRows > 0 && tailColumns > 0;
        if (needsTail != parts.Tail is not null
            || parts.Tail is { } t && (t.Rows != tailRows || t.Columns != tailColumns || t.ElementType != tailType))
        {
            ThrowHelper.Argument(needsTail
                ? $"{name}: the shape needs a dense tail of [{tailRows}, {tailColumns}] {tailType}, got {(parts.Tail is { } d ? $"[{d.Rows}, {d.Columns}] {d.ElementType}" : "none")}"
                : $"{name}: the shape has no dense tail, but one was given", nameof(parts));
        }
    }
}
