// Causal long convolution with optional H3 gating: the FlashConv kernels on the CPU.
//
//   w[b,l,c] = u[b,l,c] * v[b,l,c]                       (v == nullptr: w = u)
//   z[b,l,c] = sum_{j<=l} K[c/P, j] w[b,l-j,c] + D[c/P] w[b,l,c]
//   y[b,l,c] = q[b,l,c] * z[b,l,c]                       (q == nullptr: y = z)
//
// Shapes: u, v, q, y are (B, L, C), time-major as the projections produce them; K is (Hk, L) and
// D is (Hk) with Hk = C / P kernels, P channels per kernel (P = 1 for H3 with head_dim 1; the
// multi-head form sends its P outer-product channels of one head to one kernel).
//
// Fused path (Note [FlashConv on a CPU]): threads take blocks of 16 channels; for each batch row
// the block is gathered (gate applied on the way) into 16 zero-padded rows of n = 2^ceil(log2 2L)
// floats, each row goes forward FFT -> multiply by the kernel spectrum -> inverse FFT while it sits
// in L1/L2, and the result is scattered back with the skip term and the output gate. The kernel
// spectrum is computed once per call and shared across the batch. Spectra use the FFT's unordered
// layout (no reordering passes). The backward is fused the same way and recomputes w and z instead
// of storing them.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/fft.h"

namespace hippo {

// FFT size for a causal convolution of length L: a power of two >= 2L, at least 16.
int64_t fftconv_fft_size(int64_t L);

// Channels per fused task: one 64-byte line of a (B, L, C) row.
constexpr int64_t kFftConvBlock = 16;

// Gathers w = u * v (or u) at times [l0, l0 + T) of batch row b, channels [c0, c0 + cb), from
// (B, L, C) tensors into the first T floats of cb rows of `stride` floats. The rest of a row is
// not written: the FFT reads only its first T inputs (zero padding is implicit, RealFFT's len).
void fftconv_gather_rows(float* rows, int64_t stride, const float* u, const float* v, int64_t b, int64_t l0,
                         int64_t T, int64_t c0, int64_t cb, int64_t L, int64_t C, int64_t n);
// The inverse moves, with the skip term and the gates (d: the cb skip weights of the block):
//   y = q * (z + d w)                      from z rows (scatter_output)
//   dq = dy (z + d w), dw = dwrow + d dz,  du = dw v,  dv = dw u,  dz = dy q   (scatter_grads)
void fftconv_scatter_output(float* y, const float* u, const float* v, const float* q, const float* zrows,
                            int64_t stride, const float* d, int64_t b, int64_t l0, int64_t T, int64_t c0, int64_t cb,
                            int64_t L, int64_t C);
void fftconv_scatter_grads(float* du, float* dv, float* dq, const float* dy, const float* u, const float* v,
                           const float* q, const float* zrows, const float* dwrows, int64_t stride, const float* d,
                           int64_t b, int64_t l0, int64_t T, int64_t c0, int64_t cb, int64_t L, int64_t C);

struct FftConvShape {
    int64_t B, L, C, P;  // batch, length, channels, channels per kernel
    int64_t kernels() const { return C / P; }
};

// Kernel spectra Kf: (Hk, n+2) in the FFT's unordered layout, pre-scaled by 1/n.
void fftconv_kernel_spectrum(float* Kf, const float* K, int64_t Hk, int64_t L, const RealFFT& fft);

// Fused forward. Kf from fftconv_kernel_spectrum with fft.size() == fftconv_fft_size(L).
void fftconv_forward(float* y, const float* u, const float* v, const float* q, const float* Kf, const float* D,
                     const FftConvShape& s, const RealFFT& fft);

// Fused backward: writes (overwrites) du, dv (if v), dq (if q), dK (Hk, L), dD (Hk).
void fftconv_backward(float* du, float* dv, float* dq, float* dK, float* dD, const float* dy, const float* u,
                      const float* v, const float* q, const float* Kf, const float* D, const FftConvShape& s,
                      const RealFFT& fft);

// Direct O(L^2) convolution in the time domain (fast for short L), same semantics; K is (Hk, L).
void fftconv_forward_direct(float* y, const float* u, const float* v, const float* q, const float* K,
                            const float* D, const FftConvShape& s);
void fftconv_backward_direct(float* du, float* dv, float* dq, float* dK, float* dD, const float* dy,
                             const float* u, const float* v, const float* q, const float* K, const float* D,
                             const FftConvShape& s);

// Unfused pipeline from the same FFT (for benchmarks): whole-tensor passes for the gate, forward
// FFTs, spectrum products, inverse FFTs and the output gate, through a (B, C, n+2) buffer.
void fftconv_forward_unfused(float* y, const float* u, const float* v, const float* q, const float* Kf,
                             const float* D, const FftConvShape& s, const RealFFT& fft);
void fftconv_backward_unfused(float* du, float* dv, float* dq, float* dK, float* dD, const float* dy,
                              const float* u, const float* v, const float* q, const float* Kf, const float* D,
                              const FftConvShape& s, const RealFFT& fft);

// Plain references with double accumulation.
void fftconv_forward_ref(float* y, const float* u, const float* v, const float* q, const float* K, const float* D,
                         const FftConvShape& s);
void fftconv_backward_ref(float* du, float* dv, float* dq, float* dK, float* dD, const float* dy, const float* u,
                          const float* v, const float* q, const float* K, const float* D, const FftConvShape& s);

}  // namespace hippo
