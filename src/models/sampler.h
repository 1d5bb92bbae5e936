// Choosing the next token from a row of logits: greedy, temperature, top-k, top-p (nucleus) and
// repetition penalty, applied at every step in that order (penalty, temperature, top-k, top-p).
// Only the first `vocab` entries of a row are candidates: padded vocabulary entries are never
// sampled, whatever their logits.
#pragma once
#include <cstdint>
#include <vector>

#include "common/rng.h"

namespace hippo {

struct SamplingOptions {
    bool greedy = false;
    float temperature = 1.0f;        // > 0; 0 means greedy
    int64_t top_k = 0;               // 0: off
    float top_p = 1.0f;              // 1: off; keeps the smallest set whose probability reaches top_p
    float repetition_penalty = 1.0f; // 1: off; > 1 discourages tokens already in `history` (CTRL rule)
};

// Validates the options (hippo::Error with the offending option).
void check_sampling_options(const SamplingOptions& o);

// logits: (>= vocab) floats for one sequence; history: the ids seen so far (prompt + generated).
int32_t sample_token(const float* logits, int64_t vocab, const SamplingOptions& o, const std::vector<int32_t>& history,
                     Rng& rng);

}  // namespace hippo
