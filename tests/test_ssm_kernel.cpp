// S4D and shift-SSM kernels: fp32 blocked evaluation vs the double reference, long-L accuracy,
// and the backward vs finite differences of the double reference.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/rng.h"
#include "kernels/ssm_kernel.h"

using namespace hippo;

namespace {

struct S4dParams {
    int64_t H, M;
    std::vector<float> log_dt, inv_A_real, A_imag, B, C;
};

// S4D-Lin (A_imag = pi m) or S4D-Inv (A_imag = (N/pi)(N/(2m+1) - 1)), random C, B near 1.
S4dParams make_params(int64_t H, int64_t M, bool inv_init, uint64_t seed, double dt_max = 0.1, double neg_re_a = 0.5) {
    Rng rng(seed);
    S4dParams p{H, M, {}, {}, {}, {}, {}};
    for (int64_t h = 0; h < H; h++)
        p.log_dt.push_back(float(std::log(1e-3) + rng.uniform_double() * (std::log(dt_max) - std::log(1e-3))));
    double N = 2.0 * double(M);
    for (int64_t h = 0; h < H; h++)
        for (int64_t m = 0; m < M; m++) {
            p.inv_A_real.push_back(float(std::log(neg_re_a) + 0.1 * rng.normal()));
            p.A_imag.push_back(float(inv_init ? N / M_PI * (N / (2.0 * double(m) + 1.0) - 1.0) : M_PI * double(m)));
            p.B.push_back(float(1.0 + 0.1 * rng.normal()));
            p.B.push_back(float(0.1 * rng.normal()));
            p.C.push_back(float(rng.normal() * std::sqrt(0.5)));
            p.C.push_back(float(rng.normal() * std::sqrt(0.5)));
        }
    return p;
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

std::vector<double> ref_kernel(const S4dParams& p, int64_t L, Discretization disc) {
    std::vector<double> K(size_t(p.H * L));
    auto a = to_double(p.log_dt), b = to_double(p.inv_A_real), c = to_double(p.A_imag), d = to_double(p.B),
         e = to_double(p.C);
    s4d_kernel_forward_ref(K.data(), a.data(), b.data(), c.data(), d.data(), e.data(), p.H, p.M, L, disc);
    return K;
}

std::vector<float> fast_kernel(const S4dParams& p, int64_t L, Discretization disc) {
    std::vector<float> K(size_t(p.H * L));
    s4d_kernel_forward(K.data(), p.log_dt.data(), p.inv_A_real.data(), p.A_imag.data(), p.B.data(), p.C.data(), p.H,
                       p.M, L, disc);
    return K;
}

// max |fast - ref| / max |ref|
double rel_err(const std::vector<float>& got, const std::vector<double>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        num = std::max(num, std::fabs(double(got[i]) - ref[i]));
        den = std::max(den, std::fabs(ref[i]));
    }
    return num / den;
}

}  // namespace

class S4dKernelTest : public ::testing::TestWithParam<Discretization> {};

TEST_P(S4dKernelTest, MatchesDoubleReference) {
    for (int64_t L : {1, 2, 3, 63, 64, 65, 1000, 4097}) {
        for (bool inv : {false, true}) {
            S4dParams p = make_params(3, 5, inv, uint64_t(L) * 7 + inv);
            double e = rel_err(fast_kernel(p, L, GetParam()), ref_kernel(p, L, GetParam()));
            EXPECT_LT(e, 2e-6) << "L=" << L << " inv=" << inv;
        }
    }
}

TEST_P(S4dKernelTest, AccurateAtOneMillionSteps) {
    // Slow decay (dt = 1e-3 .. 1e-2, Re A = -1e-4 as H3 clamps it) so the kernel is still far
    // from zero at the end; S4D-Inv has large imaginary parts, i.e. fast phase rotation.
    const int64_t L = int64_t(1) << 20;
    S4dParams p = make_params(2, 4, true, 99, 1e-2, 1e-4);
    std::vector<double> ref = ref_kernel(p, L, GetParam());
    std::vector<float> got = fast_kernel(p, L, GetParam());
    // Compare the tail separately: a phase drift would show there first.
    double num = 0, den = 0;
    for (int64_t h = 0; h < p.H; h++)
        for (int64_t l = L - 4096; l < L; l++) {
            size_t i = size_t(h * L + l);
            num = std::max(num, std::fabs(double(got[i]) - ref[i]));
            den = std::max(den, std::fabs(ref[i]));
        }
    ASSERT_GT(den, 1e-6);
    EXPECT_LT(num / den, 1e-5);
    EXPECT_LT(rel_err(got, ref), 1e-5);
}

TEST_P(S4dKernelTest, BackwardMatchesFiniteDifferences) {
    for (int64_t L : {1, 2, 67, 300}) {
        S4dParams p = make_params(2, 3, false, 5 + uint64_t(L), 0.5);
        Discretization disc = GetParam();
        Rng rng(17);
        std::vector<float> dK(size_t(p.H * L));
        for (auto& v : dK) v = float(rng.normal());
        std::vector<float> g_log_dt(size_t(p.H)), g_iar(size_t(p.H * p.M)), g_ai(size_t(p.H * p.M)),
            gB(size_t(2 * p.H * p.M)), gC(size_t(2 * p.H * p.M));
        s4d_kernel_backward(g_log_dt.data(), g_iar.data(), g_ai.data(), gB.data(), gC.data(), dK.data(),
                            p.log_dt.data(), p.inv_A_real.data(), p.A_imag.data(), p.B.data(), p.C.data(), p.H, p.M,
                            L, disc);
        auto a = to_double(p.log_dt), b = to_double(p.inv_A_real), c = to_double(p.A_imag), d = to_double(p.B),
             e = to_double(p.C);
        auto loss = [&] {
            std::vector<double> K(size_t(p.H * L));
            s4d_kernel_forward_ref(K.data(), a.data(), b.data(), c.data(), d.data(), e.data(), p.H, p.M, L, disc);
            double s = 0;
            for (size_t i = 0; i < K.size(); i++) s += K[i] * dK[i];
            return s;
        };
        auto check = [&](std::vector<double>& param, const std::vector<float>& grad, const char* what) {
            for (size_t i = 0; i < param.size(); i++) {
                double orig = param[i], eps = 1e-6;
                param[i] = orig + eps;
                double lp = loss();
                param[i] = orig - eps;
                double lm = loss();
                param[i] = orig;
                double num = (lp - lm) / (2 * eps);
                EXPECT_NEAR(grad[i], num, 1e-4 + 1e-3 * std::fabs(num)) << what << "[" << i << "] L=" << L;
            }
        };
        check(a, g_log_dt, "log_dt");
        check(b, g_iar, "inv_A_real");
        check(c, g_ai, "A_imag");
        check(d, gB, "B");
        check(e, gC, "C");
    }
}

INSTANTIATE_TEST_SUITE_P(Disc, S4dKernelTest, ::testing::Values(Discretization::bilinear, Discretization::zoh),
                         [](const auto& info) { return info.param == Discretization::bilinear ? "bilinear" : "zoh"; });

TEST(ShiftKernel, ForwardAndBackward) {
    for (int64_t N : {1, 2, 5, 64}) {
        const int64_t D = 3;
        Rng rng{uint64_t(N)};
        std::vector<float> B(size_t(D * N)), C(size_t(D * N)), h(size_t(D * N)), g(size_t(D * N));
        for (auto& v : B) v = float(rng.normal());
        for (auto& v : C) v = float(rng.normal());
        for (auto& v : g) v = float(rng.normal());
        shift_kernel_forward(h.data(), B.data(), C.data(), D, N);
        std::vector<double> Bd(B.begin(), B.end()), Cd(C.begin(), C.end()), hd(size_t(D * N));
        shift_kernel_forward_ref(hd.data(), Bd.data(), Cd.data(), D, N);
        for (size_t i = 0; i < h.size(); i++) EXPECT_NEAR(h[i], hd[i], 1e-4 * (1 + std::fabs(hd[i])));

        std::vector<float> dB(size_t(D * N)), dC(size_t(D * N));
        shift_kernel_backward(dB.data(), dC.data(), g.data(), B.data(), C.data(), D, N);
        auto loss = [&] {
            shift_kernel_forward_ref(hd.data(), Bd.data(), Cd.data(), D, N);
            double s = 0;
            for (size_t i = 0; i < hd.size(); i++) s += hd[i] * g[i];
            return s;
        };
        for (auto* pr : {&Bd, &Cd}) {
            const std::vector<float>& grad = pr == &Bd ? dB : dC;
            for (size_t i = 0; i < pr->size(); i++) {
                double o = (*pr)[i];
                (*pr)[i] = o + 1e-6;
                double lp = loss();
                (*pr)[i] = o - 1e-6;
                double lm = loss();
                (*pr)[i] = o;
                EXPECT_NEAR(grad[i], (lp - lm) / 2e-6, 1e-3);
            }
        }
        // With B = e1 the kernel is C itself (the H3 initialisation).
        std::fill(B.begin(), B.end(), 0.0f);
        for (int64_t c = 0; c < D; c++) B[size_t(c * N)] = 1.0f;
        shift_kernel_forward(h.data(), B.data(), C.data(), D, N);
        for (size_t i = 0; i < h.size(); i++) EXPECT_EQ(h[i], C[i]);
    }
}
