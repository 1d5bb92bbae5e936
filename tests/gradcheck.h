// Finite-difference gradient checks for autograd ops (ggml test-backend-ops "grad" mode /
// flashlight's Jacobian test, simplified).
//
// For a function f(inputs) -> out we take the scalar loss L = sum(out * w) with a fixed random w,
// evaluated in double from the fp32 output, and compare dL/dx from backward() with central
// differences (L(x + eps) - L(x - eps)) / 2 eps at every element of every input (or a random
// subset of `max_checks` elements for big inputs).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tensor.h"
#include "common/rng.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace hippo::test {

inline Tensor randn(const Shape& s, Rng& rng, float scale = 1.0f) {
    Tensor t = Tensor::empty(s);
    for (int64_t i = 0; i < t.numel(); i++) t.data()[i] = float(rng.normal()) * scale;
    return t;
}

inline Tensor randu(const Shape& s, Rng& rng, float lo, float hi) {
    Tensor t = Tensor::empty(s);
    for (int64_t i = 0; i < t.numel(); i++) t.data()[i] = lo + (hi - lo) * rng.uniform();
    return t;
}

struct GradCheckOptions {
    float eps = 1e-3f;
    double atol = 2e-3;
    double rtol = 2e-2;
    int max_checks = 200;  // per input
    uint64_t seed = 1234;
};

inline double weighted_sum(const Tensor& out, const std::vector<float>& w) {
    std::vector<float> v = out.to_vector();
    double s = 0;
    for (size_t i = 0; i < v.size(); i++) s += double(v[i]) * w[i];
    return s;
}

// Inputs must be contiguous leaves; they are made to require grad here.
inline void expect_gradients_match(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                   std::vector<Tensor> inputs, GradCheckOptions opt = {}) {
    Rng rng(opt.seed);
    for (auto& x : inputs) {
        x.set_requires_grad(true);
        x.zero_grad();
    }
    Tensor out = f(inputs);
    std::vector<float> w(size_t(out.numel()));
    for (auto& v : w) v = float(rng.normal());
    Tensor wt = Tensor::from_vector(out.shape(), w);
    out.backward(wt);

    NoGradGuard no_grad;
    for (size_t t = 0; t < inputs.size(); t++) {
        Tensor& x = inputs[t];
        ASSERT_TRUE(x.grad().defined()) << "input " << t << " got no gradient";
        std::vector<float> g = x.grad().to_vector();
        int64_t n = x.numel();
        std::vector<int64_t> idx;
        if (n <= opt.max_checks) {
            for (int64_t i = 0; i < n; i++) idx.push_back(i);
        } else {
            for (int i = 0; i < opt.max_checks; i++) idx.push_back(int64_t(rng.below(uint64_t(n))));
        }
        for (int64_t i : idx) {
            float orig = x.data()[i];
            x.data()[i] = orig + opt.eps;
            double lp = weighted_sum(f(inputs), w);
            x.data()[i] = orig - opt.eps;
            double lm = weighted_sum(f(inputs), w);
            x.data()[i] = orig;
            double num = (lp - lm) / (2.0 * double(opt.eps));
            double ana = g[size_t(i)];
            EXPECT_NEAR(ana, num, opt.atol + opt.rtol * std::fabs(num))
                << "input " << t << " element " << i << " (shape " << x.shape().str() << ")";
        }
    }
}

// Runs fn with n OpenMP threads, then restores the previous count (thread-count determinism tests).
template <class F>
void with_threads(int n, F&& fn) {
#ifdef _OPENMP
    int prev = omp_get_max_threads();
    omp_set_num_threads(n);
    fn();
    omp_set_num_threads(prev);
#else
    (void)n;
    fn();
#endif
}

// max |a - b| / max(max |b|, 1e-3): compares long sums (convolutions, scans) at their own scale.
inline double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 1e-3;
    for (size_t i = 0; i < a.size() && i < b.size(); i++) {
        num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
        den = std::max(den, std::fabs(double(b[i])));
    }
    return a.size() == b.size() ? num / den : INFINITY;
}
inline double max_rel_diff(const Tensor& a, const Tensor& b) { return max_rel_diff(a.to_vector(), b.to_vector()); }

// Max absolute difference and the reference scale, for comparing a kernel against its _ref.
inline void expect_close(const float* got, const float* ref, int64_t n, double atol, double rtol,
                         const char* what = "") {
    double worst = 0;
    int64_t worst_i = -1;
    for (int64_t i = 0; i < n; i++) {
        double d = std::fabs(double(got[i]) - double(ref[i]));
        double lim = atol + rtol * std::fabs(double(ref[i]));
        if (!(d <= lim) && (worst_i < 0 || d > worst)) {
            worst = d;
            worst_i = i;
        }
    }
    EXPECT_LT(worst_i, 0) << what << ": element " << worst_i << " got " << (worst_i >= 0 ? got[worst_i] : 0)
                          << " want " << (worst_i >= 0 ? ref[worst_i] : 0) << " (|diff| " << worst << ")";
}

// Fixture comparison: every element within rtol of the largest |want| (plus atol), so that
// entries near zero are judged on the tensor's own scale. Stops at the first offender.
inline void expect_close_to_scale(const std::vector<float>& got, const std::vector<float>& want, double rtol,
                                  const std::string& what, double atol = 0) {
    ASSERT_EQ(got.size(), want.size()) << what;
    double scale = 1e-6;
    for (float w : want) scale = std::max(scale, std::fabs(double(w)));
    for (size_t i = 0; i < got.size(); i++)
        ASSERT_NEAR(got[i], want[i], rtol * scale + atol) << what << "[" << i << "]";
}

}  // namespace hippo::test
