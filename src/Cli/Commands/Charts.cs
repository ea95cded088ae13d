namespace Kernels.Cli.Commands;

/// <summary>PNG charts (ScottPlot, headless).</summary>
internal static class Charts
{
    /// <summary>Grouped bars: one group per label, one series per name.</summary>
    public static void Bars(string path, string title, string yLabel, IReadOnlyList<string> groups, IReadOnlyList<(string Name, double[] Values)> series)
    {
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int n = series.Count;
        double width = 0.8 / Math.Max(1, n);
        for (int s = 0; s < n; s++)
        {
            var bars = new List<ScottPlot.Bar>();
            for (int g = 0; g < groups.Count; g++)
            {
                double v = series[s].Values[g];
                if (double.IsFinite(v))
                {
                    bars.Add(new ScottPlot.Bar
                    {
                        Position = g + (s - (n - 1) / 2.0) * width,
                        Value = v,
                        Size = width * 0.95,
                        FillColor = palette.GetColor(s),
                        Label = v >= 100 ? v.ToString("F0") : v.ToString("F2"),
                    });
                }
            }
            var plotted = plot.Add.Bars(bars);
            plotted.LegendText = series[s].Name;
            plotted.ValueLabelStyle.FontSize = 11;
        }
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, groups.Count).Select(i => (double)i).ToArray(), groups.ToArray());
        plot.Axes.Margins(bottom: 0);
        plot.Title(title);
        plot.YLabel(yLabel);
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        Kernels.Runtime.IO.AtomicFile.WriteAllBytes(path, plot.GetImageBytes(1000, 560, ScottPlot.ImageFormat.Png));
    }

    /// <summary>Lines: x values shared, one series per name (NaN points skipped).</summary>
    public static void Lines(string path, string title, string xLabel, string yLabel, IReadOnlyList<(string Name, double[] X, double[] Y)> series, bool logY = false)
    {
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        for (int s = 0; s < series.Count; s++)
        {
            var (name, xs, ys) = series[s];
            var pts = xs.Zip(ys).Where(p => double.IsFinite(p.Second)).ToArray();
            if (pts.Length == 0)
            {
                continue;
            }
            var line = plot.Add.Scatter(pts.Select(p => p.First).ToArray(), pts.Select(p => logY ? Math.Log10(p.Second) : p.Second).ToArray());
            line.LegendText = name;
            line.Color = palette.GetColor(s);
            line.LineWidth = 2;
            line.MarkerSize = 7;
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(logY ? yLabel + " (log10)" : yLabel);
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        Kernels.Runtime.IO.AtomicFile.WriteAllBytes(path, plot.GetImageBytes(1000, 560, ScottPlot.ImageFormat.Png));
    }

    /// <summary>Heat map of a [rows, cols] matrix.</summary>
    public static void Heatmap(string path, string title, double[,] values, string xLabel, string yLabel)
    {
        var plot = new ScottPlot.Plot();
        // ScottPlot draws the first row at the top; flip so row r sits at y = r.
        int rows = values.GetLength(0), cols = values.GetLength(1);
        var flipped = new double[rows, cols];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                flipped[r, c] = values[rows - 1 - r, c];
            }
        }
        var hm = plot.Add.Heatmap(flipped);
        hm.Colormap = new ScottPlot.Colormaps.Viridis();
        plot.Add.ColorBar(hm);
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        // Cells are indices: one tick per cell, never at half-cell positions.
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericFixedInterval(1);
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericFixedInterval(1);
        Kernels.Runtime.IO.AtomicFile.WriteAllBytes(path, plot.GetImageBytes(900, 600, ScottPlot.ImageFormat.Png));
    }
}
