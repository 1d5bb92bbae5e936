// The diagonal-SSM long convolution of H3 / S4D from its parameters, with the H3 gates, for any L:
// FlashConv within chunks and exact state passing between them (paper section 4.2; the authors
// never released this part).
//
//   w = u * v (v == nullptr: w = u),  z = SSM(w) + D w,  y = q * z (q == nullptr: y = z)
//   SSM(w)[t] = sum_{s<=t} K[t-s] w[s],  K_l = 2 Re sum_m W_m dA_m^l,  W = C dB  (ssm_kernel.h)
//
// Shapes: u, v, q, y (B, L, C); the S4D parameters describe Hk = C / P kernels of M modes.
//
// Note [state passing]: for L > T (the chunk length) row by row, chunk k = [l0, l0 + T) computes
//   z_i = (K[:T] * w_chunk)_i + D w_i + 2 Re sum_m W_m dA_m^(i+1) X_m
// with X = sum_{s<l0} dA^(l0-1-s) w_s (the state without dB), then X <- dA^T X + sum_j dA^(T-1-j) w_j.
// The convolution inside a chunk is the fused FFT kernel with the T-tap kernel; the state terms
// are O(T M) Vandermonde products done with ModalPowers (no phase drift). Kernel memory is O(T),
// work O(L log T + L M). The backward runs a forward pass for the states X and
// Y = sum_{s<l0} (l0-1-s) dA^(l0-1-s) w_s, then a reverse pass carrying dLoss/dX; the parameter
// gradients come from the power sums S0 = sum_l dK_l z^l, S1 = sum_l dK_l l z^l of the full
// kernel, split into pairs (s, t) inside one chunk (the local kernel gradient) and across chunks
// (closed forms in X, Y).
#pragma once
#include <complex>
#include <cstdint>

#include "kernels/fftconv.h"
#include "kernels/ssm_kernel.h"

namespace hippo {

struct SsmParams {
    const float* log_dt;      // (Hk)
    const float* inv_A_real;  // (Hk, M)
    const float* A_imag;      // (Hk, M)
    const float* B;           // (Hk, M, 2)
    const float* C;           // (Hk, M, 2)
    const float* D;           // (Hk)
    int64_t M;
    Discretization disc;
};

struct SsmParamGrads {
    float *log_dt, *inv_A_real, *A_imag, *B, *C, *D;  // shapes as SsmParams; overwritten
};

// Any diagonal SSM in modal form: K[h,l] = 2 Re sum_m W[h,m] z[h,m]^l with z = exp(log_z), for
// Hk kernels of M modes each (complex double, (Hk, M)). S4D/H3 (below), DSS-exp, DLR and Mega's EMA
// all reduce to it; each layer maps its parameters to (log_z, W) and the power sums back.
struct ModalSsm {
    const std::complex<double>* log_z;  // (Hk, M)
    const std::complex<double>* W;      // (Hk, M)
    const float* D;                     // (Hk) skip term
    int64_t M;
};

// What the backward of a modal convolution returns: the power sums of g = dLoss/dK (summed over
// every channel and chunk that uses the kernel) S0[h,m] = sum_l g_l z^l, S1[h,m] = sum_l g_l l z^l,
// (Hk, M) each, and dD (Hk). modal_grads() turns them into the complex gradients of W and log_z.
struct ModalSums {
    std::complex<double>* S0;
    std::complex<double>* S1;
    float* D;
};

// gW = dLoss/dRe W + i dLoss/dIm W = 2 conj(S0), glog_z = 2 conj(W S1); n = Hk * M entries.
void modal_grads(std::complex<double>* gW, std::complex<double>* glog_z, const std::complex<double>* S0,
                 const std::complex<double>* S1, const std::complex<double>* W, int64_t n);

// Paths: "direct" O(L^2) for short L, "fft" one fused FFT over the whole row, "chunked" state
// passing. ssm_conv_path() picks by L and the chunk length.
enum class SsmConvPath { direct, fft, chunked };
SsmConvPath ssm_conv_path(int64_t L, int64_t chunk);
// Below this length the direct convolution is faster than the FFT (measured: hippo bench fftconv).
constexpr int64_t kSsmDirectMaxL = 64;

// Modal convolution, y = q * (SSM(u * v) + D (u * v)) as above. final_X: if not null, (B, C, M)
// complex = X_m = sum_s z_m^(L-1-s) w_s after the last input (y_L-1 = 2 Re sum_m W_m X_m + D w).
void modal_conv_forward(float* y, const float* u, const float* v, const float* q, const ModalSsm& p,
                        const FftConvShape& s, int64_t chunk, std::complex<double>* final_X = nullptr,
                        SsmConvPath path = SsmConvPath(-1));
// Overwrites sums.S0, sums.S1 (Hk, M) and sums.D (Hk); du, dv, dq as fftconv_backward.
void modal_conv_backward(float* du, float* dv, float* dq, const ModalSums& sums, const float* dy, const float* u,
                         const float* v, const float* q, const ModalSsm& p, const FftConvShape& s, int64_t chunk,
                         SsmConvPath path = SsmConvPath(-1));

// S4D parameters (SsmParams) through the modal convolution.
// final_state: if not null, (B, C, M) complex = the SSM state x = dB X after the last step (the
// recurrent mode continues from it).
void ssm_conv_forward(float* y, const float* u, const float* v, const float* q, const SsmParams& p,
                      const FftConvShape& s, int64_t chunk, std::complex<float>* final_state = nullptr,
                      SsmConvPath path = SsmConvPath(-1));
void ssm_conv_backward(float* du, float* dv, float* dq, const SsmParamGrads& g, const float* dy, const float* u,
                       const float* v, const float* q, const SsmParams& p, const FftConvShape& s, int64_t chunk,
                       SsmConvPath path = SsmConvPath(-1));

}  // namespace hippo
