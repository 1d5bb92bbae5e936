// FlashConv kernels: fused FFT path, unfused FFT pipeline, direct convolution and the double
// reference agree in forward and backward over odd shapes, gates on/off and channels per kernel.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/rng.h"
#include "gradcheck.h"
#include "kernels/fft.h"
#include "kernels/fftconv.h"

using namespace hippo;

namespace {

std::vector<float> randv(size_t n, Rng& rng, float scale = 1.0f) {
    std::vector<float> v(n);
    for (auto& x : v) x = float(rng.normal()) * scale;
    return v;
}


struct Case {
    FftConvShape s;
    bool gate_v, gate_q;
};

struct Grads {
    std::vector<float> du, dv, dq, dK, dD;
    explicit Grads(const FftConvShape& s)
        : du(size_t(s.B * s.L * s.C)), dv(du.size()), dq(du.size()), dK(size_t(s.kernels() * s.L)),
          dD(size_t(s.kernels())) {}
};

void run_case(const Case& cs, uint64_t seed) {
    const FftConvShape& s = cs.s;
    Rng rng(seed);
    size_t total = size_t(s.B * s.L * s.C);
    auto u = randv(total, rng), v = randv(total, rng), q = randv(total, rng), dy = randv(total, rng);
    // A decaying kernel, like an SSM's.
    std::vector<float> K(size_t(s.kernels() * s.L));
    for (int64_t h = 0; h < s.kernels(); h++)
        for (int64_t l = 0; l < s.L; l++) K[size_t(h * s.L + l)] = float(rng.normal() * std::exp(-0.01 * double(l)));
    auto D = randv(size_t(s.kernels()), rng);
    const float* pv = cs.gate_v ? v.data() : nullptr;
    const float* pq = cs.gate_q ? q.data() : nullptr;
    std::string what = "B=" + std::to_string(s.B) + " L=" + std::to_string(s.L) + " C=" + std::to_string(s.C) +
                       " P=" + std::to_string(s.P) + " v=" + std::to_string(cs.gate_v) + " q=" + std::to_string(cs.gate_q);

    std::vector<float> y_ref(total), y_fused(total), y_unfused(total), y_direct(total);
    fftconv_forward_ref(y_ref.data(), u.data(), pv, pq, K.data(), D.data(), s);
    RealFFT fft(fftconv_fft_size(s.L));
    std::vector<float> Kf(size_t(s.kernels() * (fft.size() + 2)));
    fftconv_kernel_spectrum(Kf.data(), K.data(), s.kernels(), s.L, fft);
    fftconv_forward(y_fused.data(), u.data(), pv, pq, Kf.data(), D.data(), s, fft);
    fftconv_forward_unfused(y_unfused.data(), u.data(), pv, pq, Kf.data(), D.data(), s, fft);
    fftconv_forward_direct(y_direct.data(), u.data(), pv, pq, K.data(), D.data(), s);
    const double tol = 2e-5;
    EXPECT_LT(test::max_rel_diff(y_fused, y_ref), tol) << "fused fwd " << what;
    EXPECT_LT(test::max_rel_diff(y_unfused, y_ref), tol) << "unfused fwd " << what;
    EXPECT_LT(test::max_rel_diff(y_direct, y_ref), tol) << "direct fwd " << what;

    Grads gr(s), gf(s), gu(s), gd(s);
    fftconv_backward_ref(gr.du.data(), gr.dv.data(), gr.dq.data(), gr.dK.data(), gr.dD.data(), dy.data(), u.data(), pv,
                         pq, K.data(), D.data(), s);
    fftconv_backward(gf.du.data(), gf.dv.data(), gf.dq.data(), gf.dK.data(), gf.dD.data(), dy.data(), u.data(), pv, pq,
                     Kf.data(), D.data(), s, fft);
    fftconv_backward_unfused(gu.du.data(), gu.dv.data(), gu.dq.data(), gu.dK.data(), gu.dD.data(), dy.data(), u.data(),
                             pv, pq, Kf.data(), D.data(), s, fft);
    fftconv_backward_direct(gd.du.data(), gd.dv.data(), gd.dq.data(), gd.dK.data(), gd.dD.data(), dy.data(), u.data(),
                            pv, pq, K.data(), D.data(), s);
    for (auto* g : {&gf, &gu, &gd}) {
        const char* name = g == &gf ? "fused" : g == &gu ? "unfused" : "direct";
        EXPECT_LT(test::max_rel_diff(g->du, gr.du), tol) << name << " du " << what;
        if (cs.gate_v) {
            EXPECT_LT(test::max_rel_diff(g->dv, gr.dv), tol) << name << " dv " << what;
        }
        if (cs.gate_q) {
            EXPECT_LT(test::max_rel_diff(g->dq, gr.dq), tol) << name << " dq " << what;
        }
        EXPECT_LT(test::max_rel_diff(g->dK, gr.dK), tol) << name << " dK " << what;
        EXPECT_LT(test::max_rel_diff(g->dD, gr.dD), tol) << name << " dD " << what;
    }
}

}  // namespace

TEST(FftConv, AllPathsAgreeOnOddShapes) {
    uint64_t seed = 1;
    for (int64_t L : {1, 2, 3, 8, 17, 64, 100, 257})
        for (int64_t C : {1, 5, 16, 19, 33})
            for (int gates = 0; gates < 4; gates++) {
                Case cs{{2, L, C, 1}, bool(gates & 1), bool(gates & 2)};
                run_case(cs, seed++);
            }
}

TEST(FftConv, SeveralChannelsPerKernel) {
    uint64_t seed = 100;
    for (int64_t L : {1, 5, 130})
        for (int64_t P : {2, 4}) run_case({{3, L, 8 * P / 2, P}, true, true}, seed++);
}

TEST(FftConv, LongRowsAroundTheChunkSize) {
    uint64_t seed = 200;
    for (int64_t L : {8191, 8193}) run_case({{1, L, 3, 1}, true, true}, seed++);
}

TEST(FftConv, Causal) {
    const FftConvShape s{1, 300, 20, 1};
    Rng rng(7);
    size_t total = size_t(s.L * s.C);
    auto u = randv(total, rng), v = randv(total, rng), q = randv(total, rng), K = randv(size_t(s.C * s.L), rng),
         D = randv(size_t(s.C), rng);
    RealFFT fft(fftconv_fft_size(s.L));
    std::vector<float> Kf(size_t(s.C * (fft.size() + 2))), y0(total), y1(total);
    fftconv_kernel_spectrum(Kf.data(), K.data(), s.C, s.L, fft);
    fftconv_forward(y0.data(), u.data(), v.data(), q.data(), Kf.data(), D.data(), s, fft);
    const int64_t t = 150;
    for (int64_t c = 0; c < s.C; c++) {
        u[size_t(t * s.C + c)] += 10.0f;
        v[size_t(t * s.C + c)] -= 3.0f;
    }
    fftconv_forward(y1.data(), u.data(), v.data(), q.data(), Kf.data(), D.data(), s, fft);
    double before = 0, at = 0;
    for (int64_t l = 0; l < s.L; l++)
        for (int64_t c = 0; c < s.C; c++) {
            double d = std::fabs(double(y1[size_t(l * s.C + c)]) - double(y0[size_t(l * s.C + c)]));
            if (l < t) before = std::max(before, d);
            if (l == t) at = std::max(at, d);
        }
    EXPECT_GT(at, 1.0);
    EXPECT_LT(before, 1e-4);  // FFT rounding only
}
