#include "nn/mega.h"

#include <cmath>

#include "autograd/ops.h"
#include "common/check.h"
#include "kernels/diag_ssm.h"
#include "nn/init.h"

namespace hippo {

using cd = std::complex<double>;

namespace {

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// params {delta, alpha, beta (D, h, 1), gamma (D, h)}: log z = log q, W = p beta gamma / (2 sqrt h)
// (the modal form's 2 Re on a real W halves it).
void ema_build(const std::vector<Tensor>& p, int64_t D, int64_t h, cd* log_z, cd* W) {
    const float *dl = p[0].data(), *al = p[1].data(), *be = p[2].data(), *ga = p[3].data();
    const double s = 1.0 / std::sqrt(double(h));
    for (int64_t i = 0; i < D * h; i++) {
        const double pp = sigmoid(dl[i]), a = sigmoid(al[i]);
        log_z[i] = cd(std::log1p(-pp * a), 0.0);
        W[i] = cd(0.5 * pp * double(be[i]) * double(ga[i]) * s, 0.0);
    }
}

std::vector<Tensor> ema_grads(const std::vector<Tensor>& p, int64_t D, int64_t h, const cd* gW, const cd* glz) {
    const float *dl = p[0].data(), *al = p[1].data(), *be = p[2].data(), *ga = p[3].data();
    Tensor g_dl = Tensor::empty(p[0].shape()), g_al = Tensor::empty(p[1].shape()), g_be = Tensor::empty(p[2].shape()),
           g_ga = Tensor::empty(p[3].shape());
    const double s = 1.0 / std::sqrt(double(h));
    for (int64_t i = 0; i < D * h; i++) {
        const double pp = sigmoid(dl[i]), a = sigmoid(al[i]), q = 1.0 - pp * a;
        // W and log z are real: only the real parts of their gradients reach the parameters.
        const double gw = 0.5 * s * gW[i].real(), gl = glz[i].real();
        const double gp = gw * double(be[i]) * double(ga[i]) - gl * a / q;
        const double ga_ = -gl * pp / q;
        g_dl.data()[i] = float(gp * pp * (1.0 - pp));
        g_al.data()[i] = float(ga_ * a * (1.0 - a));
        g_be.data()[i] = float(gw * pp * double(ga[i]));
        g_ga.data()[i] = float(gw * pp * double(be[i]));
    }
    return {g_dl, g_al, g_be, g_ga};
}

}  // namespace

MegaEMA::MegaEMA(const MegaEMAConfig& cfg, Rng& rng) : cfg_(cfg) {
    const int64_t D = cfg.d_model, h = cfg.ndim;
    HIPPO_CHECK(D > 0 && h > 0, "MultiHeadEMA: bad sizes d_model=%lld ndim=%lld", (long long)D, (long long)h);
    delta = Tensor::empty({D, h, 1});
    alpha = Tensor::empty({D, h, 1});
    beta = Tensor::empty({D, h, 1});
    gamma = Tensor::empty({D, h});
    omega = Tensor::empty({D});
    // The official initialisation: delta, alpha ~ N(0, 0.2^2); beta ~ N(0, 0.02^2) + (1, -1, 1, ...)
    // over n; gamma, omega ~ N(0, 1).
    init::normal_(delta, 0.0f, 0.2f, rng);
    init::normal_(alpha, 0.0f, 0.2f, rng);
    init::normal_(beta, 0.0f, 0.02f, rng);
    for (int64_t d = 0; d < D; d++)
        for (int64_t n = 0; n < h; n++) beta.data()[d * h + n] += (n % 2 == 0) ? 1.0f : -1.0f;
    init::normal_(gamma, 0.0f, 1.0f, rng);
    init::normal_(omega, 0.0f, 1.0f, rng);
    register_parameter("delta", delta, ParamTag::ssm);
    register_parameter("alpha", alpha, ParamTag::ssm);
    register_parameter("beta", beta, ParamTag::ssm);
    register_parameter("gamma", gamma, ParamTag::ssm);
    register_parameter("omega", omega, ParamTag::ssm);
}

std::string MegaEMA::extra_repr() const {
    return strf("edim=%lld, ndim=%lld", (long long)cfg_.d_model, (long long)cfg_.ndim);
}

ModalParameterisation MegaEMA::parameterisation() const {
    ModalParameterisation mp;
    const int64_t D = cfg_.d_model, h = cfg_.ndim;
    mp.name = "mega_ema";
    mp.Hk = D;
    mp.M = h;
    mp.params = {delta, alpha, beta, gamma};
    mp.build = [D, h](const std::vector<Tensor>& p, cd* lz, cd* w) { ema_build(p, D, h, lz, w); };
    mp.grads = [D, h](const std::vector<Tensor>& p, const cd* gw, const cd* glz) { return ema_grads(p, D, h, gw, glz); };
    return mp;
}

Tensor MegaEMA::ema(const Tensor& x, std::vector<cd>* final_X) const {
    HIPPO_CHECK(x.ndim() == 3 && x.size(2) == cfg_.d_model, "MultiHeadEMA: input must be (B, L, %lld), got %s",
                (long long)cfg_.d_model, x.shape().str().c_str());
    return modal_conv(x, omega, parameterisation(), cfg_.chunk, final_X);
}

Tensor MegaEMA::forward(const Tensor& x) const { return silu(ema(x)); }

MegaEMAState MegaEMA::new_state(int64_t batch) const {
    const int64_t D = cfg_.d_model, h = cfg_.ndim;
    MegaEMAState st;
    st.batch = batch;
    st.x.assign(size_t(batch * D * h), {0.0f, 0.0f});
    std::vector<cd> lz(size_t(D * h)), w(size_t(D * h));
    ModalParameterisation mp = parameterisation();
    std::vector<Tensor> p;
    for (const Tensor& t : mp.params) p.push_back(t.contiguous());
    mp.build(p, lz.data(), w.data());
    st.z.resize(lz.size());
    st.W.resize(lz.size());
    st.one.assign(lz.size(), {1.0f, 0.0f});
    for (size_t i = 0; i < lz.size(); i++) {
        st.z[i] = std::complex<float>(std::exp(lz[i]));
        st.W[i] = std::complex<float>(w[i]);
    }
    return st;
}

Tensor MegaEMA::prefill(const Tensor& x, MegaEMAState& st) const {
    NoGradGuard no_grad;
    HIPPO_CHECK(x.ndim() == 3 && x.size(0) == st.batch && x.size(2) == cfg_.d_model,
                "MultiHeadEMA prefill: input %s does not match the state", x.shape().str().c_str());
    std::vector<cd> fx;
    Tensor y = ema(x, &fx);
    for (size_t i = 0; i < fx.size(); i++) st.x[i] = std::complex<float>(fx[i]);
    return silu(y);
}

Tensor MegaEMA::step(const Tensor& x, MegaEMAState& st) const {
    NoGradGuard no_grad;
    const int64_t D = cfg_.d_model, h = cfg_.ndim;
    HIPPO_CHECK(x.ndim() == 2 && x.size(0) == st.batch && x.size(1) == D,
                "MultiHeadEMA step: input must be (%lld, %lld), got %s", (long long)st.batch, (long long)D,
                x.shape().str().c_str());
    Tensor xc = x.contiguous(), om = omega.contiguous();
    Tensor y = Tensor::empty({st.batch, D});
    for (int64_t b = 0; b < st.batch; b++) {
        const float* w = xc.data() + b * D;
        float* yb = y.data() + b * D;
        diag_ssm_step(yb, st.x.data() + b * D * h, w, st.z.data(), st.one.data(), st.W.data(), D, h);
        for (int64_t d = 0; d < D; d++) yb[d] += om.data()[d] * w[d];
    }
    return silu(y);
}

}  // namespace hippo
