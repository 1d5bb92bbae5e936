// The diagonal-SSM core of the recurrent (step) modes, shared by H3, S4D and GSS: the discretised
// tables and the one-token update. The convolution (parallel) mode of the same SSM is in
// ssm_kernel.h; both use the same parameters and discretisations.
//
// Per head h in [0, H), M = N/2 complex modes (see ssm_kernel.h for dA, dB):
//   x[m] <- dA[h,m] x[m] + dB[h,m] w,     y = 2 Re( sum_m C[h,m] x[m] )
// so after L steps from x = 0, y_t = sum_{l <= t} K[h,l] w_{t-l} with K the kernel of
// s4d_kernel_forward. A head may drive several channels (H3's P*P channels per head, its
// channels_per_kernel), each with its own state x and input w.
//
// GSS's DSS-exp is the ZOH case with its frozen log_dt = 0 (dt = 1) and B = 1 passed as they are.
#pragma once
#include <complex>
#include <cstdint>

#include "kernels/ssm_kernel.h"

namespace hippo {

// The tables the step reads, each (H, M) complex float: dA, dB discretised in double (s4d_discretize)
// and rounded once; Cc = C as complex. Parameters: log_dt (H), inv_A_real (H, M), A_imag (H, M),
// B (H, M, 2), C (H, M, 2) as (re, im) pairs.
void diag_ssm_discretize(std::complex<float>* dA, std::complex<float>* dB, std::complex<float>* Cc,
                         const float* log_dt, const float* inv_A_real, const float* A_imag, const float* B,
                         const float* C, int64_t H, int64_t M, Discretization disc);

// One token through n channels: channel i has state x (n, M), input w[i], output y[i], and reads
// row i / channels_per_head of the tables dA, dB, C, each (H, M) with H = n / channels_per_head:
//   x[i,m] <- dA x[i,m] + dB w[i],   y[i] = 2 Re( sum_m C x[i,m] )
// (y excludes the skip term D w). No allocation. AVX-512 builds update 8 modes per instruction, so
// the sum over modes is grouped differently there from the scalar path (not bit-identical across).
void diag_ssm_step(float* y, std::complex<float>* x, const float* w, const std::complex<float>* dA,
                   const std::complex<float>* dB, const std::complex<float>* C, int64_t n, int64_t M,
                   int64_t channels_per_head = 1);

// Plain reference of diag_ssm_step in double, same shapes.
void diag_ssm_step_ref(double* y, std::complex<double>* x, const double* w, const std::complex<double>* dA,
                       const std::complex<double>* dB, const std::complex<double>* C, int64_t n, int64_t M,
                       int64_t channels_per_head = 1);

}  // namespace hippo
