// The shift SSM applied to a sequence: a causal FIR filter of N taps per channel plus a skip.
//
//   y[b,l,c] = sum_{j < min(N, l+1)} h[c,j] x[b,l-j,c] + Dk[c] x[b,l,c]
//
// x, y: (B, L, C) time-major; h: (C, N) taps (from shift_kernel_forward); Dk: (C).
// Vectorised over channels (taps are transposed to (N, C) once per call); threads split (b, l).
#pragma once
#include <cstdint>

namespace hippo {

void shift_conv_forward(float* y, const float* x, const float* h, const float* Dk, int64_t B, int64_t L, int64_t C,
                        int64_t N);
// Writes (overwrites) dx (B, L, C), dh (C, N), dDk (C).
void shift_conv_backward(float* dx, float* dh, float* dDk, const float* dy, const float* x, const float* h,
                         const float* Dk, int64_t B, int64_t L, int64_t C, int64_t N);

void shift_conv_forward_ref(float* y, const float* x, const float* h, const float* Dk, int64_t B, int64_t L,
                            int64_t C, int64_t N);
void shift_conv_backward_ref(float* dx, float* dh, float* dDk, const float* dy, const float* x, const float* h,
                             const float* Dk, int64_t B, int64_t L, int64_t C, int64_t N);

}  // namespace hippo
