#include "models/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "common/check.h"

namespace hippo {

void check_sampling_options(const SamplingOptions& o) {
    HIPPO_CHECK(o.temperature >= 0 && std::isfinite(o.temperature), "--temperature must be >= 0, got %g", double(o.temperature));
    HIPPO_CHECK(o.top_k >= 0, "--top-k must be >= 0, got %lld", (long long)o.top_k);
    HIPPO_CHECK(o.top_p > 0 && o.top_p <= 1, "--top-p must be in (0, 1], got %g", double(o.top_p));
    HIPPO_CHECK(o.repetition_penalty > 0 && std::isfinite(o.repetition_penalty),
                "--repetition-penalty must be > 0, got %g", double(o.repetition_penalty));
}

int32_t sample_token(const float* logits, int64_t vocab, const SamplingOptions& o, const std::vector<int32_t>& history,
                     Rng& rng) {
    HIPPO_CHECK(vocab > 0, "sampling from an empty vocabulary");
    std::vector<double> z(logits, logits + vocab);
    if (o.repetition_penalty != 1.0f) {
        std::unordered_set<int32_t> seen(history.begin(), history.end());
        for (int32_t t : seen)
            if (t >= 0 && t < vocab) z[size_t(t)] = z[size_t(t)] > 0 ? z[size_t(t)] / o.repetition_penalty
                                                                     : z[size_t(t)] * o.repetition_penalty;
    }
    auto argmax = [&] { return int32_t(std::max_element(z.begin(), z.end()) - z.begin()); };
    if (o.greedy || o.temperature == 0.0f || o.top_k == 1) return argmax();

    // Candidates sorted by logit (descending), cut by top-k.
    std::vector<int32_t> idx(static_cast<size_t>(vocab));
    std::iota(idx.begin(), idx.end(), 0);
    int64_t k = o.top_k > 0 ? std::min(o.top_k, vocab) : vocab;
    auto by_logit = [&](int32_t a, int32_t b) { return z[size_t(a)] > z[size_t(b)] || (z[size_t(a)] == z[size_t(b)] && a < b); };
    if (k < vocab) {
        std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), by_logit);
        idx.resize(size_t(k));
    } else {
        std::sort(idx.begin(), idx.end(), by_logit);
    }
    // Softmax with temperature over the candidates.
    const double inv_t = 1.0 / double(o.temperature);
    const double zmax = z[size_t(idx[0])];
    std::vector<double> p(idx.size());
    double total = 0;
    for (size_t i = 0; i < idx.size(); i++) total += p[i] = std::exp((z[size_t(idx[i])] - zmax) * inv_t);
    // Nucleus: the smallest prefix whose probability reaches top_p (at least one token).
    size_t keep = idx.size();
    if (o.top_p < 1.0f) {
        double cum = 0;
        for (size_t i = 0; i < idx.size(); i++) {
            cum += p[i] / total;
            if (cum >= double(o.top_p)) {
                keep = i + 1;
                break;
            }
        }
        total = 0;
        for (size_t i = 0; i < keep; i++) total += p[i];
    }
    double r = rng.uniform_double() * total;
    for (size_t i = 0; i < keep; i++) {
        r -= p[i];
        if (r < 0) return idx[i];
    }
    return idx[keep - 1];
}

}  // namespace hippo
