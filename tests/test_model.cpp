// Model stacks from config: config errors, parameter names and counts, init, causality of every
// mixer kind, recurrent step == parallel forward, dropout.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "autograd/ops.h"
#include "common/check.h"
#include "kernels/gemm.h"
#include "models/lm.h"

using namespace hippo;
using json = nlohmann::json;

namespace {

ModelConfig tiny(const std::string& mixer, json extra = json::object()) {
    json j{{"d_model", 16}, {"n_layer", 2}, {"vocab_size", 20}, {"mixer", mixer}, {"embed_dropout", 0.0},
           {"ssm_cfg", {{"d_state", 8}}}, {"gss_cfg", {{"d_state", 8}}}, {"attn_cfg", {{"num_heads", 2}}}};
    for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
    return parse_model_config(j);
}

std::vector<int32_t> random_ids(int64_t n, int64_t V, uint64_t seed) {
    Rng r(seed);
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = int32_t(r.below(uint64_t(V)));
    return v;
}

std::string error_of(const json& j) {
    try {
        parse_model_config(j, "cfg.json");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// Every registered mixer: a new one is covered by the causality and step tests without edits here.
std::vector<std::string> available_mixers() {
    std::vector<std::string> v;
    for (const MixerDef& d : mixer_registry()) v.push_back(d.name);
    return v;
}

}  // namespace

TEST(ModelConfig, ClearErrors) {
    json base{{"d_model", 16}, {"n_layer", 2}, {"vocab_size", 20}};
    json j = base;
    j["mixer"] = "mamba";
    EXPECT_NE(error_of(j).find("unknown mixer 'mamba'"), std::string::npos) << error_of(j);
    j = base;
    j["attn_layer_idx"] = {2};
    EXPECT_NE(error_of(j).find("attention layer index 2 is out of range for n_layer = 2"), std::string::npos) << error_of(j);
    j = base;
    j["attn_layer_idx"] = {-1};
    EXPECT_NE(error_of(j).find("out of range"), std::string::npos);
    j = base;
    j["d_modle"] = 3;
    EXPECT_NE(error_of(j).find("unknown key 'd_modle'"), std::string::npos) << error_of(j);
    j = base;
    j["ssm_cfg"] = {{"postact", "relu"}};
    EXPECT_NE(error_of(j).find("ssm_cfg: 'postact' must be one of glu, none, got 'relu'"), std::string::npos) << error_of(j);
    j = base;
    j["ssm_cfg"] = {{"d_stat", 4}};
    EXPECT_NE(error_of(j).find("unknown key 'd_stat'"), std::string::npos) << error_of(j);
    j = base;
    j["n_layer"] = "two";
    EXPECT_NE(error_of(j).find("'n_layer' must be an integer"), std::string::npos) << error_of(j);
    j = json{{"model", base}, {"trian", json::object()}};
    EXPECT_NE(error_of(j).find("unknown top-level key 'trian'"), std::string::npos) << error_of(j);
    EXPECT_EQ(error_of(json{{"model", base}, {"train", {{"lr", 1e-3}}}}), "");
    // The error is one line and names the source.
    std::string e = error_of(json{{"d_model", 16}, {"n_layer", 2}, {"vocab_size", 20}, {"mixer", "x"}});
    EXPECT_EQ(e.find('\n'), std::string::npos);
    EXPECT_EQ(e.rfind("cfg.json", 0), 0u) << e;
}

TEST(ModelConfig, PaddedVocabAndLayout) {
    ModelConfig c = tiny("h3", {{"n_layer", 4}, {"attn_layer_idx", {1, 3}}, {"vocab_size", 50257}});
    EXPECT_EQ(c.padded_vocab(), 50264);
    EXPECT_EQ(c.layer_mixer(0), "h3");
    EXPECT_EQ(c.layer_mixer(1), "attention");
    EXPECT_EQ(c.layer_mixer(3), "attention");
    ModelConfig back = parse_model_config(c.to_json());
    EXPECT_EQ(back.attn_layer_idx, c.attn_layer_idx);
    EXPECT_EQ(back.padded_vocab(), 50264);
}

TEST(Model, ReleasedParameterNamesAndCount) {
    // Pure H3 stack: total = Vpad d + n (12 d^2 + 336 d) + 2 d (h3.md 1.7) with d_state 64.
    json j{{"d_model", 32}, {"n_layer", 3}, {"vocab_size", 1000}, {"mixer", "h3"}};
    ModelConfig c = parse_model_config(j);
    LMModel m(c, 0);
    const int64_t d = 32, n = 3;
    EXPECT_EQ(m.num_parameters(), 1000 * d + n * (12 * d * d + 336 * d) + 2 * d);
    std::set<std::string> names;
    for (auto& [k, t] : m.named_parameters()) names.insert(k);
    for (const char* k :
         {"backbone.embeddings.word_embeddings.weight", "backbone.layers.0.norm1.weight", "backbone.layers.0.norm1.bias",
          "backbone.layers.0.mixer.q_proj.weight", "backbone.layers.0.mixer.k_proj.bias",
          "backbone.layers.0.mixer.output_linear.weight", "backbone.layers.0.mixer.ssm_k_kernel.kernel.B",
          "backbone.layers.0.mixer.ssm_k_kernel.kernel.C", "backbone.layers.0.mixer.ssm_k_D",
          "backbone.layers.0.mixer.kernel.kernel.log_dt", "backbone.layers.0.mixer.kernel.kernel.inv_A_real",
          "backbone.layers.0.mixer.kernel.kernel.A_imag", "backbone.layers.0.mixer.kernel.kernel.B",
          "backbone.layers.0.mixer.kernel.kernel.C", "backbone.layers.0.mixer.D", "backbone.layers.2.norm2.weight",
          "backbone.layers.2.mlp.fc1.weight", "backbone.layers.2.mlp.fc2.bias", "backbone.ln_f.weight", "backbone.ln_f.bias"})
        EXPECT_TRUE(names.count(k)) << k;
    EXPECT_EQ(m.word_embeddings.shape(), Shape({1000, 32}));
    EXPECT_NE(m.summary().find("parameters: "), std::string::npos);
    // The SSM learning-rate group, as the layers tag it: the shift-SSM B and the diagonal SSM's
    // log_dt, A and B; not C, not D, not the projections.
    std::set<std::string> ssm;
    const NamedTensors named = m.named_parameters();
    const std::vector<ParamTag> tags = m.parameter_groups();
    ASSERT_EQ(named.size(), tags.size());
    for (size_t i = 0; i < named.size(); i++)
        if (tags[i] == ParamTag::ssm && named[i].first.rfind("backbone.layers.0.", 0) == 0) ssm.insert(named[i].first);
    EXPECT_EQ(ssm, (std::set<std::string>{"backbone.layers.0.mixer.ssm_k_kernel.kernel.B",
                                          "backbone.layers.0.mixer.kernel.kernel.log_dt",
                                          "backbone.layers.0.mixer.kernel.kernel.inv_A_real",
                                          "backbone.layers.0.mixer.kernel.kernel.A_imag",
                                          "backbone.layers.0.mixer.kernel.kernel.B"}));
}

TEST(Model, Gpt2Init) {
    json j{{"d_model", 64}, {"n_layer", 8}, {"vocab_size", 256}, {"mixer", "h3"}};
    LMModel m(parse_model_config(j), 1);
    auto stdev = [](const Tensor& t) {
        double s = 0, s2 = 0;
        for (float v : t.to_vector()) s += v, s2 += double(v) * v;
        double n = double(t.numel());
        return std::sqrt(s2 / n - (s / n) * (s / n));
    };
    EXPECT_NEAR(stdev(m.parameter("backbone.embeddings.word_embeddings.weight")), 0.02, 0.002);
    EXPECT_NEAR(stdev(m.parameter("backbone.layers.0.mlp.fc1.weight")), 0.02, 0.002);
    EXPECT_NEAR(stdev(m.parameter("backbone.layers.0.mlp.fc2.weight")), 0.02 / 4.0, 0.0005);
    EXPECT_NEAR(stdev(m.parameter("backbone.layers.0.mixer.output_linear.weight")), 0.02, 0.003);  // not rescaled
    for (float v : m.parameter("backbone.layers.0.mixer.q_proj.bias").to_vector()) EXPECT_EQ(v, 0.0f);
    // SSM parameters keep their own init: shift B = e1, log_dt in [log 1e-3, log 1e-1].
    auto B = m.parameter("backbone.layers.0.mixer.ssm_k_kernel.kernel.B").to_vector();
    EXPECT_EQ(B[0], 1.0f);
    EXPECT_EQ(B[1], 0.0f);
    for (float v : m.parameter("backbone.layers.0.mixer.kernel.kernel.log_dt").to_vector()) {
        EXPECT_GE(v, std::log(1e-3f) - 1e-5f);
        EXPECT_LE(v, std::log(1e-1f) + 1e-5f);
    }
}

// Changing token t must not change any logit before t (every mixer kind available).
TEST(Model, Causality) {
    const int64_t B = 2, V = 20;
    for (const std::string& mixer : available_mixers()) {
        for (int64_t L : {48, 150}) {  // direct and FFT convolution paths
            json extra = json::object();
            if (mixer == "attention") extra["max_position_embeddings"] = 256;
            LMModel m(tiny(mixer, extra), 7);
            m.eval();
            NoGradGuard ng;
            auto ids = random_ids(B * L, V, 11);
            std::vector<float> a = m.forward(ids, B, L).to_vector();
            const int64_t t = L / 3;
            for (int64_t b = 0; b < B; b++) ids[size_t(b * L + t)] = (ids[size_t(b * L + t)] + 5) % int32_t(V);
            std::vector<float> c = m.forward(ids, B, L).to_vector();
            const int64_t Vp = m.vocab_padded();
            double before = 0, after = 0;
            for (int64_t b = 0; b < B; b++)
                for (int64_t i = 0; i < L; i++)
                    for (int64_t v = 0; v < Vp; v++) {
                        size_t k = size_t((b * L + i) * Vp + v);
                        double diff = std::fabs(double(a[k]) - double(c[k]));
                        if (i < t) before = std::max(before, diff);
                        else after = std::max(after, diff);
                    }
            if (L <= 64) EXPECT_EQ(before, 0.0) << mixer << " L=" << L;
            else EXPECT_LT(before, 1e-5) << mixer << " L=" << L;  // FFT rounding only
            EXPECT_GT(after, 1e-4) << mixer << " L=" << L;       // the change is seen from t on
        }
    }
}

// Recurrent generation path: prefill(prefix) + step(token by token) == parallel forward.
TEST(Model, StepMatchesParallel) {
    const int64_t B = 2, L = 24, P = 9, V = 20;
    std::vector<std::string> kinds = available_mixers();
    std::vector<json> cfgs;
    for (auto& k : kinds) cfgs.push_back(json{{"mixer", k}});
    cfgs.push_back(json{{"mixer", "h3"}, {"attn_layer_idx", {1}}});
    cfgs.push_back(json{{"mixer", "s4d"}, {"ssm_cfg", {{"d_state", 8}, {"postact", "none"}, {"init", "inv"}}}});
    for (json extra : cfgs) {
        extra["max_position_embeddings"] = 64;
        LMModel m(tiny(extra["mixer"], extra), 3);
        m.eval();
        if (!m.has_recurrent_mode()) {  // e.g. BigBird: a clear error, not a wrong answer
            EXPECT_THROW(m.new_state(B, L), Error) << extra.dump();
            continue;
        }
        auto ids = random_ids(B * L, V, 5);
        std::vector<float> ref = m.forward(ids, B, L).to_vector();
        LMState st = m.new_state(B, L);
        std::vector<int32_t> prefix;
        for (int64_t b = 0; b < B; b++) prefix.insert(prefix.end(), ids.begin() + b * L, ids.begin() + b * L + P);
        std::vector<float> pre = m.prefill(prefix, B, P, st).to_vector();
        const int64_t Vp = m.vocab_padded();
        double worst = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < P; i++)
                for (int64_t v = 0; v < Vp; v++)
                    worst = std::max(worst, std::fabs(double(pre[size_t((b * P + i) * Vp + v)]) -
                                                      double(ref[size_t((b * L + i) * Vp + v)])));
        for (int64_t i = P; i < L; i++) {
            std::vector<int32_t> tok;
            for (int64_t b = 0; b < B; b++) tok.push_back(ids[size_t(b * L + i)]);
            std::vector<float> y = m.step(tok, st).to_vector();
            for (int64_t b = 0; b < B; b++)
                for (int64_t v = 0; v < Vp; v++)
                    worst = std::max(worst, std::fabs(double(y[size_t(b * Vp + v)]) - double(ref[size_t((b * L + i) * Vp + v)])));
        }
        EXPECT_LT(worst, 2e-4) << extra.dump();
    }
}

TEST(Model, DropoutOnlyInTraining) {
    LMModel m(tiny("h3", {{"embed_dropout", 0.3}, {"resid_dropout", 0.1}}), 0);
    auto ids = random_ids(2 * 16, 20, 1);
    m.train();
    auto a = m.forward(ids, 2, 16, 42).to_vector();
    auto b = m.forward(ids, 2, 16, 42).to_vector();
    auto c = m.forward(ids, 2, 16, 43).to_vector();
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
    m.eval();
    EXPECT_EQ(m.forward(ids, 2, 16, 42).to_vector(), m.forward(ids, 2, 16, 43).to_vector());
}

TEST(Model, GssHasNoMlpByDefaultAndFrozenDssParameters) {
    LMModel m(tiny("gss"), 0);
    std::set<std::string> names;
    for (auto& [k, t] : m.named_parameters()) names.insert(k);
    EXPECT_FALSE(names.count("backbone.layers.0.mlp.fc1.weight"));
    EXPECT_TRUE(names.count("backbone.layers.0.mixer.proj_v.weight"));
    EXPECT_TRUE(names.count("backbone.layers.0.mixer.out_proj.weight"));
    EXPECT_FALSE(m.parameter("backbone.layers.0.mixer.kernel.kernel.log_dt").requires_grad());
    EXPECT_FALSE(m.parameter("backbone.layers.0.mixer.kernel.kernel.B").requires_grad());
    EXPECT_TRUE(m.parameter("backbone.layers.0.mixer.kernel.kernel.C").requires_grad());
    // Gradients flow to every trainable parameter.
    auto ids = random_ids(2 * 12, 20, 1);
    std::vector<int32_t> tg(ids.begin() + 1, ids.end());
    tg.push_back(0);
    Tensor loss = cross_entropy(m.forward(ids, 2, 12), tg);
    loss.backward();
    for (auto& [k, p] : m.named_parameters()) {
        if (!p.requires_grad()) continue;
        ASSERT_TRUE(p.grad().defined()) << k;
    }
}

TEST(Model, IdsOutOfRange) {
    LMModel m(tiny("h3"), 0);
    std::vector<int32_t> ids(8, 0);
    ids[3] = 99;
    EXPECT_THROW(m.forward(ids, 1, 8), Error);
}

TEST(Model, HybridParameterCountMatchesReleasedFormula) {
    // h3.md 1.7: total = Vpad d + n_H3 (12 d^2 + 336 d) + n_attn (12 d^2 + 13 d) + 2 d.
    json j{{"d_model", 32}, {"n_layer", 4}, {"vocab_size", 1000}, {"mixer", "h3"}, {"attn_layer_idx", {1, 3}},
           {"attn_cfg", {{"num_heads", 4}}}};
    LMModel m(parse_model_config(j), 0);
    const int64_t d = 32;
    EXPECT_EQ(m.num_parameters(), 1000 * d + 2 * (12 * d * d + 336 * d) + 2 * (12 * d * d + 13 * d) + 2 * d);
    std::set<std::string> names;
    for (auto& [k, t] : m.named_parameters()) names.insert(k);
    for (const char* k : {"backbone.layers.1.mixer.Wqkv.weight", "backbone.layers.1.mixer.Wqkv.bias",
                          "backbone.layers.1.mixer.out_proj.weight", "backbone.layers.3.mixer.out_proj.bias",
                          "backbone.layers.2.mixer.q_proj.weight"})
        EXPECT_TRUE(names.count(k)) << k;
}

// bf16 and int8 decode weights: decode steps with set_decode_weights stay within the format's
// rounding of the exact fp32 steps but differ from them (the copies are in use); a forward of more
// than 8 rows (a prefill) stays fp32; switching back to fp32 gives the fp32 steps again. (The
// arithmetic itself is compared with references in Bf16.GemmMatchesRef and Int8.GemmMatchesRef.)
TEST(Model, DecodeWeightsStayNearFp32) {
    const int64_t B = 3, L = 10, V = 20;
    for (auto [format, tol] : {std::pair{DecodeWeights::bf16, 0.01}, std::pair{DecodeWeights::int8, 0.02}})
    for (json extra : {json{{"mixer", "h3"}, {"attn_layer_idx", {1}}}, json{{"mixer", "attention"}}, json{{"mixer", "gss"}}}) {
        extra["d_model"] = 40;  // K = 40 and 160: whole k-blocks plus zero padding in the packed weights
        LMModel m(tiny(extra["mixer"], extra), 7), ref(tiny(extra["mixer"], extra), 7);
        m.eval();
        ref.eval();
        auto ids = random_ids(B * L, V, 11);
        const std::vector<float> parallel32 = m.forward(ids, B, L).to_vector();
        m.set_decode_weights(format);
        ASSERT_EQ(m.decode_weights(), format);
        EXPECT_EQ(m.forward(ids, B, L).to_vector(), parallel32) << extra.dump() << ": a 30-row forward must stay fp32";

        LMState a = m.new_state(B, L), r = ref.new_state(B, L);
        double worst = 0, scale = 0;
        for (int64_t i = 0; i < L; i++) {
            std::vector<int32_t> tok;
            for (int64_t b = 0; b < B; b++) tok.push_back(ids[size_t(b * L + i)]);
            std::vector<float> y16 = m.step(tok, a).to_vector();
            std::vector<float> y32 = ref.step(tok, r).to_vector();
            for (size_t k = 0; k < y16.size(); k++) {
                worst = std::max(worst, std::fabs(double(y16[k]) - double(y32[k])));
                scale = std::max(scale, std::fabs(double(y32[k])));
            }
        }
        EXPECT_GT(worst, 1e-6) << extra.dump() << ": the " << decode_weights_name(format) << " weights were not used";
        EXPECT_LT(worst, tol * (1 + scale)) << extra.dump() << " " << decode_weights_name(format);
        std::printf("%-5s %-10s worst |step - fp32 step| = %.4f (logit scale %.2f)\n", decode_weights_name(format),
                    extra["mixer"].get<std::string>().c_str(), worst, scale);

        m.set_decode_weights(DecodeWeights::fp32);
        LMState a2 = m.new_state(B, L), r2 = ref.new_state(B, L);
        std::vector<int32_t> tok(ids.begin(), ids.begin() + B);
        EXPECT_EQ(m.step(tok, a2).to_vector(), ref.step(tok, r2).to_vector()) << extra.dump();
    }
}

TEST(Model, DecodeWeightsNames) {
    EXPECT_EQ(parse_decode_weights("bf16"), DecodeWeights::bf16);
    EXPECT_EQ(parse_decode_weights("fp32"), DecodeWeights::fp32);
    EXPECT_EQ(parse_decode_weights("int8"), DecodeWeights::int8);
    EXPECT_STREQ(decode_weights_name(DecodeWeights::bf16), "bf16");
    EXPECT_STREQ(decode_weights_name(DecodeWeights::int8), "int8");
    try {
        parse_decode_weights("fp16");
        FAIL() << "fp16 accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("unknown decode weight format 'fp16' (expected fp32, bf16 or int8)"), std::string::npos);
    }
}
