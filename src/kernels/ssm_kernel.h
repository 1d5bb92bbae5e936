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

// Shift-SSM kernel. B, C: (D, N) -> h: (D, N).
void shift_kernel_forward(float* h, const float* B, const float* C, int64_t D, int64_t N);
// dh: (D, N) -> dB, dC: (D, N) (overwritten).
void shift_kernel_backward(float* dB, float* dC, const float* dh, const float* B, const float* C, int64_t D,
                           int64_t N);
void shift_kernel_forward_ref(double* h, const double* B, const double* C, int64_t D, int64_t N);

}  // namespace hippo
