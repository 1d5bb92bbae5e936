// Checkpoints: model weights and training state round trips (bit-exact resume), validation errors,
// and atomicity of directory saves.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/file.h"
#include "io/safetensors.h"
#include "nn/checkpoint.h"
#include "nn/init.h"
#include "nn/schedule.h"

using namespace hippo;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Net : Module {
    std::shared_ptr<Linear> a, b;
    std::shared_ptr<LayerNorm> norm;
    explicit Net(uint64_t seed, int64_t d = 6) {
        Rng rng(seed);
        a = register_module("a", std::make_shared<Linear>(d, 2 * d, true, rng));
        norm = register_module("norm", std::make_shared<LayerNorm>(2 * d));
        b = register_module("b", std::make_shared<Linear>(2 * d, 3, false, rng));
        init::normal_(norm->weight, 1.0f, 0.1f, rng);  // not all ones, so a load is visible
    }
};

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/hippo_ckpt_XXXXXX";
        HIPPO_ASSERT(::mkdtemp(tmpl) != nullptr);
        path_ = tmpl;
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }
    const std::string& path() const { return path_; }
    std::vector<std::string> entries() const {
        std::vector<std::string> out;
        for (auto& e : fs::directory_iterator(path_)) out.push_back(e.path().filename().string());
        std::sort(out.begin(), out.end());
        return out;
    }

private:
    std::string path_;
};

std::vector<uint32_t> bits(const Module& m) {
    std::vector<uint32_t> out;
    for (auto& [name, t] : m.named_parameters())
        for (float x : t.to_vector()) out.push_back(std::bit_cast<uint32_t>(x));
    return out;
}

// Deterministic pseudo-gradients drawn from `rng` (stands in for a data-dependent backward pass:
// resuming must restore the RNG for the continuation to match).
void fake_backward(const Module& m, Rng& rng) {
    for (auto& [name, p] : m.named_parameters()) {
        Tensor g = p.grad();
        for (int64_t i = 0; i < g.numel(); i++) g.data()[i] += float(rng.normal()) * 0.1f + 0.01f * p.data()[i];
    }
}

void train_steps(Module& m, Optimizer& opt, const LrSchedule& sched, Rng& data_rng, int64_t from, int64_t to) {
    for (int64_t s = from; s < to; s++) {
        opt.set_lr(sched.lr_at(s));
        opt.zero_grad();
        fake_backward(m, data_rng);
        opt.clip_grad_norm(1.0);
        opt.step();
    }
}

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "<no error>";
}

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

}  // namespace

TEST(Checkpoint, ModelRoundTripIsBitExact) {
    TempDir tmp;
    Net src(1), dst(2);
    ASSERT_NE(bits(src), bits(dst));
    json config = {{"d_model", 6}, {"name", "net"}};
    save_checkpoint(tmp / "ckpt", src, config);
    EXPECT_EQ(tmp.entries(), (std::vector<std::string>{"ckpt"}));  // no temp leftovers
    EXPECT_TRUE(fs::exists(tmp / "ckpt/model.safetensors"));
    EXPECT_TRUE(fs::exists(tmp / "ckpt/config.json"));
    EXPECT_FALSE(fs::exists(tmp / "ckpt/train_state.safetensors"));
    load_checkpoint(tmp / "ckpt", dst);
    EXPECT_EQ(bits(src), bits(dst));
    EXPECT_EQ(load_config(tmp / "ckpt"), config);
    save_checkpoint(tmp / "runs/a/step_000001", src, config);  // parents are created
    load_checkpoint(tmp / "runs/a/step_000001", dst);
    EXPECT_EQ(bits(src), bits(dst));
    fs::remove_all(tmp / "runs");

    // The file itself: F32 tensors named by dotted parameter names.
    SafetensorsFile f = SafetensorsFile::open(tmp / "ckpt/model.safetensors");
    ASSERT_EQ(f.tensors().size(), 5u);
    const TensorInfo& w = f.get("a.weight");
    EXPECT_EQ(w.dtype, DType::F32);
    EXPECT_EQ(w.shape, (std::vector<int64_t>{12, 6}));
    EXPECT_NE(f.find("norm.bias"), nullptr);
}

TEST(Checkpoint, WeightsFileRoundTripAndNonStrictLoad) {
    TempDir tmp;
    Net src(1), dst(2);
    save_weights(tmp / "w.safetensors", src);
    load_weights(tmp / "w.safetensors", dst);
    EXPECT_EQ(bits(src), bits(dst));

    // An extra tensor: rejected when strict, ignored otherwise.
    SafetensorsWriter w;
    std::vector<std::vector<float>> keep;
    for (auto& [name, t] : src.named_parameters()) {
        keep.push_back(t.to_vector());
        w.add_f32(name, t.shape().vec(), keep.back().data());
    }
    float extra[2] = {1, 2};
    w.add_f32("c.weight", {2}, extra);
    w.write(tmp / "extra.safetensors");
    Net other(3);
    std::string e = error_of([&] { load_weights(tmp / "extra.safetensors", other); });
    EXPECT_TRUE(contains(e, "unexpected tensor 'c.weight'")) << e;
    EXPECT_TRUE(contains(e, "strict=false")) << e;
    EXPECT_EQ(bits(other), bits(Net(3)));  // untouched by the failed load
    load_weights(tmp / "extra.safetensors", other, /*strict=*/false);
    EXPECT_EQ(bits(other), bits(src));
}

TEST(Checkpoint, MissingWrongShapeAndCorruptTensorsAreClearErrors) {
    TempDir tmp;
    Net net(1);
    auto params = net.named_parameters();
    std::vector<std::vector<float>> keep;
    auto write_with = [&](const std::string& path, const std::string& skip, const std::string& reshape) {
        SafetensorsWriter w;
        for (auto& [name, t] : params) {
            if (name == skip) continue;
            keep.push_back(t.to_vector());
            std::vector<int64_t> shape = t.shape().vec();
            if (name == reshape) shape = {int64_t(keep.back().size())};
            w.add_f32(name, shape, keep.back().data());
        }
        w.write(path);
    };
    write_with(tmp / "missing.safetensors", "norm.bias", "");
    write_with(tmp / "shape.safetensors", "", "a.weight");

    Net dst(2);
    const auto before = bits(dst);
    std::string e = error_of([&] { load_weights(tmp / "missing.safetensors", dst); });
    EXPECT_TRUE(contains(e, "missing tensor 'norm.bias'")) << e;
    EXPECT_TRUE(contains(e, "missing.safetensors")) << e;
    e = error_of([&] { load_weights(tmp / "missing.safetensors", dst, /*strict=*/false); });
    EXPECT_TRUE(contains(e, "missing tensor 'norm.bias'")) << e;  // missing is an error even non-strict
    e = error_of([&] { load_weights(tmp / "shape.safetensors", dst); });
    EXPECT_TRUE(contains(e, "'a.weight' has shape (72), expected (12, 6)")) << e;
    EXPECT_EQ(bits(dst), before);
    EXPECT_EQ(e.find('\n'), std::string::npos);  // one line

    // Corruption: truncated data, garbage header, empty file, absent file.
    save_weights(tmp / "good.safetensors", net);
    std::vector<uint8_t> bytes = read_file(tmp / "good.safetensors");
    write_file_atomic(tmp / "trunc.safetensors", bytes.data(), bytes.size() - 7);
    std::vector<uint8_t> garbled = bytes;
    for (size_t i = 8; i < 40; i++) garbled[i] = 'x';
    write_file_atomic(tmp / "garbled.safetensors", garbled.data(), garbled.size());
    write_file_atomic(tmp / "empty.safetensors", "", 0);
    for (const char* name : {"trunc.safetensors", "garbled.safetensors", "empty.safetensors", "absent.safetensors"}) {
        e = error_of([&] { load_weights(tmp / name, dst); });
        EXPECT_TRUE(contains(e, name)) << name << ": " << e;
    }
    EXPECT_EQ(bits(dst), before);
}

TEST(Checkpoint, TrainStateResumeIsBitExact) {
    for (const std::string kind : {"adamw", "sgd"}) {
        SCOPED_TRACE(kind);
        auto make_opt = [&](Module& m) -> std::unique_ptr<Optimizer> {
            if (kind == "adamw") {
                AdamWOptions o;
                o.lr = 1e-2;
                o.beta2 = 0.95;
                return std::make_unique<AdamW>(decay_groups(m.named_parameters(), 0.1f), o);
            }
            SGDOptions o;
            o.lr = 0.05;
            o.momentum = 0.9;
            o.nesterov = true;
            o.weight_decay = 1e-3f;
            return std::make_unique<SGD>(m.named_parameters(), o);
        };
        LrSchedule sched = LrSchedule::parse("cosine", 1e-2, 3, 20, 1e-4);
        const int64_t N = 7, T = 15;

        // Uninterrupted run.
        Net ref(1);
        auto ref_opt = make_opt(ref);
        Rng ref_rng(99);
        train_steps(ref, *ref_opt, sched, ref_rng, 0, T);

        // Interrupted at N: save, then continue in a fresh process-like setup.
        TempDir tmp;
        {
            Net m(1);
            auto opt = make_opt(m);
            Rng rng(99);
            train_steps(m, *opt, sched, rng, 0, N);
            TrainState st;
            st.step = N;
            st.rngs["data"] = rng.state();
            st.data_position["train"] = {N * 8, 3, -1};
            st.metadata["run"] = "test";
            save_checkpoint(tmp / "ckpt", m, json{{"d", 6}}, opt.get(), &st);
        }
        Net m(42);  // different init, overwritten by the load
        auto opt = make_opt(m);
        TrainState st;
        load_checkpoint(tmp / "ckpt", m, opt.get(), &st);
        EXPECT_EQ(st.step, N);
        EXPECT_EQ(opt->step_count(), N);
        EXPECT_EQ(st.data_position.at("train"), (std::vector<int64_t>{N * 8, 3, -1}));
        EXPECT_EQ(st.metadata.at("run"), "test");
        EXPECT_EQ(std::stod(st.saved_hyperparameters.at("lr")), sched.lr_at(N - 1));
        Rng rng;
        rng.set_state(st.rng("data"));
        EXPECT_THROW(st.rng("dropout"), Error);
        train_steps(m, *opt, sched, rng, N, T);
        EXPECT_EQ(bits(m), bits(ref));
    }
}

TEST(Checkpoint, TrainStateFileLayoutAndMetadata) {
    TempDir tmp;
    Net m(1);
    AdamWOptions o;
    o.beta1 = 0.8;
    AdamW opt(m.named_parameters(), o);
    Rng data(5);
    data.normal();  // leaves a Box-Muller spare in the state
    TrainState st;
    st.step = 12;
    st.rngs["data"] = data.state();
    save_train_state(tmp / "ts.safetensors", opt, st);
    SafetensorsFile f = SafetensorsFile::open(tmp / "ts.safetensors");
    EXPECT_EQ(f.metadata().at("format"), "hippo-train-state");
    EXPECT_EQ(f.metadata().at("format_version"), "1");
    EXPECT_EQ(f.metadata().at("optimizer"), "adamw");
    EXPECT_EQ(f.metadata().at("optimizer.beta1"), "0.80000000000000004");
    EXPECT_EQ(f.get("m.a.weight").shape, (std::vector<int64_t>{12, 6}));
    EXPECT_EQ(f.get("v.b.weight").dtype, DType::F32);
    EXPECT_EQ(f.get("step").dtype, DType::I64);
    EXPECT_EQ(f.get("rng.data").dtype, DType::U64);
    AdamW opt2(m.named_parameters(), o);
    TrainState back = load_train_state(tmp / "ts.safetensors", opt2);
    Rng r2;
    r2.set_state(back.rng("data"));
    EXPECT_EQ(r2.normal(), data.normal());  // the spare survives
    EXPECT_EQ(r2.next_u64(), data.next_u64());
}

TEST(Checkpoint, TrainStateValidation) {
    TempDir tmp;
    Net m(1);
    AdamW adam(m.named_parameters());
    SGDOptions so;
    so.momentum = 0.9;
    SGD sgd(m.named_parameters(), so);
    save_train_state(tmp / "adam.safetensors", adam, TrainState{});
    save_weights(tmp / "model.safetensors", m);

    std::string e = error_of([&] { load_train_state(tmp / "adam.safetensors", sgd); });
    EXPECT_TRUE(contains(e, "saved with optimizer 'adamw'")) << e;
    e = error_of([&] { load_train_state(tmp / "model.safetensors", adam); });
    EXPECT_TRUE(contains(e, "format is 'pt'")) << e;

    // Optimizer over a different parameter set: missing state / unknown state.
    Net big(1, 8);
    AdamW adam_big(big.named_parameters());
    e = error_of([&] { load_train_state(tmp / "adam.safetensors", adam_big); });
    EXPECT_TRUE(contains(e, "'m.a.weight' has shape (12, 6), expected (16, 8)")) << e;
    NamedTensors fewer = m.named_parameters();
    fewer.pop_back();
    AdamW adam_fewer(fewer);
    e = error_of([&] { load_train_state(tmp / "adam.safetensors", adam_fewer); });
    EXPECT_TRUE(contains(e, "unexpected tensor 'm.b.weight'")) << e;
    EXPECT_NO_THROW(load_train_state(tmp / "adam.safetensors", adam_fewer, /*strict=*/false));
}

TEST(Checkpoint, FailedSaveLeavesPreviousCheckpointIntact) {
    TempDir tmp;
    Net first(1), second(2);
    AdamW opt(first.named_parameters());
    save_checkpoint(tmp / "ckpt", first, json{{"v", 1}}, &opt);
    const auto model_bytes = read_file(tmp / "ckpt/model.safetensors");

    // A config that cannot be serialised (invalid UTF-8) fails the save after the weights were
    // written to the temporary directory.
    json bad = {{"name", std::string("\xff\xfe")}};
    std::string e = error_of([&] { save_checkpoint(tmp / "ckpt", second, bad, &opt); });
    EXPECT_TRUE(contains(e, "config")) << e;
    EXPECT_EQ(tmp.entries(), (std::vector<std::string>{"ckpt"}));
    EXPECT_EQ(read_file(tmp / "ckpt/model.safetensors"), model_bytes);
    EXPECT_EQ(load_config(tmp / "ckpt"), (json{{"v", 1}}));

    // A save onto a path that is a regular file fails cleanly.
    write_file_atomic(tmp / "file", "x", 1);
    e = error_of([&] { save_checkpoint(tmp / "file", second, json::object()); });
    EXPECT_TRUE(contains(e, "not a directory")) << e;

    // A successful overwrite replaces the whole directory (no stale train_state from before).
    save_checkpoint(tmp / "ckpt/", second, json{{"v", 2}});
    EXPECT_EQ(tmp.entries(), (std::vector<std::string>{"ckpt", "file"}));
    EXPECT_FALSE(fs::exists(tmp / "ckpt/train_state.safetensors"));
    Net check(3);
    load_checkpoint(tmp / "ckpt", check);
    EXPECT_EQ(bits(check), bits(second));
    EXPECT_EQ(load_config(tmp / "ckpt")["v"], 2);
}

TEST(Checkpoint, ConfigErrors) {
    TempDir tmp;
    fs::create_directory(tmp / "c");
    std::string e = error_of([&] { load_config(tmp / "c"); });
    EXPECT_TRUE(contains(e, "config.json")) << e;
    write_file_atomic(tmp / "c/config.json", "{not json", 9);
    e = error_of([&] { load_config(tmp / "c"); });
    EXPECT_TRUE(contains(e, "invalid JSON")) << e;
}
