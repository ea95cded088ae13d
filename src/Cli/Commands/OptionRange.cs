using System.CommandLine;
using System.Globalization;
using System.Numerics;

namespace Kernels.Cli.Commands;

/// <summary>
/// Range checks on numeric options, run by the parser before any work starts: a value outside
/// the range (or NaN) is rejected with one line naming the option, the value and the range.
/// </summary>
internal static class OptionRange
{
    /// <summary>Accepts [<paramref name="min"/>, <paramref name="max"/>]; an exclusive bound is written with a parenthesis in the message.</summary>
    public static Option<T> InRange<T>(this Option<T> option, T min, T max, bool minExclusive = false, bool maxExclusive = false)
        where T : struct, INumber<T>
    {
        option.Validators.Add(result => Check(result, option.Name, result.GetValueOrDefault<T>(), min, max, minExclusive, maxExclusive));
        return option;
    }

    /// <summary>The same for an optional value (absent is accepted).</summary>
    public static Option<T?> InRange<T>(this Option<T?> option, T min, T max, bool minExclusive = false, bool maxExclusive = false)
        where T : struct, INumber<T>
    {
        option.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<T?>() is { } v)
            {
                Check(result, option.Name, v, min, max, minExclusive, maxExclusive);
            }
        });
        return option;
    }

    private static void Check<T>(System.CommandLine.Parsing.OptionResult result, string name, T v, T min, T max, bool minExclusive, bool maxExclusive)
        where T : struct, INumber<T>
    {
        bool aboveMin = minExclusive ? v > min : v >= min;
        bool belowMax = maxExclusive ? v < max : v <= max;
        if (T.IsNaN(v) || !aboveMin || !belowMax)
        {
            string range = $"{(minExclusive ? "(" : "[")}{Format(min)}, {Format(max)}{(maxExclusive ? ")" : "]")}";
            result.AddError($"{name}: {Format(v)} is outside {range}");
        }
    }

    private static string Format<T>(T v) where T : INumber<T> => v.ToString(null, CultureInfo.InvariantCulture);
}
