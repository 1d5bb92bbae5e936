// The S5 SSM (Smith, Warrington, Linderman, ICLR 2023; lindermanlab/S5 s5/ssm.py, S5SSM with
// conj_sym and ZOH) as one tape node with a hand-written backward:
//
//   Lambda = Lambda_re + i Lambda_im        (clip_eigs: Re clipped to <= -1e-4)
//   Delta  = step_rescale exp(log_step)     one timescale per state
//   Lambda_bar = exp(Lambda Delta),  B_bar = ((Lambda_bar - 1) / Lambda) ∘ B_tilde   (row-scaled)
//   x_k = Lambda_bar ∘ x_{k-1} + B_bar u_k,   y_k = 2 Re(C_tilde x_k) + D ∘ u_k
//
// Bidirectional: a second scan runs backward in time on the same Lambda_bar and B_bar u, and the
// output adds 2 Re(C2_tilde x_bwd) (the official concatenation of the two states against a C of
// width 2 P2).
//
// Shapes (P2 = the stored half of the state size P, conj_sym): u, y (B, L, H); Lambda_re,
// Lambda_im (P2); B (P2, H, 2) and C (H, P2, 2) as (re, im) pairs; D (H); log_step (P2, 1).
// Bidirectional: C2 (H, P2, 2) (the official C1, C2), or C (H, 2 P2, 2) with C2 undefined (the
// official complex_normal C).
//
// Computation: the parameters are discretised in double, B_bar u and C_tilde x are real GEMMs
// (BLAS) on the planar complex layout of kernels/s5_scan.h (B_bar as a real (2 P2, H) matrix of
// its real and imaginary rows; 2 Re(C_tilde x) as x (B L, 2 P2) times the real (H, 2 P2) matrix
// [2 Re C, -2 Im C]), and the recurrence is the blocked parallel scan of kernels/s5_scan.h.
// Backward: the reverse scans give dLoss/d(B_bar u) and dLoss/dLambda_bar; the GEMMs give the rest;
// the chain through the discretisation is done in double with (e^z - 1)/z and its derivative by
// series near z = 0 (no cancellation for tiny Lambda Delta).
#pragma once
#include <cstdint>
#include <vector>

#include "autograd/tensor.h"

namespace hippo {

struct S5SsmOptions {
    bool bidirectional = false;
    bool clip_eigs = false;
    double step_rescale = 1.0;
    int64_t min_chunk = 0;  // kernels/s5_scan.h (0: automatic)
};

// The discretised system in the layouts the kernels read, float (rounded once from double):
//   a  (2, P2)              Lambda_bar, planar
//   WB (2 P2, H)            rows p: Re B_bar[p, :], rows P2 + p: Im B_bar[p, :]
//   WC (ndir, H, 2 P2)      [2 Re C_tilde, -2 Im C_tilde] per direction
struct S5Tables {
    int64_t H = 0, P2 = 0, ndir = 1;
    std::vector<float> a, WB, WC;
};
S5Tables s5_discretize(const Tensor& Lambda_re, const Tensor& Lambda_im, const Tensor& B, const Tensor& C,
                       const Tensor& C2, const Tensor& log_step, const S5SsmOptions& opt);

// y (B, L, H). x0: (B, 2, P2) planar initial state of the forward scan, or undefined (zero);
// causal only; it gets a gradient when it requires one. x_last: if not null, receives the state
// after the last step, (B, 2, P2) planar (no gradient; the recurrent mode continues from it).
Tensor s5_ssm(const Tensor& u, const Tensor& Lambda_re, const Tensor& Lambda_im, const Tensor& B, const Tensor& C,
              const Tensor& C2, const Tensor& D, const Tensor& log_step, const S5SsmOptions& opt,
              const Tensor& x0 = Tensor(), Tensor* x_last = nullptr);

}  // namespace hippo
