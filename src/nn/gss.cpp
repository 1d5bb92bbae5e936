#include "nn/gss.h"

#include <cmath>

#include "autograd/ops.h"
#include "kernels/diag_ssm.h"
#include "nn/init.h"

namespace hippo {

GSS::GSS(const GSSConfig& cfg, Rng& rng) : cfg_(cfg) {
    const int64_t E = cfg.d_model, N = cfg.d_state;
    HIPPO_CHECK(E > 0, "GSS: d_model must be positive");
    HIPPO_CHECK(N >= 2 && N % 2 == 0, "GSS: d_state must be even and >= 2, got %lld", (long long)N);
    HIPPO_CHECK(cfg.expand >= 1, "GSS: expand must be >= 1");
    HIPPO_CHECK(cfg.bottleneck >= 1 && E % cfg.bottleneck == 0, "GSS: d_model %lld is not a multiple of bottleneck %lld",
                (long long)E, (long long)cfg.bottleneck);
    F_ = cfg.expand * E;
    H_ = E / cfg.bottleneck;
    const int64_t H = H_, M = N / 2;
    proj_v = register_module("proj_v", std::make_shared<Linear>(E, F_, true, rng));
    proj_u = register_module("proj_u", std::make_shared<Linear>(E, H, true, rng));
    auto kernel = register_module("kernel", std::make_shared<Module>());
    auto diag = kernel->register_module("kernel", std::make_shared<Module>());
    log_dt = Tensor::zeros({H});
    inv_A_real = Tensor::empty({H, M});
    A_imag = Tensor::empty({H, M});
    ssm_B = Tensor::zeros({H, M, 2});
    ssm_C = Tensor::empty({H, M, 2});
    for (int64_t i = 0; i < H * M; i++) {
        inv_A_real.data()[i] = float(rng.normal());
        A_imag.data()[i] = float(std::exp(rng.normal()));
        ssm_B.data()[2 * i] = 1.0f;
        ssm_C.data()[2 * i] = float(rng.normal() * std::sqrt(0.5));
        ssm_C.data()[2 * i + 1] = float(rng.normal() * std::sqrt(0.5));
    }
    diag->register_parameter("log_dt", log_dt, ParamTag::ssm);
    diag->register_parameter("inv_A_real", inv_A_real, ParamTag::ssm);
    diag->register_parameter("A_imag", A_imag, ParamTag::ssm);
    diag->register_parameter("B", ssm_B, ParamTag::ssm);
    diag->register_parameter("C", ssm_C);
    log_dt.set_requires_grad(false);  // Δ = 1 fixed
    ssm_B.set_requires_grad(false);   // B = 1 fixed
    D = Tensor::empty({H});
    init::normal_(D, 0.0f, 1.0f, rng);
    register_parameter("D", D);
    proj_c = register_module("proj_c", std::make_shared<Linear>(H, F_, true, rng));
    out_proj = register_module("out_proj", std::make_shared<Linear>(F_, E, true, rng));
}

std::string GSS::extra_repr() const {
    return strf("d_model=%lld, d_state=%lld, F=%lld, H=%lld, dss-exp dt=1", (long long)cfg_.d_model,
                (long long)cfg_.d_state, (long long)F_, (long long)H_);
}

SsmConvOptions GSS::conv_options() const {
    SsmConvOptions opt;
    opt.disc = Discretization::zoh;
    opt.chunk = cfg_.chunk;
    return opt;
}

Tensor GSS::head(const Tensor& y, const Tensor& v) const { return out_proj->forward(mul(proj_c->forward(y), v)); }

Tensor GSS::forward(const Tensor& x) const {
    HIPPO_CHECK(x.ndim() == 3 && x.size(2) == cfg_.d_model, "GSS: input must be (B, L, %lld), got %s",
                (long long)cfg_.d_model, x.shape().str().c_str());
    Tensor v = gelu(proj_v->forward(x));
    Tensor u = gelu(proj_u->forward(x));
    Tensor y = ssm_conv(u, Tensor(), Tensor(), log_dt, inv_A_real, A_imag, ssm_B, ssm_C, D, conv_options());
    return head(y, v);
}

GSSState GSS::new_state(int64_t batch) const {
    const int64_t H = H_, M = cfg_.d_state / 2;
    GSSState st;
    st.batch = batch;
    st.x.assign(size_t(batch * H * M), {0.0f, 0.0f});
    st.dA.resize(size_t(H * M));
    st.dB.resize(size_t(H * M));
    st.C.resize(size_t(H * M));
    // DSS-exp: ZOH with the frozen log_dt (0, i.e. dt = 1) and B (1), as the parallel mode uses them.
    diag_ssm_discretize(st.dA.data(), st.dB.data(), st.C.data(), log_dt.data(), inv_A_real.data(), A_imag.data(),
                        ssm_B.data(), ssm_C.data(), H, M, Discretization::zoh);
    return st;
}

Tensor GSS::prefill(const Tensor& x, GSSState& st) const {
    NoGradGuard no_grad;
    HIPPO_CHECK(x.ndim() == 3 && x.size(0) == st.batch && x.size(2) == cfg_.d_model,
                "GSS prefill: input %s does not match the state", x.shape().str().c_str());
    Tensor v = gelu(proj_v->forward(x));
    Tensor u = gelu(proj_u->forward(x));
    std::vector<std::complex<float>> fx;
    Tensor y = ssm_conv(u, Tensor(), Tensor(), log_dt, inv_A_real, A_imag, ssm_B, ssm_C, D, conv_options(), &fx);
    st.x = std::move(fx);
    return head(y, v);
}

Tensor GSS::step(const Tensor& x, GSSState& st) const {
    NoGradGuard no_grad;
    const int64_t E = cfg_.d_model, H = H_, M = cfg_.d_state / 2;
    HIPPO_CHECK(x.ndim() == 2 && x.size(0) == st.batch && x.size(1) == E, "GSS step: input must be (%lld, %lld), got %s",
                (long long)st.batch, (long long)E, x.shape().str().c_str());
    Tensor v = gelu(proj_v->forward(x));
    Tensor u = gelu(proj_u->forward(x)).contiguous();
    Tensor y = Tensor::empty({st.batch, H});
    for (int64_t b = 0; b < st.batch; b++) {
        const float* w = u.data() + b * H;
        float* yb = y.data() + b * H;
        diag_ssm_step(yb, st.x.data() + b * H * M, w, st.dA.data(), st.dB.data(), st.C.data(), H, M);
        for (int64_t h = 0; h < H; h++) yb[h] += D.data()[h] * w[h];
    }
    return head(y, v);
}

}  // namespace hippo
