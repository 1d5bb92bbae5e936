#include "bench/bench_norm.h"

#include <functional>
#include <string>

#include "autograd/tensor.h"
#include "common/rng.h"
#include "common/runtime.h"
#include "kernels/norm.h"

namespace hippo {

namespace {

BenchRecord make(const char* name, int64_t L, int64_t D, const char* pass, double floats,
                 const std::function<void()>& fn) {
    Timing t = time_median(fn, 5, 0.3);
    BenchRecord r;
    r.name = name;
    r.shape["L"] = L;
    r.shape["D"] = D;
    r.pass = pass;
    r.ms = t.median_ms;
    r.runs = t.runs;
    r.derived["gbps"] = floats * double(sizeof(float)) / (t.median_ms * 1e-3) / 1e9;
    r.extra["threads"] = num_threads();
    return r;
}

// Fills (and first-touches) a buffer in parallel with values in [lo, hi), counter-based.
void fill(Tensor& t, uint64_t seed, float lo, float hi) {
    float* p = t.data();
    int64_t n = t.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * hash_uniform(seed, uint64_t(i));
}

}  // namespace

std::vector<BenchRecord> bench_norm() {
    std::vector<BenchRecord> recs;
    num_threads();  // applies the default thread count to OpenMP
    {
        const int64_t L = 8192, D = 768;
        Tensor x = Tensor::empty({L, D}), y = Tensor::empty({L, D}), dy = Tensor::empty({L, D}),
               dx = Tensor::empty({L, D}), w = Tensor::empty({D}), b = Tensor::empty({D}), dw = Tensor::empty({D}),
               db = Tensor::empty({D}), mean = Tensor::empty({L}), rstd = Tensor::empty({L}),
               scratch = Tensor::empty({norm_backward_scratch_floats(D)});
        fill(x, 1, -2, 3);
        fill(dy, 2, -1, 1);
        fill(w, 3, 0.5f, 1.5f);
        fill(b, 4, -0.1f, 0.1f);
        fill(y, 5, 0, 1);
        fill(dx, 6, 0, 1);
        const double n = double(L * D);
        auto ln_f = [&] { layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), L, D, 1e-5f); };
        auto ln_b = [&] {
            dw.fill_(0);
            db.fill_(0);
            layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), mean.data(), rstd.data(),
                               L, D, scratch.data());
        };
        recs.push_back(make("layer_norm", L, D, "fwd", 2 * n, ln_f));
        recs.push_back(make("layer_norm", L, D, "fwd+bwd", 5 * n, [&] { ln_f(); ln_b(); }));
        auto rms_f = [&] { rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), L, D, 1e-6f); };
        auto rms_b = [&] {
            dw.fill_(0);
            rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), L, D, scratch.data());
        };
        recs.push_back(make("rms_norm", L, D, "fwd", 2 * n, rms_f));
        recs.push_back(make("rms_norm", L, D, "fwd+bwd", 5 * n, [&] { rms_f(); rms_b(); }));
        recs.push_back(make("softmax", L, D, "fwd", 2 * n, [&] { softmax_forward(y.data(), x.data(), L, D); }));
        recs.push_back(make("softmax", L, D, "fwd+bwd", 5 * n, [&] {
            softmax_forward(y.data(), x.data(), L, D);
            softmax_backward(dx.data(), dy.data(), y.data(), L, D);
        }));
        std::vector<int32_t> tg(static_cast<size_t>(L));
        for (int64_t r = 0; r < L; r++) tg[size_t(r)] = int32_t(splitmix64(uint64_t(r)) % uint64_t(D));
        Tensor loss = Tensor::empty({L}), lse = Tensor::empty({L});
        auto ce_f = [&] { crossentropy_forward(loss.data(), lse.data(), x.data(), tg.data(), L, D, -100); };
        recs.push_back(make("cross_entropy", L, D, "fwd", n, ce_f));
        recs.push_back(make("cross_entropy", L, D, "fwd+bwd", 3 * n, [&] {
            ce_f();
            crossentropy_backward(dx.data(), x.data(), lse.data(), tg.data(), L, D, -100, 1.0f / float(L));
        }));
    }
    {
        const int64_t L = 2048, V = 50304;
        Tensor x = Tensor::empty({L, V}), y = Tensor::empty({L, V}), dx = Tensor::empty({L, V});
        fill(x, 7, -4, 4);
        fill(y, 8, 0, 1);
        fill(dx, 9, 0, 1);
        const double n = double(L * V);
        recs.push_back(make("softmax", L, V, "fwd", 2 * n, [&] { softmax_forward(y.data(), x.data(), L, V); }));
        recs.push_back(make("softmax", L, V, "fwd+bwd", 5 * n, [&] {
            softmax_forward(y.data(), x.data(), L, V);
            softmax_backward(dx.data(), x.data(), y.data(), L, V);  // x doubles as dy
        }));
        std::vector<int32_t> tg(static_cast<size_t>(L));
        for (int64_t r = 0; r < L; r++) tg[size_t(r)] = int32_t(splitmix64(uint64_t(r)) % uint64_t(V));
        Tensor loss = Tensor::empty({L}), lse = Tensor::empty({L});
        auto ce_f = [&] { crossentropy_forward(loss.data(), lse.data(), x.data(), tg.data(), L, V, -100); };
        recs.push_back(make("cross_entropy", L, V, "fwd", n, ce_f));
        recs.push_back(make("cross_entropy", L, V, "fwd+bwd", 3 * n, [&] {
            ce_f();
            crossentropy_backward(dx.data(), x.data(), lse.data(), tg.data(), L, V, -100, 1.0f / float(L));
        }));
    }
    return recs;
}

}  // namespace hippo
