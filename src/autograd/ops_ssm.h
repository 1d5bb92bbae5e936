// Sequence-mixing ops of the SSM family as single tape nodes with hand-written backward.
#pragma once
#include <complex>
#include <cstdint>
#include <functional>
#include <vector>

#include "autograd/tensor.h"
#include "kernels/ssm_conv.h"

namespace hippo {

// Shift SSM: k (B, L, C); shift_B, shift_C with C*N elements each, read as (C, N) (checkpoints
// store C as (1, C, N)); Dk (C). y = causal FIR of k with taps xcorr(B, C), plus Dk * k.
Tensor shift_ssm(const Tensor& k, const Tensor& shift_B, const Tensor& shift_C, const Tensor& Dk);

struct SsmConvOptions {
    Discretization disc = Discretization::bilinear;
    int64_t chunk = 8192;               // state passing above this length
    int64_t channels_per_kernel = 1;    // P: channel c uses kernel c / P
    SsmConvPath path = SsmConvPath(-1); // automatic
};

// Diagonal-SSM long convolution with H3 gates, y = q * (SSM(u * v) + D * (u * v)).
// u (B, L, C); v, q (B, L, C) or undefined; log_dt (Hk); inv_A_real, A_imag (Hk, M);
// B, C with Hk*M*2 elements read as (Hk, M, 2) (checkpoints store C as (1, Hk, M, 2)); D (Hk);
// Hk = C / channels_per_kernel. One tape node; see kernels/ssm_conv.h.
// final_state: if not null, receives the (B, C, M) complex state after the last step (no-grad
// use: prefill of the recurrent mode).
Tensor ssm_conv(const Tensor& u, const Tensor& v, const Tensor& q, const Tensor& log_dt, const Tensor& inv_A_real,
                const Tensor& A_imag, const Tensor& B, const Tensor& C, const Tensor& D, const SsmConvOptions& opt,
                std::vector<std::complex<float>>* final_state = nullptr);

// A diagonal SSM given by a layer's own parameters (DSS, DLR, Mega's EMA, ...): `build` maps the
// parameter tensors to the modal form (log_z, W), each (Hk, M) complex double (kernels/ssm_conv.h:
// K[h,l] = 2 Re sum_m W z^l); `grads` maps the complex gradients gW, glog_z (dLoss/dRe + i dLoss/dIm,
// (Hk, M)) back to one gradient tensor per parameter, each shaped as that parameter.
struct ModalParameterisation {
    const char* name = "modal_conv";
    std::vector<Tensor> params;
    int64_t Hk = 0, M = 0;
    std::function<void(const std::vector<Tensor>& params, std::complex<double>* log_z, std::complex<double>* W)> build;
    std::function<std::vector<Tensor>(const std::vector<Tensor>& params, const std::complex<double>* gW,
                                      const std::complex<double>* glog_z)>
        grads;
};

// y = SSM(u) + D u, u (B, L, C) with C = Hk * P channels (channel c uses kernel c / P), D (Hk).
// One tape node: chunked state passing above `chunk` (kernels/ssm_conv.h). final_X: if not null,
// receives the (B, C, M) modal state after the last token (no-grad use: recurrent prefill).
Tensor modal_conv(const Tensor& u, const Tensor& D, const ModalParameterisation& mp, int64_t chunk,
                  std::vector<std::complex<double>>* final_X = nullptr, SsmConvPath path = SsmConvPath(-1));

// y = K * u + D u with an explicit kernel: u (B, L, C), K (C, Lk) with Lk >= L (taps past L are
// unused; their gradient is 0), D (C). One FFT of fftconv_fft_size(L) (direct below
// kSsmDirectMaxL); gradients into u, K and D. For kernels that have no modal form (S4's DPLR).
Tensor long_conv(const Tensor& u, const Tensor& K, const Tensor& D);

// The S4 (DPLR) kernel (kernels/s4_dplr.h): K (H, L_out), the first L_out taps of the length-L
// kernel, from inv_dt (H, 1), A_real, A_imag (S, N2), B, P (1, S, N2, 2), C~ (1, H, N2, 2);
// one output channel. Gradients into every parameter.
Tensor s4_dplr_kernel(const Tensor& inv_dt, const Tensor& A_real, const Tensor& A_imag, const Tensor& B,
                      const Tensor& P, const Tensor& Ct, int64_t L, int64_t L_out);

}  // namespace hippo
