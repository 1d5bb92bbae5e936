#include "nn/mega.h"

#include <cmath>

#include <algorithm>

#include "autograd/ops.h"
#include "autograd/ops_attention.h"
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

// ---------------------------------------------------------------------------------------------
// MegaLayer

namespace hippo {

MegaLayer::MegaLayer(const MegaConfig& cfg_in, Rng& rng) : cfg_(cfg_in) {
    MegaConfig& c = cfg_;
    if (c.hdim == 0) c.hdim = 2 * c.d_model;
    const int64_t D = c.d_model, z = c.zdim, h = c.hdim;
    HIPPO_CHECK(D > 0 && z > 0 && h > 0 && c.ndim > 0, "Mega: bad sizes d_model=%lld zdim=%lld hdim=%lld ndim=%lld",
                (long long)D, (long long)z, (long long)h, (long long)c.ndim);
    HIPPO_CHECK(c.chunk >= 0 && c.max_positions >= 1, "Mega: bad chunk %lld / max_positions %lld", (long long)c.chunk,
                (long long)c.max_positions);
    MegaEMAConfig ec;
    ec.d_model = D;
    ec.ndim = c.ndim;
    ec.chunk = c.ema_chunk;
    move = register_module("move", std::make_shared<MegaEMA>(ec, rng));
    // The official init: Linear weights N(0, 0.02^2), biases 0; gamma N(0, 0.02^2), beta 0; the
    // bias table N(0, 0.02^2).
    auto lin = [&](const char* name, int64_t in, int64_t out) {
        auto l = register_module(name, std::make_shared<Linear>(in, out, true, rng));
        init::normal_(l->weight, 0.0f, 0.02f, rng);
        std::fill(l->bias.data(), l->bias.data() + l->bias.numel(), 0.0f);
        return l;
    };
    v_proj = lin("v_proj", D, h);
    mx_proj = lin("mx_proj", D, z + h + 2 * D);
    h_proj = lin("h_proj", h, D);
    gamma = Tensor::empty({2, z});
    init::normal_(gamma, 0.0f, 0.02f, rng);
    beta = Tensor::zeros({2, z});
    register_parameter("gamma", gamma);
    register_parameter("beta", beta);
    rel_pos_bias = Tensor::empty({2 * maxpos() - 1});
    init::normal_(rel_pos_bias, 0.0f, 0.02f, rng);
    auto rpb = register_module("rel_pos_bias", std::make_shared<Module>());
    rpb->register_parameter("rel_pos_bias", rel_pos_bias);
}

std::string MegaLayer::extra_repr() const {
    const char* fn = cfg_.fn == AttnFn::softmax ? "softmax" : cfg_.fn == AttnFn::laplace ? "laplace" : "relu2";
    return strf("d_model=%lld, zdim=%lld, hdim=%lld, ndim=%lld, attention=%s, chunk=%lld", (long long)cfg_.d_model,
                (long long)cfg_.zdim, (long long)cfg_.hdim, (long long)cfg_.ndim, fn, (long long)cfg_.chunk);
}

MegaLayer::Parts MegaLayer::parts(const Tensor& xn, const Tensor& mx) const {
    const int64_t D = cfg_.d_model, z = cfg_.zdim, h = cfg_.hdim;
    Parts p;
    p.v = silu(v_proj->forward(xn));
    std::vector<Tensor> b = split(mx_proj->forward(mx), {D, z + h, D}, -1);
    p.phi = sigmoid(b[0]);
    std::vector<Tensor> zr = split(silu(b[1]), {z, h}, -1);
    std::vector<Tensor> g = split(gamma, {1, 1}, 0), be = split(beta, {1, 1}, 0);  // (1, z) each
    p.q = add(mul(zr[0], g[0]), be[0]);
    p.k = add(mul(zr[0], g[1]), be[1]);
    p.r = zr[1];
    p.hx = b[2];
    return p;
}

Tensor MegaLayer::finish(const Parts& p, const Tensor& O, const Tensor& x) const {
    Tensor Hh = silu(add(p.hx, h_proj->forward(mul(O, p.r))));
    return mul(p.phi, sub(Hh, x));
}

Tensor MegaLayer::forward(const Tensor& xn, const Tensor& x) const {
    HIPPO_CHECK(xn.ndim() == 3 && xn.size(2) == cfg_.d_model && x.shape() == xn.shape(),
                "Mega: input must be (B, L, %lld), got %s", (long long)cfg_.d_model, xn.shape().str().c_str());
    const int64_t Bn = xn.size(0), L = xn.size(1);
    HIPPO_CHECK(cfg_.chunk > 0 || L <= cfg_.max_positions,
                "Mega: sequence length %lld exceeds max_positions %lld (mega_cfg.max_positions)", (long long)L,
                (long long)cfg_.max_positions);
    Parts p = parts(xn, move->forward(xn));
    AttentionOptions opt;
    opt.causal = true;
    opt.fn = cfg_.fn;
    opt.scale_by_key_count = cfg_.fn != AttnFn::softmax;
    opt.scale = cfg_.fn == AttnFn::softmax ? 0.0f : 1.0f;  // softmax: zdim^-1/2
    opt.rel_bias_center = maxpos() - 1;
    if (cfg_.chunk > 0 && L > cfg_.chunk) {
        // Mega-chunk: block-diagonal attention over chunks of `chunk` tokens.
        auto bm = std::make_shared<BlockMask>(make_block_mask(L, L, cfg_.chunk, cfg_.chunk));
        for (int64_t i = 0; i < bm->nbq; i++) bm->mask[size_t(i * bm->nbk + i)] = 1;
        opt.block_mask = bm;
    }
    Tensor O = attention(p.q.reshape({Bn, L, 1, cfg_.zdim}), p.k.reshape({Bn, L, 1, cfg_.zdim}),
                         p.v.reshape({Bn, L, 1, cfg_.hdim}), rel_pos_bias, opt);
    return finish(p, O.reshape({Bn, L, cfg_.hdim}), x);
}

MegaState MegaLayer::new_state(int64_t batch, int64_t max_len) const {
    MegaState st;
    st.batch = batch;
    st.cap = cfg_.chunk > 0 ? cfg_.chunk : std::max<int64_t>(1, std::min(max_len, cfg_.max_positions));
    st.ema = move->new_state(batch);
    st.k.assign(size_t(batch * st.cap * cfg_.zdim), 0.0f);
    st.v.assign(size_t(batch * st.cap * cfg_.hdim), 0.0f);
    return st;
}

namespace {

double laplace_fn(double x) {
    const double mu = std::sqrt(0.5), sigma = std::sqrt(0.25 / M_PI);
    return 0.5 * (1.0 + std::erf((x - mu) / (sigma * std::sqrt(2.0))));
}

}  // namespace

Tensor MegaLayer::step(const Tensor& xn, const Tensor& x, MegaState& st) const {
    NoGradGuard no_grad;
    const int64_t D = cfg_.d_model, z = cfg_.zdim, h = cfg_.hdim, Bn = st.batch;
    HIPPO_CHECK(xn.ndim() == 2 && xn.size(0) == Bn && xn.size(1) == D && x.shape() == xn.shape(),
                "Mega step: input must be (%lld, %lld), got %s", (long long)Bn, (long long)D, xn.shape().str().c_str());
    // Position of this token inside the visible window (the current chunk, or the whole prefix).
    const int64_t w = cfg_.chunk > 0 ? st.pos % cfg_.chunk : st.pos;
    HIPPO_CHECK(w < st.cap, "Mega step: %lld tokens exceed max_positions %lld", (long long)(st.pos + 1),
                (long long)st.cap);
    Parts p = parts(xn, move->step(xn, st.ema));
    Tensor q = p.q.contiguous(), k = p.k.contiguous(), v = p.v.contiguous();
    for (int64_t b = 0; b < Bn; b++) {
        std::copy(k.data() + b * z, k.data() + (b + 1) * z, st.k.data() + (b * st.cap + w) * z);
        std::copy(v.data() + b * h, v.data() + (b + 1) * h, st.v.data() + (b * st.cap + w) * h);
    }
    const float* rb = rel_pos_bias.data();
    const int64_t center = maxpos() - 1, nb = rel_pos_bias.numel();
    auto bias = [&](int64_t off) { return double(rb[std::clamp<int64_t>(center + off, 0, nb - 1)]); };
    Tensor O = Tensor::zeros({Bn, h});
    std::vector<double> s(static_cast<size_t>(w + 1)), acc(static_cast<size_t>(h));
    for (int64_t b = 0; b < Bn; b++) {
        const float* qb = q.data() + b * z;
        double mx = -1e300;
        for (int64_t j = 0; j <= w; j++) {
            const float* kj = st.k.data() + (b * st.cap + j) * z;
            double d = 0;
            for (int64_t i = 0; i < z; i++) d += double(qb[i]) * kj[i];
            d = cfg_.fn == AttnFn::softmax ? d / std::sqrt(double(z)) : d / double(w + 1);
            s[size_t(j)] = d + bias(j - w);
            mx = std::max(mx, s[size_t(j)]);
        }
        double tot = 0;
        for (int64_t j = 0; j <= w; j++) {
            double& e = s[size_t(j)];
            if (cfg_.fn == AttnFn::softmax) e = std::exp(e - mx);
            else if (cfg_.fn == AttnFn::laplace) e = laplace_fn(e);
            else e = e > 0 ? e * e : 0.0;
            tot += e;
        }
        const double norm = cfg_.fn == AttnFn::softmax ? 1.0 / tot : 1.0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j <= w; j++) {
            const float* vj = st.v.data() + (b * st.cap + j) * h;
            for (int64_t i = 0; i < h; i++) acc[size_t(i)] += s[size_t(j)] * vj[i];
        }
        for (int64_t i = 0; i < h; i++) O.data()[b * h + i] = float(acc[size_t(i)] * norm);
    }
    st.pos++;
    return finish(p, O, x);
}

Tensor MegaLayer::prefill(const Tensor& xn, const Tensor& x, MegaState& st) const {
    NoGradGuard no_grad;
    HIPPO_CHECK(xn.ndim() == 3 && xn.size(0) == st.batch && xn.size(2) == cfg_.d_model && st.pos == 0,
                "Mega prefill: input %s does not match a fresh state", xn.shape().str().c_str());
    // The token loop: the attention window of every token is what the steps keep; the outputs
    // equal the parallel mode's (tested).
    const int64_t L = xn.size(1), D = cfg_.d_model;
    Tensor y = Tensor::empty(xn.shape());
    for (int64_t t = 0; t < L; t++) {
        Tensor yt = step(xn.select(1, t).contiguous(), x.select(1, t).contiguous(), st);
        for (int64_t b = 0; b < st.batch; b++)
            std::copy(yt.data() + b * D, yt.data() + (b + 1) * D, y.data() + (b * L + t) * D);
    }
    return y;
}

}  // namespace hippo
