// Diagonal-SSM core of the recurrent modes: the fp32 step vs its double reference, the discretised
// tables vs s4d_discretize, and L steps of the recurrence vs the causal convolution with the
// kernel of s4d_kernel_forward.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <vector>

#include "common/rng.h"
#include "kernels/diag_ssm.h"
#include "kernels/ssm_kernel.h"

using namespace hippo;

namespace {

using cf = std::complex<float>;
using cd = std::complex<double>;

struct DiagParams {
    int64_t H, M;
    std::vector<float> log_dt, inv_A_real, A_imag, B, C;  // (H), (H, M), (H, M), (H, M, 2), (H, M, 2)
};

// S4D-Lin imaginary parts, dt log-uniform in [dt_min, dt_max], -Re A near neg_re_a, B near 1, random C.
DiagParams make_s4d(int64_t H, int64_t M, uint64_t seed, double dt_min = 1e-3, double dt_max = 0.1,
                    double neg_re_a = 0.5) {
    Rng rng(seed);
    DiagParams p{H, M, {}, {}, {}, {}, {}};
    for (int64_t h = 0; h < H; h++)
        p.log_dt.push_back(float(std::log(dt_min) + rng.uniform_double() * (std::log(dt_max) - std::log(dt_min))));
    for (int64_t h = 0; h < H; h++)
        for (int64_t m = 0; m < M; m++) {
            p.inv_A_real.push_back(float(std::log(neg_re_a) + 0.1 * rng.normal()));
            p.A_imag.push_back(float(M_PI * double(m)));
            p.B.push_back(float(1.0 + 0.1 * rng.normal()));
            p.B.push_back(float(0.1 * rng.normal()));
            p.C.push_back(float(rng.normal() * std::sqrt(0.5)));
            p.C.push_back(float(rng.normal() * std::sqrt(0.5)));
        }
    return p;
}

// GSS's DSS-exp (ZOH): log_dt = 0 (dt = 1), B = 1, Re A = -exp(N(0, 1)), Im A = exp(N(0, 1)).
DiagParams make_dss_exp(int64_t H, int64_t M, uint64_t seed) {
    Rng rng(seed);
    DiagParams p{H, M, std::vector<float>(size_t(H), 0.0f), {}, {}, {}, {}};
    for (int64_t i = 0; i < H * M; i++) {
        p.inv_A_real.push_back(float(rng.normal()));
        p.A_imag.push_back(float(std::exp(rng.normal())));
        p.B.push_back(1.0f);
        p.B.push_back(0.0f);
        p.C.push_back(float(rng.normal() * std::sqrt(0.5)));
        p.C.push_back(float(rng.normal() * std::sqrt(0.5)));
    }
    return p;
}

struct Tables {
    std::vector<cf> dA, dB, C;  // (H, M)
};

Tables discretize(const DiagParams& p, Discretization disc) {
    const size_t n = size_t(p.H * p.M);
    Tables t{std::vector<cf>(n), std::vector<cf>(n), std::vector<cf>(n)};
    diag_ssm_discretize(t.dA.data(), t.dB.data(), t.C.data(), p.log_dt.data(), p.inv_A_real.data(), p.A_imag.data(),
                        p.B.data(), p.C.data(), p.H, p.M, disc);
    return t;
}

std::vector<cd> widen(const std::vector<cf>& v) { return {v.begin(), v.end()}; }

struct StepErrors {
    double y = 0, x = 0;   // worst |fp32 - ref| relative to the channel's running scale
    double max_state = 0;  // largest |x| of the reference
};

// T steps of n = H * cph channels (cph per head) from x = 0, fp32 step vs the double reference
// on the same (fp32) tables, so only the step's own rounding is measured. The error of step t is
// relative to the largest scale the channel has had up to t (its state's rounding errors are
// carried forward, decaying, from the steps before): for y, 2 sum_m |C_m| |x_m|; for x, max_m |x_m|.
StepErrors step_vs_ref(const DiagParams& p, Discretization disc, int64_t cph, int64_t T, uint64_t seed) {
    const int64_t M = p.M, n = p.H * cph;
    Tables t = discretize(p, disc);
    std::vector<cd> dA = widen(t.dA), dB = widen(t.dB), C = widen(t.C);
    std::vector<cf> x(static_cast<size_t>(n * M), cf(0.0f, 0.0f));
    std::vector<cd> xr(static_cast<size_t>(n * M), cd(0.0, 0.0));
    std::vector<float> w(static_cast<size_t>(n)), y(static_cast<size_t>(n));
    std::vector<double> wr(static_cast<size_t>(n)), yr(static_cast<size_t>(n));
    std::vector<double> y_scale(static_cast<size_t>(n), 0.0), x_scale(static_cast<size_t>(n), 0.0);
    Rng rng(seed);
    StepErrors e;
    for (int64_t s = 0; s < T; s++) {
        for (int64_t i = 0; i < n; i++) wr[size_t(i)] = w[size_t(i)] = float(0.5 + rng.normal());
        diag_ssm_step(y.data(), x.data(), w.data(), t.dA.data(), t.dB.data(), t.C.data(), n, M, cph);
        diag_ssm_step_ref(yr.data(), xr.data(), wr.data(), dA.data(), dB.data(), C.data(), n, M, cph);
        for (int64_t i = 0; i < n; i++) {
            const cd* Ci = C.data() + (i / cph) * M;
            const cd* xi = xr.data() + i * M;
            double ys = 0, xs = 0;
            for (int64_t m = 0; m < M; m++) {
                ys += 2.0 * std::abs(Ci[m]) * std::abs(xi[m]);
                xs = std::max(xs, std::abs(xi[m]));
            }
            y_scale[size_t(i)] = std::max(y_scale[size_t(i)], ys);
            x_scale[size_t(i)] = std::max(x_scale[size_t(i)], xs);
            e.max_state = std::max(e.max_state, xs);
            e.y = std::max(e.y, std::fabs(double(y[size_t(i)]) - yr[size_t(i)]) / y_scale[size_t(i)]);
            for (int64_t m = 0; m < M; m++)
                e.x = std::max(e.x, std::abs(cd(x[size_t(i * M + m)]) - xi[m]) / x_scale[size_t(i)]);
        }
    }
    return e;
}

// Runs the fp32 recurrence over u (H, L), one channel per head, from x = 0: y (H, L).
std::vector<float> run_recurrence(const Tables& t, const std::vector<float>& u, int64_t H, int64_t M, int64_t L) {
    std::vector<cf> x(static_cast<size_t>(H * M), cf(0.0f, 0.0f));
    std::vector<float> w(static_cast<size_t>(H)), y(static_cast<size_t>(H)), out(static_cast<size_t>(H * L));
    for (int64_t l = 0; l < L; l++) {
        for (int64_t h = 0; h < H; h++) w[size_t(h)] = u[size_t(h * L + l)];
        diag_ssm_step(y.data(), x.data(), w.data(), t.dA.data(), t.dB.data(), t.C.data(), H, M);
        for (int64_t h = 0; h < H; h++) out[size_t(h * L + l)] = y[size_t(h)];
    }
    return out;
}

// Causal convolution in double: y[h, t] = sum_{l <= t} K[h, l] u[h, t - l].
std::vector<double> causal_conv(const std::vector<float>& K, const std::vector<float>& u, int64_t H, int64_t L) {
    std::vector<double> y(static_cast<size_t>(H * L), 0.0);
    for (int64_t h = 0; h < H; h++)
        for (int64_t t = 0; t < L; t++) {
            double s = 0;
            for (int64_t l = 0; l <= t; l++) s += double(K[size_t(h * L + l)]) * double(u[size_t(h * L + t - l)]);
            y[size_t(h * L + t)] = s;
        }
    return y;
}

// max_t |got - ref| / max_t |ref|, the worst head.
double head_rel_err(const std::vector<float>& got, const std::vector<double>& ref, int64_t H, int64_t L) {
    double worst = 0;
    for (int64_t h = 0; h < H; h++) {
        double num = 0, den = 0;
        for (int64_t l = 0; l < L; l++) {
            const size_t i = size_t(h * L + l);
            num = std::max(num, std::fabs(double(got[i]) - ref[i]));
            den = std::max(den, std::fabs(ref[i]));
        }
        worst = std::max(worst, num / den);
    }
    return worst;
}

std::vector<float> random_input(int64_t n, uint64_t seed) {
    Rng rng(seed);
    std::vector<float> u(static_cast<size_t>(n));
    for (auto& v : u) v = float(0.5 + rng.normal());  // a mean, so that slow modes build up
    return u;
}

}  // namespace

class DiagSsmTest : public ::testing::TestWithParam<Discretization> {};

TEST_P(DiagSsmTest, TablesAreTheRoundedDoubleDiscretisation) {
    for (bool dss : {false, true}) {
        DiagParams p = dss ? make_dss_exp(3, 7, 11) : make_s4d(3, 7, 11);
        Tables t = discretize(p, GetParam());
        std::vector<cd> a(static_cast<size_t>(p.H * p.M)), b(static_cast<size_t>(p.H * p.M));
        s4d_discretize(a.data(), b.data(), nullptr, p.log_dt.data(), p.inv_A_real.data(), p.A_imag.data(), p.B.data(),
                       p.C.data(), p.H, p.M, GetParam());
        for (size_t i = 0; i < a.size(); i++) {
            EXPECT_EQ(t.dA[i], cf(a[i])) << i;
            EXPECT_EQ(t.dB[i], cf(b[i])) << i;
            EXPECT_EQ(t.C[i], cf(p.C[2 * i], p.C[2 * i + 1])) << i;
        }
    }
}

TEST_P(DiagSsmTest, StepMatchesDoubleReference) {
    // Slow decay (-Re A near 1e-3, dt in [0.05, 0.1]) and inputs with a mean, so the state of the
    // mode with Im A = 0 keeps growing over the 2000 steps (to about 50); GSS's DSS-exp decays fast.
    for (int64_t H : {1, 3})
        for (int64_t M : {1, 2, 3, 7, 8, 9, 16, 17, 33})
            for (int64_t cph : {1, 4})
                for (bool dss : {false, true}) {
                    const uint64_t seed = uint64_t(100 * M + 10 * H + cph);
                    DiagParams p = dss ? make_dss_exp(H, M, seed) : make_s4d(H, M, seed, 0.05, 0.1, 1e-3);
                    StepErrors e = step_vs_ref(p, GetParam(), cph, 2000, seed);
                    EXPECT_LT(e.y, 2e-5) << "H=" << H << " M=" << M << " cph=" << cph << " dss=" << dss;
                    EXPECT_LT(e.x, 2e-5) << "H=" << H << " M=" << M << " cph=" << cph << " dss=" << dss;
                    if (!dss) {
                        EXPECT_GT(e.max_state, 30.0) << "H=" << H << " M=" << M << ": the slow mode did not build up";
                    }
                }
}

TEST_P(DiagSsmTest, ChannelsOfAHeadShareItsRow) {
    // n = H * cph channels in one call equal one call per channel on its own row, bit for bit.
    const int64_t H = 3, M = 9, cph = 4, n = H * cph;
    DiagParams p = make_s4d(H, M, 5);
    Tables t = discretize(p, GetParam());
    std::vector<cf> x(static_cast<size_t>(n * M), cf(0.0f, 0.0f)), x1 = x;
    std::vector<float> y(static_cast<size_t>(n));
    Rng rng(9);
    for (int s = 0; s < 50; s++) {
        std::vector<float> w(static_cast<size_t>(n));
        for (auto& v : w) v = float(rng.normal());
        diag_ssm_step(y.data(), x.data(), w.data(), t.dA.data(), t.dB.data(), t.C.data(), n, M, cph);
        for (int64_t i = 0; i < n; i++) {
            const int64_t row = (i / cph) * M;
            float y1;
            diag_ssm_step(&y1, x1.data() + i * M, &w[size_t(i)], t.dA.data() + row, t.dB.data() + row, t.C.data() + row,
                          1, M);
            ASSERT_EQ(y1, y[size_t(i)]) << "step " << s << " channel " << i;
        }
    }
    EXPECT_EQ(x, x1);
}

TEST_P(DiagSsmTest, RecurrenceEqualsConvolutionWithTheKernel) {
    const int64_t L = 600;
    for (int64_t M : {1, 2, 5, 16, 17})
        for (bool dss : {false, true}) {
            const int64_t H = 3;
            DiagParams p = dss ? make_dss_exp(H, M, uint64_t(M) + 40) : make_s4d(H, M, uint64_t(M) + 40);
            std::vector<float> K(static_cast<size_t>(H * L));
            s4d_kernel_forward(K.data(), p.log_dt.data(), p.inv_A_real.data(), p.A_imag.data(), p.B.data(), p.C.data(),
                               H, M, L, GetParam());
            std::vector<float> u = random_input(H * L, uint64_t(M) + 3);
            std::vector<float> y = run_recurrence(discretize(p, GetParam()), u, H, M, L);
            EXPECT_LT(head_rel_err(y, causal_conv(K, u, H, L), H, L), 1e-4) << "M=" << M << " dss=" << dss;
        }
}

TEST_P(DiagSsmTest, PerturbedTransitionIsCaught) {
    // The comparison above must notice a wrong dA: rotating one head's dA by 1e-3 rad breaks it.
    const int64_t H = 3, M = 8, L = 600;
    DiagParams p = make_s4d(H, M, 77);
    std::vector<float> K(static_cast<size_t>(H * L));
    s4d_kernel_forward(K.data(), p.log_dt.data(), p.inv_A_real.data(), p.A_imag.data(), p.B.data(), p.C.data(), H, M,
                       L, GetParam());
    std::vector<float> u = random_input(H * L, 78);
    std::vector<double> ref = causal_conv(K, u, H, L);
    Tables t = discretize(p, GetParam());
    EXPECT_LT(head_rel_err(run_recurrence(t, u, H, M, L), ref, H, L), 1e-4);
    for (int64_t m = 0; m < M; m++) t.dA[size_t(M + m)] *= std::polar(1.0f, 1e-3f);  // head 1
    EXPECT_GT(head_rel_err(run_recurrence(t, u, H, M, L), ref, H, L), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Disc, DiagSsmTest, ::testing::Values(Discretization::bilinear, Discretization::zoh),
                         [](const ::testing::TestParamInfo<Discretization>& i) {
                             return std::string(i.param == Discretization::bilinear ? "bilinear" : "zoh");
                         });
