// One H3 mixer against PyTorch 1.13 (tests/data/h3_fixture.json, made by
// scripts/fixtures/make_h3_fixture.py from the brief's equations, in float64): forward and the
// gradients of every parameter and of the input, for head_dim 1 and 2.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "nn/ssm_layers.h"

using namespace hippo;

namespace {

std::vector<float> floats(const nlohmann::json& j) { return j.get<std::vector<float>>(); }

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rtol, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    double scale = 1e-6;
    for (float w : want) scale = std::max(scale, std::fabs(double(w)));
    for (size_t i = 0; i < got.size(); i++)
        ASSERT_NEAR(got[i], want[i], rtol * scale) << what << "[" << i << "]";
}

}  // namespace

TEST(H3Fixture, MatchesPyTorch) {
    std::ifstream f(std::string(HIPPO_TEST_DATA) + "/h3_fixture.json");
    ASSERT_TRUE(f) << "missing tests/data/h3_fixture.json (scripts/fixtures/make_h3_fixture.py makes it)";
    nlohmann::json fx = nlohmann::json::parse(f);
    for (auto& c : fx["cases"]) {
        H3Config cfg;
        cfg.d_model = c["d_model"];
        cfg.d_state = c["d_state"];
        cfg.head_dim = c["head_dim"];
        Rng rng(0);
        H3 layer(cfg, rng);
        int64_t Bn = c["B"], L = c["L"];
        {
            NoGradGuard ng;
            for (auto& [name, p] : layer.named_parameters()) {
                ASSERT_TRUE(c["params"].contains(name)) << name;
                auto& e = c["params"][name];
                ASSERT_EQ(p.shape().vec(), e["shape"].get<std::vector<int64_t>>()) << name;
                p.copy_from(Tensor::from_vector(p.shape(), floats(e["data"])));
            }
        }
        std::string tag = "head_dim " + std::to_string(cfg.head_dim) + ": ";
        Tensor u = Tensor::from_vector({Bn, L, cfg.d_model}, floats(c["u"])).set_requires_grad();
        Tensor y = layer.forward(u);
        expect_close(y.to_vector(), floats(c["y"]), 2e-5, tag + "y");
        y.backward(Tensor::from_vector(y.shape(), floats(c["g"])));
        expect_close(u.grad().to_vector(), floats(c["du"]), 2e-5, tag + "du");
        for (auto& [name, p] : layer.named_parameters())
            expect_close(p.grad().to_vector(), floats(c["grads"][name]), 5e-5, tag + name);
    }
}
