// S4 (DPLR / NPLR, HiPPO-LegS): the convolution kernel of the original S4 layer, its backward, its
// recurrent step, and the HiPPO-LegS initialisation, with the semantics of the official
// SSMKernelDPLR (state-spaces/s4, models/s4/s4.py) for rank 1, bilinear discretisation, dt
// transform 'exp', rate 1 and no initial state.
//
// Sizes: C output channels per feature (the kernel's `channels`), H features (d_model), S = n_ssm
// trainable copies of (A, B, P) (S divides H; feature h uses copy h % S), N2 = N/2 complex modes
// (one per conjugate pair; N = d_state), L the kernel length.
//
// Parameters, fp32, named and shaped as the official state_dict (complex values as (re, im) pairs):
//   inv_dt  (H, 1)          dt[h] = exp(inv_dt[h])                         (dt_transform 'exp', tied)
//   A_real  (S, N2)         Re lambda = -exp(A_real)                       (real_transform 'exp')
//   A_imag  (S, N2)         Im lambda = -A_imag                            (imag_transform 'none')
//   B       (1, S, N2, 2)   B
//   P       (1, S, N2, 2)   P   (rank 1; the leading 1 is the rank)
//   C       (C, H, N2, 2)   C~, the output vector "tilde C" attuned to the kernel length (below)
// The official module also holds the buffer l_kernel: the length C~ is attuned to (0 = not yet;
// then C still holds the plain C and s4_dplr_setup_C must be applied first).
//
// The system. The stored modes are one half of a real system of size N: with the full vectors
//   lambda_f = [lambda, conj lambda],  p = [P, conj P],  B_f = [B, conj B],  C_f = [C, conj C],
// the state matrix is A = diag(lambda_f) - p p^*  (the low-rank term couples the two halves, so the
// half alone is not a complex-linear system: (A x)_half = lambda x - P 2 Re(P^* x) for a
// conjugate-symmetric state). Bilinear:  dA = (I - dt A/2)^{-1} (I + dt A/2),
// dB = (I - dt A/2)^{-1} dt B_f,  and the kernel is  K[c,h,l] = C_f dA^l dB  (real), l < L.
//
// C~ = C_f (I - dA^L) (first N2 entries): the official code trains C~ and never C, because at the
// L-th roots of unity w_k = exp(-2 pi i k / L) the truncated generating function is
//   sum_{l<L} K_l w^l = C~ (I - dA w)^{-1} dB = (2 / (1 + w)) C~ (g I - A)^{-1} B_f,
//   g = (2/dt) (1 - w)/(1 + w) = (2i/dt) tan(pi k / L),   2 / (1 + w) = 1 + i tan(pi k / L),
// and Woodbury turns (g - A)^{-1} into Cauchy sums over the 2 N2 poles lambda_f:
//   r_ab(g) = sum_n a_n b_n / (g - lambda_n) + conj(a_n b_n) / (g - conj lambda_n),
//   K^(w) = (1 + i tan) [ r_{C~B} - r_{C~P} r_{P*B} / (1 + r_{P*P}) ].
// K = irfft(K^, L). The node w = -1 (k = L/2, even L) is taken exactly: there (I + dA)^{-1} dB =
// dt B_f / 2, so K^(-1) = dt Re(sum_n C~_n B_n) (the official code evaluates it at a float node
// near -1). So C~ ties the parameters to one length L: to use another length, re-attune C~
// (s4_dplr_setup_C, as the official _setup_C) or truncate (L_out below, as the official
// forward(L) with L < l_kernel does).
#pragma once
#include <complex>
#include <cstdint>
#include <vector>

namespace hippo {

// ---- HiPPO-LegS in normal-plus-low-rank form (the official nplr('legs', N)) --------------------
// A[n,k] = -sqrt(2n+1) sqrt(2k+1) (n > k), -(n+1) (n = k), 0 (n < k);  B[n] = sqrt(2n+1);
// P[n] = sqrt(n + 1/2). A + P P^T = -I/2 + S with S real skew-symmetric, so with the Hermitian
// eigendecomposition -i S = U diag(mu) U^* (ours, in double: Householder to tridiagonal form, then
// implicit QL; V (Lambda - P~ P~^*) V^* with the conjugate half reproduces A to ~1e-13 |A|):
//   Lambda = -1/2 + i mu,  P~ = U^* P,  B~ = U^* B,  A = U (diag(Lambda) - P~ P~^*) U^*.
// Kept: the N/2 eigenvalues with the most negative mu, in ascending mu (the official selection),
// with their eigenvectors V (N, N/2); then Im B~ is clipped to [-B_clip, B_clip] (B_clip < 0:
// no clip; the official default is 2). Eigenvector phases are normalised so that V[0, n] is real
// and positive (LAPACK's, which the official code gets, has V[0, n] real of either sign: B~, P~
// match the official ones up to a sign per mode, which the kernel does not see once C is drawn).
// N even, 2 <= N <= 512. Outputs: Lambda, P, B (N/2), V (N, N/2) row-major.
void s4_legs_nplr(int64_t N, std::complex<double>* Lambda, std::complex<double>* P, std::complex<double>* B,
                  std::complex<double>* V, double B_clip = 2.0);

// The deterministic part of the official init for init='legs' (everything but C and inv_dt, which
// are random): A_real = log(1/2), A_imag = -Im Lambda (clamped >= 1e-4 as the official
// inv_transform), B, P from s4_legs_nplr, repeated over the S copies. N = 2 N2.
// A_real, A_imag: (S, N2); B, P: (S, N2, 2).
void s4_dplr_legs_init(float* A_real, float* A_imag, float* B, float* P, int64_t S, int64_t N2);

// C~ from C for length L (the official _setup_C on a fresh module):  Ct = C_f (I - dA^L), first N2.
// With double_length: C is the current C~ for length L and Ct = C~_f (I + dA^L), the C~ for 2L.
// C, Ct: (C, H, N2, 2) (may alias). Dense double arithmetic, O(H N^3 log L) (about 1 s for H = 256,
// N = 64, L = 16384 on one core): once per attuning, not per step. Threads split features.
void s4_dplr_setup_C(float* Ct, const float* Cin, const float* inv_dt, const float* A_real, const float* A_imag,
                     const float* B, const float* P, int64_t C, int64_t H, int64_t S, int64_t N2, int64_t L,
                     bool double_length = false);

// ---- convolution kernel -----------------------------------------------------------------------
// K (C, H, L_out): the first L_out <= L taps of the kernel of length L (L_out = -1: L_out = L),
// i.e. the official forward(L=L_out) with l_kernel = L. Cauchy sums and the inverse DFT in double
// (any L >= 1; O(L log L): radix-2, Bluestein for other L); O(H C N L) Cauchy work. Threads split
// features (each computed whole by one thread: the result does not depend on the thread count).
void s4_dplr_kernel_forward(float* K, const float* inv_dt, const float* A_real, const float* A_imag, const float* B,
                            const float* P, const float* Ct, int64_t C, int64_t H, int64_t S, int64_t N2, int64_t L,
                            int64_t L_out = -1);

// Given dK (C, H, L_out), writes (overwrites) the gradient of every parameter, same shapes as the
// parameters: d_inv_dt (H), d_A_real (S, N2), d_A_imag (S, N2), dB (S, N2, 2), dP (S, N2, 2),
// dCt (C, H, N2, 2). Copies shared by several features (S < H) sum their features' gradients in
// feature order (deterministic for any thread count).
void s4_dplr_kernel_backward(float* d_inv_dt, float* d_A_real, float* d_A_imag, float* dB, float* dP, float* dCt,
                             const float* dK, const float* inv_dt, const float* A_real, const float* A_imag,
                             const float* B, const float* P, const float* Ct, int64_t C, int64_t H, int64_t S,
                             int64_t N2, int64_t L, int64_t L_out = -1);

// Plain float64 oracle: the dense N x N system above, dA and dB by LU solves, C from C~ by solving
// (I - dA^L)^T C_f^T = C~_f^T, and K_l = C_f dA^l dB by a Krylov sequence. K: (C, H, L).
// Same parameter layout, in double. O(H (N^3 log L + C L N^2)): small sizes only.
void s4_dplr_kernel_ref(double* K, const double* inv_dt, const double* A_real, const double* A_imag,
                        const double* B, const double* P, const double* Ct, int64_t C, int64_t H, int64_t S,
                        int64_t N2, int64_t L);

// ---- recurrent step ----------------------------------------------------------------------------
// O(N) step of the bilinear DPLR system on the conjugate half of the state (the official
// _setup_linear / _step_state_linear, rescaled by dt/2): per feature h, with D = 1/(1 - dt lambda/2),
// E = 1 + dt lambda/2,
//   t = E x - P Re(sum_m Qd_m x_m) + Bd u,            Qd = dt conj(P),  Bd = dt B
//   x <- D (t - P Re(sum_m R2_m t_m)),                R2 = dt conj(P) D / (1 + dt sum_n |P_n|^2 Re D_n)
//   y[c] = Re(sum_m Cout[c,m] x_m),                    Cout = 2 C (C recovered from C~ for length L)
// Tables in complex<float>, computed in double. E, D, P, Qd, R2, Bd: (H, N2); Cout: (C, H, N2).
struct S4DplrStep {
    int64_t C = 0, H = 0, N2 = 0;
    std::vector<std::complex<float>> E, D, P, Qd, R2, Bd, Cout;
};
// Ct is C~ for length L (L = 0: Ct holds the plain C, as the official l_kernel == 0).
void s4_dplr_step_setup(S4DplrStep& st, const float* inv_dt, const float* A_real, const float* A_imag,
                        const float* B, const float* P, const float* Ct, int64_t C, int64_t H, int64_t S,
                        int64_t N2, int64_t L);

// One token for n_channels = batch * H channels, channel i = b H + h: x (n_channels, N2) state
// (zero to start), u (n_channels) input, y (batch, C, H) output (the official step's layout, before
// its (c h) flattening); y excludes the skip term D u. No allocation.
void s4_dplr_step(float* y, std::complex<float>* x, const float* u, const S4DplrStep& st, int64_t n_channels);

// Dense reference of the step in double on the full state (N = 2 N2): dA (H, N, N), dB (H, N),
// Cf (C, H, N) with y = Re(Cf x). Ct as in s4_dplr_step_setup.
struct S4DplrStepRef {
    int64_t C = 0, H = 0, N = 0;
    std::vector<std::complex<double>> dA, dB, Cf;
};
void s4_dplr_step_setup_ref(S4DplrStepRef& st, const double* inv_dt, const double* A_real, const double* A_imag,
                            const double* B, const double* P, const double* Ct, int64_t C, int64_t H, int64_t S,
                            int64_t N2, int64_t L);
// x (n_channels, N) full state, u (n_channels), y (batch, C, H) as s4_dplr_step.
void s4_dplr_step_ref(double* y, std::complex<double>* x, const double* u, const S4DplrStepRef& st,
                      int64_t n_channels);

}  // namespace hippo
