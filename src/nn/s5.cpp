#include "nn/s5.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <numeric>

#include "autograd/ops.h"
#include "common/check.h"
#include "kernels/gemm.h"

namespace hippo {

using cd = std::complex<double>;

// ---- HiPPO-N -----------------------------------------------------------------------------------

std::vector<double> hippo_legs_normal(int64_t N) {
    HIPPO_CHECK(N >= 1, "hippo_legs_normal: N = %lld", (long long)N);
    std::vector<double> S(size_t(N * N));
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < N; k++) {
            const double s = 0.5 * std::sqrt(double(2 * n + 1) * double(2 * k + 1));
            S[size_t(n * N + k)] = n == k ? -0.5 : n > k ? -s : s;
        }
    return S;
}

void hermitian_eigh(int64_t n, const cd* A_in, double* w, cd* V) {
    HIPPO_CHECK(n >= 1, "hermitian_eigh: n = %lld", (long long)n);
    const size_t N = size_t(n);
    // The Hermitian part (A + A^H) / 2, as numpy's and JAX's eigh read a nearly Hermitian input,
    // split into real and imaginary planes so that the row updates vectorise. T holds the
    // eigenvectors as rows (V^T), so that its updates are row updates too.
    std::vector<double> Ar(N * N), Ai(N * N), Tr(N * N, 0.0), Ti(N * N, 0.0);
    double norm2 = 0;
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < N; j++) {
            const cd v = 0.5 * (A_in[i * N + j] + std::conj(A_in[j * N + i]));
            Ar[i * N + j] = v.real();
            Ai[i * N + j] = v.imag();
            norm2 += std::norm(v);
        }
    for (size_t i = 0; i < N; i++) Tr[i * N + i] = 1.0;
    // rows p, q of X <- (c X_p - s e X_q, s X_p + c e X_q), e complex (er, ei), planes (Xr, Xi).
    auto rotate_rows = [N](double* Xr, double* Xi, size_t p, size_t q, double c, double s, double er, double ei) {
        double *pr = Xr + p * N, *pi = Xi + p * N, *qr = Xr + q * N, *qi = Xi + q * N;
        for (size_t k = 0; k < N; k++) {
            const double xr = pr[k], xi = pi[k], yr = er * qr[k] - ei * qi[k], yi = er * qi[k] + ei * qr[k];
            pr[k] = c * xr - s * yr;
            pi[k] = c * xi - s * yi;
            qr[k] = s * xr + c * yr;
            qi[k] = s * xi + c * yi;
        }
    };
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (size_t p = 0; p < N; p++)
            for (size_t q = p + 1; q < N; q++) off += Ar[p * N + q] * Ar[p * N + q] + Ai[p * N + q] * Ai[p * N + q];
        if (off <= 1e-32 * norm2) break;
        for (size_t p = 0; p < N; p++)
            for (size_t q = p + 1; q < N; q++) {
                const double mag = std::hypot(Ar[p * N + q], Ai[p * N + q]);
                if (mag == 0.0) continue;
                // With e = a_pq / |a_pq|, diag(1, conj(e)) turns the (p, q) block real symmetric; a
                // real Jacobi rotation (c, s) then zeroes it: A <- U^H A U with U's columns p, q
                // = (c e_p - s conj(e) e_q, s e_p + c conj(e) e_q).
                const double er = Ar[p * N + q] / mag, ei = Ai[p * N + q] / mag;
                const double alpha = Ar[p * N + p], gamma = Ar[q * N + q];
                const double tau = (gamma - alpha) / (2.0 * mag);
                const double t = std::fabs(tau) > 1e150 ? 0.5 / tau
                                                         : (tau >= 0 ? 1.0 : -1.0) / (std::fabs(tau) + std::sqrt(1.0 + tau * tau));
                const double c = 1.0 / std::sqrt(1.0 + t * t), s = t * c;
                // Rows p, q of U^H A (U^H's rows: c, -s e; s, c e); columns p, q of the result
                // follow by Hermitian symmetry, and the 2 x 2 block is known in closed form.
                rotate_rows(Ar.data(), Ai.data(), p, q, c, s, er, ei);
                for (size_t k = 0; k < N; k++) {
                    Ar[k * N + p] = Ar[p * N + k];
                    Ai[k * N + p] = -Ai[p * N + k];
                    Ar[k * N + q] = Ar[q * N + k];
                    Ai[k * N + q] = -Ai[q * N + k];
                }
                Ar[p * N + p] = alpha - t * mag;
                Ar[q * N + q] = gamma + t * mag;
                Ai[p * N + p] = Ai[q * N + q] = 0.0;
                Ar[p * N + q] = Ai[p * N + q] = Ar[q * N + p] = Ai[q * N + p] = 0.0;
                // V <- V U, i.e. rows p, q of T = V^T with conj(e): T_p <- c T_p - s conj(e) T_q, ...
                rotate_rows(Tr.data(), Ti.data(), p, q, c, s, er, -ei);
            }
    }
    std::vector<size_t> order(N);
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return Ar[a * N + a] < Ar[b * N + b]; });
    for (size_t j = 0; j < N; j++) {
        w[j] = Ar[order[j] * N + order[j]];
        for (size_t k = 0; k < N; k++) V[k * N + j] = cd(Tr[order[j] * N + k], Ti[order[j] * N + k]);
    }
}

void hippo_n_eig(int64_t N, cd* Lambda, cd* V) {
    // Every layer of a model asks for the same block size: solved once (a block of 256 takes
    // seconds of Jacobi sweeps), kept for the process.
    static std::mutex mu;
    static std::map<int64_t, std::pair<std::vector<cd>, std::vector<cd>>> cache;
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(N);
    if (it == cache.end()) {
        const std::vector<double> S = hippo_legs_normal(N);
        // S = -1/2 I + K: the eigenvalues are -1/2 + i eig(-i K); the real part is the official
        // mean of S's diagonal.
        std::vector<cd> M(size_t(N * N)), lam(static_cast<size_t>(N)), vec(size_t(N * N));
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < N; k++) {
                const double kk = S[size_t(n * N + k)] + (n == k ? 0.5 : 0.0);
                M[size_t(n * N + k)] = cd(0.0, -kk);
            }
        std::vector<double> w(static_cast<size_t>(N));
        hermitian_eigh(N, M.data(), w.data(), vec.data());
        for (int64_t n = 0; n < N; n++) lam[size_t(n)] = cd(-0.5, w[size_t(n)]);
        it = cache.emplace(N, std::make_pair(std::move(lam), std::move(vec))).first;
    }
    std::copy(it->second.first.begin(), it->second.first.end(), Lambda);
    std::copy(it->second.second.begin(), it->second.second.end(), V);
}

// ---- the layer ---------------------------------------------------------------------------------

namespace {

// jax.nn.initializers' truncated normal: N(0, 1) restricted to [-2, 2], rescaled so that the
// variance is std^2 (lecun_normal: std = 1 / sqrt(fan_in)).
double trunc_normal(Rng& rng, double std) {
    double z;
    do z = rng.normal();
    while (std::fabs(z) > 2.0);
    return z * std / 0.87962566103423978;
}

bool has_dense(const std::string& act) { return act != "gelu"; }

}  // namespace

S5::S5(const S5Config& cfg_in, Rng& rng) : cfg_(cfg_in) {
    const S5Config& c = cfg_;
    const int64_t H = c.d_model, P = c.d_state, J = c.blocks;
    HIPPO_CHECK(H > 0 && P > 0 && J > 0, "S5: bad sizes d_model=%lld d_state=%lld blocks=%lld", (long long)H,
                (long long)P, (long long)J);
    HIPPO_CHECK(P % J == 0 && (P / J) % 2 == 0,
                "S5: d_state %lld must be a multiple of blocks %lld with an even block size (conjugate pairs)",
                (long long)P, (long long)J);
    HIPPO_CHECK(c.dt_min > 0 && c.dt_max >= c.dt_min, "S5: bad dt range [%g, %g]", c.dt_min, c.dt_max);
    HIPPO_CHECK(c.C_init == "trunc_standard_normal" || c.C_init == "lecun_normal" || c.C_init == "complex_normal",
                "S5: unknown C_init '%s' (expected trunc_standard_normal, lecun_normal or complex_normal)",
                c.C_init.c_str());
    HIPPO_CHECK(c.activation == "gelu" || c.activation == "half_glu1" || c.activation == "half_glu2" ||
                    c.activation == "full_glu",
                "S5: unknown activation '%s' (expected gelu, half_glu1, half_glu2 or full_glu)", c.activation.c_str());
    const int64_t bs = P / J, hb = bs / 2, P2 = P / 2;

    // HiPPO-N of one block (bs, bs); its first hb eigenpairs on every block.
    std::vector<cd> lam_b(static_cast<size_t>(bs)), Vb(size_t(bs * bs));
    hippo_n_eig(bs, lam_b.data(), Vb.data());
    NoGradGuard ng;
    Lambda_re = Tensor::empty({P2});
    Lambda_im = Tensor::empty({P2});
    for (int64_t p = 0; p < P2; p++) {
        Lambda_re.data()[p] = float(lam_b[size_t(p % hb)].real());
        Lambda_im.data()[p] = float(lam_b[size_t(p % hb)].imag());
    }
    // B_tilde = V^-1 B with B (P, H) lecun_normal (fan_in = P), V^-1 = blockdiag(V_b[:, :hb]^H).
    {
        std::vector<double> Br(size_t(P * H));
        const double std_b = 1.0 / std::sqrt(double(P));
        for (auto& v : Br) v = trunc_normal(rng, std_b);
        B = Tensor::empty({P2, H, 2});
        for (int64_t j = 0; j < J; j++)
            for (int64_t i = 0; i < hb; i++)
                for (int64_t h = 0; h < H; h++) {
                    cd s(0.0);
                    for (int64_t r = 0; r < bs; r++) s += std::conj(Vb[size_t(r * bs + i)]) * Br[size_t((j * bs + r) * H + h)];
                    float* o = B.data() + ((j * hb + i) * H + h) * 2;
                    o[0] = float(s.real());
                    o[1] = float(s.imag());
                }
    }
    // C_tilde = C V with C (H, P) complex, V = blockdiag(V_b[:, :hb]); or complex_normal directly.
    auto init_CV = [&](double std) {
        std::vector<cd> Cr(size_t(H * P));
        for (auto& v : Cr) {
            const double re = trunc_normal(rng, std), im = trunc_normal(rng, std);
            v = cd(re, im);
        }
        Tensor t = Tensor::empty({H, P2, 2});
        for (int64_t h = 0; h < H; h++)
            for (int64_t j = 0; j < J; j++)
                for (int64_t i = 0; i < hb; i++) {
                    cd s(0.0);
                    for (int64_t r = 0; r < bs; r++) s += Cr[size_t(h * P + j * bs + r)] * Vb[size_t(r * bs + i)];
                    float* o = t.data() + (h * P2 + j * hb + i) * 2;
                    o[0] = float(s.real());
                    o[1] = float(s.imag());
                }
        return t;
    };
    seq = register_module("seq", std::make_shared<Module>());
    seq->register_parameter("Lambda_re", Lambda_re, ParamTag::ssm);
    seq->register_parameter("Lambda_im", Lambda_im, ParamTag::ssm);
    seq->register_parameter("B", B, ParamTag::ssm);
    if (c.C_init == "complex_normal") {
        C = Tensor::empty({H, (c.bidirectional ? 2 : 1) * P2, 2});
        for (int64_t i = 0; i < C.numel(); i++) C.data()[i] = float(rng.normal() * std::sqrt(0.5));
        seq->register_parameter("C", C);
    } else {
        // trunc_standard_normal: lecun_normal per row on (1, P, 2), fan_in = P; lecun_normal on
        // (H, P, 2): fan_in = P H.
        const double std_c = 1.0 / std::sqrt(double(c.C_init == "lecun_normal" ? P * H : P));
        C = init_CV(std_c);
        if (c.bidirectional) {
            C2 = init_CV(std_c);
            seq->register_parameter("C1", C);
            seq->register_parameter("C2", C2);
        } else {
            seq->register_parameter("C", C);
        }
    }
    D = Tensor::empty({H});
    for (int64_t h = 0; h < H; h++) D.data()[h] = float(rng.normal());
    seq->register_parameter("D", D);
    log_step = Tensor::empty({P2, 1});
    const double lo = std::log(c.dt_min), hi = std::log(c.dt_max);
    for (int64_t p = 0; p < P2; p++) log_step.data()[p] = float(lo + rng.uniform_double() * (hi - lo));
    seq->register_parameter("log_step", log_step, ParamTag::ssm);

    // flax Dense(H): kernel lecun_normal (fan_in = H), bias 0.
    auto dense = [&](const char* name) {
        auto lin = register_module(name, std::make_shared<Linear>(H, H, true, rng));
        const double std_w = 1.0 / std::sqrt(double(H));
        for (int64_t i = 0; i < lin->weight.numel(); i++) lin->weight.data()[i] = float(trunc_normal(rng, std_w));
        lin->bias.fill_(0.0f);
        return lin;
    };
    if (c.activation == "full_glu") out1 = dense("out1");
    if (has_dense(c.activation)) out2 = dense("out2");
}

std::string S5::extra_repr() const {
    const S5Config& c = cfg_;
    return strf("d_model=%lld, d_state=%lld (P2=%lld), blocks=%lld, dt=[%g, %g], activation=%s%s%s",
                (long long)c.d_model, (long long)c.d_state, (long long)P2(), (long long)c.blocks, c.dt_min, c.dt_max,
                c.activation.c_str(), c.clip_eigs ? ", clip_eigs" : "", c.bidirectional ? ", bidirectional" : "");
}

S5SsmOptions S5::ssm_options() const {
    S5SsmOptions o;
    o.bidirectional = cfg_.bidirectional;
    o.clip_eigs = cfg_.clip_eigs;
    o.step_rescale = cfg_.step_rescale;
    o.min_chunk = cfg_.min_chunk;
    return o;
}

Tensor S5::ssm(const Tensor& u, const Tensor& x0, Tensor* x_last) const {
    HIPPO_CHECK(u.ndim() == 3 && u.size(2) == cfg_.d_model, "S5: input must be (B, L, %lld), got %s",
                (long long)cfg_.d_model, u.shape().str().c_str());
    return s5_ssm(u, Lambda_re, Lambda_im, B, C, C2, D, log_step, ssm_options(), x0, x_last);
}

Tensor S5::activate(const Tensor& y) const {
    const std::string& a = cfg_.activation;
    Tensor g = gelu_tanh(y);
    if (a == "gelu") return g;
    if (a == "half_glu1") return g * sigmoid(out2->forward(g));
    if (a == "half_glu2") return y * sigmoid(out2->forward(g));
    return out1->forward(g) * sigmoid(out2->forward(g));  // full_glu
}

Tensor S5::forward(const Tensor& u) const { return activate(ssm(u)); }

S5State S5::new_state(int64_t batch) const {
    HIPPO_CHECK(!cfg_.bidirectional, "S5: a bidirectional layer has no recurrent mode (it reads the future)");
    HIPPO_CHECK(batch >= 1, "S5: batch %lld", (long long)batch);
    S5State st;
    st.batch = batch;
    st.x.assign(size_t(batch * 2 * P2()), 0.0f);
    st.tab = s5_discretize(Lambda_re, Lambda_im, B, C, C2, log_step, ssm_options());
    return st;
}

Tensor S5::prefill(const Tensor& u, S5State& st) const {
    NoGradGuard no_grad;
    HIPPO_CHECK(u.ndim() == 3 && u.size(0) == st.batch && u.size(2) == cfg_.d_model,
                "S5 prefill: input %s does not match the state (batch %lld)", u.shape().str().c_str(),
                (long long)st.batch);
    Tensor x0 = Tensor::from_vector({st.batch, 2, P2()}, st.x), x_last;
    Tensor y = ssm(u, x0, &x_last);
    st.x = x_last.to_vector();
    return activate(y);
}

Tensor S5::step(const Tensor& u, S5State& st) const {
    NoGradGuard no_grad;
    const int64_t H = cfg_.d_model, P2 = this->P2(), W = 2 * P2, Bn = st.batch;
    HIPPO_CHECK(u.ndim() == 2 && u.size(0) == Bn && u.size(1) == H, "S5 step: input must be (%lld, %lld), got %s",
                (long long)Bn, (long long)H, u.shape().str().c_str());
    Tensor uc = u.contiguous(), Dc = D.contiguous();
    const S5Tables& t = st.tab;
    // x <- Lambda_bar x + B_bar u (planar rows), y = 2 Re(C_tilde x) + D u.
    std::vector<float> bu(size_t(Bn * W));
    sgemm(false, true, Bn, W, H, 1.0f, uc.data(), H, t.WB.data(), H, 0.0f, bu.data(), W);
    const float *ar = t.a.data(), *ai = t.a.data() + P2;
    for (int64_t b = 0; b < Bn; b++) {
        float* xr = st.x.data() + b * W;
        float* xi = xr + P2;
        const float* br = bu.data() + b * W;
        for (int64_t p = 0; p < P2; p++) {
            const float r = ar[p] * xr[p] - ai[p] * xi[p] + br[p];
            const float i = ar[p] * xi[p] + ai[p] * xr[p] + br[P2 + p];
            xr[p] = r;
            xi[p] = i;
        }
    }
    Tensor y = Tensor::empty({Bn, H});
    sgemm(false, true, Bn, H, W, 1.0f, st.x.data(), W, t.WC.data(), W, 0.0f, y.data(), H);
    for (int64_t b = 0; b < Bn; b++)
        for (int64_t h = 0; h < H; h++) y.data()[b * H + h] += Dc.data()[h] * uc.data()[b * H + h];
    return activate(y);
}

}  // namespace hippo
