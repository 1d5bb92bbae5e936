// The mixer and architecture registries, config schemas, strict number parsing, memory checks.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/ops.h"
#include "common/check.h"
#include "common/schema.h"
#include "models/lm.h"
#include "models/mixer.h"
#include "models/model.h"

using namespace hippo;
using json = nlohmann::json;

namespace {

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

json tiny_json(const std::string& mixer) {
    return json{{"d_model", 16}, {"n_layer", 2}, {"vocab_size", 20}, {"mixer", mixer}, {"embed_dropout", 0.0},
                {"ssm_cfg", {{"d_state", 8}}}, {"gss_cfg", {{"d_state", 8}}}, {"attn_cfg", {{"num_heads", 2}}},
                {"bigbird_cfg", {{"block", 8}, {"window", 3}, {"global", 1}, {"random", 1}}}};
}

}  // namespace

// The parameter count a mixer declares (used to refuse models that cannot fit before allocating)
// is the count of the layer it builds, for every mixer and several shapes.
TEST(Registry, ParamCountsMatchBuiltModels) {
    std::vector<json> variants = {
        json::object(),
        json{{"d_model", 24}, {"d_inner", 40}, {"max_position_embeddings", 32}, {"vocab_size", 50}},
        json{{"ssm_cfg", {{"d_state", 6}, {"head_dim", 4}, {"postact", "none"}}},
             {"attn_cfg", {{"num_heads", 4}, {"rotary_emb_dim", 4}}},
             {"gss_cfg", {{"d_state", 4}, {"expand", 2}, {"bottleneck", 2}}},
             {"mlp", false}},
        json{{"n_layer", 3}, {"attn_layer_idx", {1}}},
    };
    for (const MixerDef& d : mixer_registry())
        for (const json& v : variants) {
            json j = tiny_json(d.name);
            for (auto it = v.begin(); it != v.end(); ++it) j[it.key()] = it.value();
            ModelConfig c = parse_model_config(j);
            LMModel m(c, 1);
            EXPECT_EQ(LMModel::param_count(c), m.num_parameters()) << d.name << " " << v.dump();
            EXPECT_EQ(find_architecture("lm").param_count(c), m.num_parameters());
        }
}

TEST(Registry, NamesAliasesAndErrors) {
    EXPECT_EQ(find_mixer("mha").name, "attention");
    EXPECT_NE(error_of([] { find_mixer("mamba"); }).find("expected one of h3, s4d, gss, attention"), std::string::npos);
    EXPECT_NE(error_of([] { find_architecture("vit"); }).find("unknown architecture 'vit'"), std::string::npos);
    json j = tiny_json("h3");
    j["arch"] = "classifier9";
    EXPECT_NE(error_of([&] { parse_model_config(j, "c.json"); }).find("unknown architecture"), std::string::npos);
    // Every block of the registry is in a saved config, with its defaults, and reloads the same.
    ModelConfig c = parse_model_config(tiny_json("s4d"));
    json saved = c.to_json();
    for (const ConfigBlock& b : config_blocks()) EXPECT_TRUE(saved.contains(b.key)) << b.key;
    EXPECT_EQ(parse_model_config(saved).to_json(), saved);
    EXPECT_FALSE(parse_model_config(tiny_json("gss")).layer_has_mlp(0));  // the mixer's default
    j = tiny_json("gss");
    j["ff"] = "mlp";
    EXPECT_TRUE(parse_model_config(j).layer_has_mlp(0));
    j["mlp"] = false;
    EXPECT_NE(error_of([&] { parse_model_config(j); }).find("disagree"), std::string::npos);
}

// Every integer and float field is range-checked; values of the wrong kind are named.
TEST(Registry, ConfigRangesAreChecked) {
    // Cross-field checks (divisibility, odd windows) belong to the mixers in use.
    auto err = [](const std::string& key, json v, const std::string& block = "", const std::string& mixer = "h3") {
        json j = tiny_json(mixer);
        if (block.empty()) j[key] = v;
        else j[block][key] = v;
        return error_of([&] { parse_model_config(j, "c.json"); });
    };
    EXPECT_NE(err("d_inner", -1).find("'d_inner': -1 is out of range"), std::string::npos) << err("d_inner", -1);
    EXPECT_NE(err("n_layer", 0).find("out of range"), std::string::npos);
    EXPECT_NE(err("d_model", 1e300).find("'d_model' must be an integer"), std::string::npos);
    EXPECT_NE(err("d_model", 3.0).find("must be an integer"), std::string::npos);
    EXPECT_NE(err("embed_dropout", 1.0).find("out of range"), std::string::npos);
    EXPECT_NE(err("d_state", 7, "ssm_cfg").find("even"), std::string::npos);
    EXPECT_NE(err("d_state", 0, "ssm_cfg").find("ssm_cfg: 'd_state': 0 is out of range"), std::string::npos);
    EXPECT_NE(err("dt_min", 0.5, "ssm_cfg").find("larger than dt_max"), std::string::npos);
    EXPECT_NE(err("num_heads", 3, "attn_cfg", "attention").find("not a multiple of attn_cfg.num_heads 3"), std::string::npos);
    EXPECT_NE(err("window", 2, "bigbird_cfg", "bigbird").find("odd"), std::string::npos);
    EXPECT_NE(err("vocab_size", 0).find("'vocab_size' must be a positive integer"), std::string::npos);
    EXPECT_NE(err("vocab_size", 99999999999).find("'vocab_size'"), std::string::npos);
    EXPECT_NE(err("d_inner", 0).find("out of range"), std::string::npos);
    EXPECT_EQ(err("num_heads", 3, "attn_cfg"), "");  // a pure H3 stack has no attention heads to divide
}

TEST(Registry, ModelsThatCannotFitAreRefusedBeforeAllocating) {
    json j = tiny_json("h3");
    j["d_model"] = 20000;
    j["n_layer"] = 1000;
    ModelConfig c = parse_model_config(j);
    const std::string e = error_of([&] { make_model(c, 0); });
    EXPECT_NE(e.find("needs "), std::string::npos) << e;
    EXPECT_NE(e.find("GiB, more than this machine's"), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos);
    // Training counts gradients and AdamW moments too (16 bytes a parameter).
    EXPECT_NO_THROW(check_fits_in_memory(1e6, "small"));
}

TEST(Schema, StrictNumbers) {
    EXPECT_EQ(parse_int_text("42", "x"), 42);
    EXPECT_EQ(parse_int_text("-7", "x"), -7);
    for (const char* bad : {"0x10", "1e3", "12abc", "", " 1", "99999999999999999999", "1.0"})
        EXPECT_THROW(parse_int_text(bad, "option --steps"), Error) << bad;
    EXPECT_NE(error_of([] { parse_int_text("99999999999999999999", "option --steps", 1, 100); }).find("out of range"),
              std::string::npos);
    EXPECT_NE(error_of([] { parse_int_text("0", "option --batch", 1, 100); }).find("option --batch: 0 is out of range"),
              std::string::npos);
    EXPECT_DOUBLE_EQ(parse_number_text("1e-3", "x"), 1e-3);
    EXPECT_DOUBLE_EQ(parse_number_text("-2.5", "x"), -2.5);
    for (const char* bad : {"0x10", "nan", "inf", "-inf", "1e999", "1,5", "", "2.0.1x"})
        EXPECT_THROW(parse_number_text(bad, "option --lr"), Error) << bad;
    EXPECT_THROW(parse_number_text("-1", "option --clip", 0, 10), Error);
}

TEST(Schema, ParseFillsDefaultsAndRefusesUnknownKeys) {
    Schema s("blk");
    s.integer("n", 4, 1, 10, "").number("p", 0.5, 0, 1, "").string("k", "a", {"a", "b"}, "").boolean("f", false, "");
    EXPECT_EQ(s.parse(json::object(), "w"), (json{{"n", 4}, {"p", 0.5}, {"k", "a"}, {"f", false}}));
    EXPECT_NE(error_of([&] { s.parse(json{{"q", 1}}, "w"); }).find("w: unknown key 'q'"), std::string::npos);
    EXPECT_NE(error_of([&] { s.parse(json{{"k", "c"}}, "w"); }).find("must be one of a, b, got 'c'"), std::string::npos);
    EXPECT_NE(error_of([&] { s.parse(json{{"f", 1}}, "w"); }).find("true or false"), std::string::npos);
    EXPECT_NE(error_of([&] { s.parse(json{{"n", 11}}, "w"); }).find("out of range (an integer in [1, 10])"),
              std::string::npos);
}

TEST(Schema, DuplicateKeysAreRefused) {
    EXPECT_NO_THROW(parse_json_strict(R"({"a": 1, "b": {"a": 2}})", "f.json"));
    EXPECT_NE(error_of([] { parse_json_strict(R"({"a": 1, "a": 2})", "f.json"); }).find("key 'a' is given twice"),
              std::string::npos);
    EXPECT_NE(error_of([] { parse_json_strict(R"({"m": {"d": 1, "d": 1}})", "f.json"); }).find("'d' is given twice"),
              std::string::npos);
    EXPECT_NE(error_of([] { parse_json_strict("{", "f.json"); }).find("f.json is not valid JSON"), std::string::npos);
}

// BigBird as a mixer: with a window that covers every block it is exact causal attention (same
// parameters, same output); with a sparse pattern the output differs and stays causal (the
// causality test of test_model covers every registered mixer).
TEST(Registry, BigBirdWithFullWindowEqualsAttention) {
    json a = tiny_json("attention"), b = tiny_json("bigbird");
    b["bigbird_cfg"] = {{"block", 8}, {"window", 15}, {"global", 0}, {"random", 0}};
    LMModel ma(parse_model_config(a), 5), mb(parse_model_config(b), 5);
    ma.eval();
    mb.eval();
    NoGradGuard ng;
    const int64_t B = 2, L = 56;
    std::vector<int32_t> ids(size_t(B * L));
    Rng r(3);
    for (auto& t : ids) t = int32_t(r.below(20));
    std::vector<float> ya = ma.forward(ids, B, L).to_vector(), yb = mb.forward(ids, B, L).to_vector();
    ASSERT_EQ(ya.size(), yb.size());
    double worst = 0;
    for (size_t i = 0; i < ya.size(); i++) worst = std::max(worst, double(std::fabs(ya[i] - yb[i])));
    EXPECT_LT(worst, 1e-5);
    json s = b;
    s["bigbird_cfg"] = {{"block", 8}, {"window", 1}, {"global", 0}, {"random", 0}};
    LMModel ms(parse_model_config(s), 5);
    ms.eval();
    std::vector<float> ys = ms.forward(ids, B, L).to_vector();
    double diff = 0;
    for (size_t i = 0; i < ya.size(); i++) diff = std::max(diff, double(std::fabs(ya[i] - ys[i])));
    EXPECT_GT(diff, 1e-3);
    EXPECT_FALSE(ms.has_recurrent_mode());
    EXPECT_NE(error_of([&] { ms.new_state(1, 8); }).find("no recurrent mode"), std::string::npos);
}
