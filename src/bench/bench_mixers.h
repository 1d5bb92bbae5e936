// `hippo bench ssm`: every sequence mixer of the registry, built from a model config as a model
// would build it, forward and forward+backward at B = 1, d_model H, for each L (default 1M
// tokens). Mixers whose cost is quadratic in L (full attention, full Mega) are skipped above
// kQuadraticMaxL with the reason in the record. "mega-chunk" is Mega with chunks of 128 tokens.
#pragma once
#include <string>
#include <vector>

#include "common/bench.h"

namespace hippo {

constexpr long long kQuadraticMaxL = 65536;

// Each mixer runs with its config block's defaults (state passing at its default chunk length).
std::vector<BenchRecord> bench_mixers(const std::vector<std::string>& mixers, const std::vector<long long>& lengths,
                                      long long d_model);

// The S4 (DPLR) kernel generation alone, K (H, L) with N = d_state, fwd and fwd+bwd ("s4.kernel";
// scripts/bench_torch.py s4kernel times the official PyTorch code on the same sizes).
std::vector<BenchRecord> bench_s4_kernel(long long H, long long N, long long L);

}  // namespace hippo
