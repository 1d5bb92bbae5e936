// The S4 layer (nn/s4.h) and the long convolution op: the SSM equals a float64 causal convolution
// with the float64 reference kernel (kernels/s4_dplr.h); the step loop and prefill + steps equal
// the parallel mode; finite-difference gradients of the op and of the whole layer; lengths above
// l_max are refused; official parameter names.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "autograd/ops.h"
#include "autograd/ops_ssm.h"
#include "common/check.h"
#include "gradcheck.h"
#include "nn/s4.h"

using namespace hippo;
using hippo::test::randn;

namespace {

Tensor time_slice(const Tensor& u, int64_t t) { return u.select(1, t).contiguous(); }

S4Config small(int64_t H, int64_t N, int64_t S, int64_t l_max) {
    S4Config c;
    c.d_model = H;
    c.d_state = N;
    c.n_ssm = S;
    c.l_max = l_max;
    c.dt_min = 0.05;
    c.dt_max = 0.5;  // fast dynamics so that short tests exercise the state
    return c;
}

std::vector<double> dbl(const Tensor& t) {
    std::vector<double> v(size_t(t.numel()));
    for (int64_t i = 0; i < t.numel(); i++) v[size_t(i)] = t.data()[i];
    return v;
}

}  // namespace

TEST(LongConv, GradientsMatchFiniteDifferences) {
    Rng rng(1);
    for (int64_t L : {1, 2, 9, 70}) {  // direct path and one FFT
        SCOPED_TRACE("L " + std::to_string(L));
        Tensor u = randn({2, L, 3}, rng), K = randn({3, L + 3}, rng, 0.3f), D = randn({3}, rng);
        test::GradCheckOptions opt;
        opt.max_checks = 40;
        test::expect_gradients_match([](const std::vector<Tensor>& in) { return long_conv(in[0], in[1], in[2]); },
                                     {u, K, D}, opt);
    }
}

TEST(S4Layer, SsmEqualsFloat64Convolution) {
    for (int64_t L : {1, 2, 17, 100}) {
        SCOPED_TRACE("L " + std::to_string(L));
        Rng rng(3);
        S4 m(small(3, 8, 1, 128), rng);
        Tensor u = randn({2, L, 3}, rng);
        const int64_t H = 3, N2 = 4;
        std::vector<double> K(size_t(H * 128));
        s4_dplr_kernel_ref(K.data(), dbl(m.inv_dt).data(), dbl(m.A_real).data(), dbl(m.A_imag).data(), dbl(m.B).data(),
                           dbl(m.P).data(), dbl(m.C).data(), 1, H, 1, N2, 128);
        NoGradGuard ng;
        Tensor z = m.ssm(u);
        double scale = 1e-30, err = 0;
        for (int64_t b = 0; b < 2; b++)
            for (int64_t t = 0; t < L; t++)
                for (int64_t h = 0; h < H; h++) {
                    double s = double(m.D.data()[h]) * u.data()[(b * L + t) * H + h];
                    for (int64_t j = 0; j <= t; j++) s += K[size_t(h * 128 + t - j)] * u.data()[(b * L + j) * H + h];
                    scale = std::max(scale, std::abs(s));
                    err = std::max(err, std::abs(s - double(z.data()[(b * L + t) * H + h])));
                }
        EXPECT_LT(err / scale, 2e-5);
    }
}

TEST(S4Layer, StepLoopAndPrefillEqualParallel) {
    const int64_t H = 4, Bn = 2, L = 37;
    for (int64_t S : {1, 4}) {
        Rng rng(5);
        S4 m(small(H, 8, S, 64), rng);
        Tensor u = randn({Bn, L, H}, rng);
        NoGradGuard ng;
        Tensor y = m.forward(u);
        S4State st = m.new_state(Bn);
        for (int64_t t = 0; t < L; t++)
            EXPECT_LT(test::max_rel_diff(m.step(time_slice(u, t), st), time_slice(y, t)), 2e-4) << "S " << S << " t " << t;
        for (int64_t split : {1, 20}) {
            S4State st2 = m.new_state(Bn);
            EXPECT_LT(test::max_rel_diff(m.prefill(u.slice(1, 0, split).contiguous(), st2), y.slice(1, 0, split).contiguous()),
                      1e-5);
            for (int64_t t = split; t < L; t++)
                EXPECT_LT(test::max_rel_diff(m.step(time_slice(u, t), st2), time_slice(y, t)), 2e-4) << split << " " << t;
        }
    }
}

TEST(S4Layer, GradientsMatchFiniteDifferences) {
    Rng rng(7);
    S4 m(small(3, 6, 3, 24), rng);
    Tensor u = randn({2, 19, 3}, rng, 0.5f);
    std::vector<Tensor> inputs{u};
    for (auto& [name, p] : m.named_parameters()) inputs.push_back(p);
    test::GradCheckOptions opt;
    opt.max_checks = 24;
    opt.rtol = 3e-2;
    opt.atol = 3e-3;
    test::expect_gradients_match([&](const std::vector<Tensor>& in) { return m.forward(in[0]); }, inputs, opt);
}

TEST(S4Layer, RefusesSequencesLongerThanTheKernelAndNamesParameters) {
    Rng rng(9);
    S4 m(small(4, 8, 2, 16), rng);
    Tensor u = randn({1, 17, 4}, rng);
    try {
        m.forward(u);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("exceeds the kernel length l_max = 16"), std::string::npos) << e.what();
    }
    std::map<std::string, std::string> got;
    for (auto& [name, t] : m.named_parameters()) got[name] = t.shape().str();
    std::map<std::string, std::string> want = {{"layer.D", "(1, 4)"},
                                               {"layer.kernel.inv_dt", "(4, 1)"},
                                               {"layer.kernel.A_real", "(2, 4)"},
                                               {"layer.kernel.A_imag", "(2, 4)"},
                                               {"layer.kernel.B", "(1, 2, 4, 2)"},
                                               {"layer.kernel.P", "(1, 2, 4, 2)"},
                                               {"layer.kernel.C", "(1, 4, 4, 2)"},
                                               {"output_linear.0.weight", "(8, 4)"},
                                               {"output_linear.0.bias", "(8)"}};
    EXPECT_EQ(got, want);
}
