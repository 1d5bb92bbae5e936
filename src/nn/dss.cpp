#include "nn/dss.h"

#include <cmath>

#include "autograd/ops.h"
#include "common/check.h"
#include "kernels/diag_ssm.h"
#include "nn/init.h"

namespace hippo {

using cd = std::complex<double>;

namespace {

// The official code's bounded reciprocal (clamp variant): conj(x) / max(|x|^2, 1e-7).
constexpr double kRecipEps = 1e-7;

// exp(x) - 1 without cancellation for small |x| (dt lambda reaches 1e-4 .. 1e-5).
cd expm1c(cd x) {
    const double s = std::sin(0.5 * x.imag());
    return {std::expm1(x.real()) * std::cos(x.imag()) - 2.0 * s * s, std::exp(x.real()) * std::sin(x.imag())};
}

// DSS-exp: params {log_dt (H), Lambda_log_neg_re (N), Lambda_im (N), W (1, H, N, 2)}.
void dss_build(const std::vector<Tensor>& p, int64_t H, int64_t N, cd* log_z, cd* Wm) {
    const float *log_dt = p[0].data(), *a = p[1].data(), *b = p[2].data(), *W = p[3].data();
    for (int64_t h = 0; h < H; h++) {
        const double dt = std::exp(double(log_dt[h]));
        for (int64_t n = 0; n < N; n++) {
            const cd lam(-std::exp(double(a[n])), double(b[n]));
            const double nrm = std::norm(lam);
            const cd r = std::conj(lam) / std::max(nrm, kRecipEps);
            const size_t i = size_t(h * N + n);
            log_z[i] = dt * lam;
            Wm[i] = 0.5 * cd(W[2 * i], W[2 * i + 1]) * expm1c(dt * lam) * r;
        }
    }
}

std::vector<Tensor> dss_grads(const std::vector<Tensor>& p, int64_t H, int64_t N, const cd* gWm, const cd* glz) {
    const float *log_dt = p[0].data(), *a = p[1].data(), *b = p[2].data(), *W = p[3].data();
    Tensor g_log_dt = Tensor::zeros(p[0].shape()), g_a = Tensor::zeros(p[1].shape()), g_b = Tensor::zeros(p[2].shape()),
           gW = Tensor::empty(p[3].shape());
    std::vector<cd> g_lam(size_t(N), cd(0.0));
    for (int64_t h = 0; h < H; h++) {
        const double dt = std::exp(double(log_dt[h]));
        double g_dt = 0;
        for (int64_t n = 0; n < N; n++) {
            const size_t i = size_t(h * N + n);
            const cd lam(-std::exp(double(a[n])), double(b[n]));
            const double nrm = std::norm(lam);
            const bool clamped = nrm < kRecipEps;
            const cd r = std::conj(lam) / std::max(nrm, kRecipEps);
            const cd x = dt * lam, e = expm1c(x), ex = std::exp(x), f = e * r;
            const cd w(W[2 * i], W[2 * i + 1]);
            // Wm = w f / 2 (holomorphic in w and in x for fixed r).
            const cd gw = 0.5 * gWm[i] * std::conj(f);
            gW.data()[2 * i] = float(gw.real());
            gW.data()[2 * i + 1] = float(gw.imag());
            const cd gf = 0.5 * gWm[i] * std::conj(w);
            // Through x = dt lambda: from log z directly and from e(x) inside f.
            const cd gx = glz[i] + gf * std::conj(ex * r);
            cd gl = gx * dt;
            g_dt += (std::conj(gx) * lam).real();
            // Through r(lambda): Wirtinger derivatives r_l = -1/l^2, r_lbar = 0 (or 0, 1/eps clamped).
            if (!clamped)
                gl += gf * std::conj(e * (-1.0 / (lam * lam)));
            else
                gl += std::conj(gf) * e * (1.0 / kRecipEps);
            g_lam[size_t(n)] += gl;
        }
        g_log_dt.data()[h] = float(g_dt * dt);
    }
    for (int64_t n = 0; n < N; n++) {
        g_a.data()[n] = float(g_lam[size_t(n)].real() * -std::exp(double(a[n])));
        g_b.data()[n] = float(g_lam[size_t(n)].imag());
    }
    return {g_log_dt, g_a, g_b, gW};
}

// DLR: params {Lambda_log_neg_re (N) = rho, Lambda_im (N) = theta, W (1, H, N, 2)}.
void dlr_build(const std::vector<Tensor>& p, int64_t H, int64_t N, cd* log_z, cd* Wm) {
    const float *rho = p[0].data(), *th = p[1].data(), *W = p[2].data();
    for (int64_t h = 0; h < H; h++)
        for (int64_t n = 0; n < N; n++) {
            const size_t i = size_t(h * N + n);
            log_z[i] = cd(-double(rho[n]) * double(rho[n]), double(th[n]));
            Wm[i] = 0.5 * cd(W[2 * i], W[2 * i + 1]);
        }
}

std::vector<Tensor> dlr_grads(const std::vector<Tensor>& p, int64_t H, int64_t N, const cd* gWm, const cd* glz) {
    const float* rho = p[0].data();
    Tensor g_rho = Tensor::empty(p[0].shape()), g_th = Tensor::empty(p[1].shape()), gW = Tensor::empty(p[2].shape());
    for (int64_t n = 0; n < N; n++) {
        cd gl(0.0);
        for (int64_t h = 0; h < H; h++) gl += glz[h * N + n];
        g_rho.data()[n] = float(gl.real() * -2.0 * double(rho[n]));
        g_th.data()[n] = float(gl.imag());
    }
    for (int64_t i = 0; i < H * N; i++) {
        gW.data()[2 * i] = float(0.5 * gWm[i].real());
        gW.data()[2 * i + 1] = float(0.5 * gWm[i].imag());
    }
    return {g_rho, g_th, gW};
}

}  // namespace

DSS::DSS(const DSSConfig& cfg_in, Rng& rng) : cfg_(cfg_in) {
    DSSConfig& c = cfg_;
    const bool dlr = c.kernel == "dlr";
    HIPPO_CHECK(c.kernel == "dss" || dlr, "DSS: unknown kernel '%s' (expected dss or dlr)", c.kernel.c_str());
    if (c.init.empty()) c.init = dlr ? "omega" : "lin";
    if (c.dt_min <= 0) c.dt_min = dlr ? 1e-4 : 1e-3;
    if (c.dt_max <= 0) c.dt_max = 1e-1;
    const int64_t H = c.d_model, N = c.d_state;
    HIPPO_CHECK(H > 0 && N > 0, "%s: bad sizes d_model=%lld d_state=%lld", type_name().c_str(), (long long)H,
                (long long)N);
    HIPPO_CHECK(c.dt_max >= c.dt_min, "%s: bad dt range [%g, %g]", type_name().c_str(), c.dt_min, c.dt_max);
    HIPPO_CHECK(dlr ? (c.init == "omega" || c.init == "randn") : (c.init == "lin" || c.init == "randn"),
                "%s: unknown initialisation '%s' (expected %s)", type_name().c_str(), c.init.c_str(),
                dlr ? "omega or randn" : "lin or randn");
    const double lo = std::log(c.dt_min), hi = std::log(c.dt_max);
    Lambda_log_neg_re = Tensor::empty({N});
    Lambda_im = Tensor::empty({N});
    W = Tensor::empty({1, H, N, 2});
    auto kernel = register_module("kernel", std::make_shared<Module>());
    if (!dlr) {
        // log dt per feature; lambda = -1/2 + i pi n (lin) or -1/2 + i N(0, 1) (randn).
        log_dt = Tensor::empty({H});
        for (int64_t h = 0; h < H; h++) log_dt.data()[h] = float(lo + rng.uniform_double() * (hi - lo));
        for (int64_t n = 0; n < N; n++) {
            Lambda_log_neg_re.data()[n] = float(std::log(0.5));
            Lambda_im.data()[n] = float(c.init == "lin" ? M_PI * double(n) : rng.normal());
        }
        init::normal_(W, 0.0f, 1.0f, rng);
        kernel->register_parameter("log_dt", log_dt, ParamTag::ssm);
    } else {
        // Per mode dt log-uniform; Re lambda = -dt/2 stored as sqrt(dt/2); Im lambda on the N-th
        // roots of unity (omega) or N(0, 1), wrapped into [0, 2 pi).
        for (int64_t n = 0; n < N; n++) {
            const double dt = std::exp(lo + rng.uniform_double() * (hi - lo));
            Lambda_log_neg_re.data()[n] = float(std::sqrt(0.5 * dt));
            double im = c.init == "omega" ? 2.0 * M_PI * double(n) / double(N) : rng.normal();
            im = std::fmod(im, 2.0 * M_PI);
            if (im < 0) im += 2.0 * M_PI;
            Lambda_im.data()[n] = float(im);
        }
        const double scale = c.W_scale > 0 ? c.W_scale : 1.0 / double(N);
        init::normal_(W, 0.0f, float(scale), rng);
    }
    kernel->register_parameter("Lambda_log_neg_re", Lambda_log_neg_re, ParamTag::ssm);
    kernel->register_parameter("Lambda_im", Lambda_im, ParamTag::ssm);
    kernel->register_parameter("W", W, ParamTag::ssm);
    D = Tensor::empty({1, H});
    init::normal_(D, 0.0f, 1.0f, rng);
    register_parameter("D", D);
    output_linear = register_module("output_linear", std::make_shared<Linear>(H, H, true, rng));
}

std::string DSS::extra_repr() const {
    return strf("d_model=%lld, d_state=%lld, init=%s, dt=[%g, %g]", (long long)cfg_.d_model, (long long)cfg_.d_state,
                cfg_.init.c_str(), cfg_.dt_min, cfg_.dt_max);
}

ModalParameterisation DSS::parameterisation() const {
    ModalParameterisation mp;
    const int64_t H = cfg_.d_model, N = cfg_.d_state;
    mp.Hk = H;
    mp.M = N;
    if (cfg_.kernel == "dlr") {
        mp.name = "dlr_conv";
        mp.params = {Lambda_log_neg_re, Lambda_im, W};
        mp.build = [H, N](const std::vector<Tensor>& p, cd* lz, cd* w) { dlr_build(p, H, N, lz, w); };
        mp.grads = [H, N](const std::vector<Tensor>& p, const cd* gw, const cd* glz) {
            return dlr_grads(p, H, N, gw, glz);
        };
    } else {
        mp.name = "dss_conv";
        mp.params = {log_dt, Lambda_log_neg_re, Lambda_im, W};
        mp.build = [H, N](const std::vector<Tensor>& p, cd* lz, cd* w) { dss_build(p, H, N, lz, w); };
        mp.grads = [H, N](const std::vector<Tensor>& p, const cd* gw, const cd* glz) {
            return dss_grads(p, H, N, gw, glz);
        };
    }
    return mp;
}

void DSS::modal(cd* log_z, cd* Wm) const {
    ModalParameterisation mp = parameterisation();
    std::vector<Tensor> p;
    for (const Tensor& t : mp.params) p.push_back(t.contiguous());
    mp.build(p, log_z, Wm);
}

Tensor DSS::ssm(const Tensor& u, std::vector<cd>* final_X) const {
    HIPPO_CHECK(u.ndim() == 3 && u.size(2) == cfg_.d_model, "%s: input must be (B, L, %lld), got %s",
                type_name().c_str(), (long long)cfg_.d_model, u.shape().str().c_str());
    return modal_conv(u, D, parameterisation(), cfg_.chunk, final_X);
}

Tensor DSS::forward(const Tensor& u) const { return output_linear->forward(gelu(ssm(u))); }

DSSState DSS::new_state(int64_t batch) const {
    const int64_t H = cfg_.d_model, N = cfg_.d_state;
    DSSState st;
    st.batch = batch;
    st.x.assign(size_t(batch * H * N), {0.0f, 0.0f});
    std::vector<cd> lz(size_t(H * N)), w(size_t(H * N));
    modal(lz.data(), w.data());
    st.z.resize(size_t(H * N));
    st.W.resize(size_t(H * N));
    st.one.assign(size_t(H * N), {1.0f, 0.0f});
    for (size_t i = 0; i < lz.size(); i++) {
        st.z[i] = std::complex<float>(std::exp(lz[i]));
        st.W[i] = std::complex<float>(w[i]);
    }
    return st;
}

Tensor DSS::prefill(const Tensor& u, DSSState& st) const {
    NoGradGuard no_grad;
    HIPPO_CHECK(u.ndim() == 3 && u.size(0) == st.batch && u.size(2) == cfg_.d_model,
                "%s prefill: input %s does not match the state", type_name().c_str(), u.shape().str().c_str());
    std::vector<cd> fx;
    Tensor z = ssm(u, &fx);
    for (size_t i = 0; i < fx.size(); i++) st.x[i] = std::complex<float>(fx[i]);
    return output_linear->forward(gelu(z));
}

Tensor DSS::step(const Tensor& u, DSSState& st) const {
    NoGradGuard no_grad;
    const int64_t H = cfg_.d_model, N = cfg_.d_state;
    HIPPO_CHECK(u.ndim() == 2 && u.size(0) == st.batch && u.size(1) == H, "%s step: input must be (%lld, %lld), got %s",
                type_name().c_str(), (long long)st.batch, (long long)H, u.shape().str().c_str());
    Tensor uc = u.contiguous(), Dc = D.contiguous();
    Tensor z = Tensor::empty({st.batch, H});
    for (int64_t b = 0; b < st.batch; b++) {
        const float* w = uc.data() + b * H;
        float* zb = z.data() + b * H;
        diag_ssm_step(zb, st.x.data() + b * H * N, w, st.z.data(), st.one.data(), st.W.data(), H, N);
        for (int64_t h = 0; h < H; h++) zb[h] += Dc.data()[h] * w[h];
    }
    return output_linear->forward(gelu(z));
}

}  // namespace hippo
