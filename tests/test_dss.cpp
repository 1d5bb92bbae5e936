// DSS-exp and DLR layers (nn/dss.h): the SSM part equals a float64 causal convolution with the
// kernel written from the papers' formulas (every path: direct, one FFT, chunked state passing);
// step loop and prefill + steps equal the parallel mode; gradients of every parameter and the
// input against finite differences; official parameter names and shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <fstream>
#include <map>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "gradcheck.h"
#include "nn/dss.h"

using namespace hippo;
using hippo::test::randn;
using cd = std::complex<double>;

namespace {

Tensor time_slice(const Tensor& u, int64_t t) { return u.select(1, t).contiguous(); }

DSSConfig small(const std::string& kernel, int64_t H, int64_t N, int64_t chunk = 8192) {
    DSSConfig c;
    c.d_model = H;
    c.d_state = N;
    c.kernel = kernel;
    c.chunk = chunk;
    if (kernel == "dss") {
        c.dt_min = 0.01;
        c.dt_max = 0.5;  // fast dynamics so that short tests exercise the state
    } else {
        c.dt_min = 0.02;
        c.dt_max = 0.6;
        c.W_scale = 0.5;
    }
    return c;
}

// K (H, L) in double straight from the official formulas.
std::vector<double> reference_kernel(const DSS& m, int64_t L) {
    const int64_t H = m.config().d_model, N = m.config().d_state;
    std::vector<double> K(size_t(H * L), 0.0);
    const float *a = m.Lambda_log_neg_re.data(), *b = m.Lambda_im.data(), *W = m.W.data();
    for (int64_t h = 0; h < H; h++)
        for (int64_t n = 0; n < N; n++) {
            const size_t i = size_t(h * N + n);
            cd w(W[2 * i], W[2 * i + 1]), step;
            if (m.config().kernel == "dss") {
                const cd lam(-std::exp(double(a[n])), double(b[n]));
                const double dt = std::exp(double(m.log_dt.data()[h]));
                w *= (std::exp(dt * lam) - 1.0) / lam;
                step = dt * lam;
            } else {
                step = cd(-double(a[n]) * double(a[n]), double(b[n]));
            }
            for (int64_t l = 0; l < L; l++) K[size_t(h * L + l)] += (w * std::exp(double(l) * step)).real();
        }
    return K;
}

// z = K * u + D u in double; u (B, L, H).
std::vector<double> reference_ssm(const DSS& m, const Tensor& u) {
    const int64_t Bn = u.size(0), L = u.size(1), H = u.size(2);
    std::vector<double> K = reference_kernel(m, L), z(size_t(Bn * L * H));
    for (int64_t b = 0; b < Bn; b++)
        for (int64_t t = 0; t < L; t++)
            for (int64_t h = 0; h < H; h++) {
                double s = double(m.D.data()[h]) * double(u.data()[(b * L + t) * H + h]);
                for (int64_t j = 0; j <= t; j++) s += K[size_t(h * L + t - j)] * double(u.data()[(b * L + j) * H + h]);
                z[size_t((b * L + t) * H + h)] = s;
            }
    return z;
}

double max_err(const Tensor& y, const std::vector<double>& ref) {
    double scale = 1e-30, err = 0;
    for (double v : ref) scale = std::max(scale, std::abs(v));
    for (size_t i = 0; i < ref.size(); i++) err = std::max(err, std::abs(double(y.data()[i]) - ref[i]));
    return err / scale;
}

}  // namespace

class DiagKernels : public ::testing::TestWithParam<const char*> {};

TEST_P(DiagKernels, SsmEqualsFloat64ConvolutionOnEveryPath) {
    const std::string kernel = GetParam();
    // L = 1, 2 (edges), 17 and 63 (direct path), 100 and 333 (one FFT), and chunked state passing
    // with chunks of 1, 7 and 64 (not dividing L).
    struct Case { int64_t L, chunk; };
    for (Case cs : {Case{1, 8192}, Case{2, 8192}, Case{17, 8192}, Case{63, 8192}, Case{100, 8192}, Case{333, 8192},
                    Case{5, 1}, Case{100, 7}, Case{333, 64}}) {
        SCOPED_TRACE("L " + std::to_string(cs.L) + " chunk " + std::to_string(cs.chunk));
        for (int64_t N : {1, 5, 16}) {
            Rng rng(7 + uint64_t(N));
            DSS m(small(kernel, 3, N, cs.chunk), rng);
            Tensor u = randn({2, cs.L, 3}, rng);
            NoGradGuard ng;
            EXPECT_LT(max_err(m.ssm(u), reference_ssm(m, u)), 2e-5) << "N " << N;
        }
    }
}

TEST_P(DiagKernels, StepLoopAndPrefillEqualParallel) {
    const std::string kernel = GetParam();
    const int64_t H = 4, Bn = 2, L = 41;
    Rng rng(3);
    DSS m(small(kernel, H, 6, /*chunk=*/16), rng);
    Tensor u = randn({Bn, L, H}, rng);
    NoGradGuard ng;
    Tensor y = m.forward(u);
    DSSState st = m.new_state(Bn);
    for (int64_t t = 0; t < L; t++)
        EXPECT_LT(test::max_rel_diff(m.step(time_slice(u, t), st), time_slice(y, t)), 1e-4) << "step t=" << t;
    for (int64_t split : {1, 2, 20, 33}) {
        DSSState st2 = m.new_state(Bn);
        Tensor yp = m.prefill(u.slice(1, 0, split).contiguous(), st2);
        EXPECT_LT(test::max_rel_diff(yp, y.slice(1, 0, split).contiguous()), 1e-5);
        for (int64_t t = split; t < L; t++)
            EXPECT_LT(test::max_rel_diff(m.step(time_slice(u, t), st2), time_slice(y, t)), 1e-4)
                << "split " << split << " t=" << t;
    }
}

TEST_P(DiagKernels, GradientsMatchFiniteDifferences) {
    const std::string kernel = GetParam();
    // One FFT (L 13 > the direct path's limit is not needed: the direct path is the same kernel)
    // and chunked state passing (chunk 5).
    for (int64_t chunk : {8192, 5}) {
        SCOPED_TRACE("chunk " + std::to_string(chunk));
        Rng rng(5);
        DSS m(small(kernel, 3, 5, chunk), rng);
        Tensor u = randn({2, 13, 3}, rng, 0.5f);
        std::vector<Tensor> inputs{u};
        for (auto& [name, p] : m.named_parameters()) inputs.push_back(p);
        test::GradCheckOptions opt;
        opt.eps = 1e-3f;
        opt.atol = 3e-3;
        opt.rtol = 3e-2;
        opt.max_checks = 30;
        test::expect_gradients_match([&](const std::vector<Tensor>& in) { return m.forward(in[0]); }, inputs, opt);
    }
}

INSTANTIATE_TEST_SUITE_P(Kernel, DiagKernels, ::testing::Values("dss", "dlr"));

TEST(DSS, OfficialParameterNamesAndShapes) {
    Rng rng(1);
    DSS dss(small("dss", 8, 4), rng);
    auto p = dss.named_parameters();
    std::map<std::string, std::string> got;
    for (auto& [name, t] : p) got[name] = t.shape().str();
    std::map<std::string, std::string> want = {{"D", "(1, 8)"},
                                               {"kernel.log_dt", "(8)"},
                                               {"kernel.Lambda_log_neg_re", "(4)"},
                                               {"kernel.Lambda_im", "(4)"},
                                               {"kernel.W", "(1, 8, 4, 2)"},
                                               {"output_linear.weight", "(8, 8)"},
                                               {"output_linear.bias", "(8)"}};
    EXPECT_EQ(got, want);
    DSS dlr(small("dlr", 8, 4), rng);
    got.clear();
    for (auto& [name, t] : dlr.named_parameters()) got[name] = t.shape().str();
    want.erase("kernel.log_dt");
    EXPECT_EQ(got, want);
}

TEST(DSS, InitialisationsAreTheOfficialOnes) {
    Rng rng(2);
    DSSConfig c = small("dss", 4, 6);
    c.dt_min = 1e-3;
    c.dt_max = 1e-1;
    DSS dss(c, rng);
    for (int64_t n = 0; n < 6; n++) {
        EXPECT_NEAR(std::exp(dss.Lambda_log_neg_re.data()[n]), 0.5, 1e-6);
        EXPECT_NEAR(dss.Lambda_im.data()[n], M_PI * double(n), 1e-5);
    }
    for (int64_t h = 0; h < 4; h++) {
        EXPECT_GE(dss.log_dt.data()[h], std::log(1e-3) - 1e-6);
        EXPECT_LE(dss.log_dt.data()[h], std::log(1e-1) + 1e-6);
    }
    DSSConfig d = small("dlr", 4, 8);
    d.dt_min = 1e-4;
    d.dt_max = 1e-1;
    d.W_scale = 0;
    DSS dlr(d, rng);
    double w2 = 0;
    for (int64_t i = 0; i < dlr.W.numel(); i++) w2 += double(dlr.W.data()[i]) * dlr.W.data()[i];
    EXPECT_LT(std::sqrt(w2 / double(dlr.W.numel())), 3.0 / 8.0);  // std 1/N
    for (int64_t n = 0; n < 8; n++) {
        const double re = double(dlr.Lambda_log_neg_re.data()[n]) * dlr.Lambda_log_neg_re.data()[n];
        EXPECT_GE(re, 0.5e-4 * (1 - 1e-5));
        EXPECT_LE(re, 0.5e-1 * (1 + 1e-5));
        EXPECT_NEAR(dlr.Lambda_im.data()[n], 2 * M_PI * double(n) / 8.0, 1e-5);
    }
}

TEST(DSS, LongSequencesStayAccurate) {
    // DLR's |z| ~ 1 - 5e-5 modes at L = 2^16 with chunked state passing (chunk 4096): the phases
    // l Im(lambda) reach 4e5 rad, where an fp32 Vandermonde loses every digit.
    Rng rng(9);
    DSSConfig c = small("dlr", 2, 8, 4096);
    c.dt_min = 1e-4;
    c.dt_max = 1e-3;
    DSS m(c, rng);
    const int64_t L = 1 << 16;
    Tensor u = Tensor::zeros({1, L, 2});
    u.data()[0] = 1.0f;  // impulse in channel 0: z[:, 0] = K[0, :] + D delta
    u.data()[(L - 3) * 2 + 1] = 1.0f;
    NoGradGuard ng;
    Tensor z = m.ssm(u);
    std::vector<double> K = reference_kernel(m, L);
    double scale = 0, err = 0;
    for (int64_t l = 1; l < L; l++) {
        scale = std::max(scale, std::abs(K[size_t(l)]));
        err = std::max(err, std::abs(double(z.data()[l * 2]) - K[size_t(l)]));
    }
    EXPECT_LT(err / scale, 1e-4);
}

// ---- against the official code (tests/data/dss_fixture.json, scripts/fixtures/make_dss_fixture.py:
// ag1988/dlr's standalone DSS block in PyTorch 1.13 on random parameters, float32) --------------
namespace {

std::vector<float> floats(const nlohmann::json& j) { return j.get<std::vector<float>>(); }

}  // namespace

TEST(DSSFixture, MatchesTheOfficialCode) {
    std::ifstream f(std::string(HIPPO_TEST_DATA) + "/dss_fixture.json");
    ASSERT_TRUE(f) << "missing tests/data/dss_fixture.json (scripts/fixtures/make_dss_fixture.py makes it)";
    nlohmann::json fx = nlohmann::json::parse(f);
    ASSERT_EQ(fx["cases"].size(), 4u);
    for (auto& c : fx["cases"]) {
        const int64_t H = c["d_model"], N = c["d_state"], Bn = c["B"], L = c["L"];
        const std::string kernel = c["kernel"];
        const std::string tag = kernel + " H " + std::to_string(H) + " L " + std::to_string(L) + ": ";
        DSSConfig cfg;
        cfg.d_model = H;
        cfg.d_state = N;
        cfg.kernel = kernel;
        cfg.chunk = 16;  // the longer cases run through chunked state passing
        Rng rng(0);
        DSS m(cfg, rng);
        {
            NoGradGuard ng;
            ASSERT_EQ(m.named_parameters().size(), c["params"].size()) << tag;
            for (auto& [name, p] : m.named_parameters()) {
                ASSERT_TRUE(c["params"].contains(name)) << tag << name;
                auto& e = c["params"][name];
                std::vector<int64_t> shape = e["shape"].get<std::vector<int64_t>>();
                // The official output Linear is a transposed one: its bias is stored as (H, 1).
                if (name == "output_linear.bias") ASSERT_EQ(shape, (std::vector<int64_t>{H, 1}));
                else ASSERT_EQ(p.shape().vec(), shape) << tag << name;
                p.copy_from(Tensor::from_vector(p.shape(), floats(e["data"])));
            }
            // The kernel: the SSM's response to an impulse, minus the D skip.
            Tensor imp = Tensor::zeros({1, L, H});
            for (int64_t h = 0; h < H; h++) imp.data()[h] = 1.0f;
            Tensor z = m.ssm(imp);
            std::vector<float> K(size_t(H * L));
            for (int64_t h = 0; h < H; h++)
                for (int64_t l = 0; l < L; l++)
                    K[size_t(h * L + l)] = z.data()[l * H + h] - (l == 0 ? m.D.data()[h] : 0.0f);
            test::expect_close_to_scale(K, floats(c["K"]), 2e-5, tag + "K");
        }
        Tensor u = Tensor::from_vector({Bn, L, H}, floats(c["u"])).set_requires_grad();
        Tensor y = m.forward(u);
        test::expect_close_to_scale(y.to_vector(), floats(c["y"]), 3e-5, tag + "y");
        y.backward(Tensor::from_vector(y.shape(), floats(c["g"])));
        test::expect_close_to_scale(u.grad().to_vector(), floats(c["du"]), 3e-5, tag + "du");
        for (auto& [name, p] : m.named_parameters())
            test::expect_close_to_scale(p.grad().to_vector(), floats(c["grads"][name]), 1e-4, tag + name);
    }
}
