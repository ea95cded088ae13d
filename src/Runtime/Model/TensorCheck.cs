using Kernels.Simd;
using Kernels.Simd.Matrices;

namespace Kernels.Runtime.Model;

/// <summary>
/// llama.cpp's <c>--check-tensors</c>: reads every weight (dequantized row by row) and fails on the
/// first NaN or infinity with a <see cref="ModelFormatException"/> naming the tensor and row.
/// Reading all weights once costs about as long as one forward pass over the whole file.
/// </summary>
public static class TensorCheck
{
    public static void Run(LlamaModel model)
    {
        void Vector(string name, float[] values)
        {
            if (FiniteCheck.IndexOfNonFinite(values) is int i and >= 0)
            {
                throw new ModelFormatException(model.Source, $"tensor {name}: element {i} is {values[i]}");
            }
        }

        Matrix(model, "token_embd", model.TokenEmbedding);
        if (!model.SharedClassifier)
        {
            Matrix(model, "output", model.Classifier);
        }
        Vector("output_norm", model.FinalNorm);
        for (int l = 0; l < model.Layers.Count; l++)
        {
            var layer = model.Layers[l];
            Vector($"blk.{l}.attn_norm", layer.AttentionNorm);
            Vector($"blk.{l}.ffn_norm", layer.FfnNorm);
            foreach (var (name, m) in layer.Linears())
            {
                Matrix(model, $"blk.{l}.{name}", m);
            }
        }
    }

    private static void Matrix(LlamaModel model, string name, WeightMatrix m)
    {
        int bad = int.MaxValue;
        Parallel.For(0, m.Rows, () => new float[m.Columns], (r, _, row) =>
        {
            m.CopyRow(r, row);
            if (!FiniteCheck.AllFinite(row))
            {
                InterlockedMin(ref bad, r);
            }
            return row;
        }, _ => { });
        if (bad != int.MaxValue)
        {
            var row = new float[m.Columns];
            m.CopyRow(bad, row);
            int c = FiniteCheck.IndexOfNonFinite(row);
            throw new ModelFormatException(model.Source, $"tensor {name} ({m.Name}): row {bad}, column {c} is {row[c]}");
        }
    }

    private static void InterlockedMin(ref int target, int value)
    {
        int seen;
        while (value < (seen = Volatile.Read(ref target)) && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }
}
