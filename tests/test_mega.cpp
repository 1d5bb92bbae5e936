// Mega's multi-dimensional damped EMA (nn/mega.h): the EMA equals a float64 causal convolution with
// the kernel from the official formula on every path (direct, one FFT, chunked state passing); the
// step loop and prefill + steps equal the parallel mode; finite-difference gradients; the official
// MultiHeadEMA itself (tests/data/mega_ema_fixture.json, scripts/fixtures/make_mega_fixture.py):
// output, every gradient and its incremental step mode.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "gradcheck.h"
#include "common/check.h"
#include "nn/mega.h"

using namespace hippo;
using hippo::test::randn;

namespace {

Tensor time_slice(const Tensor& u, int64_t t) { return u.select(1, t).contiguous(); }

double sigm(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// K * x + omega x in double, x (B, L, D).
std::vector<double> reference_ema(const MegaEMA& m, const Tensor& x) {
    const int64_t Bn = x.size(0), L = x.size(1), D = x.size(2), h = m.config().ndim;
    std::vector<double> K(size_t(D * L), 0.0), y(size_t(Bn * L * D));
    for (int64_t d = 0; d < D; d++)
        for (int64_t n = 0; n < h; n++) {
            const int64_t i = d * h + n;
            const double p = sigm(m.delta.data()[i]), q = 1.0 - p * sigm(m.alpha.data()[i]);
            const double c = p * m.beta.data()[i] * m.gamma.data()[i] / std::sqrt(double(h));
            for (int64_t l = 0; l < L; l++) K[size_t(d * L + l)] += c * std::pow(q, double(l));
        }
    for (int64_t b = 0; b < Bn; b++)
        for (int64_t t = 0; t < L; t++)
            for (int64_t d = 0; d < D; d++) {
                double s = double(m.omega.data()[d]) * x.data()[(b * L + t) * D + d];
                for (int64_t j = 0; j <= t; j++) s += K[size_t(d * L + t - j)] * x.data()[(b * L + j) * D + d];
                y[size_t((b * L + t) * D + d)] = s;
            }
    return y;
}

MegaEMAConfig small(int64_t D, int64_t h, int64_t chunk = 8192) {
    MegaEMAConfig c;
    c.d_model = D;
    c.ndim = h;
    c.chunk = chunk;
    return c;
}

}  // namespace

TEST(MegaEMA, EqualsFloat64ConvolutionOnEveryPath) {
    struct Case { int64_t L, chunk; };
    for (Case cs : {Case{1, 8192}, Case{2, 8192}, Case{40, 8192}, Case{257, 8192}, Case{3, 1}, Case{257, 30}}) {
        SCOPED_TRACE("L " + std::to_string(cs.L) + " chunk " + std::to_string(cs.chunk));
        for (int64_t h : {1, 3, 16}) {
            Rng rng(4 + uint64_t(h));
            MegaEMA m(small(5, h, cs.chunk), rng);
            Tensor x = randn({2, cs.L, 5}, rng);
            NoGradGuard ng;
            Tensor y = m.ema(x);
            std::vector<double> ref = reference_ema(m, x);
            double scale = 1e-30, err = 0;
            for (double v : ref) scale = std::max(scale, std::abs(v));
            for (size_t i = 0; i < ref.size(); i++) err = std::max(err, std::abs(double(y.data()[i]) - ref[i]));
            EXPECT_LT(err / scale, 2e-5) << "h " << h;
        }
    }
}

TEST(MegaEMA, StepLoopAndPrefillEqualParallel) {
    const int64_t D = 4, Bn = 2, L = 37;
    Rng rng(6);
    MegaEMA m(small(D, 8, 16), rng);
    Tensor x = randn({Bn, L, D}, rng);
    NoGradGuard ng;
    Tensor y = m.forward(x);
    MegaEMAState st = m.new_state(Bn);
    for (int64_t t = 0; t < L; t++)
        EXPECT_LT(test::max_rel_diff(m.step(time_slice(x, t), st), time_slice(y, t)), 1e-4) << "t=" << t;
    for (int64_t split : {1, 2, 17, 33}) {
        MegaEMAState st2 = m.new_state(Bn);
        EXPECT_LT(test::max_rel_diff(m.prefill(x.slice(1, 0, split).contiguous(), st2), y.slice(1, 0, split).contiguous()),
                  1e-5);
        for (int64_t t = split; t < L; t++)
            EXPECT_LT(test::max_rel_diff(m.step(time_slice(x, t), st2), time_slice(y, t)), 1e-4) << split << " " << t;
    }
}

TEST(MegaEMA, GradientsMatchFiniteDifferences) {
    for (int64_t chunk : {8192, 4}) {
        SCOPED_TRACE("chunk " + std::to_string(chunk));
        Rng rng(8);
        MegaEMA m(small(3, 5, chunk), rng);
        Tensor x = randn({2, 11, 3}, rng, 0.7f);
        std::vector<Tensor> inputs{x};
        for (auto& [name, p] : m.named_parameters()) inputs.push_back(p);
        test::GradCheckOptions opt;
        opt.max_checks = 30;
        opt.rtol = 3e-2;
        test::expect_gradients_match([&](const std::vector<Tensor>& in) { return m.forward(in[0]); }, inputs, opt);
    }
}

TEST(MegaEMAFixture, MatchesTheOfficialCode) {
    std::ifstream f(std::string(HIPPO_TEST_DATA) + "/mega_ema_fixture.json");
    ASSERT_TRUE(f) << "missing tests/data/mega_ema_fixture.json (scripts/fixtures/make_mega_fixture.py makes it)";
    nlohmann::json fx = nlohmann::json::parse(f);
    ASSERT_EQ(fx["cases"].size(), 2u);
    auto floats = [](const nlohmann::json& j) { return j.get<std::vector<float>>(); };
    for (auto& c : fx["cases"]) {
        const int64_t D = c["d_model"], h = c["ndim"], Bn = c["B"], L = c["L"];
        const std::string tag = "D " + std::to_string(D) + " L " + std::to_string(L) + ": ";
        Rng rng(0);
        MegaEMA m(small(D, h, 32), rng);  // L = 140 > 32: chunked state passing
        {
            NoGradGuard ng;
            ASSERT_EQ(m.named_parameters().size(), c["params"].size());
            for (auto& [name, p] : m.named_parameters()) {
                ASSERT_TRUE(c["params"].contains(name)) << tag << name;
                ASSERT_EQ(p.shape().vec(), c["params"][name]["shape"].get<std::vector<int64_t>>()) << tag << name;
                p.copy_from(Tensor::from_vector(p.shape(), floats(c["params"][name]["data"])));
            }
        }
        Tensor x = Tensor::from_vector({Bn, L, D}, floats(c["x"])).set_requires_grad();
        Tensor y = m.forward(x);
        test::expect_close_to_scale(y.to_vector(), floats(c["y"]), 3e-5, tag + "y");
        y.backward(Tensor::from_vector(y.shape(), floats(c["g"])));
        test::expect_close_to_scale(x.grad().to_vector(), floats(c["dx"]), 3e-5, tag + "dx");
        for (auto& [name, p] : m.named_parameters())
            test::expect_close_to_scale(p.grad().to_vector(), floats(c["grads"][name]), 1e-4, tag + name);
        // The official incremental mode, one token at a time.
        NoGradGuard ng;
        MegaEMAState st = m.new_state(Bn);
        std::vector<float> steps(size_t(Bn * L * D));
        for (int64_t t = 0; t < L; t++) {
            Tensor yt = m.step(x.select(1, t).contiguous(), st);
            for (int64_t b = 0; b < Bn; b++)
                for (int64_t d = 0; d < D; d++) steps[size_t((b * L + t) * D + d)] = yt.data()[b * D + d];
        }
        test::expect_close_to_scale(steps, floats(c["y_steps"]), 3e-5, tag + "steps");
    }
}

// ---- the Mega layer ---------------------------------------------------------------------------
namespace {

MegaConfig small_mega(AttnFn fn, int64_t chunk) {
    MegaConfig c;
    c.d_model = 6;
    c.zdim = 5;
    c.hdim = 7;
    c.ndim = 3;
    c.fn = fn;
    c.chunk = chunk;
    c.max_positions = 64;
    return c;
}

}  // namespace

class MegaLayers : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(MegaLayers, StepLoopAndPrefillEqualParallel) {
    const AttnFn fn = AttnFn(std::get<0>(GetParam()));
    const int64_t chunk = std::get<1>(GetParam()), Bn = 2, L = 29;
    Rng rng(12);
    MegaLayer m(small_mega(fn, chunk), rng);
    // Larger gates and bias than the initialisation so that every term matters.
    for (auto& [name, p] : m.named_parameters())
        if (name == "gamma" || name == "beta" || name == "rel_pos_bias.rel_pos_bias")
            for (int64_t i = 0; i < p.numel(); i++) p.data()[i] = float(rng.normal()) * 0.5f;
    Tensor x = randn({Bn, L, 6}, rng), xn = randn({Bn, L, 6}, rng);
    NoGradGuard ng;
    Tensor y = m.forward(xn, x);
    MegaState st = m.new_state(Bn, L);
    for (int64_t t = 0; t < L; t++)
        EXPECT_LT(test::max_rel_diff(m.step(time_slice(xn, t), time_slice(x, t), st), time_slice(y, t)), 1e-4)
            << "t=" << t;
    MegaState st2 = m.new_state(Bn, L);
    EXPECT_LT(test::max_rel_diff(m.prefill(xn, x, st2), y), 1e-4);
}

TEST_P(MegaLayers, GradientsMatchFiniteDifferences) {
    const AttnFn fn = AttnFn(std::get<0>(GetParam()));
    const int64_t chunk = std::get<1>(GetParam());
    Rng rng(13);
    MegaLayer m(small_mega(fn, chunk), rng);
    for (auto& [name, p] : m.named_parameters())
        if (name != "move.delta" && name != "move.alpha")
            for (int64_t i = 0; i < p.numel(); i++) p.data()[i] = float(rng.normal()) * 0.4f;
    Tensor x = randn({2, 13, 6}, rng, 0.7f), xn = randn({2, 13, 6}, rng, 0.7f);
    std::vector<Tensor> inputs{xn, x};
    for (auto& [name, p] : m.named_parameters()) inputs.push_back(p);
    test::GradCheckOptions opt;
    opt.max_checks = 16;
    opt.rtol = 3e-2;
    opt.atol = 3e-3;
    test::expect_gradients_match([&](const std::vector<Tensor>& in) { return m.forward(in[0], in[1]); }, inputs, opt);
}

// softmax / laplace / relu2, full attention and chunks of 4 and 8 tokens (L = 29, 13: a partial
// last chunk).
INSTANTIATE_TEST_SUITE_P(FnChunk, MegaLayers,
                         ::testing::Combine(::testing::Values(int(AttnFn::softmax), int(AttnFn::laplace),
                                                              int(AttnFn::relu2)),
                                            ::testing::Values(0, 4, 8)));

TEST(MegaLayer, RefusesSequencesLongerThanMaxPositions) {
    Rng rng(1);
    MegaLayer m(small_mega(AttnFn::softmax, 0), rng);
    Tensor x = randn({1, 65, 6}, rng);
    try {
        m.forward(x, x);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("exceeds max_positions 64"), std::string::npos) << e.what();
    }
}

// Against the official MovingAverageGatedAttention (tests/data/mega_layer_fixture.json, made by
// scripts/fixtures/make_mega_layer_fixture.py): prenorm layernorm + the layer + the gated residual,
// causal, softmax / laplace / relu2, full and chunks of 4: output and every gradient.
// The 1e-6 floor: some gradients are zero in exact arithmetic (softmax does not see the key offset
// beta[1]) and both sides hold rounding noise of ~1e-8 there.
TEST(MegaLayerFixture, MatchesTheOfficialCode) {
    std::ifstream f(std::string(HIPPO_TEST_DATA) + "/mega_layer_fixture.json");
    ASSERT_TRUE(f) << "missing tests/data/mega_layer_fixture.json (scripts/fixtures/make_mega_layer_fixture.py makes it)";
    nlohmann::json fx = nlohmann::json::parse(f);
    ASSERT_EQ(fx["cases"].size(), 6u);
    auto floats = [](const nlohmann::json& j) { return j.get<std::vector<float>>(); };
    for (auto& c : fx["cases"]) {
        const std::string fn = c["attention"];
        MegaConfig mc;
        mc.d_model = c["d_model"];
        mc.zdim = c["zdim"];
        mc.hdim = c["hdim"];
        mc.ndim = c["ndim"];
        mc.chunk = c["chunk"];
        mc.max_positions = c["max_positions"];
        mc.fn = fn == "laplace" ? AttnFn::laplace : fn == "relu2" ? AttnFn::relu2 : AttnFn::softmax;
        const int64_t D = mc.d_model, Bn = c["B"], L = c["L"];
        const std::string tag = fn + " chunk " + std::to_string(mc.chunk) + ": ";
        Rng rng(0);
        MegaLayer m(mc, rng);
        auto params = m.named_parameters();
        ASSERT_EQ(params.size() + 2, c["params"].size()) << tag;  // + the norm's weight and bias
        {
            NoGradGuard ng;
            for (auto& [name, p] : params) {
                ASSERT_TRUE(c["params"].contains(name)) << tag << name;
                ASSERT_EQ(p.shape().vec(), c["params"][name]["shape"].get<std::vector<int64_t>>()) << tag << name;
                p.copy_from(Tensor::from_vector(p.shape(), floats(c["params"][name]["data"])));
            }
        }
        Tensor nw = Tensor::from_vector({D}, floats(c["params"]["norm.norm.weight"]["data"])).set_requires_grad();
        Tensor nb = Tensor::from_vector({D}, floats(c["params"]["norm.norm.bias"]["data"])).set_requires_grad();
        Tensor x = Tensor::from_vector({Bn, L, D}, floats(c["x"])).set_requires_grad();
        Tensor y = add(x, m.forward(layer_norm(x, nw, nb), x));
        test::expect_close_to_scale(y.to_vector(), floats(c["y"]), 3e-5, tag + "y", 1e-6);
        y.backward(Tensor::from_vector(y.shape(), floats(c["g"])));
        test::expect_close_to_scale(x.grad().to_vector(), floats(c["dx"]), 1e-4, tag + "dx", 1e-6);
        test::expect_close_to_scale(nw.grad().to_vector(), floats(c["grads"]["norm.norm.weight"]), 1e-4,
                                    tag + "norm.weight", 1e-6);
        test::expect_close_to_scale(nb.grad().to_vector(), floats(c["grads"]["norm.norm.bias"]), 1e-4, tag + "norm.bias",
                                    1e-6);
        for (auto& [name, p] : params)
            test::expect_close_to_scale(p.grad().to_vector(), floats(c["grads"][name]), 1e-4, tag + name, 1e-6);
    }
}
