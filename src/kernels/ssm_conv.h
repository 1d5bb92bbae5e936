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

// Paths: "direct" O(L^2) for short L, "fft" one fused FFT over the whole row, "chunked" state
// passing. ssm_conv_path() picks by L and the chunk length.
enum class SsmConvPath { direct, fft, chunked };
SsmConvPath ssm_conv_path(int64_t L, int64_t chunk);
// Below this length the direct convolution is faster than the FFT (measured: hippo bench fftconv).
constexpr int64_t kSsmDirectMaxL = 64;

// final_state: if not null, (B, C, M) complex = the SSM state x = dB X after the last step (the
// recurrent mode continues from it).
void ssm_conv_forward(float* y, const float* u, const float* v, const float* q, const SsmParams& p,
                      const FftConvShape& s, int64_t chunk, std::complex<float>* final_state = nullptr,
                      SsmConvPath path = SsmConvPath(-1));
void ssm_conv_backward(float* du, float* dv, float* dq, const SsmParamGrads& g, const float* dy, const float* u,
                       const float* v, const float* q, const SsmParams& p, const FftConvShape& s, int64_t chunk,
                       SsmConvPath path = SsmConvPath(-1));

}  // namespace hippo
