#include "nn/s4.h"

#include <cmath>

#include "autograd/ops.h"
#include "autograd/ops_ssm.h"
#include "common/check.h"
#include "nn/init.h"

namespace hippo {

S4::S4(const S4Config& cfg_in, Rng& rng) : cfg_(cfg_in) {
    S4Config& c = cfg_;
    const int64_t H = c.d_model, N = c.d_state;
    if (c.n_ssm == 0) c.n_ssm = H;
    HIPPO_CHECK(H > 0 && N >= 2 && N % 2 == 0 && N <= 512, "S4: bad sizes d_model=%lld d_state=%lld (even, <= 512)",
                (long long)H, (long long)N);
    HIPPO_CHECK(c.n_ssm >= 1 && H % c.n_ssm == 0, "S4: n_ssm %lld does not divide d_model %lld", (long long)c.n_ssm,
                (long long)H);
    HIPPO_CHECK(c.l_max >= 1, "S4: l_max must be positive");
    HIPPO_CHECK(c.dt_min > 0 && c.dt_max >= c.dt_min, "S4: bad dt range [%g, %g]", c.dt_min, c.dt_max);
    const int64_t S = c.n_ssm, N2 = N / 2;
    auto layer = register_module("layer", std::make_shared<Module>());
    auto kernel = layer->register_module("kernel", std::make_shared<Module>());
    // The official init: dt log-uniform per feature, HiPPO-LegS (A, B, P) repeated over the S
    // copies, C complex normal (std 1/sqrt 2 per part), then attuned to l_max (C~), D ~ N(0, 1).
    inv_dt = Tensor::empty({H, 1});
    const double lo = std::log(c.dt_min), hi = std::log(c.dt_max);
    for (int64_t h = 0; h < H; h++) inv_dt.data()[h] = float(lo + rng.uniform_double() * (hi - lo));
    A_real = Tensor::empty({S, N2});
    A_imag = Tensor::empty({S, N2});
    B = Tensor::empty({1, S, N2, 2});
    P = Tensor::empty({1, S, N2, 2});
    s4_dplr_legs_init(A_real.data(), A_imag.data(), B.data(), P.data(), S, N2);
    C = Tensor::empty({1, H, N2, 2});
    init::normal_(C, 0.0f, float(std::sqrt(0.5)), rng);
    s4_dplr_setup_C(C.data(), C.data(), inv_dt.data(), A_real.data(), A_imag.data(), B.data(), P.data(), 1, H, S, N2,
                    c.l_max);
    kernel->register_parameter("inv_dt", inv_dt, ParamTag::ssm);
    kernel->register_parameter("A_real", A_real, ParamTag::ssm);
    kernel->register_parameter("A_imag", A_imag, ParamTag::ssm);
    kernel->register_parameter("B", B, ParamTag::ssm);
    kernel->register_parameter("P", P, ParamTag::ssm);
    kernel->register_parameter("C", C);
    D = Tensor::empty({1, H});
    init::normal_(D, 0.0f, 1.0f, rng);
    layer->register_parameter("D", D);
    auto ol = register_module("output_linear", std::make_shared<Module>());
    out = ol->register_module("0", std::make_shared<Linear>(H, 2 * H, true, rng));
}

std::string S4::extra_repr() const {
    return strf("d_model=%lld, d_state=%lld, n_ssm=%lld, l_max=%lld", (long long)cfg_.d_model, (long long)cfg_.d_state,
                (long long)cfg_.n_ssm, (long long)cfg_.l_max);
}

Tensor S4::head(const Tensor& z) const {
    std::vector<Tensor> ab = split(out->forward(gelu(z)), {cfg_.d_model, cfg_.d_model}, -1);
    return mul(ab[0], sigmoid(ab[1]));
}

Tensor S4::ssm(const Tensor& u) const {
    HIPPO_CHECK(u.ndim() == 3 && u.size(2) == cfg_.d_model, "S4: input must be (B, L, %lld), got %s",
                (long long)cfg_.d_model, u.shape().str().c_str());
    const int64_t L = u.size(1);
    HIPPO_CHECK(L <= cfg_.l_max, "S4: sequence length %lld exceeds the kernel length l_max = %lld (s4_cfg.l_max)",
                (long long)L, (long long)cfg_.l_max);
    Tensor K = s4_dplr_kernel(inv_dt, A_real, A_imag, B, P, C, cfg_.l_max, L);
    return long_conv(u, K, D);
}

Tensor S4::forward(const Tensor& u) const { return head(ssm(u)); }

S4State S4::new_state(int64_t batch) const {
    S4State st;
    st.batch = batch;
    const int64_t H = cfg_.d_model, N2 = cfg_.d_state / 2;
    st.x.assign(size_t(batch * H * N2), {0.0f, 0.0f});
    Tensor dt = inv_dt.contiguous(), ar = A_real.contiguous(), ai = A_imag.contiguous(), b = B.contiguous(),
           p = P.contiguous(), c = C.contiguous();
    s4_dplr_step_setup(st.tables, dt.data(), ar.data(), ai.data(), b.data(), p.data(), c.data(), 1, H, cfg_.n_ssm, N2,
                       cfg_.l_max);
    return st;
}

Tensor S4::step(const Tensor& u, S4State& st) const {
    NoGradGuard no_grad;
    const int64_t H = cfg_.d_model;
    HIPPO_CHECK(u.ndim() == 2 && u.size(0) == st.batch && u.size(1) == H, "S4 step: input must be (%lld, %lld), got %s",
                (long long)st.batch, (long long)H, u.shape().str().c_str());
    Tensor uc = u.contiguous(), Dc = D.contiguous();
    Tensor z = Tensor::empty({st.batch, H});
    s4_dplr_step(z.data(), st.x.data(), uc.data(), st.tables, st.batch * H);
    for (int64_t b = 0; b < st.batch; b++)
        for (int64_t h = 0; h < H; h++) z.data()[b * H + h] += Dc.data()[h] * uc.data()[b * H + h];
    return head(z);
}

Tensor S4::prefill(const Tensor& u, S4State& st) const {
    NoGradGuard no_grad;
    HIPPO_CHECK(u.ndim() == 3 && u.size(0) == st.batch && u.size(2) == cfg_.d_model,
                "S4 prefill: input %s does not match the state", u.shape().str().c_str());
    // The outputs from the parallel mode; the state by stepping the recurrence through the prompt
    // (O(L N) per feature, the order of the kernel generation itself).
    Tensor y = forward(u);
    const int64_t L = u.size(1), H = cfg_.d_model;
    Tensor uc = u.contiguous();
    std::vector<float> ut(size_t(st.batch * H)), yt(size_t(st.batch * H));
    for (int64_t t = 0; t < L; t++) {
        for (int64_t b = 0; b < st.batch; b++)
            for (int64_t h = 0; h < H; h++) ut[size_t(b * H + h)] = uc.data()[(b * L + t) * H + h];
        s4_dplr_step(yt.data(), st.x.data(), ut.data(), st.tables, st.batch * H);
    }
    return y;
}

}  // namespace hippo
