// The H3 and S4D layers: parallel mode == recurrent step loop == prefill + steps, for head_dim 1
// and > 1; chunked state passing inside the layer equals one big FFT; causality; gradients of a
// whole small layer against finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "autograd/ops.h"
#include "common/runtime.h"
#include "gradcheck.h"
#include "nn/ssm_layers.h"

using namespace hippo;
using hippo::test::randn;

namespace {


// Row t of every sequence: (B, L, D) -> (B, D)
Tensor time_slice(const Tensor& u, int64_t t) { return u.select(1, t).contiguous(); }

H3Config small_h3(int64_t d, int64_t P, int64_t N = 8) {
    H3Config c;
    c.d_model = d;
    c.d_state = N;
    c.head_dim = P;
    c.dt_min = 0.01f;
    c.dt_max = 0.5f;  // fast dynamics so that short tests exercise the state
    return c;
}

}  // namespace

class H3Modes : public ::testing::TestWithParam<int64_t> {};

TEST_P(H3Modes, StepLoopAndPrefillEqualParallel) {
    // d_state 8: 4 complex modes (the scalar step); 20: 10 modes (8 in one AVX-512 register + a tail of 2).
    for (int64_t N : {8, 20}) {
    SCOPED_TRACE("d_state " + std::to_string(N));
    const int64_t P = GetParam(), d = 8, Bn = 2, L = 37;
    Rng rng(11);
    H3 layer(small_h3(d, P, N), rng);
    Tensor u = randn({Bn, L, d}, rng);
    NoGradGuard ng;
    Tensor y = layer.forward(u);
    // Recurrent loop from an empty state.
    H3State st = layer.new_state(Bn);
    for (int64_t t = 0; t < L; t++) {
        Tensor yt = layer.step(time_slice(u, t), st);
        EXPECT_LT(test::max_rel_diff(yt, time_slice(y, t)), 1e-4) << "step t=" << t;
    }
    // Prefill the first part, then step the rest.
    const int64_t split = 20;
    H3State st2 = layer.new_state(Bn);
    Tensor yp = layer.prefill(u.slice(1, 0, split).contiguous(), st2);
    EXPECT_LT(test::max_rel_diff(yp, y.slice(1, 0, split).contiguous()), 1e-5);
    for (int64_t t = split; t < L; t++) {
        Tensor yt = layer.step(time_slice(u, t), st2);
        EXPECT_LT(test::max_rel_diff(yt, time_slice(y, t)), 1e-4) << "after prefill t=" << t;
    }
    }
}

TEST_P(H3Modes, ChunkedEqualsOneFft) {
    const int64_t P = GetParam(), d = 8, Bn = 1, L = 150;
    Rng rng(5);
    H3Config cfg = small_h3(d, P);
    H3 big(cfg, rng);
    cfg.chunk = 32;  // 150 = 4 * 32 + 22: the last chunk is short
    Rng rng2(5);
    H3 chunked(cfg, rng2);
    Tensor u = randn({Bn, L, d}, rng);
    Tensor u2 = u.clone();
    u.set_requires_grad();
    u2.set_requires_grad();
    Tensor y1 = big.forward(u), y2 = chunked.forward(u2);
    EXPECT_LT(test::max_rel_diff(y2, y1), 1e-4);
    Tensor g = randn(y1.shape(), rng);
    y1.backward(g);
    y2.backward(g);
    EXPECT_LT(test::max_rel_diff(u2.grad(), u.grad()), 1e-4);
    auto p1 = big.named_parameters(), p2 = chunked.named_parameters();
    ASSERT_EQ(p1.size(), p2.size());
    for (size_t i = 0; i < p1.size(); i++) {
        EXPECT_EQ(p1[i].first, p2[i].first);
        EXPECT_LT(test::max_rel_diff(p2[i].second.grad(), p1[i].second.grad()), 2e-4) << p1[i].first;
    }
}

TEST_P(H3Modes, Causal) {
    const int64_t P = GetParam(), d = 8, L = 40;
    Rng rng(2);
    H3 layer(small_h3(d, P), rng);
    Tensor u = randn({1, L, d}, rng);
    NoGradGuard ng;
    Tensor y0 = layer.forward(u);
    Tensor u1 = u.clone();
    const int64_t t = 25;
    for (int64_t c = 0; c < d; c++) u1.data()[t * d + c] += 5.0f;
    Tensor y1 = layer.forward(u1);
    auto a = y0.to_vector(), b = y1.to_vector();
    for (int64_t l = 0; l < L; l++) {
        double diff = 0;
        for (int64_t c = 0; c < d; c++) diff = std::max(diff, std::fabs(double(a[l * d + c]) - double(b[l * d + c])));
        if (l < t) {
            EXPECT_LT(diff, 1e-5) << "output " << l << " depends on input " << t;
        }
        if (l == t) {
            EXPECT_GT(diff, 1e-3);
        }
    }
}

// Batches that the step splits into groups of sequences sharing one read of the parameters: with
// one thread, batch 3 is one group of 3, batch 6 groups of 4 and 2, batch 9 groups of 4, 4, 1. Each
// sequence's step output must equal its own parallel-mode output.
TEST_P(H3Modes, GroupedStepsEqualParallel) {
    const int64_t P = GetParam(), d = 8, L = 12;
    const int threads = num_threads();
    set_num_threads(1);
    for (int64_t Bn : {3, 6, 9}) {
        SCOPED_TRACE("batch " + std::to_string(Bn));
        Rng rng(uint64_t(5 + Bn));
        H3 layer(small_h3(d, P, 20), rng);
        Tensor u = randn({Bn, L, d}, rng);
        NoGradGuard ng;
        Tensor y = layer.forward(u);
        H3State st = layer.new_state(Bn);
        for (int64_t t = 0; t < L; t++)
            EXPECT_LT(test::max_rel_diff(layer.step(time_slice(u, t), st), time_slice(y, t)), 1e-4) << "t=" << t;
    }
    set_num_threads(threads);
}

INSTANTIATE_TEST_SUITE_P(HeadDim, H3Modes, ::testing::Values(1, 2));

TEST(H3, ParameterNamesMatchTheReleasedCheckpoints) {
    Rng rng(1);
    H3Config cfg;
    cfg.d_model = 16;
    H3 layer(cfg, rng);
    std::vector<std::pair<std::string, std::vector<int64_t>>> want = {
        {"q_proj.weight", {16, 16}}, {"q_proj.bias", {16}}, {"k_proj.weight", {16, 16}}, {"k_proj.bias", {16}},
        {"v_proj.weight", {16, 16}}, {"v_proj.bias", {16}}, {"ssm_k_kernel.kernel.B", {16, 64}},
        {"ssm_k_kernel.kernel.C", {1, 16, 64}}, {"ssm_k_D", {16}}, {"kernel.kernel.log_dt", {16}},
        {"kernel.kernel.inv_A_real", {16, 32}}, {"kernel.kernel.A_imag", {16, 32}}, {"kernel.kernel.B", {16, 32, 2}},
        {"kernel.kernel.C", {1, 16, 32, 2}}, {"D", {16}}, {"output_linear.weight", {16, 16}},
        {"output_linear.bias", {16}}};
    // Order follows torch: a module's own parameters, then its children's.
    std::map<std::string, std::vector<int64_t>> got;
    for (auto& [name, p] : layer.named_parameters()) got[name] = p.shape().vec();
    ASSERT_EQ(got.size(), want.size());
    for (auto& [name, shape] : want) {
        ASSERT_TRUE(got.count(name)) << name;
        EXPECT_EQ(got[name], shape) << name;
    }
    // 4 d^2 + 327 d parameters with N = 64 (the brief's count).
    EXPECT_EQ(layer.num_parameters(), 4 * 16 * 16 + 327 * 16);
}

TEST(H3, GradientsOfTheWholeLayerMatchFiniteDifferences) {
    for (int64_t P : {1, 2}) {
        Rng rng(3 + uint64_t(P));
        H3Config cfg = small_h3(4, P);
        cfg.chunk = 7;  // exercise state passing inside the gradient check
        H3 layer(cfg, rng);
        Tensor u = randn({2, 13, 4}, rng, 0.5f);
        std::vector<Tensor> inputs{u};
        for (auto& [name, p] : layer.named_parameters()) inputs.push_back(p);
        test::GradCheckOptions opt;
        opt.eps = 2e-3f;
        opt.atol = 3e-3;
        opt.rtol = 3e-2;
        opt.max_checks = 24;
        test::expect_gradients_match([&](const std::vector<Tensor>& in) { return layer.forward(in[0]); }, inputs, opt);
    }
}

TEST(S4D, StepEqualsParallelAndGradients) {
    Rng rng(4);
    S4DConfig cfg;
    cfg.d_model = 6;
    cfg.d_state = 8;
    cfg.dt_min = 0.01f;
    cfg.dt_max = 0.5f;
    S4D layer(cfg, rng);
    Tensor u = randn({2, 21, 6}, rng);
    {
        NoGradGuard ng;
        Tensor y = layer.forward(u);
        S4DState st = layer.new_state(2);
        Tensor yp = layer.prefill(u.slice(1, 0, 10).contiguous(), st);
        EXPECT_LT(test::max_rel_diff(yp, y.slice(1, 0, 10).contiguous()), 1e-5);
        for (int64_t t = 10; t < 21; t++) EXPECT_LT(test::max_rel_diff(layer.step(time_slice(u, t), st), time_slice(y, t)), 1e-4);
    }
    std::vector<Tensor> inputs{u};
    for (auto& [name, p] : layer.named_parameters()) inputs.push_back(p);
    test::GradCheckOptions opt;
    opt.max_checks = 20;
    opt.rtol = 3e-2;
    test::expect_gradients_match([&](const std::vector<Tensor>& in) { return layer.forward(in[0]); }, inputs, opt);
}
