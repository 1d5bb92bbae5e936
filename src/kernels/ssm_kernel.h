// Convolution kernels of the two SSMs inside H3 (and of the S4D baseline), with their backward.
//
// Diagonal SSM (S4D), per head h in [0, H), M = N/2 complex modes (one per conjugate pair):
//   dt = exp(log_dt[h]),  A[h,m] = -exp(inv_A_real[h,m]) + i * A_imag[h,m]
//   bilinear:  dA = (1 + dt A/2) / (1 - dt A/2),   dB = B dt / (1 - dt A/2)
//   zoh:       dA = exp(dt A),                      dB = B (exp(dt A) - 1) / A
//   K[h,l] = 2 Re( sum_m C[h,m] dB[h,m] dA[h,m]^l ),   l in [0, L)
// Complex parameters B, C are stored as (H, M, 2) = (re, im) pairs, as in the released checkpoints.
//
// Note [powers without phase drift]: dA^l is never formed by repeated fp32 multiplication. Per mode
// a table of dA^j, j < 64, is built in double and stored in fp32; dA^(64 b) ("anchors") is carried
// in double and re-anchored from exp(64 b log dA) every 64 blocks. Then dA^(64 b + j) =
// anchor_b * table_j has two fp32 roundings whatever l is, so the kernel stays accurate at L = 2^20
// and beyond.
//
// Shift SSM, per channel c in [0, D), N taps: the kernel is the cross-correlation of B and C,
//   h[c,j] = sum_{m=0}^{N-1-j} B[c,m] C[c,m+j],   j in [0, N)
#pragma once
#include <complex>
#include <cstdint>
#include <vector>

#include "common/alloc.h"

namespace hippo {

enum class Discretization { bilinear, zoh };

// Discretised diagonal SSM in double: dA, dB and W = C * dB, each (H, M) complex; any output
// pointer may be null. Used by the recurrent step mode and by state passing.
void s4d_discretize(std::complex<double>* dA, std::complex<double>* dB, std::complex<double>* W,
                    const float* log_dt, const float* inv_A_real, const float* A_imag, const float* B,
                    const float* C, int64_t H, int64_t M, Discretization disc);

// K: (H, L). Threads split heads.
void s4d_kernel_forward(float* K, const float* log_dt, const float* inv_A_real, const float* A_imag,
                        const float* B, const float* C, int64_t H, int64_t M, int64_t L, Discretization disc);

// Given dK (H, L), writes (overwrites) the gradients of every parameter:
// d_log_dt (H), d_inv_A_real (H, M), d_A_imag (H, M), dB (H, M, 2), dC (H, M, 2).
void s4d_kernel_backward(float* d_log_dt, float* d_inv_A_real, float* d_A_imag, float* dB, float* dC,
                         const float* dK, const float* log_dt, const float* inv_A_real, const float* A_imag,
                         const float* B, const float* C, int64_t H, int64_t M, int64_t L, Discretization disc);

// Plain reference: double precision, dA^l = exp(l log dA) per element. K: (H, L) in double.
void s4d_kernel_forward_ref(double* K, const double* log_dt, const double* inv_A_real, const double* A_imag,
                            const double* B, const double* C, int64_t H, int64_t M, int64_t L,
                            Discretization disc);

// ---- modal building blocks (kernel generation, state passing, recurrent prefill) ----------------
// Powers z^l of the H x M numbers z[h,m] = exp(log_z[h,m]), see Note [powers without phase drift].
class ModalPowers {
public:
    static constexpr int kTable = 64;
    ModalPowers() = default;
    ModalPowers(const std::complex<double>* log_z, int64_t H, int64_t M);
    int64_t heads() const { return H_; }
    int64_t modes() const { return M_; }
    std::complex<double> log_z(int64_t h, int64_t m) const { return log_z_[size_t(h * M_ + m)]; }
    // z^l in double.
    std::complex<double> power(int64_t h, int64_t m, int64_t l) const;

    // out[i] += 2 Re( sum_m W[m] z[h,m]^i ),  i in [0, T).   W: (M)
    void eval(float* out, int64_t T, const std::complex<double>* W, int64_t h) const;
    // S0[m] = sum_i g[i] z[h,m]^i,  S1[m] = sum_i g[i] i z[h,m]^i (S1 may be null), i in [0, T).
    // `reversed`: read g backwards (g[T-1-i] in place of g[i]).
    void sums(std::complex<double>* S0, std::complex<double>* S1, const float* g, int64_t T, int64_t h,
              bool reversed = false) const;

    int64_t padded_modes() const { return Mp_; }

private:
    friend struct ModalAnchors;
    int64_t H_ = 0, M_ = 0, Mp_ = 0;  // Mp_: M rounded up to 16 (mode-vectorised loops)
    // z^j, j < kTable, in two layouts: time-contiguous per mode for eval() (vectorised over time)
    // and mode-contiguous per time step for sums() (vectorised over modes, no horizontal sums).
    // From the caching allocator: the tables are rebuilt on every forward (6 MB each at H = 768,
    // M = 32), and fresh pages from the OS cost more to fault in than the tables cost to compute
    // (a 128-token prefill of the hybrid 125M model: 750 -> see the commit).
    Buffer<float> tr_, ti_;  // (H, M, kTable)
    Buffer<float> mr_, mi_;  // (H, kTable, Mp), zero past M
    std::vector<std::complex<double>> log_z_;  // (H, M)
    std::vector<double> step_re_, step_im_;    // (H, Mp): z^kTable
};

// log(dA) of every mode: (H, M).
void s4d_log_dA(std::complex<double>* log_dA, const float* log_dt, const float* inv_A_real, const float* A_imag,
                int64_t H, int64_t M, Discretization disc);

// K (H, L) = 2 Re sum_m W[h, m] z[h, m]^l from modal powers already built (H = pw.heads()); what
// s4d_kernel_forward does after discretising. Threads split heads.
void s4d_kernel_eval(float* K, const ModalPowers& pw, const std::complex<double>* W, int64_t L);

// Gradients of the parameters from the power sums of a loss through K_l = 2 Re(sum_m W_m z_m^l):
// S0[h,m] = sum_l g_l z^l and S1[h,m] = sum_l g_l l z^l where g_l = dLoss/dK_l (summed over all
// the places the kernel is used). Writes (overwrites) every parameter gradient.
void s4d_param_grads(float* d_log_dt, float* d_inv_A_real, float* d_A_imag, float* dB, float* dC,
                     const std::complex<double>* S0, const std::complex<double>* S1, const float* log_dt,
                     const float* inv_A_real, const float* A_imag, const float* B, const float* C, int64_t H,
                     int64_t M, Discretization disc);

// Shift-SSM kernel. B, C: (D, N) -> h: (D, N).
void shift_kernel_forward(float* h, const float* B, const float* C, int64_t D, int64_t N);
// dh: (D, N) -> dB, dC: (D, N) (overwritten).
void shift_kernel_backward(float* dB, float* dC, const float* dh, const float* B, const float* C, int64_t D,
                           int64_t N);
void shift_kernel_forward_ref(double* h, const double* B, const double* C, int64_t D, int64_t N);

}  // namespace hippo
