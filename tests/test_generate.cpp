// hippo generate / hippo score on a small saved hybrid model: deterministic sampling per seed,
// prompts of different lengths in one batch equal to separate runs, stop strings, and the
// recurrent (--step) logits equal to the parallel ones.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <vector>

#include "apps/commands.h"
#include "apps/model_dir.h"
#include "bench/bench_generate.h"
#include "io/file.h"
#include "models/lm.h"
#include "nn/checkpoint.h"

using namespace hippo;
namespace fs = std::filesystem;

namespace {

std::string make_model_dir() {
    static std::string dir;
    if (!dir.empty()) return dir;
    dir = (fs::temp_directory_path() / ("hippo_gen_test_" + std::to_string(::getpid()))).string();
    nlohmann::json m{{"name", "tiny-hybrid"}, {"d_model", 16}, {"n_layer", 2}, {"vocab_size", 256}, {"mixer", "h3"},
                     {"attn_layer_idx", {1}}, {"attn_cfg", {{"num_heads", 2}}}, {"ssm_cfg", {{"d_state", 8}}}};
    ModelConfig cfg = parse_model_config(m);
    LMModel model(cfg, 7);
    save_checkpoint(dir, model, nlohmann::json{{"model", cfg.to_json()}});
    return dir;
}

int run(std::vector<std::string> args, std::string* out = nullptr) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    testing::internal::CaptureStdout();
    testing::internal::CaptureStderr();
    int rc = 0;
    try {
        rc = args[0] == "generate" ? cmd_generate(int(argv.size()), argv.data()) : cmd_score(int(argv.size()), argv.data());
    } catch (...) {
        testing::internal::GetCapturedStdout();
        testing::internal::GetCapturedStderr();
        throw;
    }
    std::string o = testing::internal::GetCapturedStdout();
    testing::internal::GetCapturedStderr();
    if (out) *out = o;
    return rc;
}

}  // namespace

TEST(Generate, DeterministicPerSeedAndBatchEqualsSeparateRuns) {
    std::string dir = make_model_dir(), a, b, c, batch;
    ASSERT_EQ(run({"generate", dir, "--prompt", "hello", "--n", "12", "--seed", "3", "--json"}, &a), 0);
    ASSERT_EQ(run({"generate", dir, "--prompt", "hello", "--n", "12", "--seed", "3", "--json"}, &b), 0);
    EXPECT_EQ(a, b);
    ASSERT_EQ(run({"generate", dir, "--prompt", "hello", "--n", "12", "--seed", "4", "--json"}, &c), 0);
    EXPECT_NE(a, c);
    // Two prompts of different lengths in one batch (the longer one is finished through the step
    // path): each equals its own greedy run.
    std::string f = (fs::path(dir) / "prompts.txt").string();
    write_file_atomic(f, std::string("hi\nhello there\n").data(), 15);
    std::string g1, g2;
    ASSERT_EQ(run({"generate", dir, "--prompts-file", f, "--n", "10", "--greedy", "--json"}, &batch), 0);
    ASSERT_EQ(run({"generate", dir, "--prompt", "hi", "--n", "10", "--greedy", "--json"}, &g1), 0);
    ASSERT_EQ(run({"generate", dir, "--prompt", "hello there", "--n", "10", "--greedy", "--json"}, &g2), 0);
    auto text_of = [](const std::string& line) { return nlohmann::json::parse(line)["ids"]; };
    size_t nl = batch.find('\n');
    EXPECT_EQ(text_of(batch.substr(0, nl)), text_of(g1));
    EXPECT_EQ(text_of(batch.substr(nl + 1)), text_of(g2));
}

TEST(Generate, BadOptionsAreErrors) {
    std::string dir = make_model_dir();
    EXPECT_THROW(run({"generate", dir, "--prompt", "x", "--top-p", "0"}), Error);
    EXPECT_THROW(run({"generate", dir, "--prompt-ids", "1 999"}), Error);
    EXPECT_THROW(run({"generate", "/nonexistent/dir", "--prompt", "x"}), Error);
    EXPECT_THROW(run({"generate", dir, "--prompt", "x", "--batch", "100000000"}), Error);
    EXPECT_THROW(run({"generate", dir, "--prompt", "x", "--n", "-1"}), Error);
    try {  // 4096 sequences of 16M tokens: the KV cache alone is terabytes
        run({"generate", dir, "--prompt", "x", "--batch", "4096", "--n", "16000000"});
        ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("the KV cache for 4096 sequences"), std::string::npos) << e.what();
    }
    // Learned positions: a prompt plus --n beyond them is refused before anything is printed.
    const std::string pos_dir = dir + "_pos";
    nlohmann::json m{{"d_model", 16}, {"n_layer", 1}, {"vocab_size", 256}, {"mixer", "attention"},
                     {"max_position_embeddings", 8}, {"attn_cfg", {{"num_heads", 2}}}};
    ModelConfig cfg = parse_model_config(m);
    LMModel model(cfg, 7);
    save_checkpoint(pos_dir, model, nlohmann::json{{"model", cfg.to_json()}});
    std::string out;
    try {
        run({"generate", pos_dir, "--prompt", "hello", "--n", "4"}, &out);
        ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("exceeds the model's 8 positions"), std::string::npos) << e.what();
    }
    EXPECT_EQ(out, "");
    EXPECT_EQ(run({"generate", pos_dir, "--prompt", "hello", "--n", "3"}), 0);
    fs::remove_all(pos_dir);
    // A model with a layer that has no recurrent mode cannot generate: a clear error.
    const std::string bb_dir = dir + "_bigbird";
    nlohmann::json b{{"d_model", 16}, {"n_layer", 1}, {"vocab_size", 256}, {"mixer", "bigbird"}, {"attn_cfg", {{"num_heads", 2}}}};
    LMModel bm(parse_model_config(b), 7);
    save_checkpoint(bb_dir, bm, nlohmann::json{{"model", parse_model_config(b).to_json()}});
    try {
        run({"generate", bb_dir, "--prompt", "x"});
        ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("without a recurrent mode"), std::string::npos) << e.what();
    }
    fs::remove_all(bb_dir);
}

TEST(Score, StepLogitsEqualParallelLogits) {
    std::string dir = make_model_dir();
    std::vector<int32_t> ids;
    for (int i = 0; i < 2 * 30; i++) ids.push_back((i * 37 + 11) % 256);
    std::string tokens = (fs::path(dir) / "t.bin").string(), l1 = (fs::path(dir) / "l1.bin").string(),
                l2 = (fs::path(dir) / "l2.bin").string();
    write_file_atomic(tokens, ids.data(), ids.size() * 4);
    std::string o1, o2;
    ASSERT_EQ(run({"score", dir, "--tokens", tokens, "--batch", "2", "--logits-out", l1, "--json"}, &o1), 0);
    ASSERT_EQ(run({"score", dir, "--tokens", tokens, "--batch", "2", "--logits-out", l2, "--step", "--json"}, &o2), 0);
    std::vector<uint8_t> a = read_file(l1), b = read_file(l2);
    ASSERT_EQ(a.size(), size_t(2 * 30 * 256 * 4));
    ASSERT_EQ(a.size(), b.size());
    const float* x = reinterpret_cast<const float*>(a.data());
    const float* y = reinterpret_cast<const float*>(b.data());
    double worst = 0;
    for (size_t i = 0; i < a.size() / 4; i++) worst = std::max(worst, std::fabs(double(x[i]) - double(y[i])));
    EXPECT_LT(worst, 1e-4);
    double p1 = nlohmann::json::parse(o1)["perplexity"], p2 = nlohmann::json::parse(o2)["perplexity"];
    EXPECT_NEAR(p1, p2, 1e-3 * p1);
    EXPECT_GT(p1, 1.0);
}

// --decode-weights bf16 / int8 on the --step path: logits near the fp32 ones (bf16 has 8 mantissa
// bits, int8 256 levels per row) but not equal; generation accepts the option and an unknown format
// is an error.
TEST(Score, DecodeWeightsStayCloseToFp32) {
    std::string dir = make_model_dir();
    std::vector<int32_t> ids;
    for (int i = 0; i < 20; i++) ids.push_back((i * 53 + 7) % 256);
    std::string tokens = (fs::path(dir) / "t16.bin").string(), l1 = (fs::path(dir) / "s32.bin").string(),
                l2 = (fs::path(dir) / "s16.bin").string();
    write_file_atomic(tokens, ids.data(), ids.size() * 4);
    ASSERT_EQ(run({"score", dir, "--tokens", tokens, "--logits-out", l1, "--step"}), 0);
    for (auto [format, tol] : {std::pair{"bf16", 0.02}, std::pair{"int8", 0.05}}) {
        ASSERT_EQ(run({"score", dir, "--tokens", tokens, "--logits-out", l2, "--step", "--decode-weights", format}), 0);
        std::vector<uint8_t> a = read_file(l1), b = read_file(l2);
        ASSERT_EQ(a.size(), b.size());
        const float* x = reinterpret_cast<const float*>(a.data());
        const float* y = reinterpret_cast<const float*>(b.data());
        double worst = 0, scale = 0;
        for (size_t i = 0; i < a.size() / 4; i++) {
            worst = std::max(worst, std::fabs(double(x[i]) - double(y[i])));
            scale = std::max(scale, std::fabs(double(x[i])));
        }
        EXPECT_GT(worst, 0.0) << format;
        EXPECT_LT(worst, tol * (1 + scale)) << format;
        std::string g;
        EXPECT_EQ(run({"generate", dir, "--prompt", "hello", "--n", "8", "--greedy", "--decode-weights", format}, &g), 0);
    }
    EXPECT_THROW(run({"generate", dir, "--prompt", "x", "--decode-weights", "int4"}), Error);
}

// hippo import of a PyTorch-written checkpoint, then the hippo model's logits equal the Python
// model's (tests/data/torch/plain_logits.json, scripts/fixtures/make_import_logits.py).
TEST(Import, LogitsMatchThePythonModel) {
    std::string data = std::string(HIPPO_TEST_DATA) + "/torch/";
    nlohmann::json ref = nlohmann::json::parse(std::string(
        [&] { auto b = read_file(data + "plain_logits.json"); return std::string(b.begin(), b.end()); }()));
    std::string out = (fs::temp_directory_path() / ("hippo_import_test_" + std::to_string(::getpid()))).string();
    for (const char* file : {"plain.pt", "lightning.pt"}) {
        std::string o;
        {
            std::vector<std::string> args = {"import", data + file, "--out", out, "--heads", std::to_string(int(ref["heads"]))};
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            testing::internal::CaptureStdout();
            int rc = cmd_import(int(argv.size()), argv.data());
            testing::internal::GetCapturedStdout();
            ASSERT_EQ(rc, 0) << file;
        }
        LoadedModel lm = load_model_dir(out);
        const int64_t B = ref["B"], L = ref["L"];
        std::vector<int32_t> ids = ref["ids"].get<std::vector<int32_t>>();
        std::vector<float> got = lm.model->forward_logits(ids, B, L).to_vector();
        std::vector<double> want = ref["logits"].get<std::vector<double>>();
        ASSERT_EQ(got.size(), want.size()) << file;
        double worst = 0, scale = 1e-6;
        for (size_t i = 0; i < got.size(); i++) {
            worst = std::max(worst, std::fabs(double(got[i]) - want[i]));
            scale = std::max(scale, std::fabs(want[i]));
        }
        EXPECT_LT(worst / scale, 1e-4) << file << ": max |diff| " << worst << " at scale " << scale;
        fs::remove_all(out);
    }
}

// hippo bench generate at toy sizes: one hybrid and one Transformer record per format and
// configuration, with the side-by-side ratio, and the pure-H3 latency records.
TEST(Bench, GenerateRecordsBothModelsPerFormat) {
    GenerateShape shape;
    shape.d_model = 48;
    shape.n_layer = 4;
    shape.vocab = 300;
    std::vector<BenchRecord> recs = bench_generate({8}, {2}, 3, {8}, {"fp32", "int8"}, shape);
    int hybrid = 0, transformer = 0, h3 = 0;
    for (const BenchRecord& r : recs) {
        const std::string w = r.extra.at("weights").get<std::string>();
        EXPECT_TRUE(w == "fp32" || w == "int8") << w;
        EXPECT_GT(r.ms, 0.0) << r.name;
        if (r.name == "generate.hybrid") {
            hybrid++;
            EXPECT_GT(r.derived.at("speedup_vs_transformer"), 0.0);
            EXPECT_NEAR(r.derived.at("tokens_per_s"), 2 * 3 / (r.ms * 1e-3), 1e-6 * r.derived.at("tokens_per_s"));
        } else if (r.name == "generate.transformer") {
            transformer++;
            EXPECT_EQ(r.derived.count("speedup_vs_transformer"), 0u);
        } else if (r.name == "generate.h3") {
            h3++;
        }
    }
    EXPECT_EQ(hybrid, 2);
    EXPECT_EQ(transformer, 2);
    EXPECT_EQ(h3, 2);
}
