// The SSM long convolution from S4D parameters: direct, one-FFT and chunked state-passing paths
// agree in forward and in every gradient (inputs and parameters), with chunk lengths that do and
// do not divide L; the final state matches its definition; and the gradients match finite
// differences.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <vector>

#include "common/rng.h"
#include "gradcheck.h"
#include "kernels/fftconv.h"
#include "kernels/ssm_conv.h"

using namespace hippo;

namespace {

struct Problem {
    FftConvShape s;
    int64_t M;
    Discretization disc;
    std::vector<float> u, v, q, dy, log_dt, iar, aim, B, C, D;

    Problem(FftConvShape s_, int64_t M_, Discretization d, uint64_t seed) : s(s_), M(M_), disc(d) {
        Rng rng(seed);
        auto randv = [&](size_t n, double sc) {
            std::vector<float> x(n);
            for (auto& e : x) e = float(rng.normal() * sc);
            return x;
        };
        size_t total = size_t(s.B * s.L * s.C);
        int64_t Hk = s.kernels();
        u = randv(total, 1), v = randv(total, 1), q = randv(total, 1), dy = randv(total, 1);
        for (int64_t h = 0; h < Hk; h++) log_dt.push_back(float(std::log(1e-3) + rng.uniform_double() * std::log(100.0)));
        for (int64_t i = 0; i < Hk * M; i++) {
            iar.push_back(float(std::log(0.5) + 0.2 * rng.normal()));
            aim.push_back(float(M_PI * double(i % M)));
            B.push_back(float(1 + 0.1 * rng.normal()));
            B.push_back(float(0.1 * rng.normal()));
            C.push_back(float(rng.normal() * 0.7));
            C.push_back(float(rng.normal() * 0.7));
        }
        D = randv(size_t(Hk), 1);
    }
    SsmParams params() const { return {log_dt.data(), iar.data(), aim.data(), B.data(), C.data(), D.data(), M, disc}; }
};

struct Out {
    std::vector<float> y, du, dv, dq, g_log_dt, g_iar, g_aim, gB, gC, gD;
};

Out run(Problem& pr, int64_t chunk, SsmConvPath path, bool gates) {
    const FftConvShape& s = pr.s;
    size_t total = size_t(s.B * s.L * s.C);
    int64_t Hk = s.kernels();
    Out o;
    o.y.resize(total);
    o.du.resize(total);
    o.dv.resize(total);
    o.dq.resize(total);
    o.g_log_dt.resize(size_t(Hk));
    o.g_iar.resize(size_t(Hk * pr.M));
    o.g_aim.resize(size_t(Hk * pr.M));
    o.gB.resize(size_t(2 * Hk * pr.M));
    o.gC.resize(size_t(2 * Hk * pr.M));
    o.gD.resize(size_t(Hk));
    const float* v = gates ? pr.v.data() : nullptr;
    const float* q = gates ? pr.q.data() : nullptr;
    SsmParams p = pr.params();
    ssm_conv_forward(o.y.data(), pr.u.data(), v, q, p, s, chunk, nullptr, path);
    SsmParamGrads g{o.g_log_dt.data(), o.g_iar.data(), o.g_aim.data(), o.gB.data(), o.gC.data(), o.gD.data()};
    ssm_conv_backward(o.du.data(), gates ? o.dv.data() : nullptr, gates ? o.dq.data() : nullptr, g, pr.dy.data(),
                      pr.u.data(), v, q, p, s, chunk, path);
    return o;
}


void expect_same(const Out& a, const Out& r, bool gates, const std::string& what, double tol = 3e-5) {
    EXPECT_LT(test::max_rel_diff(a.y, r.y), tol) << "y " << what;
    EXPECT_LT(test::max_rel_diff(a.du, r.du), tol) << "du " << what;
    if (gates) {
        EXPECT_LT(test::max_rel_diff(a.dv, r.dv), tol) << "dv " << what;
        EXPECT_LT(test::max_rel_diff(a.dq, r.dq), tol) << "dq " << what;
    }
    EXPECT_LT(test::max_rel_diff(a.g_log_dt, r.g_log_dt), tol) << "log_dt " << what;
    EXPECT_LT(test::max_rel_diff(a.g_iar, r.g_iar), tol) << "inv_A_real " << what;
    EXPECT_LT(test::max_rel_diff(a.g_aim, r.g_aim), tol) << "A_imag " << what;
    EXPECT_LT(test::max_rel_diff(a.gB, r.gB), tol) << "B " << what;
    EXPECT_LT(test::max_rel_diff(a.gC, r.gC), tol) << "C " << what;
    EXPECT_LT(test::max_rel_diff(a.gD, r.gD), tol) << "D " << what;
}

}  // namespace

class SsmConvPaths : public ::testing::TestWithParam<Discretization> {};

TEST_P(SsmConvPaths, ChunkedEqualsFftEqualsDirect) {
    uint64_t seed = 1;
    for (int64_t L : {1, 2, 3, 17, 64, 100, 257})
        for (int gates = 0; gates < 2; gates++) {
            Problem pr({2, L, 5, 1}, 4, GetParam(), seed++);
            Out ref = run(pr, L, SsmConvPath::direct, gates);
            Out fft = run(pr, L, SsmConvPath::fft, gates);
            std::string what = "L=" + std::to_string(L) + " gates=" + std::to_string(gates);
            expect_same(fft, ref, gates, "fft " + what);
            for (int64_t chunk : {int64_t(1), int64_t(2), int64_t(7), int64_t(16), int64_t(64), L})
                expect_same(run(pr, chunk, SsmConvPath::chunked, gates), ref, gates,
                            "chunk=" + std::to_string(chunk) + " " + what, 1e-4);
        }
}

TEST_P(SsmConvPaths, SeveralChannelsPerKernel) {
    Problem pr({2, 90, 8, 4}, 3, GetParam(), 42);
    Out ref = run(pr, 90, SsmConvPath::direct, true);
    expect_same(run(pr, 90, SsmConvPath::fft, true), ref, true, "fft P=4");
    expect_same(run(pr, 32, SsmConvPath::chunked, true), ref, true, "chunk=32 P=4", 1e-4);
}

TEST_P(SsmConvPaths, FullChannelBlocks) {
    // 33 channels = two full 16-channel blocks (the vectorised gather/scatter) and a tail of one.
    Problem pr({2, 70, 33, 1}, 4, GetParam(), 77);
    Out ref = run(pr, 70, SsmConvPath::direct, true);
    expect_same(run(pr, 70, SsmConvPath::fft, true), ref, true, "fft C=33");
    expect_same(run(pr, 24, SsmConvPath::chunked, true), ref, true, "chunk=24 C=33", 1e-4);
    expect_same(run(pr, 70, SsmConvPath::chunked, false), run(pr, 70, SsmConvPath::direct, false), false, "ungated");
}

INSTANTIATE_TEST_SUITE_P(Disc, SsmConvPaths, ::testing::Values(Discretization::bilinear, Discretization::zoh),
                         [](const auto& info) { return info.param == Discretization::bilinear ? "bilinear" : "zoh"; });

TEST(SsmConv, AroundTheDefaultChunk) {
    for (int64_t L : {8191, 8193}) {
        Problem pr({1, L, 3, 1}, 4, Discretization::bilinear, uint64_t(L));
        Out ref = run(pr, 1 << 20, SsmConvPath::fft, true);
        expect_same(run(pr, 8192, SsmConvPath::chunked, true), ref, true, "L=" + std::to_string(L), 2e-4);
        expect_same(run(pr, 1000, SsmConvPath::chunked, true), ref, true, "chunk 1000 L=" + std::to_string(L), 2e-4);
    }
}

TEST(SsmConv, FinalStateMatchesDefinition) {
    Problem pr({2, 77, 3, 1}, 4, Discretization::bilinear, 9);
    const FftConvShape& s = pr.s;
    std::vector<float> y(size_t(s.B * s.L * s.C));
    std::vector<std::complex<float>> st(size_t(s.B * s.C * pr.M));
    for (int64_t chunk : {77, 10}) {
        ssm_conv_forward(y.data(), pr.u.data(), pr.v.data(), pr.q.data(), pr.params(), s, chunk, st.data());
        std::vector<std::complex<double>> dA(size_t(s.C * pr.M)), dB(dA.size());
        s4d_discretize(dA.data(), dB.data(), nullptr, pr.log_dt.data(), pr.iar.data(), pr.aim.data(), pr.B.data(),
                       pr.C.data(), s.C, pr.M, pr.disc);
        for (int64_t b = 0; b < s.B; b++)
            for (int64_t c = 0; c < s.C; c++)
                for (int64_t m = 0; m < pr.M; m++) {
                    std::complex<double> x = 0;
                    for (int64_t l = 0; l < s.L; l++) {
                        size_t i = size_t((b * s.L + l) * s.C + c);
                        x = dA[size_t(c * pr.M + m)] * x + dB[size_t(c * pr.M + m)] * double(pr.u[i] * pr.v[i]);
                    }
                    std::complex<float> got = st[size_t((b * s.C + c) * pr.M + m)];
                    EXPECT_NEAR(got.real(), x.real(), 1e-4 * (1 + std::abs(x))) << "chunk " << chunk;
                    EXPECT_NEAR(got.imag(), x.imag(), 1e-4 * (1 + std::abs(x))) << "chunk " << chunk;
                }
    }
}

TEST(SsmConv, ChunkedGradientsMatchFiniteDifferences) {
    Problem pr({1, 40, 2, 1}, 2, Discretization::bilinear, 5);
    Out o = run(pr, 9, SsmConvPath::chunked, true);
    auto loss = [&] {
        std::vector<float> y(pr.u.size());
        ssm_conv_forward(y.data(), pr.u.data(), pr.v.data(), pr.q.data(), pr.params(), pr.s, 9, nullptr,
                         SsmConvPath::chunked);
        double t = 0;
        for (size_t i = 0; i < y.size(); i++) t += double(y[i]) * pr.dy[i];
        return t;
    };
    auto check = [&](std::vector<float>& param, const std::vector<float>& grad, const char* what) {
        for (size_t i = 0; i < param.size(); i++) {
            float orig = param[i];
            const float eps = 1e-3f;
            param[i] = orig + eps;
            double lp = loss();
            param[i] = orig - eps;
            double lm = loss();
            param[i] = orig;
            double num = (lp - lm) / (2.0 * eps);
            EXPECT_NEAR(grad[i], num, 2e-3 + 1e-2 * std::fabs(num)) << what << "[" << i << "]";
        }
    };
    check(pr.log_dt, o.g_log_dt, "log_dt");
    check(pr.iar, o.g_iar, "inv_A_real");
    check(pr.aim, o.g_aim, "A_imag");
    check(pr.B, o.gB, "B");
    check(pr.C, o.gC, "C");
    check(pr.D, o.gD, "D");
    check(pr.u, o.du, "u");
    check(pr.v, o.dv, "v");
    check(pr.q, o.dq, "q");
}
