#include "bench/bench_generate.h"

#include <algorithm>

#include "bench/bench_core.h"
#include "common/rng.h"
#include "common/runtime.h"
#include "models/model.h"

namespace hippo {

namespace {

ModelConfig bench_shape(const GenerateShape& shape, bool transformer, bool pure_h3) {
    nlohmann::json j{{"d_model", shape.d_model},     {"n_layer", shape.n_layer}, {"vocab_size", shape.vocab},
                     {"attn_cfg", {{"num_heads", shape.heads}}}, {"embed_dropout", 0.0}, {"resid_dropout", 0.0}};
    if (transformer) {
        j["name"] = "transformer";
        j["mixer"] = "attention";
    } else {
        j["name"] = pure_h3 ? "h3" : "hybrid";
        j["mixer"] = "h3";
        if (!pure_h3) j["attn_layer_idx"] = {shape.n_layer / 2};  // 6 of 12, as the released 125M hybrid
    }
    return parse_model_config(j, "bench model");
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, Rng& rng) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (auto& t : v) t = int32_t(rng.below(uint64_t(vocab)));
    return v;
}

// Greedy next tokens from (B, Vpad) logits (the sampler's cost is not what is measured here).
std::vector<int32_t> argmax_rows(const Tensor& logits, int64_t vocab) {
    const int64_t B = logits.size(0), V = logits.size(1);
    std::vector<int32_t> out(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; b++) {
        const float* r = logits.data() + b * V;
        out[size_t(b)] = int32_t(std::max_element(r, r + vocab) - r);
    }
    return out;
}

// Bytes of weights a decode step reads: every parameter once (the embedding once, as the output
// head), at the decode format's size (LayerNorm and SSM parameters stay fp32, and int8's row scales
// are 4 bytes per row, but both are a negligible share).
double decode_weight_bytes(const Model& m, DecodeWeights fmt) {
    return double(m.num_parameters()) * decode_weights_bytes_per_param(fmt);
}

}  // namespace

std::vector<BenchRecord> bench_generate(const std::vector<long long>& prompts, const std::vector<long long>& batches,
                                        long long gen_len, const std::vector<long long>& h3_contexts,
                                        const std::vector<std::string>& weights, const GenerateShape& shape) {
    const int64_t D = shape.d_model, V = shape.vocab;
    std::vector<BenchRecord> out;
    std::vector<DecodeWeights> formats;
    for (auto& w : weights) formats.push_back(parse_decode_weights(w));
    double bw_gbps = 0;
    for (auto& r : bench_peak_bandwidth())
        if (r.name == "peak.bandwidth") bw_gbps = r.derived["gbps"];
    Rng rng(5);
    // Both models side by side, their decode steps interleaved in rounds of kRound tokens, so that
    // the machine's drifting bandwidth (a shared host) weighs on both alike and the ratio is fair.
    constexpr long long kRound = 16;
    std::unique_ptr<Model> models[2] = {make_model(bench_shape(shape, false, false), 1),
                                        make_model(bench_shape(shape, true, false), 1)};
    for (auto& m : models) m->eval();
    for (DecodeWeights fmt : formats) {
        for (auto& m : models) m->set_decode_weights(fmt);
        for (long long B : batches)
            for (long long P : prompts) {
                std::unique_ptr<ModelState> st[2] = {models[0]->new_model_state(B, P + gen_len),
                                                     models[1]->new_model_state(B, P + gen_len)};
                std::vector<int32_t> next[2];
                double prefill_s[2], decode_s[2] = {0, 0};
                for (int i = 0; i < 2; i++) {
                    std::vector<int32_t> ids = random_ids(B * P, V, rng);
                    double t0 = now_seconds();
                    Tensor logits = models[i]->prefill_last(ids, B, P, *st[i]);
                    prefill_s[i] = now_seconds() - t0;
                    next[i] = argmax_rows(logits, V);
                }
                for (long long done = 0; done < gen_len; done += kRound)
                    for (int i = 0; i < 2; i++) {
                        double t0 = now_seconds();
                        for (long long k = done; k < std::min(gen_len, done + kRound); k++)
                            next[i] = argmax_rows(models[i]->step(next[i], *st[i]), V);
                        decode_s[i] += now_seconds() - t0;
                    }
                for (int i = 0; i < 2; i++) {
                    const bool is_transformer = i == 1;
                    const int64_t n_attn = is_transformer ? shape.n_layer : 1;
                    const double decode_ms = decode_s[i] * 1e3;
                    const double ctx = double(P + gen_len / 2);  // mean context while decoding
                    const double kv_bytes = 2.0 * double(n_attn) * double(B) * ctx * double(D) * 4.0;
                    BenchRecord r;
                    r.name = is_transformer ? "generate.transformer" : "generate.hybrid";
                    r.shape = {{"B", B}, {"L", P}, {"D", D}};
                    r.pass = "step";
                    r.ms = decode_ms;
                    r.runs = 1;
                    r.derived["prefill_ms"] = prefill_s[i] * 1e3;
                    r.derived["ms_per_token"] = decode_ms / double(gen_len);
                    r.derived["tokens_per_s"] = double(B * gen_len) / decode_s[i];
                    r.derived["total_tokens_per_s"] = double(B * gen_len) / (prefill_s[i] + decode_s[i]);
                    r.derived["kv_mb"] = 2.0 * double(n_attn) * double(B) * double(P + gen_len) * double(D) * 4.0 / (1 << 20);
                    if (bw_gbps > 0)
                        r.derived["mem_bound_ms"] =
                            (decode_weight_bytes(*models[i], fmt) + kv_bytes) / (bw_gbps * 1e9) * 1e3;
                    // The hybrid's tokens/s over the Transformer's, measured in the same rounds.
                    if (!is_transformer) r.derived["speedup_vs_transformer"] = decode_s[1] / decode_s[0];
                    r.extra["gen_len"] = gen_len;
                    r.extra["weights"] = decode_weights_name(fmt);
                    out.push_back(r);
                }
            }
    }
    // Pure H3: latency per token does not depend on the context.
    std::unique_ptr<Model> h3_ptr = make_model(bench_shape(shape, false, true), 1);
    Model& h3 = *h3_ptr;
    h3.eval();
    // The contexts' steps alternate (one token each in turn), so that all see the same machine.
    std::vector<std::unique_ptr<ModelState>> h3_states;
    std::vector<std::vector<int32_t>> h3_next;
    for (long long ctx : h3_contexts) {
        std::vector<int32_t> ids = random_ids(ctx, V, rng);
        h3_states.push_back(h3.new_model_state(1, ctx + 36 * (long long)formats.size()));
        h3_next.push_back(argmax_rows(h3.prefill_last(ids, 1, ctx, *h3_states.back()), V));
    }
    for (DecodeWeights fmt : formats) {
        h3.set_decode_weights(fmt);
        std::vector<std::vector<double>> lat(h3_contexts.size());
        for (int i = 0; i < 4 + 32; i++)  // 4 warm-up steps each, then 32 timed
            for (size_t c = 0; c < h3_contexts.size(); c++) {
                double t0 = now_seconds();
                h3_next[c] = argmax_rows(h3.step(h3_next[c], *h3_states[c]), V);
                if (i >= 4) lat[c].push_back((now_seconds() - t0) * 1e3);
            }
        for (size_t c = 0; c < h3_contexts.size(); c++) {
            std::sort(lat[c].begin(), lat[c].end());
            BenchRecord r;
            r.name = "generate.h3";
            r.shape = {{"B", 1}, {"L", h3_contexts[c]}, {"D", D}};
            r.pass = "step";
            r.ms = lat[c][lat[c].size() / 2];
            r.runs = int(lat[c].size());
            r.derived["ms_per_token"] = r.ms;
            r.derived["tokens_per_s"] = 1e3 / r.ms;
            if (bw_gbps > 0) r.derived["mem_bound_ms"] = decode_weight_bytes(h3, fmt) / (bw_gbps * 1e9) * 1e3;
            r.extra["weights"] = decode_weights_name(fmt);
            out.push_back(r);
        }
    }
    return out;
}

}  // namespace hippo
