#include "kernels/ssm_kernel.h"

#include <cmath>
#include <vector>

namespace hippo {

using cd = std::complex<double>;

namespace {

constexpr int kTable = ModalPowers::kTable;
constexpr int kReanchorBlocks = 64; // exact exp() every kReanchorBlocks * kTable steps

struct ModeParams {
    double dt;
    cd A, Bc, Cc;
};

ModeParams mode_params(const float* log_dt, const float* inv_A_real, const float* A_imag, const float* B,
                       const float* C, int64_t M, int64_t h, int64_t m) {
    int64_t i = h * M + m;
    return {std::exp(double(log_dt[h])), cd(-std::exp(double(inv_A_real[i])), double(A_imag[i])),
            B ? cd(B[2 * i], B[2 * i + 1]) : cd(1.0), C ? cd(C[2 * i], C[2 * i + 1]) : cd(1.0)};
}

// dA, dB and log(dA) for one mode.
void discretize_mode(const ModeParams& p, Discretization disc, cd* dA, cd* dB, cd* log_dA) {
    if (disc == Discretization::bilinear) {
        cd x = p.dt * p.A * 0.5;
        *dA = (1.0 + x) / (1.0 - x);
        *dB = p.Bc * p.dt / (1.0 - x);
        *log_dA = std::log(*dA);
    } else {
        cd a = p.dt * p.A;
        *log_dA = a;
        *dA = std::exp(a);
        // (e^a - 1) / A with a complex expm1 to avoid cancellation for |a| << 1.
        double s = std::sin(a.imag() * 0.5);
        cd em1(std::expm1(a.real()) * std::cos(a.imag()) - 2.0 * s * s, std::exp(a.real()) * std::sin(a.imag()));
        *dB = p.Bc * em1 / p.A;
    }
}

}  // namespace

void s4d_discretize(cd* dA, cd* dB, cd* W, const float* log_dt, const float* inv_A_real, const float* A_imag,
                    const float* B, const float* C, int64_t H, int64_t M, Discretization disc) {
    for (int64_t h = 0; h < H; h++)
        for (int64_t m = 0; m < M; m++) {
            ModeParams p = mode_params(log_dt, inv_A_real, A_imag, B, C, M, h, m);
            cd a, b, l;
            discretize_mode(p, disc, &a, &b, &l);
            int64_t i = h * M + m;
            if (dA) dA[i] = a;
            if (dB) dB[i] = b;
            if (W) W[i] = p.Cc * b;
        }
}

ModalPowers::ModalPowers(const cd* log_z, int64_t H, int64_t M)
    : H_(H), M_(M), tr_(size_t(H * M * kTable)), ti_(size_t(H * M * kTable)), log_z_(log_z, log_z + H * M),
      step_(size_t(H * M)) {
#pragma omp parallel for schedule(static) if (H * M > 64)
    for (int64_t i = 0; i < H * M; i++) {
        for (int j = 0; j < kTable; j++) {
            cd p = std::exp(double(j) * log_z_[size_t(i)]);
            tr_[size_t(i * kTable + j)] = float(p.real());
            ti_[size_t(i * kTable + j)] = float(p.imag());
        }
        step_[size_t(i)] = std::exp(double(kTable) * log_z_[size_t(i)]);
    }
}

cd ModalPowers::power(int64_t h, int64_t m, int64_t l) const { return std::exp(double(l) * log_z(h, m)); }

// Anchor of block b+1 from block b: one double multiplication, exact exp() every kReanchorBlocks.
static inline cd next_anchor(cd anchor, cd step, cd log_z, int64_t b_next) {
    if (b_next % kReanchorBlocks == 0) return std::exp(double(b_next * kTable) * log_z);
    return anchor * step;
}

void ModalPowers::eval(float* out, int64_t T, const cd* W, int64_t h) const {
    for (int64_t m = 0; m < M_; m++) {
        size_t i = size_t(h * M_ + m);
        const float* tr = tr_.data() + i * kTable;
        const float* ti = ti_.data() + i * kTable;
        cd anchor = 1.0;
        for (int64_t b = 0, l0 = 0; l0 < T; b++, l0 += kTable) {
            cd a = 2.0 * W[m] * anchor;
            float ar = float(a.real()), ai = float(a.imag());
            int64_t n = std::min<int64_t>(kTable, T - l0);
            float* o = out + l0;
#pragma omp simd
            for (int64_t j = 0; j < n; j++) o[j] += ar * tr[j] - ai * ti[j];
            anchor = next_anchor(anchor, step_[i], log_z_[i], b + 1);
        }
    }
}

void ModalPowers::sums(cd* S0, cd* S1, const float* g, int64_t T, int64_t h, bool reversed) const {
    float gb[kTable];
    for (int64_t m = 0; m < M_; m++) {
        size_t i = size_t(h * M_ + m);
        const float* tr = tr_.data() + i * kTable;
        const float* ti = ti_.data() + i * kTable;
        cd s0 = 0.0, s1 = 0.0, anchor = 1.0;
        for (int64_t b = 0, l0 = 0; l0 < T; b++, l0 += kTable) {
            int64_t n = std::min<int64_t>(kTable, T - l0);
            const float* gp = g + l0;
            if (reversed) {
                for (int64_t j = 0; j < n; j++) gb[j] = g[T - 1 - l0 - j];
                gp = gb;
            }
            float ur = 0, ui = 0, vr = 0, vi = 0;
            if (S1) {
#pragma omp simd reduction(+ : ur, ui, vr, vi)
                for (int64_t j = 0; j < n; j++) {
                    ur += gp[j] * tr[j];
                    ui += gp[j] * ti[j];
                    vr += gp[j] * float(j) * tr[j];
                    vi += gp[j] * float(j) * ti[j];
                }
            } else {
#pragma omp simd reduction(+ : ur, ui)
                for (int64_t j = 0; j < n; j++) {
                    ur += gp[j] * tr[j];
                    ui += gp[j] * ti[j];
                }
            }
            cd U(ur, ui);
            s0 += anchor * U;
            if (S1) s1 += anchor * (double(l0) * U + cd(vr, vi));
            anchor = next_anchor(anchor, step_[i], log_z_[i], b + 1);
        }
        S0[m] = s0;
        if (S1) S1[m] = s1;
    }
}

void s4d_log_dA(cd* log_dA, const float* log_dt, const float* inv_A_real, const float* A_imag, int64_t H, int64_t M,
                Discretization disc) {
    for (int64_t h = 0; h < H; h++)
        for (int64_t m = 0; m < M; m++) {
            ModeParams p = mode_params(log_dt, inv_A_real, A_imag, nullptr, nullptr, M, h, m);
            cd a, b, l;
            discretize_mode(p, disc, &a, &b, &l);
            log_dA[h * M + m] = l;
        }
}

void s4d_kernel_forward(float* K, const float* log_dt, const float* inv_A_real, const float* A_imag,
                        const float* B, const float* C, int64_t H, int64_t M, int64_t L, Discretization disc) {
    std::vector<cd> log_dA(size_t(H * M)), W(size_t(H * M));
    s4d_log_dA(log_dA.data(), log_dt, inv_A_real, A_imag, H, M, disc);
    s4d_discretize(nullptr, nullptr, W.data(), log_dt, inv_A_real, A_imag, B, C, H, M, disc);
    ModalPowers pw(log_dA.data(), H, M);
#pragma omp parallel for schedule(static)
    for (int64_t h = 0; h < H; h++) {
        std::fill(K + h * L, K + (h + 1) * L, 0.0f);
        pw.eval(K + h * L, L, W.data() + h * M, h);
    }
}

void s4d_param_grads(float* d_log_dt, float* d_inv_A_real, float* d_A_imag, float* dB_out, float* dC_out,
                     const cd* S0, const cd* S1, const float* log_dt, const float* inv_A_real, const float* A_imag,
                     const float* B, const float* C, int64_t H, int64_t M, Discretization disc) {
    for (int64_t h = 0; h < H; h++) {
        double g_dt_total = 0;
        for (int64_t m = 0; m < M; m++) {
            ModeParams p = mode_params(log_dt, inv_A_real, A_imag, B, C, M, h, m);
            cd dA, dB, log_dA;
            discretize_mode(p, disc, &dA, &dB, &log_dA);
            int64_t i = h * M + m;
            // K_l = 2 Re(W z^l): complex gradients (dL/dre + i dL/dim) of W and z.
            cd W = p.Cc * dB;
            cd gW = 2.0 * std::conj(S0[i]);
            cd gz = std::abs(dA) > 1e-300 ? 2.0 * std::conj(W * S1[i] / dA) : 0.0;
            cd gC = gW * std::conj(dB);
            cd gdB = gW * std::conj(p.Cc);
            // Partial derivatives of dA and dB with respect to A, dt and B.
            cd dA_dA, dA_ddt, dB_dA, dB_ddt, dB_dB;
            if (disc == Discretization::bilinear) {
                cd x = p.dt * p.A * 0.5, den = 1.0 - x, den2 = den * den;
                dA_dA = p.dt / den2;
                dA_ddt = p.A / den2;
                dB_dB = p.dt / den;
                dB_dA = p.Bc * p.dt * p.dt * 0.5 / den2;
                dB_ddt = p.Bc / den2;
            } else {
                cd e = dA;
                double s = std::sin(log_dA.imag() * 0.5);
                cd em1(std::expm1(log_dA.real()) * std::cos(log_dA.imag()) - 2.0 * s * s,
                       std::exp(log_dA.real()) * std::sin(log_dA.imag()));  // e^{dt A} - 1
                dA_dA = p.dt * e;
                dA_ddt = p.A * e;
                dB_dB = em1 / p.A;
                dB_ddt = p.Bc * e;
                dB_dA = p.Bc * (p.dt * e * p.A - em1) / (p.A * p.A);
            }
            cd gA = gz * std::conj(dA_dA) + gdB * std::conj(dB_dA);
            cd gB = gdB * std::conj(dB_dB);
            double gdt = (gz * std::conj(dA_ddt)).real() + (gdB * std::conj(dB_ddt)).real();
            d_inv_A_real[i] = float(gA.real() * -std::exp(double(inv_A_real[i])));
            d_A_imag[i] = float(gA.imag());
            dB_out[2 * i] = float(gB.real());
            dB_out[2 * i + 1] = float(gB.imag());
            dC_out[2 * i] = float(gC.real());
            dC_out[2 * i + 1] = float(gC.imag());
            g_dt_total += gdt * p.dt;  // d dt / d log_dt = dt
        }
        d_log_dt[h] = float(g_dt_total);
    }
}

void s4d_kernel_backward(float* d_log_dt, float* d_inv_A_real, float* d_A_imag, float* dB_out, float* dC_out,
                         const float* dK, const float* log_dt, const float* inv_A_real, const float* A_imag,
                         const float* B, const float* C, int64_t H, int64_t M, int64_t L, Discretization disc) {
    std::vector<cd> log_dA(size_t(H * M)), S0(size_t(H * M)), S1(size_t(H * M));
    s4d_log_dA(log_dA.data(), log_dt, inv_A_real, A_imag, H, M, disc);
    ModalPowers pw(log_dA.data(), H, M);
#pragma omp parallel for schedule(static)
    for (int64_t h = 0; h < H; h++) pw.sums(S0.data() + h * M, S1.data() + h * M, dK + h * L, L, h);
    s4d_param_grads(d_log_dt, d_inv_A_real, d_A_imag, dB_out, dC_out, S0.data(), S1.data(), log_dt, inv_A_real, A_imag,
                    B, C, H, M, disc);
}

void s4d_kernel_forward_ref(double* K, const double* log_dt, const double* inv_A_real, const double* A_imag,
                            const double* B, const double* C, int64_t H, int64_t M, int64_t L, Discretization disc) {
    for (int64_t h = 0; h < H; h++) {
        double dt = std::exp(log_dt[h]);
        for (int64_t l = 0; l < L; l++) K[h * L + l] = 0;
        for (int64_t m = 0; m < M; m++) {
            int64_t i = h * M + m;
            cd A(-std::exp(inv_A_real[i]), A_imag[i]), Bc(B[2 * i], B[2 * i + 1]), Cc(C[2 * i], C[2 * i + 1]);
            cd dA, dB, log_dA;
            if (disc == Discretization::bilinear) {
                dA = (1.0 + dt * A / 2.0) / (1.0 - dt * A / 2.0);
                dB = Bc * dt / (1.0 - dt * A / 2.0);
                log_dA = std::log(dA);
            } else {
                log_dA = dt * A;
                dA = std::exp(log_dA);
                dB = Bc * (dA - 1.0) / A;
            }
            for (int64_t l = 0; l < L; l++) K[h * L + l] += 2.0 * (Cc * dB * std::exp(double(l) * log_dA)).real();
        }
    }
}

void shift_kernel_forward(float* h, const float* B, const float* C, int64_t D, int64_t N) {
#pragma omp parallel for schedule(static) if (D * N * N > 100000)
    for (int64_t c = 0; c < D; c++) {
        const float* b = B + c * N;
        const float* cc = C + c * N;
        for (int64_t j = 0; j < N; j++) {
            float acc = 0;
            for (int64_t m = 0; m + j < N; m++) acc += b[m] * cc[m + j];
            h[c * N + j] = acc;
        }
    }
}

void shift_kernel_backward(float* dB, float* dC, const float* dh, const float* B, const float* C, int64_t D,
                           int64_t N) {
#pragma omp parallel for schedule(static) if (D * N * N > 100000)
    for (int64_t c = 0; c < D; c++) {
        const float* b = B + c * N;
        const float* cc = C + c * N;
        const float* g = dh + c * N;
        for (int64_t m = 0; m < N; m++) {
            float acc = 0;  // dB[m] = sum_j g[j] C[m + j]
            for (int64_t j = 0; m + j < N; j++) acc += g[j] * cc[m + j];
            dB[c * N + m] = acc;
        }
        for (int64_t k = 0; k < N; k++) {
            float acc = 0;  // dC[k] = sum_{m <= k} g[k - m] B[m]
            for (int64_t m = 0; m <= k; m++) acc += g[k - m] * b[m];
            dC[c * N + k] = acc;
        }
    }
}

void shift_kernel_forward_ref(double* h, const double* B, const double* C, int64_t D, int64_t N) {
    for (int64_t c = 0; c < D; c++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t m = 0; m + j < N; m++) acc += B[c * N + m] * C[c * N + m + j];
            h[c * N + j] = acc;
        }
}

}  // namespace hippo
