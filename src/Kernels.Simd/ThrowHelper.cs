using System.Diagnostics.CodeAnalysis;

namespace Kernels.Simd;

/// <summary>Central throw sites so hot kernels stay small and inlinable.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void DestinationTooShort(string paramName = "destination") =>
        throw new ArgumentException("Destination is too short.", paramName);

    [DoesNotReturn]
    public static void LengthMismatch(string what) =>
        throw new ArgumentException($"Input spans have mismatched lengths: {what}.");

    [DoesNotReturn]
    public static void ShapeMismatch(string what) =>
        throw new ArgumentException($"Shape mismatch: {what}.");

    [DoesNotReturn]
    public static void Argument(string message, string? paramName = null) =>
        throw new ArgumentException(message, paramName);

    [DoesNotReturn]
    public static void OutOfRange(string paramName, string message) =>
        throw new ArgumentOutOfRangeException(paramName, message);

    [DoesNotReturn]
    public static void NotSupported(string message) => throw new NotSupportedException(message);

    [DoesNotReturn]
    public static void PartialOverlap(string paramName = "destination") =>
        throw new ArgumentException("Input and destination overlap partially; only exact aliasing is allowed.", paramName);

    /// <summary>Exact aliasing is allowed (in-place ops), partial overlap is not.</summary>
    public static void ThrowIfPartialOverlap<TIn, TOut>(ReadOnlySpan<TIn> input, Span<TOut> destination) where TIn : struct where TOut : struct
    {
        if (System.Runtime.CompilerServices.Unsafe.AreSame(
                ref System.Runtime.InteropServices.MemoryMarshal.GetReference(input),
                ref System.Runtime.CompilerServices.Unsafe.As<TOut, TIn>(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(destination))))
        {
            return;
        }
        if (System.Runtime.InteropServices.MemoryMarshal.AsBytes(input).Overlaps(System.Runtime.InteropServices.MemoryMarshal.AsBytes((ReadOnlySpan<TOut>)destination)))
        {
            PartialOverlap();
        }
    }
}
