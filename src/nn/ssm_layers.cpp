#include "nn/ssm_layers.h"

#include <algorithm>
#include <cmath>

#include "common/runtime.h"

#include "autograd/ops.h"
#include "kernels/diag_ssm.h"
#include "kernels/ssm_kernel.h"
#include "nn/init.h"

namespace hippo {

void s4d_init(Tensor& log_dt, Tensor& inv_A_real, Tensor& A_imag, Tensor& B, Tensor& C, const std::string& init,
              float dt_min, float dt_max, Rng& rng) {
    HIPPO_CHECK(init == "lin" || init == "inv", "unknown S4D initialisation '%s' (expected lin or inv)", init.c_str());
    HIPPO_CHECK(dt_min > 0 && dt_max >= dt_min, "bad dt range [%g, %g]", double(dt_min), double(dt_max));
    const int64_t H = log_dt.numel(), M = A_imag.numel() / H;
    const double N = 2.0 * double(M);
    for (int64_t h = 0; h < H; h++)
        log_dt.data()[h] = float(std::log(double(dt_min)) + rng.uniform_double() * (std::log(double(dt_max)) - std::log(double(dt_min))));
    for (int64_t h = 0; h < H; h++)
        for (int64_t m = 0; m < M; m++) {
            int64_t i = h * M + m;
            inv_A_real.data()[i] = float(std::log(0.5));
            A_imag.data()[i] = float(init == "lin" ? M_PI * double(m) : N / M_PI * (N / (2.0 * double(m) + 1.0) - 1.0));
            B.data()[2 * i] = 1.0f;
            B.data()[2 * i + 1] = 0.0f;
            C.data()[2 * i] = float(rng.normal() * std::sqrt(0.5));
            C.data()[2 * i + 1] = float(rng.normal() * std::sqrt(0.5));
        }
}

// ---------------------------------------------------------------------------------------------
// H3

H3::H3(const H3Config& cfg, Rng& rng) : cfg_(cfg) {
    const int64_t d = cfg.d_model, N = cfg.d_state, P = cfg.head_dim;
    HIPPO_CHECK(d > 0, "H3: d_model must be positive");
    HIPPO_CHECK(N >= 2 && N % 2 == 0, "H3: d_state must be even and >= 2, got %lld", (long long)N);
    HIPPO_CHECK(P >= 1 && d % P == 0, "H3: d_model %lld is not a multiple of head_dim %lld", (long long)d, (long long)P);
    const int64_t H = d / P, M = N / 2;
    q_proj = register_module("q_proj", std::make_shared<Linear>(d, d, true, rng));
    k_proj = register_module("k_proj", std::make_shared<Linear>(d, d, true, rng));
    v_proj = register_module("v_proj", std::make_shared<Linear>(d, d, true, rng));

    // Shift SSM: B = e1, C ~ kaiming-uniform(a = sqrt 5) on (d, 1, N) i.e. U(+-1/sqrt N), D ~ N(0, 1).
    auto ssm_k_kernel = register_module("ssm_k_kernel", std::make_shared<Module>());
    auto shift_kernel = ssm_k_kernel->register_module("kernel", std::make_shared<Module>());
    shift_B = Tensor::zeros({d, N});
    for (int64_t c = 0; c < d; c++) shift_B.data()[c * N] = 1.0f;
    shift_C = Tensor::empty({1, d, N});
    float bound = float(1.0 / std::sqrt(double(N)));
    init::uniform_(shift_C, -bound, bound, rng);
    shift_kernel->register_parameter("B", shift_B, ParamTag::ssm);
    shift_kernel->register_parameter("C", shift_C);
    shift_D = Tensor::empty({d});
    init::normal_(shift_D, 0.0f, 1.0f, rng);
    register_parameter("ssm_k_D", shift_D);

    // Diagonal SSM (S4D-Lin by default, bilinear).
    auto kernel = register_module("kernel", std::make_shared<Module>());
    auto diag = kernel->register_module("kernel", std::make_shared<Module>());
    log_dt = Tensor::empty({H});
    inv_A_real = Tensor::empty({H, M});
    A_imag = Tensor::empty({H, M});
    ssm_B = Tensor::empty({H, M, 2});
    ssm_C = Tensor::empty({1, H, M, 2});
    s4d_init(log_dt, inv_A_real, A_imag, ssm_B, ssm_C, cfg.init, cfg.dt_min, cfg.dt_max, rng);
    diag->register_parameter("log_dt", log_dt, ParamTag::ssm);
    diag->register_parameter("inv_A_real", inv_A_real, ParamTag::ssm);
    diag->register_parameter("A_imag", A_imag, ParamTag::ssm);
    diag->register_parameter("B", ssm_B, ParamTag::ssm);
    diag->register_parameter("C", ssm_C);
    D = Tensor::empty({H});
    init::normal_(D, 0.0f, 1.0f, rng);
    register_parameter("D", D);
    output_linear = register_module("output_linear", std::make_shared<Linear>(d, d, true, rng));
}

std::string H3::extra_repr() const {
    return strf("d_model=%lld, d_state=%lld, head_dim=%lld, %s, init=%s", (long long)cfg_.d_model,
                (long long)cfg_.d_state, (long long)cfg_.head_dim,
                cfg_.disc == Discretization::bilinear ? "bilinear" : "zoh", cfg_.init.c_str());
}

Tensor H3::mix(const Tensor& q, const Tensor& k, const Tensor& v, std::vector<std::complex<float>>* final_x) const {
    const int64_t P = cfg_.head_dim;
    Tensor kt = shift_ssm(k, shift_B, shift_C, shift_D);
    SsmConvOptions opt;
    opt.disc = cfg_.disc;
    opt.chunk = cfg_.chunk;
    if (P == 1) return ssm_conv(kt, v, q, log_dt, inv_A_real, A_imag, ssm_B, ssm_C, D, opt, final_x);
    // Multi-head: w[t,h,i,j] = kt[t,hP+i] v[t,hP+j], one kernel per head for its P*P channels,
    // o[t,h,j] = sum_i q[t,hP+i] z[t,h,i,j]; output channel h P + j.
    const int64_t Bn = q.size(0), L = q.size(1), d = q.size(2), H = d / P;
    Tensor w = mul(kt.reshape({Bn, L, H, P, 1}), v.reshape({Bn, L, H, 1, P})).reshape({Bn, L, H * P * P});
    opt.channels_per_kernel = P * P;
    Tensor z = ssm_conv(w, Tensor(), Tensor(), log_dt, inv_A_real, A_imag, ssm_B, ssm_C, D, opt, final_x);
    Tensor o = sum(mul(z.reshape({Bn, L, H, P, P}), q.reshape({Bn, L, H, P, 1})), {3});
    return o.reshape({Bn, L, d});
}

Tensor H3::forward(const Tensor& u) const {
    HIPPO_CHECK(u.ndim() == 3 && u.size(2) == cfg_.d_model, "H3: input must be (B, L, %lld), got %s",
                (long long)cfg_.d_model, u.shape().str().c_str());
    return output_linear->forward(mix(q_proj->forward(u), k_proj->forward(u), v_proj->forward(u), nullptr));
}

H3State H3::new_state(int64_t batch) const {
    const int64_t d = cfg_.d_model, N = cfg_.d_state, P = cfg_.head_dim, M = N / 2, H = d / P;
    H3State st;
    st.batch = batch;
    st.keys.assign(size_t(batch * N * d), 0.0f);
    st.x.assign(size_t(batch * H * P * P * M), {0.0f, 0.0f});
    std::vector<float> taps(static_cast<size_t>(d * N));  // (D, N)
    shift_kernel_forward(taps.data(), shift_B.data(), shift_C.data(), d, N);
    st.taps.resize(size_t(N * d));  // (N, D): a tap's weights for all channels are contiguous
    for (int64_t c = 0; c < d; c++)
        for (int64_t j = 0; j < N; j++) st.taps[size_t(j * d + c)] = taps[size_t(c * N + j)];
    st.dA.resize(size_t(H * M));
    st.dB.resize(size_t(H * M));
    st.C.resize(size_t(H * M));
    diag_ssm_discretize(st.dA.data(), st.dB.data(), st.C.data(), log_dt.data(), inv_A_real.data(), A_imag.data(),
                        ssm_B.data(), ssm_C.data(), H, M, cfg_.disc);
    return st;
}

Tensor H3::prefill(const Tensor& u, H3State& st) const {
    NoGradGuard no_grad;
    HIPPO_CHECK(u.ndim() == 3 && u.size(0) == st.batch && u.size(2) == cfg_.d_model,
                "H3 prefill: input %s does not match a state for batch %lld, width %lld", u.shape().str().c_str(),
                (long long)st.batch, (long long)cfg_.d_model);
    HIPPO_CHECK(st.pos == 0, "H3 prefill: the state has already consumed %lld tokens", (long long)st.pos);
    const int64_t Bn = u.size(0), L = u.size(1), d = cfg_.d_model, N = cfg_.d_state;
    Tensor q = q_proj->forward(u), k = k_proj->forward(u), v = v_proj->forward(u);
    std::vector<std::complex<float>> fx;
    Tensor y = output_linear->forward(mix(q, k, v, &fx));
    st.x = std::move(fx);
    const float* kp = k.data();
    for (int64_t b = 0; b < Bn; b++)
        for (int64_t t = std::max<int64_t>(0, L - N); t < L; t++)
            std::copy(kp + (b * L + t) * d, kp + (b * L + t + 1) * d, st.keys.begin() + (b * N + t % N) * d);
    st.pos = L;
    return y;
}

// The shift SSM of one step for G sequences: kt[g] (D) += sum_j taps_j * k_{pos-j} of sequence g,
// each tap row loaded once for the G sequences. ring[g]: (N, D) keys of sequence g, slot t % N.
constexpr int64_t kMaxGroup = 4;
template <int G>
static void shift_taps_accumulate(float* kt, float* const* ring, const float* taps, int64_t d, int64_t N, int64_t pos,
                                  int64_t ntaps) {
    for (int64_t j = 0; j < ntaps; j++) {
        const float* tj = taps + j * d;
        const int64_t row = ((pos - j) % N) * d;
        const float* kj[G];
        for (int g = 0; g < G; g++) kj[g] = ring[g] + row;
#pragma omp simd
        for (int64_t c = 0; c < d; c++) {
            const float t = tj[c];
            for (int g = 0; g < G; g++) kt[g * d + c] += t * kj[g][c];
        }
    }
}

Tensor H3::step(const Tensor& u, H3State& st) const {
    NoGradGuard no_grad;
    const int64_t d = cfg_.d_model, N = cfg_.d_state, P = cfg_.head_dim, M = N / 2, H = d / P;
    HIPPO_CHECK(u.ndim() == 2 && u.size(0) == st.batch && u.size(1) == d,
                "H3 step: input must be (%lld, %lld), got %s", (long long)st.batch, (long long)d, u.shape().str().c_str());
    Tensor q = q_proj->forward(u), k = k_proj->forward(u), v = v_proj->forward(u);
    Tensor o = Tensor::zeros({st.batch, d});
    const int64_t slot = st.pos % N, taps = std::min(N, st.pos + 1);
    const float* Dk = shift_D.data();
    const float* Dd = D.data();
    // Sequences go in groups of up to kMaxGroup (as many as keep every thread busy): the shift taps
    // and dA, dB, C (about 1 KB per channel, 786 KB per layer at the 125M shape) are then fetched
    // once per group from L2/L3 rather than once per sequence, while each sequence's own state (its
    // ring of keys and its modes) still streams contiguously. Batch 8 on 2 threads, 11 layers:
    // 3.9 -> 3.1 ms per step.
    const int64_t G = std::clamp<int64_t>(st.batch / std::max(1, num_threads()), 1, kMaxGroup);
    const int64_t groups = (st.batch + G - 1) / G;
#pragma omp parallel for schedule(static) if (st.batch * d >= 4096)
    for (int64_t grp = 0; grp < groups; grp++) {
        const int64_t b0 = grp * G, g_n = std::min(G, st.batch - b0);
        std::vector<float> kt_buf(static_cast<size_t>(g_n * d));
        std::vector<float> w_buf(static_cast<size_t>(P * P)), z_buf(static_cast<size_t>(P * P));  // (P, P)
        float* ring[kMaxGroup];
        for (int64_t g = 0; g < g_n; g++) {
            const float* kb = k.data() + (b0 + g) * d;
            ring[g] = st.keys.data() + (b0 + g) * N * d;
            std::copy(kb, kb + d, ring[g] + slot * d);
            float* kt = kt_buf.data() + g * d;
            for (int64_t c = 0; c < d; c++) kt[c] = Dk[c] * kb[c];
        }
        switch (g_n) {
            case 1: shift_taps_accumulate<1>(kt_buf.data(), ring, st.taps.data(), d, N, st.pos, taps); break;
            case 2: shift_taps_accumulate<2>(kt_buf.data(), ring, st.taps.data(), d, N, st.pos, taps); break;
            case 3: shift_taps_accumulate<3>(kt_buf.data(), ring, st.taps.data(), d, N, st.pos, taps); break;
            default: shift_taps_accumulate<4>(kt_buf.data(), ring, st.taps.data(), d, N, st.pos, taps); break;
        }
        for (int64_t h = 0; h < H; h++) {
            const std::complex<float>* dA = st.dA.data() + h * M;
            const std::complex<float>* dB = st.dB.data() + h * M;
            const std::complex<float>* Cc = st.C.data() + h * M;
            for (int64_t g = 0; g < g_n; g++) {
                const float* kt = kt_buf.data() + g * d;
                const float* vb = v.data() + (b0 + g) * d;
                const float* qb = q.data() + (b0 + g) * d;
                float* ob = o.data() + (b0 + g) * d;
                std::complex<float>* xh = st.x.data() + ((b0 + g) * H + h) * P * P * M;  // (P, P, M)
                for (int64_t i = 0; i < P; i++)
                    for (int64_t j = 0; j < P; j++) w_buf[size_t(i * P + j)] = kt[h * P + i] * vb[h * P + j];
                diag_ssm_step(z_buf.data(), xh, w_buf.data(), dA, dB, Cc, P * P, M, P * P);
                for (int64_t i = 0; i < P; i++)
                    for (int64_t j = 0; j < P; j++) {
                        const float w = w_buf[size_t(i * P + j)];
                        ob[h * P + j] += qb[h * P + i] * (z_buf[size_t(i * P + j)] + Dd[h] * w);
                    }
            }
        }
    }
    st.pos++;
    return output_linear->forward(o);
}

// ---------------------------------------------------------------------------------------------
// S4D

S4D::S4D(const S4DConfig& cfg, Rng& rng) : cfg_(cfg) {
    const int64_t d = cfg.d_model, N = cfg.d_state, M = N / 2;
    HIPPO_CHECK(d > 0 && N >= 2 && N % 2 == 0, "S4D: bad sizes d_model=%lld d_state=%lld", (long long)d, (long long)N);
    auto kernel = register_module("kernel", std::make_shared<Module>());
    log_dt = Tensor::empty({d});
    inv_A_real = Tensor::empty({d, M});
    A_imag = Tensor::empty({d, M});
    ssm_B = Tensor::empty({d, M, 2});
    ssm_C = Tensor::empty({d, M, 2});
    s4d_init(log_dt, inv_A_real, A_imag, ssm_B, ssm_C, cfg.init, cfg.dt_min, cfg.dt_max, rng);
    kernel->register_parameter("log_dt", log_dt, ParamTag::ssm);
    kernel->register_parameter("inv_A_real", inv_A_real, ParamTag::ssm);
    kernel->register_parameter("A_imag", A_imag, ParamTag::ssm);
    kernel->register_parameter("B", ssm_B, ParamTag::ssm);
    kernel->register_parameter("C", ssm_C);
    D = Tensor::empty({d});
    init::normal_(D, 0.0f, 1.0f, rng);
    register_parameter("D", D);
    output_linear = register_module("output_linear", std::make_shared<Linear>(d, cfg.glu ? 2 * d : d, true, rng));
}

std::string S4D::extra_repr() const {
    return strf("d_model=%lld, d_state=%lld, %s, init=%s, %s", (long long)cfg_.d_model, (long long)cfg_.d_state,
                cfg_.disc == Discretization::bilinear ? "bilinear" : "zoh", cfg_.init.c_str(),
                cfg_.glu ? "glu" : "linear");
}

Tensor S4D::head(const Tensor& z) const {
    Tensor y = output_linear->forward(gelu(z));
    if (!cfg_.glu) return y;
    std::vector<Tensor> ab = split(y, {cfg_.d_model, cfg_.d_model}, -1);
    return mul(ab[0], sigmoid(ab[1]));
}

Tensor S4D::forward(const Tensor& u) const {
    HIPPO_CHECK(u.ndim() == 3 && u.size(2) == cfg_.d_model, "S4D: input must be (B, L, %lld), got %s",
                (long long)cfg_.d_model, u.shape().str().c_str());
    SsmConvOptions opt;
    opt.disc = cfg_.disc;
    opt.chunk = cfg_.chunk;
    return head(ssm_conv(u, Tensor(), Tensor(), log_dt, inv_A_real, A_imag, ssm_B, ssm_C, D, opt));
}

S4DState S4D::new_state(int64_t batch) const {
    S4DState st;
    st.batch = batch;
    const int64_t d = cfg_.d_model, M = cfg_.d_state / 2;
    st.x.assign(size_t(batch * d * M), {0.0f, 0.0f});
    st.dA.resize(size_t(d * M));
    st.dB.resize(size_t(d * M));
    st.C.resize(size_t(d * M));
    diag_ssm_discretize(st.dA.data(), st.dB.data(), st.C.data(), log_dt.data(), inv_A_real.data(), A_imag.data(),
                        ssm_B.data(), ssm_C.data(), d, M, cfg_.disc);
    return st;
}

Tensor S4D::prefill(const Tensor& u, S4DState& st) const {
    NoGradGuard no_grad;
    HIPPO_CHECK(u.ndim() == 3 && u.size(0) == st.batch && u.size(2) == cfg_.d_model,
                "S4D prefill: input %s does not match the state", u.shape().str().c_str());
    SsmConvOptions opt;
    opt.disc = cfg_.disc;
    opt.chunk = cfg_.chunk;
    std::vector<std::complex<float>> fx;
    Tensor z = ssm_conv(u, Tensor(), Tensor(), log_dt, inv_A_real, A_imag, ssm_B, ssm_C, D, opt, &fx);
    st.x = std::move(fx);
    return head(z);
}

Tensor S4D::step(const Tensor& u, S4DState& st) const {
    NoGradGuard no_grad;
    const int64_t d = cfg_.d_model, M = cfg_.d_state / 2;
    HIPPO_CHECK(u.ndim() == 2 && u.size(0) == st.batch && u.size(1) == d, "S4D step: input must be (%lld, %lld), got %s",
                (long long)st.batch, (long long)d, u.shape().str().c_str());
    Tensor uc = u.contiguous();
    Tensor z = Tensor::empty({st.batch, d});
    for (int64_t b = 0; b < st.batch; b++) {
        const float* w = uc.data() + b * d;
        float* zb = z.data() + b * d;
        diag_ssm_step(zb, st.x.data() + b * d * M, w, st.dA.data(), st.dB.data(), st.C.data(), d, M);
        for (int64_t c = 0; c < d; c++) zb[c] += D.data()[c] * w[c];
    }
    return head(z);
}

}  // namespace hippo
