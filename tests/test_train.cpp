// Trainer: the loss goes down on a synthetic task, exact resume, the NaN path, evaluation.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/check.h"
#include "models/lm.h"
#include "nn/checkpoint.h"
#include "train/trainer.h"

using namespace hippo;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

ModelConfig tiny_h3() {
    return parse_model_config(json{{"d_model", 16}, {"n_layer", 2}, {"vocab_size", "data"}, {"mixer", "h3"},
                                   {"embed_dropout", 0.1}, {"resid_dropout", 0.05}, {"ssm_cfg", {{"d_state", 16}}}});
}

std::string fresh_dir(const std::string& name) {
    fs::path p = fs::temp_directory_path() / ("hippo_test_train_" + name);
    fs::remove_all(p);
    return p.string();
}

TrainOptions small_opts(const std::string& dir) {
    TrainOptions o;
    o.data = "assoc_recall:num_train=400,num_test=64";
    o.out_dir = dir;
    o.steps = 40;
    o.batch = 16;
    o.lr = 3e-3;
    o.threads = 1;
    o.quiet = true;
    o.eval_batches = 2;
    return o;
}

std::vector<float> params_of(const std::string& run_dir) {
    json cfg = load_config(run_dir + "/checkpoint");
    LMModel m(parse_model_config(cfg.at("model")), 99);
    load_checkpoint(run_dir + "/checkpoint", m);
    std::vector<float> all;
    for (auto& t : m.parameters()) {
        auto v = t.to_vector();
        all.insert(all.end(), v.begin(), v.end());
    }
    return all;
}

}  // namespace

TEST(Train, LossDecreases) {
    TrainOptions o = small_opts(fresh_dir("decrease"));
    o.data = "assoc_recall";
    o.steps = 150;
    o.batch = 32;
    TrainResult r = train(tiny_h3(), o);
    ASSERT_EQ(r.losses.size(), 150u);
    double first = 0, last = 0;
    for (int i = 0; i < 20; i++) first += r.losses[size_t(i)] / 20, last += r.losses[r.losses.size() - 1 - size_t(i)] / 20;
    EXPECT_LT(last, first - 0.3) << "first " << first << " last " << last;
    ASSERT_TRUE(r.evaluated);
    EXPECT_GT(r.last_eval.accuracy, 0.0);
    EXPECT_LE(r.last_eval.accuracy, 1.0);
    EXPECT_GT(r.tokens_per_s, 0);
    // metrics.jsonl: one train row per step plus the final eval row.
    std::ifstream f(o.out_dir + "/metrics.jsonl");
    int train_rows = 0, eval_rows = 0;
    std::string line;
    while (std::getline(f, line)) {
        json j = json::parse(line);
        if (j.contains("loss")) {
            train_rows++;
            for (const char* k : {"step", "lr", "gnorm", "tok_s"}) EXPECT_TRUE(j.contains(k)) << k;
        }
        if (j.contains("val_loss")) {
            eval_rows++;
            EXPECT_TRUE(j.contains("val_acc"));
            EXPECT_TRUE(j.contains("val_ppl"));
        }
    }
    EXPECT_EQ(train_rows, 150);
    EXPECT_EQ(eval_rows, 1);
}

// N steps + save + resume + N steps == 2N steps, bit for bit (losses and parameters), with dropout
// on and an epoch boundary crossed.
TEST(Train, ExactResume) {
    for (const std::string data : {"assoc_recall:num_train=400,num_test=64", "text"}) {
        std::string d = data;
        if (data == "text") {
            fs::path p = fs::temp_directory_path() / "hippo_test_train_corpus.txt";
            std::ofstream f(p, std::ios::binary);
            for (int i = 0; i < 30000; i++) f.put(char('a' + (i * 7 + i / 11) % 26));
            d = "text:" + p.string();
        }
        ModelConfig cfg = tiny_h3();
        TrainOptions a = small_opts(fresh_dir("resume_a"));
        a.data = d;
        a.seq_len = 32;
        a.save_every = 10;
        TrainResult ra = train(cfg, a);

        TrainOptions b = a;
        b.out_dir = fresh_dir("resume_b");
        b.stop_after = 20;
        TrainResult rb1 = train(cfg, b);
        ASSERT_EQ(rb1.step, 20);
        b.stop_after = 0;
        b.resume = true;
        TrainResult rb2 = train(cfg, b);
        ASSERT_EQ(rb2.step, 40);
        ASSERT_EQ(ra.losses.size(), 40u);
        ASSERT_EQ(rb1.losses.size() + rb2.losses.size(), 40u);
        for (size_t i = 0; i < 20; i++) {
            EXPECT_EQ(ra.losses[i], rb1.losses[i]) << data << " step " << i;
            EXPECT_EQ(ra.losses[20 + i], rb2.losses[i]) << data << " step " << 20 + i;
        }
        EXPECT_EQ(params_of(a.out_dir), params_of(b.out_dir)) << data;
        // metrics.jsonl of the resumed run has each step once.
        std::ifstream f(b.out_dir + "/metrics.jsonl");
        std::string line;
        int rows = 0;
        while (std::getline(f, line)) rows += json::parse(line).contains("loss");
        EXPECT_EQ(rows, 40);
    }
}

// Attention dropout draws its masks from the step's dropout seed (not a per-module call counter),
// so a resumed hybrid run repeats the uninterrupted one bit for bit too.
TEST(Train, ExactResumeWithAttentionDropout) {
    ModelConfig cfg = parse_model_config(json{{"d_model", 16},
                                              {"n_layer", 2},
                                              {"vocab_size", "data"},
                                              {"mixer", "h3"},
                                              {"attn_layer_idx", {1}},
                                              {"attn_cfg", {{"num_heads", 2}, {"dropout", 0.2}}},
                                              {"embed_dropout", 0.1},
                                              {"ssm_cfg", {{"d_state", 16}}}});
    TrainOptions a = small_opts(fresh_dir("attn_resume_a"));
    a.steps = 20;
    TrainResult ra = train(cfg, a);
    TrainOptions b = a;
    b.out_dir = fresh_dir("attn_resume_b");
    b.stop_after = 10;
    TrainResult rb1 = train(cfg, b);
    b.stop_after = 0;
    b.resume = true;
    TrainResult rb2 = train(cfg, b);
    ASSERT_EQ(ra.losses.size(), 20u);
    ASSERT_EQ(rb1.losses.size() + rb2.losses.size(), 20u);
    for (size_t i = 0; i < 10; i++) {
        EXPECT_EQ(ra.losses[i], rb1.losses[i]) << "step " << i;
        EXPECT_EQ(ra.losses[10 + i], rb2.losses[i]) << "step " << 10 + i;
    }
    EXPECT_EQ(params_of(a.out_dir), params_of(b.out_dir));
}

TEST(Train, NanStopsAndKeepsLastGoodCheckpoint) {
    TrainOptions o = small_opts(fresh_dir("nan"));
    o.save_every = 2;
    o.inject_nan_step = 5;  // the 6th step
    try {
        train(tiny_h3(), o);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("step 6"), std::string::npos) << m;
        EXPECT_NE(m.find("nan"), std::string::npos) << m;
        EXPECT_NE(m.find("step 4"), std::string::npos) << m;  // the last good checkpoint
    }
    // The checkpoint of step 4 is intact and resumable.
    json cfg = load_config(o.out_dir + "/checkpoint");
    LMModel m(parse_model_config(cfg.at("model")), 0);
    load_checkpoint(o.out_dir + "/checkpoint", m);
    o.inject_nan_step = -1;
    o.resume = true;
    o.steps = 8;
    TrainResult r = train(tiny_h3(), o);
    EXPECT_EQ(r.step, 8);
    EXPECT_EQ(r.losses.size(), 4u);
}

TEST(Train, HugeLearningRateFailsCleanly) {
    TrainOptions o = small_opts(fresh_dir("lr"));
    o.lr = 1e30;
    o.ssm_lr = 1e30;
    o.warmup = 0;
    o.save_every = 1;
    EXPECT_THROW(train(tiny_h3(), o), Error);
    // Whatever was saved is loadable (a save never writes non-finite parameters).
    if (fs::exists(o.out_dir + "/checkpoint/model.safetensors")) {
        json cfg = load_config(o.out_dir + "/checkpoint");
        LMModel m(parse_model_config(cfg.at("model")), 0);
        EXPECT_NO_THROW(load_checkpoint(o.out_dir + "/checkpoint", m));
    }
}

TEST(Train, VocabularyMismatchIsAnError) {
    TrainOptions o = small_opts(fresh_dir("vocab"));
    ModelConfig c = tiny_h3();
    c.vocab_from_data = false;
    c.vocab_size = 5;
    EXPECT_THROW(train(c, o), Error);
}
