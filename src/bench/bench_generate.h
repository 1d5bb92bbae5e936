// Generation throughput (`hippo bench generate`): random-weight models of the released 125M shape,
// the hybrid H3 (attention at layer 6) against a Transformer of the same width and depth, prompt
// processed in parallel mode, then token-by-token decoding (recurrent SSM state, KV cache).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/bench.h"

namespace hippo {

// "generate.hybrid" / "generate.transformer" for each batch and prompt length: ms (decode time for
// gen_len tokens), prefill_ms, ms_per_token (decode latency per step), tokens_per_s (B * gen_len /
// decode time), total_tokens_per_s (including the prompt), kv_mb (KV cache size at the end) and
// mem_bound_ms (bytes a step must read — weights + KV cache — at the measured bandwidth); the
// hybrid's record also has speedup_vs_transformer, its tokens/s over the Transformer's, whose
// decode steps run interleaved with its own in rounds of 16 tokens.
// "generate.h3" per-token latency at the given contexts (pure H3 12 layers, batch 1).
// Every record is made once per decode weight format in `weights` ("fp32", "bf16", "int8"; the
// record's "weights" field): bf16 halves the weight bytes, int8 quarters them; the KV cache stays
// fp32.
// The models' shape: the released 125M by default (12 heads; the hybrid's attention layer is the
// middle one).
struct GenerateShape {
    int64_t d_model = 768, n_layer = 12, vocab = 50257, heads = 12;
};

std::vector<BenchRecord> bench_generate(const std::vector<long long>& prompts, const std::vector<long long>& batches,
                                        long long gen_len, const std::vector<long long>& h3_contexts,
                                        const std::vector<std::string>& weights = {"fp32"},
                                        const GenerateShape& shape = GenerateShape());

}  // namespace hippo
