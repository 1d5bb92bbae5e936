#include "nn/init.h"

#include <cmath>

namespace hippo::init {

namespace {

float* checked_data(Tensor& t, const char* what) {
    HIPPO_CHECK(t.defined(), "%s: undefined tensor", what);
    HIPPO_CHECK(t.is_contiguous(), "%s: tensor of shape %s is not contiguous", what, t.shape().str().c_str());
    return t.data();
}

int64_t receptive_field(const Tensor& t, const char* what) {
    HIPPO_CHECK(t.ndim() >= 2, "%s: fan in/out needs a tensor with at least 2 dims, got shape %s", what,
                t.shape().str().c_str());
    int64_t r = 1;
    for (int i = 2; i < t.ndim(); i++) r *= t.shape()[i];
    return r;
}

}  // namespace

int64_t fan_in(const Tensor& t) { return t.shape()[1] * receptive_field(t, "fan_in"); }
int64_t fan_out(const Tensor& t) { return t.shape()[0] * receptive_field(t, "fan_out"); }

void constant_(Tensor& t, float value) {
    NoGradGuard ng;
    float* p = checked_data(t, "init::constant_");
    for (int64_t i = 0; i < t.numel(); i++) p[i] = value;
}
void zeros_(Tensor& t) { constant_(t, 0.0f); }
void ones_(Tensor& t) { constant_(t, 1.0f); }

void normal_(Tensor& t, float mean, float std, Rng& rng) {
    NoGradGuard ng;
    HIPPO_CHECK(std >= 0.0f, "init::normal_: std must be >= 0, got %g", double(std));
    float* p = checked_data(t, "init::normal_");
    for (int64_t i = 0; i < t.numel(); i++) p[i] = float(double(mean) + double(std) * rng.normal());
}

void uniform_(Tensor& t, float lo, float hi, Rng& rng) {
    NoGradGuard ng;
    HIPPO_CHECK(lo <= hi, "init::uniform_: lo %g > hi %g", double(lo), double(hi));
    float* p = checked_data(t, "init::uniform_");
    const double a = lo, w = double(hi) - double(lo);
    for (int64_t i = 0; i < t.numel(); i++) {
        float v = float(a + w * rng.uniform_double());
        p[i] = v < hi ? v : lo;  // rounding to float may reach hi; keep the interval half-open
    }
}

void kaiming_uniform_(Tensor& t, float a, Rng& rng) {
    int64_t fan = fan_in(t);
    HIPPO_CHECK(fan > 0, "init::kaiming_uniform_: zero fan_in for shape %s", t.shape().str().c_str());
    double gain = std::sqrt(2.0 / (1.0 + double(a) * double(a)));
    double bound = std::sqrt(3.0) * gain / std::sqrt(double(fan));
    uniform_(t, float(-bound), float(bound), rng);
}

void xavier_uniform_(Tensor& t, Rng& rng, float gain) {
    int64_t fi = fan_in(t), fo = fan_out(t);
    HIPPO_CHECK(fi + fo > 0, "init::xavier_uniform_: zero fans for shape %s", t.shape().str().c_str());
    double bound = double(gain) * std::sqrt(6.0 / double(fi + fo));
    uniform_(t, float(-bound), float(bound), rng);
}

}  // namespace hippo::init
