// Training-step throughput of language models (`hippo bench train`): forward, backward and AdamW
// of the H3 LM, the hybrid (attention at layer n_layer / 2) and the Transformer of the same width
// and depth, with the time spent inside GEMMs measured so the GEMM-bound limit is known.
#pragma once
#include <string>
#include <vector>

#include "common/bench.h"
#include "models/config.h"

namespace hippo {

// Records "train.step" with model (h3 | hybrid | transformer), B, L, D, layers, pass "step", ms,
// tokens_per_s, gemm_ms (time inside sgemm per step), gemm_gflops (the BLAS throughput those calls
// achieved), frac_outside_gemm, and gemm_bound_tokens_per_s (tokens / gemm time: the limit if all
// other work were free).
// The benchmark LMs: kind h3 | hybrid (attention at layer n_layer / 2) | transformer, no dropout.
ModelConfig bench_lm_config(const std::string& kind, long long d_model, long long n_layer, long long vocab);

std::vector<BenchRecord> bench_train(const std::vector<std::string>& models, long long L, long long d_model,
                                     long long n_layer, long long vocab);

}  // namespace hippo
