// S5 (nn/s5.h, autograd/ops_s5.h, kernels/s5_scan.h): the blocked parallel scan equals the
// sequential one and a float64 reference (values and gradients, 1 and 2 threads, odd sizes); the
// reference backward equals finite differences; the SSM op equals a float64 recurrence written
// from the formulas; the step loop and prefill + steps equal the parallel mode; gradients of the
// input and every parameter against finite differences (causal and bidirectional); the HiPPO-N
// eigen-decomposition; official names, shapes, tags and init; the mixer's config and parameter
// count; and the official code re-implemented in PyTorch (tests/data/s5_fixture.json).
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <fstream>
#include <map>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "autograd/ops_s5.h"
#include "gradcheck.h"
#include "kernels/s5_scan.h"
#include "models/mixer.h"
#include "nn/s5.h"

using namespace hippo;
using hippo::test::randn;
using hippo::test::with_threads;
using cd = std::complex<double>;

namespace hippo {
// models/mixers/s5.cpp (the registry lists them once they are registered).
ConfigBlock s5_cfg_block();
MixerDef s5_mixer();
}  // namespace hippo

namespace {

// max |got - want| / max |want|
template <class A, class B>
double rel_err(const A& got, const B& want) {
    double scale = 1e-30, err = 0;
    for (size_t i = 0; i < want.size(); i++) {
        scale = std::max(scale, std::fabs(double(want[i])));
        err = std::max(err, std::fabs(double(got[i]) - double(want[i])));
    }
    return err / scale;
}

std::vector<float> random_floats(size_t n, Rng& rng) {
    std::vector<float> v(n);
    for (auto& x : v) x = float(rng.normal());
    return v;
}

// a (2, P2) with |a| in [0.5, 0.99] and any phase.
std::vector<float> random_a(int64_t P2, Rng& rng, double rmin = 0.5, double rmax = 0.99) {
    std::vector<float> a(size_t(2 * P2));
    for (int64_t p = 0; p < P2; p++) {
        const double r = rmin + (rmax - rmin) * rng.uniform_double(), th = 2 * M_PI * rng.uniform_double();
        a[size_t(p)] = float(r * std::cos(th));
        a[size_t(P2 + p)] = float(r * std::sin(th));
    }
    return a;
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

Tensor time_slice(const Tensor& u, int64_t t) { return u.select(1, t).contiguous(); }

S5Config small_cfg(int64_t H, int64_t P, int64_t J) {
    S5Config c;
    c.d_model = H;
    c.d_state = P;
    c.blocks = J;
    c.dt_min = 0.05;  // fast dynamics, so that short sequences exercise the state
    c.dt_max = 0.5;
    c.min_chunk = 1;  // the blocked scan whenever there are 2 threads
    return c;
}

}  // namespace

// ---- the scan -------------------------------------------------------------------------------

TEST(S5Scan, ParallelEqualsSequentialAndFloat64) {
    // B P2 in {7, 14, 15}: never a multiple of a vector width. With 2 threads and min_chunk 1,
    // L >= 3 is cut into 3 chunks for B = 1, 3 (B = 2 goes by rows); min_chunk 0 (automatic)
    // keeps these short rows sequential.
    Rng rng(1);
    for (int64_t L : {1, 2, 3, 37, 1000})
        for (int64_t Bn : {1, 2, 3})
            for (int rev = 0; rev < 2; rev++) {
                const int64_t P2 = Bn == 3 ? 5 : 7;
                SCOPED_TRACE("L " + std::to_string(L) + " B " + std::to_string(Bn) + " P2 " + std::to_string(P2) +
                             (rev ? " reverse" : ""));
                const S5ScanShape s{Bn, L, P2};
                const size_t N = size_t(Bn * L * 2 * P2), NS = size_t(Bn * 2 * P2), W = size_t(2 * P2);
                std::vector<float> a = random_a(P2, rng), u = random_floats(N, rng), gx = random_floats(N, rng);
                const bool with_x0 = (L + Bn) % 2 == 1;  // alternate: from a state / from zero
                std::vector<float> x0 = random_floats(NS, rng), gl = random_floats(NS, rng);
                const float* x0p = with_x0 ? x0.data() : nullptr;
                const float* glp = with_x0 ? nullptr : gl.data();
                // float64 reference
                std::vector<double> xd(N), gud(N), gad(W), g0d(NS);
                std::vector<double> ad = to_double(a), ud = to_double(u), x0d = to_double(x0), gxd = to_double(gx),
                                    gld = to_double(gl);
                s5_scan_ref(xd.data(), ad.data(), ud.data(), with_x0 ? x0d.data() : nullptr, s, rev);
                s5_scan_backward_ref(gud.data(), gad.data(), g0d.data(), gxd.data(), with_x0 ? nullptr : gld.data(),
                                     xd.data(), ad.data(), with_x0 ? x0d.data() : nullptr, s, rev);
                std::vector<std::vector<float>> xs, gus, gas, g0s;
                for (int threads : {1, 2})
                    for (int64_t min_chunk : {int64_t(1), int64_t(0)})
                        with_threads(threads, [&] {
                            S5ScanOptions o;
                            o.reverse = rev;
                            o.min_chunk = min_chunk;
                            std::vector<float> x(N), gu(N), ga(W), g0(NS);
                            s5_scan_forward(x.data(), a.data(), u.data(), x0p, s, o);
                            s5_scan_backward(gu.data(), ga.data(), g0.data(), gx.data(), glp, x.data(), a.data(), x0p,
                                             s, o);
                            xs.push_back(x);
                            gus.push_back(gu);
                            gas.push_back(ga);
                            g0s.push_back(g0);
                        });
                for (size_t i = 0; i < xs.size(); i++) {
                    SCOPED_TRACE("run " + std::to_string(i));
                    // float rounding only (ga sums B L products that partly cancel)
                    EXPECT_LT(rel_err(xs[i], xd), 2e-6);
                    EXPECT_LT(rel_err(gus[i], gud), 2e-6);
                    EXPECT_LT(rel_err(gas[i], gad), 5e-6);
                    EXPECT_LT(rel_err(g0s[i], g0d), 2e-6);
                    // 2 threads against the sequential recurrence on 1 thread
                    EXPECT_LT(rel_err(xs[i], xs[0]), 2e-6);
                    EXPECT_LT(rel_err(gus[i], gus[0]), 2e-6);
                    EXPECT_LT(rel_err(gas[i], gas[0]), 5e-6);
                    EXPECT_LT(rel_err(g0s[i], g0s[0]), 2e-6);
                }
                // A fixed thread count repeats itself bit for bit.
                with_threads(2, [&] {
                    S5ScanOptions o;
                    o.reverse = rev;
                    o.min_chunk = 1;
                    std::vector<float> x(N);
                    s5_scan_forward(x.data(), a.data(), u.data(), x0p, s, o);
                    EXPECT_EQ(x, xs[2]);
                });
            }
}

TEST(S5Scan, ReferenceBackwardEqualsFiniteDifferences) {
    // loss = sum gx . x + sum g_last . x_last in double; every element of a, u and x0.
    Rng rng(2);
    for (int rev = 0; rev < 2; rev++) {
        const int64_t Bn = 2, L = 5, P2 = 3, W = 2 * P2;
        const S5ScanShape s{Bn, L, P2};
        const size_t N = size_t(Bn * L * W), NS = size_t(Bn * W);
        std::vector<double> a = to_double(random_a(P2, rng)), u = to_double(random_floats(N, rng)),
                            x0 = to_double(random_floats(NS, rng)), gx = to_double(random_floats(N, rng)),
                            gl = to_double(random_floats(NS, rng));
        auto loss = [&]() {
            std::vector<double> x(N);
            s5_scan_ref(x.data(), a.data(), u.data(), x0.data(), s, rev);
            double l = 0;
            for (size_t i = 0; i < N; i++) l += gx[i] * x[i];
            for (int64_t b = 0; b < Bn; b++) {
                const double* last = x.data() + (b * L + (rev ? 0 : L - 1)) * W;
                for (int64_t i = 0; i < W; i++) l += gl[size_t(b * W + i)] * last[i];
            }
            return l;
        };
        std::vector<double> x(N), gu(N), ga(static_cast<size_t>(W)), g0(NS);
        s5_scan_ref(x.data(), a.data(), u.data(), x0.data(), s, rev);
        s5_scan_backward_ref(gu.data(), ga.data(), g0.data(), gx.data(), gl.data(), x.data(), a.data(), x0.data(), s, rev);
        const double eps = 1e-6;
        auto fd = [&](double& v) {
            const double keep = v;
            v = keep + eps;
            const double lp = loss();
            v = keep - eps;
            const double lm = loss();
            v = keep;
            return (lp - lm) / (2 * eps);
        };
        for (size_t i = 0; i < a.size(); i++) EXPECT_NEAR(ga[i], fd(a[i]), 1e-6) << "a " << i;
        for (size_t i = 0; i < N; i++) EXPECT_NEAR(gu[i], fd(u[i]), 1e-6) << "u " << i;
        for (size_t i = 0; i < NS; i++) EXPECT_NEAR(g0[i], fd(x0[i]), 1e-6) << "x0 " << i;
    }
}

TEST(S5Scan, LongRowsKeepTheCarriesAccurate) {
    // |a| = 1 - 1e-4 over L = 20001 in 3 chunks: the carries take a^6667, computed in double.
    Rng rng(3);
    const int64_t L = 20001, P2 = 3;
    const S5ScanShape s{1, L, P2};
    std::vector<float> a = random_a(P2, rng, 0.9999, 0.9999), u = random_floats(size_t(L * 2 * P2), rng);
    std::vector<double> xd(u.size());
    std::vector<double> ad = to_double(a), ud = to_double(u);
    s5_scan_ref(xd.data(), ad.data(), ud.data(), nullptr, s);
    with_threads(2, [&] {
        S5ScanOptions o;
        o.min_chunk = 1;
        std::vector<float> x(u.size());
        s5_scan_forward(x.data(), a.data(), u.data(), nullptr, s, o);
        EXPECT_LT(rel_err(x, xd), 1e-5);  // the sequential float scan: about 3e-6
    });
}

// ---- HiPPO-N --------------------------------------------------------------------------------

TEST(S5HippoN, EigenDecompositionReconstructsTheNormalPart) {
    for (int64_t N : {2, 4, 8, 16, 64}) {
        SCOPED_TRACE("N " + std::to_string(N));
        std::vector<double> S = hippo_legs_normal(N);
        std::vector<cd> lam(static_cast<size_t>(N)), V(size_t(N * N));
        hippo_n_eig(N, lam.data(), V.data());
        double err = 0, unit = 0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < N; j++) {
                cd s(0.0), vv(0.0);
                for (int64_t k = 0; k < N; k++) {
                    s += V[size_t(i * N + k)] * lam[size_t(k)] * std::conj(V[size_t(j * N + k)]);
                    vv += std::conj(V[size_t(k * N + i)]) * V[size_t(k * N + j)];
                }
                err = std::max(err, std::abs(s - S[size_t(i * N + j)]));
                unit = std::max(unit, std::abs(vv - (i == j ? 1.0 : 0.0)));
            }
        EXPECT_LT(err, 1e-10);
        EXPECT_LT(unit, 1e-12);
        // Re = -1/2; Im ascending in +- pairs: the kept first half is the negative one.
        for (int64_t n = 0; n < N; n++) {
            EXPECT_NEAR(lam[size_t(n)].real(), -0.5, 1e-15);
            EXPECT_NEAR(lam[size_t(n)].imag(), -lam[size_t(N - 1 - n)].imag(), 1e-9 * N);
            if (n > 0) {
                EXPECT_LE(lam[size_t(n - 1)].imag(), lam[size_t(n)].imag());
            }
            if (n < N / 2) {
                EXPECT_LT(lam[size_t(n)].imag(), 0.0);
            }
        }
    }
    // A general Hermitian matrix too.
    Rng rng(4);
    const int64_t n = 7;
    std::vector<cd> A(size_t(n * n));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            const cd v = i == j ? cd(rng.normal(), 0) : cd(rng.normal(), rng.normal());
            A[size_t(i * n + j)] = v;
            A[size_t(j * n + i)] = std::conj(v);
        }
    std::vector<double> w(static_cast<size_t>(n));
    std::vector<cd> V(size_t(n * n));
    hermitian_eigh(n, A.data(), w.data(), V.data());
    double err = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            cd s(0.0);
            for (int64_t k = 0; k < n; k++) s += V[size_t(i * n + k)] * w[size_t(k)] * std::conj(V[size_t(j * n + k)]);
            err = std::max(err, std::abs(s - A[size_t(i * n + j)]));
        }
    EXPECT_LT(err, 1e-12);
}

// ---- the SSM op -----------------------------------------------------------------------------

namespace {

// y (B, L, H) in double from the formulas, forward (and backward in time when bidirectional).
std::vector<double> reference_ssm(const S5& m, const Tensor& u) {
    const int64_t Bn = u.size(0), L = u.size(1), H = u.size(2), P2 = m.P2();
    const bool bi = m.config().bidirectional;
    std::vector<cd> ab(static_cast<size_t>(P2)), Bb(size_t(P2 * H));
    for (int64_t p = 0; p < P2; p++) {
        double re = m.Lambda_re.data()[p];
        if (m.config().clip_eigs) re = std::min(re, -1e-4);
        const cd lam(re, double(m.Lambda_im.data()[p]));
        const double dt = m.config().step_rescale * std::exp(double(m.log_step.data()[p]));
        ab[size_t(p)] = std::exp(lam * dt);
        for (int64_t h = 0; h < H; h++) {
            const float* b = m.B.data() + (p * H + h) * 2;
            Bb[size_t(p * H + h)] = (ab[size_t(p)] - 1.0) / lam * cd(b[0], b[1]);
        }
    }
    auto Cd = [&](int dir, int64_t h, int64_t p) {
        const Tensor& C = dir == 1 && m.C2.defined() ? m.C2 : m.C;
        const int64_t w = C.size(1), off = dir == 1 && !m.C2.defined() ? P2 : 0;
        const float* c = C.data() + (h * w + off + p) * 2;
        return cd(c[0], c[1]);
    };
    std::vector<double> y(size_t(Bn * L * H), 0.0);
    for (int dir = 0; dir < (bi ? 2 : 1); dir++)
        for (int64_t b = 0; b < Bn; b++) {
            std::vector<cd> x(size_t(P2), cd(0.0));
            for (int64_t k = 0; k < L; k++) {
                const int64_t t = dir == 0 ? k : L - 1 - k;
                const float* ut = u.data() + (b * L + t) * H;
                for (int64_t p = 0; p < P2; p++) {
                    cd s = ab[size_t(p)] * x[size_t(p)];
                    for (int64_t h = 0; h < H; h++) s += Bb[size_t(p * H + h)] * double(ut[h]);
                    x[size_t(p)] = s;
                }
                for (int64_t h = 0; h < H; h++) {
                    cd s(0.0);
                    for (int64_t p = 0; p < P2; p++) s += Cd(dir, h, p) * x[size_t(p)];
                    y[size_t((b * L + t) * H + h)] += 2.0 * s.real() + (dir == 0 ? double(m.D.data()[h]) * ut[h] : 0.0);
                }
            }
        }
    return y;
}

}  // namespace

TEST(S5Ssm, EqualsFloat64RecurrenceOnEveryPath) {
    struct Case { bool bi; std::string C_init; bool clip; double rescale; };
    for (const Case& cs : {Case{false, "trunc_standard_normal", false, 1.0}, Case{false, "lecun_normal", true, 0.7},
                           Case{true, "trunc_standard_normal", false, 1.0}, Case{true, "complex_normal", false, 1.3}}) {
        for (int64_t L : {1, 2, 17, 200}) {
            SCOPED_TRACE("bidirectional " + std::to_string(cs.bi) + " " + cs.C_init + " L " + std::to_string(L));
            Rng rng(5);
            S5Config c = small_cfg(5, 14, 1);  // P2 = 7, one HiPPO-N block of 14
            c.bidirectional = cs.bi;
            c.C_init = cs.C_init;
            c.clip_eigs = cs.clip;
            c.step_rescale = cs.rescale;
            S5 m(c, rng);
            if (cs.clip) m.Lambda_re.data()[2] = 0.25f;  // clipped to -1e-4
            Tensor u = randn({3, L, 5}, rng);
            std::vector<double> ref = reference_ssm(m, u);
            NoGradGuard ng;
            for (int threads : {1, 2})
                with_threads(threads, [&] { EXPECT_LT(rel_err(m.ssm(u).to_vector(), ref), 2e-6) << threads; });
        }
    }
}

TEST(S5Ssm, DiscretisationHasNoCancellationForTinyLambdaDelta) {
    // B_bar = (e^(Lambda dt) - 1) / Lambda B_tilde -> dt B_tilde (1 + Lambda dt / 2) as Lambda dt -> 0.
    Tensor Lr = Tensor::from_vector({2}, {-1e-9f, -3e-6f}), Li = Tensor::from_vector({2}, {0.0f, 2e-6f});
    Tensor Bp = Tensor::from_vector({2, 1, 2}, {1.0f, 0.5f, -0.25f, 2.0f});
    Tensor C = Tensor::from_vector({1, 2, 2}, {1.0f, 0.0f, 1.0f, 0.0f});
    Tensor ls = Tensor::from_vector({2, 1}, {float(std::log(1e-3)), float(std::log(2e-5))});
    S5Tables t = s5_discretize(Lr, Li, Bp, C, Tensor(), ls, {});
    const double dts[2] = {1e-3, 2e-5};
    const cd lams[2] = {cd(-1e-9, 0), cd(-3e-6, 2e-6)}, bt[2] = {cd(1.0, 0.5), cd(-0.25, 2.0)};
    for (int p = 0; p < 2; p++) {
        const double dt = std::exp(double(float(std::log(dts[p]))));
        const cd z = lams[p] * dt, want = dt * (1.0 + z / 2.0 + z * z / 6.0) * bt[p];
        EXPECT_NEAR(t.WB[size_t(p)], want.real(), 1e-7 * std::abs(want));
        EXPECT_NEAR(t.WB[size_t(2 + p)], want.imag(), 1e-7 * std::abs(want));
    }
}

// ---- the layer ------------------------------------------------------------------------------

TEST(S5Layer, StepLoopAndPrefillEqualParallel) {
    const int64_t H = 5, Bn = 2, L = 29;
    for (const char* act : {"half_glu1", "gelu"}) {
        Rng rng(6);
        S5Config c = small_cfg(H, 12, 3);  // three HiPPO-N blocks of 4
        c.activation = act;
        c.clip_eigs = true;
        S5 m(c, rng);
        Tensor u = randn({Bn, L, H}, rng);
        NoGradGuard ng;
        with_threads(2, [&] {
            Tensor y = m.forward(u);
            S5State st = m.new_state(Bn);
            for (int64_t t = 0; t < L; t++)
                EXPECT_LT(test::max_rel_diff(m.step(time_slice(u, t), st), time_slice(y, t)), 1e-5) << "step t=" << t;
            for (int64_t split : {1, 2, 16, 28}) {
                S5State st2 = m.new_state(Bn);
                Tensor yp = m.prefill(u.slice(1, 0, split).contiguous(), st2);
                EXPECT_LT(test::max_rel_diff(yp, y.slice(1, 0, split).contiguous()), 1e-5);
                // a second prefill continues from the state
                const int64_t mid = std::min<int64_t>(split + 5, L);
                if (mid > split) {
                    Tensor yq = m.prefill(u.slice(1, split, mid).contiguous(), st2);
                    EXPECT_LT(test::max_rel_diff(yq, y.slice(1, split, mid).contiguous()), 1e-5);
                }
                for (int64_t t = mid; t < L; t++)
                    EXPECT_LT(test::max_rel_diff(m.step(time_slice(u, t), st2), time_slice(y, t)), 1e-5)
                        << "split " << split << " t=" << t;
            }
        });
    }
    Rng rng(7);
    S5Config c = small_cfg(H, 12, 3);
    c.bidirectional = true;
    S5 bi(c, rng);
    EXPECT_THROW(bi.new_state(1), Error);
}

TEST(S5Layer, GradientsMatchFiniteDifferences) {
    // One thread: hundreds of tiny forwards, where a loaded machine makes parallel regions cost
    // milliseconds; the blocked scan's gradients are checked above (S5Scan) and in the fixture.
    struct Case { bool bi; std::string act, C_init; bool clip; int64_t Bn; };
    for (const Case& cs : {Case{false, "half_glu1", "trunc_standard_normal", true, 1},
                           Case{true, "full_glu", "trunc_standard_normal", false, 2},
                           Case{true, "gelu", "complex_normal", false, 1},
                           Case{false, "half_glu2", "lecun_normal", false, 3}}) {
        SCOPED_TRACE(std::string(cs.bi ? "bidirectional " : "causal ") + cs.act + " " + cs.C_init);
        Rng rng(8);
        S5Config c = small_cfg(3, 6, 1);  // H 3, P2 3
        c.bidirectional = cs.bi;
        c.activation = cs.act;
        c.C_init = cs.C_init;
        c.clip_eigs = cs.clip;
        S5 m(c, rng);
        if (cs.clip) m.Lambda_re.data()[1] = 0.2f;  // clipped: zero gradient, and stays clipped under eps
        Tensor u = randn({cs.Bn, 7, 3}, rng, 0.7f);
        std::vector<Tensor> inputs{u};
        for (auto& [name, p] : m.named_parameters()) inputs.push_back(p);
        test::GradCheckOptions opt;
        opt.eps = 1e-3f;
        opt.atol = 3e-3;
        opt.rtol = 3e-2;
        opt.max_checks = 24;
        with_threads(1, [&] {
            test::expect_gradients_match([&](const std::vector<Tensor>& in) { return m.forward(in[0]); }, inputs, opt);
        });
    }
}

TEST(S5Layer, InitialStateGetsItsGradient) {
    Rng rng(9);
    S5 m(small_cfg(4, 8, 2), rng);
    Tensor u = randn({2, 9, 4}, rng, 0.7f), x0 = randn({2, 2, 4}, rng, 0.5f);
    std::vector<Tensor> inputs{u, x0, m.Lambda_re, m.B, m.log_step};
    test::GradCheckOptions opt;
    opt.eps = 1e-3f;
    opt.atol = 3e-3;
    opt.rtol = 3e-2;
    with_threads(1, [&] {
        test::expect_gradients_match([&](const std::vector<Tensor>& in) { return m.ssm(in[0], in[1]); }, inputs, opt);
    });
}

TEST(S5Layer, OfficialNamesShapesAndTags) {
    auto names = [](const S5& m) {
        std::map<std::string, std::string> got;
        for (auto& [name, t] : m.named_parameters()) got[name] = t.shape().str();
        return got;
    };
    Rng rng(10);
    S5Config c = small_cfg(5, 12, 2);
    S5 causal(c, rng);
    std::map<std::string, std::string> want = {{"seq.Lambda_re", "(6)"},       {"seq.Lambda_im", "(6)"},
                                               {"seq.B", "(6, 5, 2)"},         {"seq.C", "(5, 6, 2)"},
                                               {"seq.D", "(5)"},               {"seq.log_step", "(6, 1)"},
                                               {"out2.weight", "(5, 5)"},      {"out2.bias", "(5)"}};
    EXPECT_EQ(names(causal), want);
    std::vector<std::string> order;
    for (auto& [name, t] : causal.named_parameters()) order.push_back(name);
    EXPECT_EQ(order, (std::vector<std::string>{"seq.Lambda_re", "seq.Lambda_im", "seq.B", "seq.C", "seq.D",
                                               "seq.log_step", "out2.weight", "out2.bias"}));
    auto groups = causal.parameter_groups();
    for (size_t i = 0; i < order.size(); i++) {
        const bool ssm = order[i] == "seq.Lambda_re" || order[i] == "seq.Lambda_im" || order[i] == "seq.B" ||
                         order[i] == "seq.log_step";
        EXPECT_EQ(groups[i] == ParamTag::ssm, ssm) << order[i];
    }
    c.bidirectional = true;
    c.activation = "full_glu";
    S5 bi(c, rng);
    want.erase("seq.C");
    want["seq.C1"] = "(5, 6, 2)";
    want["seq.C2"] = "(5, 6, 2)";
    want["out1.weight"] = "(5, 5)";
    want["out1.bias"] = "(5)";
    EXPECT_EQ(names(bi), want);
    c.C_init = "complex_normal";
    c.activation = "gelu";
    S5 cn(c, rng);
    EXPECT_EQ(names(cn), (std::map<std::string, std::string>{{"seq.Lambda_re", "(6)"}, {"seq.Lambda_im", "(6)"},
                                                             {"seq.B", "(6, 5, 2)"}, {"seq.C", "(5, 12, 2)"},
                                                             {"seq.D", "(5)"}, {"seq.log_step", "(6, 1)"}}));
}

TEST(S5Layer, InitialisationIsTheOfficialOne) {
    Rng rng(11);
    S5Config c;
    c.d_model = 16;
    c.d_state = 64;
    c.blocks = 4;  // blocks of 16, 8 kept modes each
    S5 m(c, rng);
    std::vector<cd> lam(16), V(256);
    hippo_n_eig(16, lam.data(), V.data());
    for (int64_t p = 0; p < 32; p++) {
        EXPECT_NEAR(m.Lambda_re.data()[p], -0.5f, 1e-7);
        EXPECT_NEAR(m.Lambda_im.data()[p], lam[size_t(p % 8)].imag(), 1e-5 * std::fabs(lam[size_t(p % 8)].imag()));
        EXPECT_GE(m.log_step.data()[p], std::log(1e-3) - 1e-5);
        EXPECT_LE(m.log_step.data()[p], std::log(1e-1) + 1e-5);
    }
    // B = 2 Re(V B_tilde) per block is real lecun_normal: variance 1 / P, no entry beyond 2 sigma.
    double s2 = 0, worst = 0;
    for (int64_t j = 0; j < 4; j++)
        for (int64_t r = 0; r < 16; r++)
            for (int64_t h = 0; h < 16; h++) {
                cd s(0.0);
                for (int64_t i = 0; i < 8; i++) {
                    const float* b = m.B.data() + ((j * 8 + i) * 16 + h) * 2;
                    s += V[size_t(r * 16 + i)] * cd(b[0], b[1]);
                }
                const double v = 2.0 * s.real();
                s2 += v * v;
                worst = std::max(worst, std::fabs(v));
            }
    const double sd = std::sqrt(s2 / (64.0 * 16.0));
    EXPECT_NEAR(sd, 1.0 / 8.0, 0.015);
    EXPECT_LE(worst, 2.0 / 0.87962566103423978 / 8.0 + 1e-5);
    // out2: flax Dense, zero bias.
    for (float b : m.out2->bias.to_vector()) EXPECT_EQ(b, 0.0f);
}

// ---- the mixer ------------------------------------------------------------------------------

TEST(S5Mixer, ConfigAndParameterCount) {
    const ConfigBlock blk = s5_cfg_block();
    EXPECT_EQ(blk.key, "s5_cfg");
    const MixerDef d = s5_mixer();
    EXPECT_EQ(d.name, "s5");
    EXPECT_FALSE(d.default_mlp);
    auto config = [&](const nlohmann::json& b, const std::string& arch = "lm") {
        ModelConfig c;
        c.arch = arch;
        c.d_model = 12;
        c.blocks["s5_cfg"] = blk.schema.parse(b, "test s5_cfg");
        return c;
    };
    for (const nlohmann::json& b :
         {nlohmann::json::object(), nlohmann::json{{"d_state", 12}, {"blocks", 3}, {"activation", "full_glu"}},
          nlohmann::json{{"d_state", 8}, {"blocks", 1}, {"activation", "gelu"}, {"C_init", "complex_normal"}},
          nlohmann::json{{"d_state", 16}, {"blocks", 2}, {"activation", "half_glu2"}, {"clip_eigs", true}}}) {
        ModelConfig c = config(b);
        d.validate(c, "test");
        Rng rng(12);
        auto mixer = d.make(c, 0, rng);
        EXPECT_EQ(d.param_count(c), mixer->module()->num_parameters()) << b.dump();
        EXPECT_TRUE(mixer->has_recurrent_mode());
        Tensor x = randn({1, 5, 12}, rng);
        NoGradGuard ng;
        auto st = mixer->new_state(1, 5);
        Tensor y = mixer->forward(x, 0, false);
        Tensor yp = mixer->prefill(x, *st);
        EXPECT_LT(test::max_rel_diff(y, yp), 1e-6);
    }
    // bidirectional: counted, built for a non-causal architecture, refused in an LM.
    ModelConfig bc = config({{"d_state", 8}, {"blocks", 2}, {"bidirectional", true}}, "classifier");
    Rng rng(13);
    auto bm = d.make(bc, 0, rng);
    EXPECT_EQ(d.param_count(bc), bm->module()->num_parameters());
    EXPECT_FALSE(bm->has_recurrent_mode());
    EXPECT_THROW(d.validate(config({{"bidirectional", true}}), "test"), Error);
    EXPECT_THROW(d.validate(config({{"d_state", 12}, {"blocks", 4}}), "test"), Error);  // odd block size
    EXPECT_THROW(d.validate(config({{"d_state", 12}, {"blocks", 5}}), "test"), Error);
    EXPECT_THROW(d.validate(config({{"conj_sym", false}}), "test"), Error);
    EXPECT_THROW(d.validate(config({{"dt_min", 0.5}}), "test"), Error);
    EXPECT_THROW(blk.schema.parse({{"activation", "relu"}}, "test"), Error);
}

// ---- against the official code (tests/data/s5_fixture.json, scripts/fixtures/make_s5_fixture.py:
// lindermanlab/S5's S5SSM and SequenceLayer activations re-implemented in PyTorch, float64) ------

namespace {
std::vector<float> floats(const nlohmann::json& j) { return j.get<std::vector<float>>(); }
std::vector<double> doubles(const nlohmann::json& j) { return j.get<std::vector<double>>(); }
}  // namespace

TEST(S5Fixture, MatchesTheOfficialCode) {
    std::ifstream f(std::string(HIPPO_TEST_DATA) + "/s5_fixture.json");
    ASSERT_TRUE(f) << "missing tests/data/s5_fixture.json (scripts/fixtures/make_s5_fixture.py makes it)";
    nlohmann::json fx = nlohmann::json::parse(f);
    ASSERT_EQ(fx["cases"].size(), 4u);
    for (auto& c : fx["cases"]) {
        const int64_t H = c["d_model"], P2 = c["P2"], Bn = c["B"], L = c["L"];
        S5Config cfg;
        cfg.d_model = H;
        cfg.d_state = 2 * P2;
        cfg.blocks = 1;
        cfg.activation = c["activation"];
        cfg.bidirectional = c["bidirectional"];
        cfg.clip_eigs = c["clip_eigs"];
        cfg.C_init = c["C_init"];
        cfg.step_rescale = c["step_rescale"];
        cfg.min_chunk = 1;
        const std::string tag = cfg.activation + (cfg.bidirectional ? " bidirectional" : " causal") + ": ";
        Rng rng(0);
        S5 m(cfg, rng);
        {
            NoGradGuard ng;
            ASSERT_EQ(m.named_parameters().size(), c["params"].size()) << tag;
            for (auto& [name, p] : m.named_parameters()) {
                ASSERT_TRUE(c["params"].contains(name)) << tag << name;
                auto& e = c["params"][name];
                ASSERT_EQ(p.shape().vec(), e["shape"].get<std::vector<int64_t>>()) << tag << name;
                p.copy_from(Tensor::from_vector(p.shape(), floats(e["data"])));
            }
        }
        with_threads(2, [&] {
            Tensor u = Tensor::from_vector({Bn, L, H}, floats(c["u"])).set_requires_grad();
            Tensor y = m.ssm(u);
            Tensor out = m.activate(y);
            EXPECT_LT(rel_err(y.to_vector(), doubles(c["y"])), 2e-6) << tag << "y";
            EXPECT_LT(rel_err(out.to_vector(), doubles(c["out"])), 2e-6) << tag << "out";
            out.backward(Tensor::from_vector(out.shape(), floats(c["g"])));
            EXPECT_LT(rel_err(u.grad().to_vector(), doubles(c["du"])), 1e-5) << tag << "du";
            for (auto& [name, p] : m.named_parameters())
                EXPECT_LT(rel_err(p.grad().to_vector(), doubles(c["grads"][name])), 1e-5) << tag << name;
        });
    }
    // HiPPO-N eigenvalues against the official eigh.
    for (auto& [key, e] : fx["hippo"].items()) {
        const int64_t N = std::stoll(key);
        std::vector<cd> lam(static_cast<size_t>(N)), V(size_t(N * N));
        hippo_n_eig(N, lam.data(), V.data());
        std::vector<double> re = doubles(e["Lambda_re"]), im = doubles(e["Lambda_im"]);
        for (int64_t n = 0; n < N; n++) {
            EXPECT_NEAR(lam[size_t(n)].real(), re[size_t(n)], 1e-12) << "N " << N;
            EXPECT_NEAR(lam[size_t(n)].imag(), im[size_t(n)], 1e-10 * N) << "N " << N;
        }
    }
}
