using Kernels.Simd.Matrices;
using Kernels.Simd.Quantized;
using Kernels.Simd.Threading;

namespace Kernels.Simd;

/// <summary>
/// Prefill for N:M matrices with 8-bit kept values (<see cref="NmQuantizedMatrix"/>, Q8_0; see
/// <see cref="SparseGemm.Multiply(NmQuantizedMatrix, float*, float*, int)"/> for why not 4-bit): a panel
/// of rows at a time, the kept values are dequantized (exactly) into float32 and the panel, which
/// shares the matrix's index bits and tail, runs through the float N:M kernels, whose broadcast
/// GEMM reuses every weight across many tokens. The permute tiles on quantized values paid the
/// widening and a scale per 16 values and token (measured: docs/reports/quantized).
/// </summary>
internal static unsafe class SparseQuantizedPanels
{
    /// <summary>Bytes of one dequantized panel of kept values.</summary>
    private const long PanelBytes = 8L << 20;

    [ThreadStatic] private static NativeBuffer? t_panel;
    [ThreadStatic] private static NativeBuffer? t_panelOutput;

    public static void Multiply(NmQuantizedMatrix w, float* x, float* y, int n)
    {
        int rows = w.Rows, stride = w.ValueStride;
        int panelRows = (int)Math.Clamp(PanelBytes / Math.Max(1, stride * 4L), 1, rows);
        var panel = QuantizedMatMul.Reserve(ref t_panel, (long)panelRows * stride * 4);
        var output = QuantizedMatMul.Reserve(ref t_panelOutput, (long)panelRows * n * 4);
        for (int r0 = 0; r0 < rows; r0 += panelRows)
        {
            int count = Math.Min(panelRows, rows - r0);
            var job = new DequantizeKeptJob(w, r0, (float*)panel.Pointer);
            QuantizedMatMul.DequantizePanel(ref job, count);
            var tail = w.Tail is { } t
                ? new DenseMatrix(t.Name, count, w.TailColumns, ElementType.F32, t.Data + (long)r0 * w.TailColumns * 4, w)
                : null;
            var parts = new NmParts(
                NativeBuffer.View(panel.Pointer, (long)count * stride * 4, w),
                NativeBuffer.View(w.Meta + (long)r0 * w.MetaStride, (long)count * w.MetaStride, w),
                tail);
            using (var floats = NmSparseMatrix.FromParts(w.Name, count, w.Columns, w.Pattern, ElementType.F32, parts))
            {
                SparseGemm.Multiply(floats, x, (float*)output.Pointer, n);
            }
            QuantizedMatMul.ScatterPanel((float*)output.Pointer, count, y, rows, r0, n);
        }
    }

    private readonly struct DequantizeKeptJob(NmQuantizedMatrix w, int first, float* panel) : IRangeJob
    {
        public void Execute(int begin, int end)
        {
            for (int r = begin; r < end; r++)
            {
                Dequantization.Row(w.ValueType, w.Values + (first + r) * w.ValueRowBytes, panel + (long)r * w.ValueStride, w.ValueStride);
            }
        }
    }
}
