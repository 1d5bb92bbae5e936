// S4 (DPLR) kernel: HiPPO-LegS NPLR form, Cauchy/Woodbury kernel vs the dense float64 oracle,
// backward vs finite differences of the oracle, C~ set-up, thread-count invariance, values of the
// official PyTorch code, recurrent step vs convolution.
#include <gtest/gtest.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <cmath>
#include <cstdio>
#include <complex>
#include <vector>

#include "common/rng.h"
#include "kernels/s4_dplr.h"

using namespace hippo;
using cd = std::complex<double>;

namespace {

struct S4Params {
    int64_t C, H, S, N2;
    std::vector<float> inv_dt, A_real, A_imag, B, P, Ct;
};

// LegS init (perturbed, so that features and copies differ), log-uniform dt, random C~.
S4Params make_params(int64_t C, int64_t H, int64_t S, int64_t N2, uint64_t seed, double dt_lo = 1e-3,
                     double dt_hi = 1e-1) {
    Rng rng(seed);
    S4Params p{C, H, S, N2, {}, {}, {}, {}, {}, {}};
    std::vector<float> ar(static_cast<size_t>(N2)), ai(static_cast<size_t>(N2)), b(static_cast<size_t>(2 * N2)),
        pp(static_cast<size_t>(2 * N2));
    s4_dplr_legs_init(ar.data(), ai.data(), b.data(), pp.data(), 1, N2);
    for (int64_t h = 0; h < H; h++)
        p.inv_dt.push_back(float(std::log(dt_lo) + rng.uniform_double() * (std::log(dt_hi) - std::log(dt_lo))));
    for (int64_t s = 0; s < S; s++)
        for (int64_t n = 0; n < N2; n++) {
            p.A_real.push_back(float(ar[size_t(n)] + 0.2 * rng.normal()));
            p.A_imag.push_back(float(ai[size_t(n)] * (1.0 + 0.1 * rng.normal())));
            for (int r = 0; r < 2; r++) {
                p.B.push_back(float(b[size_t(2 * n + r)] + 0.1 * rng.normal()));
                p.P.push_back(float(pp[size_t(2 * n + r)] + 0.1 * rng.normal()));
            }
        }
    for (int64_t i = 0; i < C * H * N2 * 2; i++) p.Ct.push_back(float(rng.normal() * std::sqrt(0.5)));
    return p;
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

struct S4ParamsD {
    std::vector<double> inv_dt, A_real, A_imag, B, P, Ct;
    explicit S4ParamsD(const S4Params& p)
        : inv_dt(to_double(p.inv_dt)), A_real(to_double(p.A_real)), A_imag(to_double(p.A_imag)), B(to_double(p.B)),
          P(to_double(p.P)), Ct(to_double(p.Ct)) {}
};

std::vector<double> ref_kernel(const S4Params& p, const S4ParamsD& d, int64_t L) {
    std::vector<double> K(static_cast<size_t>(p.C * p.H * L));
    s4_dplr_kernel_ref(K.data(), d.inv_dt.data(), d.A_real.data(), d.A_imag.data(), d.B.data(), d.P.data(),
                       d.Ct.data(), p.C, p.H, p.S, p.N2, L);
    return K;
}

std::vector<float> fast_kernel(const S4Params& p, int64_t L, int64_t L_out = -1) {
    std::vector<float> K(static_cast<size_t>(p.C * p.H * (L_out < 0 ? L : L_out)));
    s4_dplr_kernel_forward(K.data(), p.inv_dt.data(), p.A_real.data(), p.A_imag.data(), p.B.data(), p.P.data(),
                           p.Ct.data(), p.C, p.H, p.S, p.N2, L, L_out);
    return K;
}

// max |got - ref| / max |ref|
template <class T>
double rel_err(const std::vector<T>& got, const std::vector<double>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        num = std::max(num, std::fabs(double(got[i]) - ref[i]));
        den = std::max(den, std::fabs(ref[i]));
    }
    return num / den;
}

}  // namespace

// ---- NPLR -------------------------------------------------------------------------------------------

TEST(S4LegsNplr, ReconstructsHippo) {
    for (int64_t N : {2, 8, 16, 64, 256}) {
        const int64_t N2 = N / 2;
        const size_t n2 = size_t(N2);
        std::vector<cd> lam(n2), P(n2), B(n2), V(n2 * size_t(N));
        s4_legs_nplr(N, lam.data(), P.data(), B.data(), V.data(), -1.0);  // no clip: B must come back exactly
        // Full basis [V, conj V] (unitary) and the full low-rank vector [P~, conj P~]:
        //   A = V_f (diag(lambda_f) - p~ p~^*) V_f^*,  P = 2 Re(V P~),  B = 2 Re(V B~).
        auto Vf = [&](int64_t i, int64_t j) {
            return j < N2 ? V[size_t(i * N2 + j)] : std::conj(V[size_t(i * N2 + j - N2)]);
        };
        auto lf = [&](int64_t j) { return j < N2 ? lam[size_t(j)] : std::conj(lam[size_t(j - N2)]); };
        auto pf = [&](int64_t j) { return j < N2 ? P[size_t(j)] : std::conj(P[size_t(j - N2)]); };
        // W = V_f (diag(lambda_f) - p~ p~^*), then rec = W V_f^*.
        std::vector<cd> W(static_cast<size_t>(N * N));
        for (int64_t i = 0; i < N; i++) {
            cd vp = 0;
            for (int64_t j = 0; j < N; j++) vp += Vf(i, j) * pf(j);
            for (int64_t m = 0; m < N; m++) W[size_t(i * N + m)] = Vf(i, m) * lf(m) - vp * std::conj(pf(m));
        }
        double err_a = 0, err_u = 0, err_pb = 0;
        for (int64_t i = 0; i < N; i++) {
            for (int64_t k = 0; k < N; k++) {
                const double a = i > k ? -std::sqrt((2.0 * i + 1) * (2.0 * k + 1)) : i == k ? -(i + 1.0) : 0.0;
                cd rec = 0, uu = 0;
                for (int64_t m = 0; m < N; m++) {
                    rec += W[size_t(i * N + m)] * std::conj(Vf(k, m));
                    uu += Vf(i, m) * std::conj(Vf(k, m));
                }
                err_a = std::max(err_a, std::abs(rec - a));
                err_u = std::max(err_u, std::abs(uu - (i == k ? 1.0 : 0.0)));
            }
            cd pv = 0, bv = 0;
            for (int64_t j = 0; j < N2; j++) {
                pv += V[size_t(i * N2 + j)] * P[size_t(j)];
                bv += V[size_t(i * N2 + j)] * B[size_t(j)];
            }
            err_pb = std::max(err_pb, std::fabs(2 * pv.real() - std::sqrt(i + 0.5)));
            err_pb = std::max(err_pb, std::fabs(2 * bv.real() - std::sqrt(2.0 * i + 1)));
        }
        std::printf("N=%lld: |A - rec|max %.2e  |V_f V_f^* - I|max %.2e  P, B %.2e\n", (long long)N, err_a, err_u,
                    err_pb);
        EXPECT_LT(err_a, 1e-10 * N) << "N=" << N;
        EXPECT_LT(err_u, 1e-12) << "N=" << N;
        EXPECT_LT(err_pb, 1e-11) << "N=" << N;
        for (int64_t j = 0; j < N2; j++) {
            EXPECT_NEAR(lam[size_t(j)].real(), -0.5, 1e-14);
            EXPECT_LT(lam[size_t(j)].imag(), 0.0);
            if (j > 0) {
                EXPECT_GT(lam[size_t(j)].imag(), lam[size_t(j - 1)].imag());  // ascending Im
            }
            EXPECT_GT(V[size_t(j)].real(), 0.0);                                     // phase: V[0, j] > 0
            EXPECT_EQ(V[size_t(j)].imag(), 0.0);
        }
    }
}

TEST(S4LegsNplr, MatchesOfficialN8) {
    // The official nplr('legs', 8, dtype=torch.double) (state-spaces/s4 @ e757cef): eigenvalues,
    // P~, B~ (Im clipped to [-2, 2]) and V[0, :]. LAPACK leaves V[0, j] real of either sign; ours is
    // positive, so P~, B~ agree up to that sign.
    const double W_im[4] = {-19.857410370970573, -5.354208515030874, -1.9577941509028045, -0.4274887122858612};
    const cd P_off[4] = {{-0.09176480182938684, -3.6444226550738326}, {0.12122838219576182, 1.298164072431934},
                         {-0.20558461736585112, -0.8049847227889115}, {0.42967181150029804, 0.3673596988075916}};
    const cd B_off[4] = {{-0.12977502729559842, -2.0}, {0.17144282224579532, 1.8358812374187305},
                         {-0.29074055409407007, -1.1384203124712249}, {0.6076477031931372, 0.5195250683229913}};
    const double V0_off[4] = {-0.12977502729559753, 0.17144282224579588, -0.29074055409407085, 0.607647703193138};
    std::vector<cd> lam(4), P(4), B(4), V(32);
    s4_legs_nplr(8, lam.data(), P.data(), B.data(), V.data());
    for (int j = 0; j < 4; j++) {
        const double sg = V0_off[j] > 0 ? 1.0 : -1.0;
        EXPECT_NEAR(lam[size_t(j)].real(), -0.5, 1e-14);
        EXPECT_NEAR(lam[size_t(j)].imag(), W_im[j], 1e-12);
        EXPECT_NEAR(V[size_t(j)].real(), sg * V0_off[j], 1e-12);
        EXPECT_NEAR(std::abs(sg * P[size_t(j)] - P_off[j]), 0.0, 1e-12) << j;
        EXPECT_NEAR(std::abs(sg * B[size_t(j)] - B_off[j]), 0.0, 1e-12) << j;
    }
    // The parameter init: A_real = log(1/2), A_imag = -Im lambda, B, P; every copy alike.
    std::vector<float> ar(8), ai(8), b(16), p(16);
    s4_dplr_legs_init(ar.data(), ai.data(), b.data(), p.data(), 2, 4);
    for (int s = 0; s < 2; s++)
        for (int j = 0; j < 4; j++) {
            EXPECT_FLOAT_EQ(ar[size_t(s * 4 + j)], float(std::log(0.5)));
            EXPECT_FLOAT_EQ(ai[size_t(s * 4 + j)], float(-W_im[j]));
            EXPECT_FLOAT_EQ(b[size_t(2 * (s * 4 + j))], float(B[size_t(j)].real()));
            EXPECT_FLOAT_EQ(p[size_t(2 * (s * 4 + j) + 1)], float(P[size_t(j)].imag()));
        }
}

// ---- kernel -----------------------------------------------------------------------------------------

TEST(S4DplrKernel, MatchesDenseReference) {
    double worst = 0;
    for (int64_t N2 : {4, 8, 32})
        for (int64_t H : {1, 3})
            for (int64_t C : {1, 2})
                for (int64_t S : {int64_t(1), H}) {
                    if (S == H && H == 1 && C == 2) continue;
                    for (int64_t L : {1, 2, 3, 7, 16, 100, 1000}) {
                        if (N2 == 32 && L == 1000 && (H > 1 || C > 1)) continue;  // oracle cost
                        S4Params p = make_params(C, H, S, N2, uint64_t(1000 * N2 + 100 * H + 10 * C + S + L));
                        S4ParamsD d(p);
                        const double e = rel_err(fast_kernel(p, L), ref_kernel(p, d, L));
                        worst = std::max(worst, e);
                        EXPECT_LT(e, 1e-5) << "N2=" << N2 << " H=" << H << " C=" << C << " S=" << S << " L=" << L;
                    }
                }
    std::printf("worst max|K - K_ref| / max|K_ref|: %.2e\n", worst);
}

TEST(S4DplrKernel, NyquistNodeExact) {
    // Even L: the node w = -1 (k = L/2) is evaluated in closed form. L = 2 has only the nodes +1
    // and -1, so K_1 = (K^(1) - K^(-1)) / 2 depends on it entirely; large dt (0.5 .. 1) and long L
    // as well (there the neighbouring nodes have |tan| ~ L / pi).
    for (int64_t L : {2, 4, 10, 4096}) {
        S4Params p = make_params(2, 2, 2, 8, 77 + uint64_t(L), 0.5, 1.0);
        S4ParamsD d(p);
        const std::vector<double> ref = ref_kernel(p, d, L);
        const std::vector<float> got = fast_kernel(p, L);
        EXPECT_LT(rel_err(got, ref), 2e-6) << "L=" << L;
    }
}

TEST(S4DplrKernel, TruncatedOutput) {
    S4Params p = make_params(2, 3, 1, 5, 11);
    for (int64_t L : {16, 37}) {
        const std::vector<float> full = fast_kernel(p, L);
        for (int64_t Lo : {int64_t(1), L / 2, L - 1}) {
            const std::vector<float> part = fast_kernel(p, L, Lo);
            for (int64_t r = 0; r < p.C * p.H; r++)
                for (int64_t l = 0; l < Lo; l++) EXPECT_EQ(part[size_t(r * Lo + l)], full[size_t(r * L + l)]);
        }
    }
}

TEST(S4DplrKernel, SetupCAttunesToLength) {
    // The kernel of C~ = setup_C(C, L) is the impulse response of the system with the plain C, and
    // doubling C~ for L gives C~ for 2L.
    S4Params p = make_params(2, 3, 3, 6, 21, 0.01, 0.1);
    const std::vector<float> Cplain = p.Ct;
    const int64_t L = 24;
    std::vector<float> Ct(Cplain.size()), Ct2(Cplain.size()), Ct2d(Cplain.size());
    s4_dplr_setup_C(Ct.data(), Cplain.data(), p.inv_dt.data(), p.A_real.data(), p.A_imag.data(), p.B.data(),
                    p.P.data(), p.C, p.H, p.S, p.N2, L);
    s4_dplr_setup_C(Ct2.data(), Cplain.data(), p.inv_dt.data(), p.A_real.data(), p.A_imag.data(), p.B.data(),
                    p.P.data(), p.C, p.H, p.S, p.N2, 2 * L);
    s4_dplr_setup_C(Ct2d.data(), Ct.data(), p.inv_dt.data(), p.A_real.data(), p.A_imag.data(), p.B.data(),
                    p.P.data(), p.C, p.H, p.S, p.N2, L, true);
    double num = 0, den = 0;
    for (size_t i = 0; i < Ct2.size(); i++) {
        num = std::max(num, double(std::fabs(Ct2[i] - Ct2d[i])));
        den = std::max(den, double(std::fabs(Ct2[i])));
    }
    EXPECT_LT(num / den, 1e-5);

    // Impulse response of the dense step with the plain C (l_kernel = 0 semantics).
    S4ParamsD d(p);
    S4DplrStepRef st;
    s4_dplr_step_setup_ref(st, d.inv_dt.data(), d.A_real.data(), d.A_imag.data(), d.B.data(), d.P.data(),
                           d.Ct.data(), p.C, p.H, p.S, p.N2, 0);
    std::vector<cd> x(static_cast<size_t>(p.H * st.N), 0.0);
    std::vector<double> u(static_cast<size_t>(p.H)), y(static_cast<size_t>(p.C * p.H));
    std::vector<double> imp(static_cast<size_t>(p.C * p.H * L));
    for (int64_t l = 0; l < L; l++) {
        std::fill(u.begin(), u.end(), l == 0 ? 1.0 : 0.0);
        s4_dplr_step_ref(y.data(), x.data(), u.data(), st, p.H);
        for (int64_t r = 0; r < p.C * p.H; r++) imp[size_t(r * L + l)] = y[size_t(r)];
    }
    S4Params q = p;
    q.Ct = Ct;
    EXPECT_LT(rel_err(fast_kernel(q, L), imp), 1e-5);
}

// ---- backward ---------------------------------------------------------------------------------------

TEST(S4DplrKernel, BackwardMatchesFiniteDifferences) {
    struct Case {
        int64_t C, H, S, N2, L, L_out;
    };
    for (const Case& cs : {Case{2, 2, 2, 3, 7, 7}, Case{2, 3, 1, 3, 8, 8}, Case{1, 1, 1, 5, 1, 1},
                           Case{1, 2, 1, 3, 2, 2}, Case{2, 1, 1, 3, 33, 20}, Case{1, 2, 2, 4, 64, 64},
                           Case{1, 1, 1, 1, 5, 5}}) {
        S4Params p = make_params(cs.C, cs.H, cs.S, cs.N2, 5 + uint64_t(cs.L), 0.01, 0.5);
        Rng rng(17 + uint64_t(cs.L));
        std::vector<float> dK(static_cast<size_t>(cs.C * cs.H * cs.L_out));
        for (auto& v : dK) v = float(rng.normal());
        std::vector<float> g_dt(static_cast<size_t>(cs.H)), g_ar(p.A_real.size()), g_ai(p.A_imag.size()),
            g_b(p.B.size()), g_p(p.P.size()), g_c(p.Ct.size());
        s4_dplr_kernel_backward(g_dt.data(), g_ar.data(), g_ai.data(), g_b.data(), g_p.data(), g_c.data(), dK.data(),
                                p.inv_dt.data(), p.A_real.data(), p.A_imag.data(), p.B.data(), p.P.data(),
                                p.Ct.data(), cs.C, cs.H, cs.S, cs.N2, cs.L, cs.L_out);
        S4ParamsD d(p);
        auto loss = [&] {
            const std::vector<double> K = ref_kernel(p, d, cs.L);
            double s = 0;
            for (int64_t r = 0; r < cs.C * cs.H; r++)
                for (int64_t l = 0; l < cs.L_out; l++) s += K[size_t(r * cs.L + l)] * dK[size_t(r * cs.L_out + l)];
            return s;
        };
        auto check = [&](std::vector<double>& param, const std::vector<float>& grad, const char* what) {
            double gmax = 0;
            for (float g : grad) gmax = std::max(gmax, double(std::fabs(g)));
            for (size_t i = 0; i < param.size(); i++) {
                const double orig = param[i], eps = 1e-6;
                param[i] = orig + eps;
                const double lp = loss();
                param[i] = orig - eps;
                const double lm = loss();
                param[i] = orig;
                const double num = (lp - lm) / (2 * eps);
                EXPECT_NEAR(grad[i], num, 1e-6 * gmax + 1e-5 * std::fabs(num) + 1e-7)
                    << what << "[" << i << "] C=" << cs.C << " H=" << cs.H << " S=" << cs.S << " N2=" << cs.N2
                    << " L=" << cs.L;
            }
        };
        check(d.inv_dt, g_dt, "inv_dt");
        check(d.A_real, g_ar, "A_real");
        check(d.A_imag, g_ai, "A_imag");
        check(d.B, g_b, "B");
        check(d.P, g_p, "P");
        check(d.Ct, g_c, "C");
    }
}

TEST(S4DplrKernel, SameResultForAnyThreadCount) {
#ifdef _OPENMP
    // Each feature is computed whole by one thread and the shared parameters' gradients are summed
    // in feature order afterwards, so 1 and 2 threads agree bit for bit (sizes above the threshold
    // at which the kernels go parallel; H odd leaves one feature without a partner).
    S4Params p = make_params(2, 5, 1, 16, 3);
    const int64_t L = 1200;
    std::vector<float> dK(size_t(p.C * p.H * L));
    Rng rng(4);
    for (auto& v : dK) v = float(rng.normal());
    std::vector<float> out[2];
    const int prev = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t == 0 ? 1 : std::max(2, prev));
        std::vector<float> g_dt(size_t(p.H)), g_ar(p.A_real.size()), g_ai(p.A_imag.size()), g_b(p.B.size()),
            g_p(p.P.size()), g_c(p.Ct.size());
        s4_dplr_kernel_backward(g_dt.data(), g_ar.data(), g_ai.data(), g_b.data(), g_p.data(), g_c.data(), dK.data(),
                                p.inv_dt.data(), p.A_real.data(), p.A_imag.data(), p.B.data(), p.P.data(),
                                p.Ct.data(), p.C, p.H, p.S, p.N2, L);
        out[t] = fast_kernel(p, L);
        for (const auto* g : {&g_dt, &g_ar, &g_ai, &g_b, &g_p, &g_c}) out[t].insert(out[t].end(), g->begin(), g->end());
    }
    omp_set_num_threads(prev);
    ASSERT_EQ(out[0].size(), out[1].size());
    for (size_t i = 0; i < out[0].size(); i++) ASSERT_EQ(out[0][i], out[1][i]) << i;
#endif
}

// ---- recurrent step ---------------------------------------------------------------------------------

TEST(S4DplrStep, MatchesConvolution) {
    for (int64_t L : {1, 2, 3, 17, 64, 100}) {
        const int64_t Bt = 2;
        S4Params p = make_params(2, 3, 3, 8, 31 + uint64_t(L), 0.01, 0.2);
        S4ParamsD d(p);
        const std::vector<double> K = ref_kernel(p, d, L);
        Rng rng(static_cast<uint64_t>(L));
        std::vector<double> u(static_cast<size_t>(Bt * p.H * L));  // (B, H, L)
        for (auto& v : u) v = rng.normal();
        // y_ref[b, c, h, t] = sum_{j <= t} K[c, h, j] u[b, h, t - j]
        std::vector<double> yref(static_cast<size_t>(Bt * p.C * p.H * L), 0.0);
        double ymax = 0;
        for (int64_t b = 0; b < Bt; b++)
            for (int64_t c = 0; c < p.C; c++)
                for (int64_t h = 0; h < p.H; h++)
                    for (int64_t t = 0; t < L; t++) {
                        double acc = 0;
                        for (int64_t j = 0; j <= t; j++)
                            acc += K[size_t((c * p.H + h) * L + j)] * u[size_t((b * p.H + h) * L + t - j)];
                        yref[size_t(((b * p.C + c) * p.H + h) * L + t)] = acc;
                        ymax = std::max(ymax, std::fabs(acc));
                    }
        S4DplrStep st;
        s4_dplr_step_setup(st, p.inv_dt.data(), p.A_real.data(), p.A_imag.data(), p.B.data(), p.P.data(),
                           p.Ct.data(), p.C, p.H, p.S, p.N2, L);
        S4DplrStepRef sr;
        s4_dplr_step_setup_ref(sr, d.inv_dt.data(), d.A_real.data(), d.A_imag.data(), d.B.data(), d.P.data(),
                               d.Ct.data(), p.C, p.H, p.S, p.N2, L);
        std::vector<std::complex<float>> x(static_cast<size_t>(Bt * p.H * p.N2), 0.0f);
        std::vector<cd> xr(static_cast<size_t>(Bt * p.H * sr.N), 0.0);
        std::vector<float> ut(static_cast<size_t>(Bt * p.H)), y(static_cast<size_t>(Bt * p.C * p.H));
        std::vector<double> utd(static_cast<size_t>(Bt * p.H)), yd(static_cast<size_t>(Bt * p.C * p.H));
        double err = 0, err_ref = 0;
        for (int64_t t = 0; t < L; t++) {
            for (int64_t i = 0; i < Bt * p.H; i++) {
                utd[size_t(i)] = u[size_t(i * L + t)];
                ut[size_t(i)] = float(utd[size_t(i)]);
            }
            s4_dplr_step(y.data(), x.data(), ut.data(), st, Bt * p.H);
            s4_dplr_step_ref(yd.data(), xr.data(), utd.data(), sr, Bt * p.H);
            for (size_t r = 0; r < y.size(); r++) {
                err = std::max(err, std::fabs(double(y[r]) - yref[r * size_t(L) + size_t(t)]));
                err_ref = std::max(err_ref, std::fabs(yd[r] - yref[r * size_t(L) + size_t(t)]));
            }
        }
        EXPECT_LT(err / ymax, 2e-5) << "L=" << L;
        EXPECT_LT(err_ref / ymax, 1e-10) << "L=" << L;
    }
}


// ---- the official code ------------------------------------------------------------------------------

TEST(S4DplrKernel, MatchesOfficialCode) {
    // Values from the official SSMKernelDPLR (state-spaces/s4 @ e757cef, models/s4/s4.py) in float64,
    // printed by scripts/fixtures/make_s4_fixture.py
    // on these parameters (its state_dict, float32-representable): H = 2, C = 2, n_ssm = 1, N = 4,
    // L = 6; dt_transform 'exp', real_transform 'exp', imag_transform 'none'. K_off = forward(L=6)
    // with l_kernel = 6 (C is C~); g_* = gradients of sum(K * dK), dK = linspace(-1, 1, 24);
    // y_off = step() in 'linear' mode from the zero state on u = linspace(-1, 1.5, 12) as (1, H, L);
    // Ct_off = C~ after _setup_C(6) on a fresh module whose C is the C below.
    const int64_t H = 2, Ch = 2, S = 1, N2 = 2, L = 6;
    // inv_dt (2, 1)
    const std::vector<float> inv_dt = {-2.31390929f, -1.80630362f};
    // A_real (1, 2)
    const std::vector<float> A_real = {-0.426367283f, -0.670690179f};
    // A_imag (1, 2)
    const std::vector<float> A_imag = {5.03816891f, 0.591100931f};
    // B (1, 1, 2, 2)
    const std::vector<float> B = {-0.42203024f, -2.01880956f, 0.407328188f, 0.671667576f};
    // P (1, 1, 2, 2)
    const std::vector<float> P = {-0.0269276202f, -1.80303597f, 0.511860847f, 0.545306325f};
    // C (2, 2, 2, 2): C~
    const std::vector<float> Ct = {
        -0.46219334f, -0.263203979f, -0.737036288f, -1.51689041f, -0.776820779f, 1.29842019f, -0.632025898f,
        -0.75364095f, -0.533067822f, -0.603009999f, 0.726388991f, -0.645704627f, 0.428037822f, -0.484379917f,
        0.0673404858f, -0.125940949f
    };
    const std::vector<double> K_off = {
        0.0319770830294, 0.0517785640226, 0.0429235501667, 0.0178715194991, -0.0140785727228, -0.046630636232,
        0.555737061947, 0.0475359291565, -0.160733342057, -0.211735750674, -0.196364136797, -0.16244153213,
        0.153154899523, 0.231606485092, 0.251980541282, 0.23784447392, 0.206031458479, 0.167701406614,
        -0.208332918315, -0.0559202525407, 0.0373700720402, 0.0734357575432, 0.0732887458503, 0.0567079513875
    };
    const std::vector<double> g_inv_dt = {-0.0686247681126, -0.0192002413174};
    const std::vector<double> g_A_real = {-0.108088491416, -0.862869971349};
    const std::vector<double> g_A_imag = {0.0505568208084, 1.33705034262};
    const std::vector<double> g_B = {-0.618747804702, 0.407441485089, 3.99480305106, -1.3881574581};
    const std::vector<double> g_P = {0.606067139968, -0.316897156065, -2.74632994596, 0.476905400679};
    const std::vector<double> g_C = {
        0.385540719122, 0.00581166758628, -0.774797769761, 0.318884654331, 0.218832240896, -0.0449472405721,
        -0.261604845947, 0.124398447686, -0.0715451322287, -0.103898623377, 0.242153942823, -0.0746038151116,
        -0.238253610455, -0.154657531535, 0.755346866636, -0.269090021756
    };
    const std::vector<double> y_off = {
        -0.0319770830294, -0.0764881281817, -0.100376304018, -0.0894570968769, -0.0425260885364, 0.0337573076944,
        0.202086204344, 0.34567587448, 0.424334884438, 0.447917258976, 0.428967549771, 0.377725120264,
        -0.153154899523, -0.349953452905, -0.514488224956, -0.607618624809, -0.614880446966, -0.536986885786,
        -0.075757424842, -0.143440452656, -0.189908874381, -0.214769303187, -0.222993245895, -0.220590035259
    };  // (1, C, H, L)
    const std::vector<double> Ct_off = {
        -0.373792797467, -0.424021320834, 0.277792463453, -0.829441074398, -0.948850365578, 1.32915775465,
        -0.133211472909, -0.659844707295, -0.181566702478, -0.750178747913, 0.608362097734, -0.323107132853,
        0.507997858319, -0.520798477526, 0.103034159357, -0.00553369355134
    };

    auto rel = [](const std::vector<float>& got, const std::vector<double>& ref) { return rel_err(got, ref); };
    std::vector<float> K(size_t(Ch * H * L));
    s4_dplr_kernel_forward(K.data(), inv_dt.data(), A_real.data(), A_imag.data(), B.data(), P.data(), Ct.data(), Ch, H,
                           S, N2, L);
    EXPECT_LT(rel(K, K_off), 1e-6);

    std::vector<float> dK(K.size()), gdt(2), gar(2), gai(2), gb(4), gp(4), gc(16);
    for (size_t i = 0; i < dK.size(); i++) dK[i] = float(-1.0 + 2.0 * double(i) / double(dK.size() - 1));
    s4_dplr_kernel_backward(gdt.data(), gar.data(), gai.data(), gb.data(), gp.data(), gc.data(), dK.data(),
                            inv_dt.data(), A_real.data(), A_imag.data(), B.data(), P.data(), Ct.data(), Ch, H, S, N2,
                            L);
    EXPECT_LT(rel(gdt, g_inv_dt), 1e-5);
    EXPECT_LT(rel(gar, g_A_real), 1e-5);
    EXPECT_LT(rel(gai, g_A_imag), 1e-5);
    EXPECT_LT(rel(gb, g_B), 1e-5);
    EXPECT_LT(rel(gp, g_P), 1e-5);
    EXPECT_LT(rel(gc, g_C), 1e-5);

    S4DplrStep st;
    s4_dplr_step_setup(st, inv_dt.data(), A_real.data(), A_imag.data(), B.data(), P.data(), Ct.data(), Ch, H, S, N2, L);
    std::vector<std::complex<float>> x(size_t(H * N2), 0.0f);
    std::vector<float> u(static_cast<size_t>(H)), y(static_cast<size_t>(Ch * H)), ys(static_cast<size_t>(Ch * H * L));
    for (int64_t t = 0; t < L; t++) {
        for (int64_t h = 0; h < H; h++) u[size_t(h)] = float(-1.0 + 2.5 * double(h * L + t) / double(H * L - 1));
        s4_dplr_step(y.data(), x.data(), u.data(), st, H);
        for (int64_t r = 0; r < Ch * H; r++) ys[size_t(r * L + t)] = y[size_t(r)];
    }
    EXPECT_LT(rel(ys, y_off), 1e-5);

    std::vector<float> Cs(Ct.size());
    s4_dplr_setup_C(Cs.data(), Ct.data(), inv_dt.data(), A_real.data(), A_imag.data(), B.data(), P.data(), Ch, H, S,
                    N2, L);
    EXPECT_LT(rel(Cs, Ct_off), 1e-6);
}
