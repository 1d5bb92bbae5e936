// Row kernels of kernels/norm.h against their plain _ref versions: odd widths (masked tails),
// several row counts, accumulation semantics of dweight / dbias, determinism across thread counts.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common/rng.h"
#include "kernels/norm.h"
#include "gradcheck.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace hippo;
using hippo::test::expect_close;
using hippo::test::with_threads;

namespace {

const std::vector<int64_t> kWidths = {1, 2, 3, 16, 17, 64, 65, 767, 769};
const std::vector<int64_t> kRows = {1, 2, 5, 33};

std::vector<float> randv(int64_t n, Rng& rng, float scale = 1.0f, float shift = 0.0f) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = float(rng.normal()) * scale + shift;
    return v;
}

std::string tag(const char* k, int64_t R, int64_t D) { return std::string(k) + " R=" + std::to_string(R) + " D=" + std::to_string(D); }

}  // namespace

TEST(NormKernels, VexpAccuracy) {
    std::vector<float> x;
    for (float v = -103.0f; v <= 88.5f; v += 0.0137f) x.push_back(v);
    std::vector<float> y(x.size());
    vexp(y.data(), x.data(), int64_t(x.size()));
    for (size_t i = 0; i < x.size(); i++) {
        double want = std::exp(double(x[i]));
        if (want < 1.2e-38) {  // denormal range: absolute error of a few denormal steps
            EXPECT_NEAR(y[i], want, 4e-45 + want * 1e-5) << "x=" << x[i];
        } else {
            EXPECT_NEAR(y[i], want, want * 3.0e-7) << "x=" << x[i];  // ~2.5 ulp
        }
    }
    float sp[5] = {-std::numeric_limits<float>::infinity(), std::numeric_limits<float>::infinity(), -200.0f, 200.0f,
                   std::numeric_limits<float>::quiet_NaN()};
    float out[5];
    vexp(out, sp, 5);
    EXPECT_EQ(out[0], 0.0f);
    EXPECT_EQ(out[1], std::numeric_limits<float>::infinity());
    EXPECT_EQ(out[2], 0.0f);
    EXPECT_EQ(out[3], std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isnan(out[4]));
}

TEST(NormKernels, LayerNormForwardBackward) {
    Rng rng(1);
    for (int64_t D : kWidths)
        for (int64_t R : kRows)
            for (int affine = 0; affine < 2; affine++) {
                auto x = randv(R * D, rng, 2.0f, 3.0f);  // non-zero mean
                auto w = randv(D, rng), b = randv(D, rng);
                const float* wp = affine ? w.data() : nullptr;
                const float* bp = affine ? b.data() : nullptr;
                std::vector<float> out(x.size()), out_ref(x.size()), mean(R), rstd(R), mean_ref(R), rstd_ref(R);
                layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), wp, bp, R, D, 1e-5f);
                layernorm_forward_ref(out_ref.data(), mean_ref.data(), rstd_ref.data(), x.data(), wp, bp, R, D, 1e-5f);
                expect_close(out.data(), out_ref.data(), R * D, 1e-5, 1e-5, tag("ln fwd", R, D).c_str());
                expect_close(mean.data(), mean_ref.data(), R, 1e-5, 1e-5, "mean");
                expect_close(rstd.data(), rstd_ref.data(), R, 1e-5, 1e-5, "rstd");

                auto dout = randv(R * D, rng);
                std::vector<float> dx(x.size()), dx_ref(x.size());
                auto dw = randv(D, rng), db = randv(D, rng);  // accumulated into
                auto dw_ref = dw, db_ref = db;
                std::vector<float> scratch(static_cast<size_t>(norm_backward_scratch_floats(D)));
                layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), wp, mean_ref.data(),
                                   rstd_ref.data(), R, D, scratch.data());
                layernorm_backward_ref(dx_ref.data(), dw_ref.data(), db_ref.data(), dout.data(), x.data(), wp,
                                       mean_ref.data(), rstd_ref.data(), R, D);
                expect_close(dx.data(), dx_ref.data(), R * D, 1e-4, 1e-4, tag("ln dx", R, D).c_str());
                expect_close(dw.data(), dw_ref.data(), D, 1e-4, 1e-4, tag("ln dw", R, D).c_str());
                expect_close(db.data(), db_ref.data(), D, 1e-4, 1e-4, tag("ln db", R, D).c_str());
                // dx alone (no parameter grads, no scratch)
                std::vector<float> dx2(x.size());
                layernorm_backward(dx2.data(), nullptr, nullptr, dout.data(), x.data(), wp, mean_ref.data(),
                                   rstd_ref.data(), R, D, nullptr);
                expect_close(dx2.data(), dx_ref.data(), R * D, 1e-4, 1e-4, "ln dx only");
            }
}

TEST(NormKernels, RmsNormForwardBackward) {
    Rng rng(2);
    for (int64_t D : kWidths)
        for (int64_t R : kRows)
            for (int affine = 0; affine < 2; affine++) {
                auto x = randv(R * D, rng, 2.0f, 0.5f);
                auto w = randv(D, rng);
                const float* wp = affine ? w.data() : nullptr;
                std::vector<float> out(x.size()), out_ref(x.size()), rstd(R), rstd_ref(R);
                rmsnorm_forward(out.data(), rstd.data(), x.data(), wp, R, D, 1e-6f);
                rmsnorm_forward_ref(out_ref.data(), rstd_ref.data(), x.data(), wp, R, D, 1e-6f);
                expect_close(out.data(), out_ref.data(), R * D, 1e-5, 1e-5, tag("rms fwd", R, D).c_str());
                expect_close(rstd.data(), rstd_ref.data(), R, 1e-5, 1e-5, "rstd");
                auto dout = randv(R * D, rng);
                std::vector<float> dx(x.size()), dx_ref(x.size());
                auto dw = randv(D, rng);
                auto dw_ref = dw;
                std::vector<float> scratch(static_cast<size_t>(norm_backward_scratch_floats(D)));
                rmsnorm_backward(dx.data(), affine ? dw.data() : nullptr, dout.data(), x.data(), wp, rstd_ref.data(),
                                 R, D, scratch.data());
                rmsnorm_backward_ref(dx_ref.data(), affine ? dw_ref.data() : nullptr, dout.data(), x.data(), wp,
                                     rstd_ref.data(), R, D);
                expect_close(dx.data(), dx_ref.data(), R * D, 1e-4, 1e-4, tag("rms dx", R, D).c_str());
                expect_close(dw.data(), dw_ref.data(), D, 1e-4, 1e-4, tag("rms dw", R, D).c_str());
            }
}

TEST(NormKernels, SoftmaxAndLogSoftmax) {
    Rng rng(3);
    for (int64_t D : kWidths)
        for (int64_t R : kRows) {
            auto x = randv(R * D, rng, 5.0f);
            if (D > 3) x[1] = -std::numeric_limits<float>::infinity();  // a masked entry
            std::vector<float> y(x.size()), y_ref(x.size());
            softmax_forward(y.data(), x.data(), R, D);
            softmax_forward_ref(y_ref.data(), x.data(), R, D);
            expect_close(y.data(), y_ref.data(), R * D, 1e-7, 1e-5, tag("softmax fwd", R, D).c_str());
            // in place
            std::vector<float> yi = x;
            softmax_forward(yi.data(), yi.data(), R, D);
            expect_close(yi.data(), y_ref.data(), R * D, 1e-7, 1e-5, "softmax in place");

            auto dy = randv(R * D, rng);
            std::vector<float> dx(x.size()), dx_ref(x.size());
            softmax_backward(dx.data(), dy.data(), y_ref.data(), R, D);
            softmax_backward_ref(dx_ref.data(), dy.data(), y_ref.data(), R, D);
            expect_close(dx.data(), dx_ref.data(), R * D, 1e-5, 1e-4, tag("softmax bwd", R, D).c_str());

            auto xl = randv(R * D, rng, 5.0f);
            std::vector<float> l(x.size()), l_ref(x.size());
            logsoftmax_forward(l.data(), xl.data(), R, D);
            logsoftmax_forward_ref(l_ref.data(), xl.data(), R, D);
            expect_close(l.data(), l_ref.data(), R * D, 1e-5, 1e-5, tag("logsoftmax fwd", R, D).c_str());
            logsoftmax_backward(dx.data(), dy.data(), l_ref.data(), R, D);
            logsoftmax_backward_ref(dx_ref.data(), dy.data(), l_ref.data(), R, D);
            expect_close(dx.data(), dx_ref.data(), R * D, 1e-5, 1e-4, tag("logsoftmax bwd", R, D).c_str());
        }
}

TEST(NormKernels, CrossEntropy) {
    Rng rng(4);
    for (int64_t V : {int64_t(1), int64_t(2), int64_t(3), int64_t(17), int64_t(767), int64_t(769), int64_t(5003)})
        for (int64_t R : kRows) {
            auto x = randv(R * V, rng, 4.0f);
            std::vector<int32_t> t(static_cast<size_t>(R));
            int64_t counted = 0;
            for (int64_t r = 0; r < R; r++) {
                t[size_t(r)] = (r % 3 == 1) ? -100 : int32_t(rng.below(uint64_t(V)));
                counted += t[size_t(r)] != -100;
            }
            std::vector<float> loss(R), lse(R), loss_ref(R), lse_ref(R);
            int64_t n = crossentropy_forward(loss.data(), lse.data(), x.data(), t.data(), R, V, -100);
            int64_t n_ref = crossentropy_forward_ref(loss_ref.data(), lse_ref.data(), x.data(), t.data(), R, V, -100);
            EXPECT_EQ(n, counted);
            EXPECT_EQ(n_ref, counted);
            expect_close(loss.data(), loss_ref.data(), R, 1e-5, 1e-5, tag("ce fwd", R, V).c_str());
            expect_close(lse.data(), lse_ref.data(), R, 1e-5, 1e-5, "lse");
            std::vector<float> d(x.size(), 7.0f), d_ref(x.size());
            float scale = 0.37f;
            crossentropy_backward(d.data(), x.data(), lse_ref.data(), t.data(), R, V, -100, scale);
            crossentropy_backward_ref(d_ref.data(), x.data(), lse_ref.data(), t.data(), R, V, -100, scale);
            expect_close(d.data(), d_ref.data(), R * V, 1e-7, 1e-5, tag("ce bwd", R, V).c_str());
        }
}

TEST(NormKernels, ParameterGradsIndependentOfThreadCount) {
    Rng rng(5);
    const int64_t R = 301, D = 129;
    auto x = randv(R * D, rng), dout = randv(R * D, rng), w = randv(D, rng);
    std::vector<float> mean(R), rstd(R), out(x.size());
    layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), nullptr, R, D, 1e-5f);
    std::vector<float> scratch(static_cast<size_t>(norm_backward_scratch_floats(D)));
    std::vector<std::vector<float>> dws, dbs, dxs, rws;
    for (int threads : {1, 2}) {
        with_threads(threads, [&] {
            std::vector<float> dx(x.size()), dw(D, 0.0f), db(D, 0.0f), rw(D, 0.0f);
            layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), mean.data(),
                               rstd.data(), R, D, scratch.data());
            rmsnorm_backward(dx.data(), rw.data(), dout.data(), x.data(), w.data(), rstd.data(), R, D, scratch.data());
            dws.push_back(dw);
            dbs.push_back(db);
            dxs.push_back(dx);
            rws.push_back(rw);
        });
    }
    EXPECT_EQ(dws[0], dws[1]);
    EXPECT_EQ(dbs[0], dbs[1]);
    EXPECT_EQ(dxs[0], dxs[1]);
    EXPECT_EQ(rws[0], rws[1]);
}
