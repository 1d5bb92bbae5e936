// `hippo bench attention`: the attention family at B = 1, 12 heads x head_dim 64.
#pragma once
#include <vector>

#include "common/bench.h"

namespace hippo {

// For each L (default 1K, 2K, 4K, 16K, 64K), causal and not:
//   attention.tiled         FlashAttention kernels (fwd, fwd+bwd); gflops counts 4 L^2 Dh H (x 1/2
//                           causal) for fwd and 3.5x that for fwd+bwd; frac_of_peak against the
//                           peak.fma record measured in the same run (first record).
//   attention.naive         materialised S = QK^T / softmax / PV with sgemm per head (L <= 4K).
//   attention.block_sparse  BigBird mask (block 64, window 3, global 2, random 3) in the tiled
//                           kernels; gflops counts the active blocks; extra.speedup_vs_dense.
//   attention.linear        linear attention (elu+1), fwd and fwd+bwd.
//   attention.decode        one query per head against a KV cache of L (1K/4K/16K), ms per token.
// peak_mb: the caching allocator's peak above the live bytes before the call = the kernels'
// workspaces (inputs and outputs are preallocated outside the allocator and not counted).
// Dense runs above 16K are forward-only and causal-only (one run: ~7 TFLOP at 64K).
std::vector<BenchRecord> bench_attention(const std::vector<long long>& lengths);

}  // namespace hippo
