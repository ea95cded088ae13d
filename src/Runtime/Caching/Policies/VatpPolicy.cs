using Kernels.Runtime.Compute;

namespace Kernels.Runtime.Caching.Policies;

/// <summary>
/// VATP: H2O's heavy hitters scored by attention × the norm of each token's value (L1 by default; a
/// token that draws attention but contributes a near-zero value is cheap to drop), with the first
/// tokens protected. <see cref="KvCacheOptions.UnitValueNorms"/> scores with ‖v‖ = 1 (then VATP reduces to H2O).
/// </summary>
public sealed class VatpPolicy(KvCacheOptions options) : H2OPolicy(options)
{
    protected override KvScoring Scoring => ValueAwareScoring(Options);

    protected override int ProtectedTokens => Options.ProtectedTokens;
}
