// `hippo bench ssm`: every sequence mixer of the registry, built from a model config as a model
// would build it, forward and forward+backward at B = 1, d_model H, for each L (default 1M
// tokens). Mixers whose cost is quadratic in L (softmax attention) are skipped above
// kQuadraticMaxL with the reason in the record, as are mixers whose estimated activation memory
// would not fit in the machine's memory.
#pragma once
#include <string>
#include <vector>

#include "common/bench.h"

namespace hippo {

constexpr long long kQuadraticMaxL = 65536;

// Each mixer runs with its config block's defaults (state passing at its default chunk length).
std::vector<BenchRecord> bench_mixers(const std::vector<std::string>& mixers, const std::vector<long long>& lengths,
                                      long long d_model);

}  // namespace hippo
