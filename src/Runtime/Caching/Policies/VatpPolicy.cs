using Kernels.Runtime.Compute;

namespace Kernels.Runtime.Caching.Policies;

/// <summary>
/// VATP: H2O's heavy hitters scored by attention × the L1 norm of each token's value (a token that
/// draws attention but contributes a near-zero value is cheap to drop), with the first tokens
/// protected. <see cref="KvCacheOptions.UnitValueNorms"/> scores with ‖v‖₁ = 1 (then VATP reduces to H2O).
/// </summary>
public sealed class VatpPolicy(KvCacheOptions options) : H2OPolicy(options)
{
    protected override KvScoring Scoring => Options.UnitValueNorms ? KvScoring.Attention : KvScoring.AttentionTimesValueNorm;

    protected override int ProtectedTokens => Options.ProtectedTokens;
}
