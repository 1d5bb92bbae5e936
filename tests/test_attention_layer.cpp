// The MHA and LinearAttention layers: parameter names; parallel forward == prefill + step loop
// token by token (incl. rotary offsets and chunked prefill); dropout only in train mode; gradients
// of a small layer against finite differences; the PyTorch 1.13 fixture
// (tests/data/attention_fixture.json, scripts/fixtures/make_attention_fixture.py).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "autograd/ops.h"
#include "gradcheck.h"
#include "nn/attention.h"

using namespace hippo;
using hippo::test::randn;

namespace {

double max_rel(const Tensor& a, const Tensor& b) {
    auto x = a.to_vector(), y = b.to_vector();
    EXPECT_EQ(x.size(), y.size());
    double num = 0, den = 1e-3;
    for (size_t i = 0; i < x.size(); i++) {
        num = std::max(num, std::fabs(double(x[i]) - double(y[i])));
        den = std::max(den, std::fabs(double(y[i])));
    }
    return num / den;
}

Tensor time_slice(const Tensor& u, int64_t t) { return u.select(1, t).contiguous(); }

}  // namespace

TEST(MHALayer, ParameterNames) {
    Rng rng(1);
    MHAConfig cfg;
    cfg.d_model = 16;
    cfg.num_heads = 2;
    cfg.rotary_dim = 4;
    MHA m(cfg, rng);
    auto np = m.named_parameters();
    std::vector<std::string> names;
    for (auto& [n, t] : np) names.push_back(n);
    EXPECT_EQ(names, (std::vector<std::string>{"Wqkv.weight", "Wqkv.bias", "out_proj.weight", "out_proj.bias",
                                               "rotary_emb.inv_freq"}));
    EXPECT_EQ(m.parameter("Wqkv.weight").shape(), Shape({48, 16}));
    Tensor inv = m.parameter("rotary_emb.inv_freq");
    EXPECT_EQ(inv.shape(), Shape({2}));
    EXPECT_FALSE(inv.requires_grad());
    EXPECT_FLOAT_EQ(inv.data()[1], 0.01f);  // 10000^(-2/4)
}

class MHAModes : public ::testing::TestWithParam<int64_t> {};

TEST_P(MHAModes, PrefillAndStepEqualParallel) {
    const int64_t rd = GetParam(), d = 32, Bn = 2, L = 75;
    Rng rng(7);
    MHAConfig cfg;
    cfg.d_model = d;
    cfg.num_heads = 2;  // head_dim 16
    cfg.rotary_dim = rd;
    MHA m(cfg, rng);
    m.eval();
    Tensor x = randn({Bn, L, d}, rng);
    NoGradGuard ng;
    Tensor y = m.forward(x);
    // token by token from an empty cache
    MHAState st = m.new_state(Bn);
    for (int64_t t = 0; t < L; t++) {
        Tensor yt = m.step(time_slice(x, t), st);
        ASSERT_LT(max_rel(yt, time_slice(y, t)), 1e-5) << "step t=" << t;
    }
    // prefill 30, prefill 20 more (chunked, aligned to the end), then steps
    MHAState st2 = m.new_state(Bn);
    Tensor y1 = m.prefill(x.slice(1, 0, 30).contiguous(), st2);
    EXPECT_LT(max_rel(y1, y.slice(1, 0, 30).contiguous()), 1e-5);
    Tensor y2 = m.prefill(x.slice(1, 30, 50).contiguous(), st2);
    EXPECT_LT(max_rel(y2, y.slice(1, 30, 50).contiguous()), 1e-5);
    for (int64_t t = 50; t < L; t++) {
        Tensor yt = m.step(time_slice(x, t), st2);
        ASSERT_LT(max_rel(yt, time_slice(y, t)), 1e-5) << "after prefill t=" << t;
    }
    EXPECT_EQ(st2.pos, L);
}

INSTANTIATE_TEST_SUITE_P(Rotary, MHAModes, ::testing::Values(0, 8, 16));

TEST(MHALayer, DropoutOnlyInTraining) {
    Rng rng(3);
    MHAConfig cfg;
    cfg.d_model = 16;
    cfg.num_heads = 2;
    cfg.dropout = 0.5f;
    MHA m(cfg, rng);
    Tensor x = randn({1, 20, 16}, rng);
    NoGradGuard ng;
    m.eval();
    Tensor a = m.forward(x), b = m.forward(x);
    EXPECT_EQ(a.to_vector(), b.to_vector());
    m.train();
    Tensor c = m.forward(x), e = m.forward(x);
    EXPECT_GT(max_rel(c, a), 1e-3);
    EXPECT_GT(max_rel(e, c), 1e-3);  // a new mask per call
}

TEST(MHALayer, GradCheck) {
    Rng rng(4);
    MHAConfig cfg;
    cfg.d_model = 8;
    cfg.num_heads = 2;
    cfg.rotary_dim = 2;
    MHA m(cfg, rng);
    Tensor W = m.parameter("Wqkv.weight"), bq = m.parameter("Wqkv.bias"), Wo = m.parameter("out_proj.weight");
    auto f = [&](const std::vector<Tensor>& in) {
        Tensor r = linear(in[0], in[1], in[2]).reshape({2, 6, 3, 2, 4});
        Tensor q = rotary(r.select(2, 0), 2), k = rotary(r.select(2, 1), 2), v = r.select(2, 2);
        AttentionOptions o;
        o.causal = true;
        return linear(attention(q, k, v, o).reshape({2, 6, 8}), in[3]);
    };
    hippo::test::expect_gradients_match(f, {randn({2, 6, 8}, rng), W.detach().clone(), bq.detach().clone(),
                                            Wo.detach().clone()});
}

TEST(MHALayer, MatchesPyTorchFixture) {
    std::ifstream f(std::string(HIPPO_TEST_DATA) + "/attention_fixture.json");
    ASSERT_TRUE(f) << "missing tests/data/attention_fixture.json (scripts/fixtures/make_attention_fixture.py makes it)";
    nlohmann::json fx = nlohmann::json::parse(f);
    auto cfgj = fx["config"];
    const int64_t B = cfgj["B"], L = cfgj["L"], d = cfgj["d_model"];
    MHAConfig cfg;
    cfg.d_model = d;
    cfg.num_heads = cfgj["num_heads"];
    cfg.rotary_dim = cfgj["rotary_dim"];
    cfg.causal = cfgj["causal"];
    Rng rng(0);
    MHA m(cfg, rng);
    {
        NoGradGuard ng;
        for (auto& [name, t] : m.named_parameters()) {
            auto vals = fx[name].get<std::vector<float>>();
            ASSERT_EQ(int64_t(vals.size()), t.numel()) << name;
            std::copy(vals.begin(), vals.end(), t.data());
        }
    }
    Tensor x = Tensor::from_vector({B, L, d}, fx["x"].get<std::vector<float>>());
    x.set_requires_grad();
    Tensor y = m.forward(x);
    auto want = fx["y"].get<std::vector<float>>();
    auto got = y.to_vector();
    ASSERT_EQ(got.size(), want.size());
    hippo::test::expect_close(got.data(), want.data(), int64_t(got.size()), 1e-5, 1e-4, "y");
    y.backward(Tensor::from_vector(y.shape(), fx["dy"].get<std::vector<float>>()));
    auto check_grad = [&](const Tensor& t, const std::string& key) {
        auto g = t.grad().to_vector();
        auto w = fx[key].get<std::vector<float>>();
        ASSERT_EQ(g.size(), w.size()) << key;
        hippo::test::expect_close(g.data(), w.data(), int64_t(g.size()), 1e-4, 1e-4, key.c_str());
    };
    check_grad(x, "grad.x");
    for (const char* n : {"Wqkv.weight", "Wqkv.bias", "out_proj.weight", "out_proj.bias"})
        check_grad(m.parameter(n), std::string("grad.") + n);
    EXPECT_FALSE(m.parameter("rotary_emb.inv_freq").grad().defined());
}

TEST(LinearAttentionLayer, StepAndPrefillEqualParallel) {
    Rng rng(9);
    LinearAttentionConfig cfg;
    cfg.d_model = 16;
    cfg.num_heads = 2;
    LinearAttention m(cfg, rng);
    const int64_t Bn = 2, L = 40;
    Tensor x = randn({Bn, L, 16}, rng);
    NoGradGuard ng;
    Tensor y = m.forward(x);
    auto st = m.new_state(Bn);
    for (int64_t t = 0; t < L; t++) ASSERT_LT(max_rel(m.step(time_slice(x, t), st), time_slice(y, t)), 1e-5) << t;
    auto st2 = m.new_state(Bn);
    Tensor yp = m.prefill(x.slice(1, 0, 25).contiguous(), st2);
    EXPECT_LT(max_rel(yp, y.slice(1, 0, 25).contiguous()), 1e-5);
    for (int64_t t = 25; t < L; t++) ASSERT_LT(max_rel(m.step(time_slice(x, t), st2), time_slice(y, t)), 1e-5) << t;
    auto names = m.named_parameters();
    EXPECT_EQ(names[0].first, "Wqkv.weight");
    EXPECT_EQ(names[3].first, "out_proj.bias");
}
