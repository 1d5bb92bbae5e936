// S5 (Smith, Warrington, Linderman, ICLR 2023, "Simplified State Space Layers for Sequence
// Modeling"): one MIMO diagonal SSM per layer, run as a parallel scan, followed by the official
// SequenceLayer's activation. Official code: lindermanlab/S5 @ 3c18fdb, s5/ssm.py (S5SSM),
// s5/ssm_init.py (HiPPO-N), s5/layers.py (SequenceLayer), s5/train.py (block-diagonal init).
//
//   u (B, L, H) -> y = S5SSM(u) (B, L, H) -> activation -> (B, L, H)
//
// S5SSM (autograd/ops_s5.h): conj_sym (P2 = P / 2 stored modes, y = 2 Re(C_tilde x) + D u), ZOH
// with one timescale per state, optional clip_eigs and bidirectional (a second scan backward in
// time with its own C). Activations of SequenceLayer (GELU is flax's default, the tanh form):
//   gelu:       gelu(y)
//   half_glu1:  g = gelu(y); g ∘ sigmoid(out2(g))           (the default of the official run_train.py)
//   half_glu2:  y ∘ sigmoid(out2(gelu(y)))
//   full_glu:   g = gelu(y); out1(g) ∘ sigmoid(out2(g))
// No norm, residual or dropout inside: hippo's Block adds the norm and the residual.
//
// Parameter names are the official flax tree's under SequenceLayer (seq = the S5SSM):
//   seq.Lambda_re (P2), seq.Lambda_im (P2), seq.B (P2, H, 2), seq.C (H, P2, 2) or, bidirectional,
//   seq.C1 and seq.C2 (H, P2, 2) each (C_init complex_normal: one seq.C (H, 2 P2, 2)),
//   seq.D (H), seq.log_step (P2, 1); out1, out2: Dense(H) as hippo Linear, so out2.weight (H, H)
//   is the transpose of flax's out2/kernel, and out2.bias (H) is out2/bias.
// Lambda_re, Lambda_im, B and log_step are ParamTag::ssm (the official ssm_lr group, no weight
// decay); C, D and the Dense layers are standard.
//
// Initialisation (official): J = blocks HiPPO-N blocks of size b = P / J. Per block, the normal
// part S of HiPPO-LegS (b, b) is diagonalised in double by a Hermitian solver (S = -1/2 I + K, K
// skew: Lambda = -1/2 + i eig(-i K)), the b/2 eigenpairs of negative imaginary part are kept;
// Lambda is tiled J times, V = blockdiag(V_b), V^-1 = blockdiag(V_b^H). B ~ lecun_normal (P, H)
// real, B_tilde = V^-1 B; C ~ trunc_standard_normal (per row, lecun on (1, P, 2)) or lecun_normal
// on (H, P, 2), complex, C_tilde = C V; or complex_normal (std sqrt(1/2) per part, no V). D ~
// N(0, 1); log_step ~ U[log dt_min, log dt_max]; Dense kernels lecun_normal, biases 0. (JAX's
// lecun_normal is a normal truncated at 2 sigma with variance 1 / fan_in, fan_in = shape[-2] times
// the dims other than the last two.) Eigenvector phases differ from LAPACK's, so B_tilde and C_tilde
// are not the official numbers for one seed, only the same distribution and the same system.
//
// Modes: parallel (blocked scan, kernels/s5_scan.h) and, when causal, recurrent: new_state,
// prefill (the parallel mode from a state, leaving the final state) and step (one token).
#pragma once
#include <complex>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops_s5.h"
#include "nn/module.h"

namespace hippo {

struct S5Config {
    int64_t d_model = 0;     // H
    int64_t d_state = 256;   // P, the official ssm_size_base; P2 = P / 2 modes are stored
    int64_t blocks = 8;      // J HiPPO-N blocks; P / J must be even
    double dt_min = 1e-3, dt_max = 1e-1;
    bool clip_eigs = false;
    bool bidirectional = false;
    std::string C_init = "trunc_standard_normal";  // | lecun_normal | complex_normal
    std::string activation = "half_glu1";          // | gelu | half_glu2 | full_glu
    double step_rescale = 1.0;
    int64_t min_chunk = 0;   // scan chunking (kernels/s5_scan.h); 0: automatic
};

struct S5State {
    int64_t batch = 0;
    std::vector<float> x;  // (batch, 2, P2) planar complex state
    S5Tables tab;          // the discretised system when the state was made
};

class S5 : public Module {
public:
    S5(const S5Config& cfg, Rng& rng);
    // u (B, L, H) -> (B, L, H)
    Tensor forward(const Tensor& u) const;
    Tensor operator()(const Tensor& u) const { return forward(u); }
    // The S5SSM alone (before the activation); x0 / x_last as in s5_ssm (causal only).
    Tensor ssm(const Tensor& u, const Tensor& x0 = Tensor(), Tensor* x_last = nullptr) const;
    // The activation part of the layer, y (..., H) -> (..., H).
    Tensor activate(const Tensor& y) const;
    S5State new_state(int64_t batch) const;
    Tensor prefill(const Tensor& u, S5State& st) const;  // u (B, L, H)
    Tensor step(const Tensor& u, S5State& st) const;     // u (B, H) -> (B, H)
    std::string type_name() const override { return "S5"; }
    std::string extra_repr() const override;
    const S5Config& config() const { return cfg_; }
    int64_t P2() const { return cfg_.d_state / 2; }
    S5SsmOptions ssm_options() const;

    std::shared_ptr<Module> seq;
    std::shared_ptr<Linear> out1, out2;  // undefined when the activation has no Dense
    // seq's parameters. C is seq.C (or seq.C1 when bidirectional with two C's); C2 is seq.C2.
    Tensor Lambda_re, Lambda_im, B, C, C2, D, log_step;

private:
    S5Config cfg_;
};

// ---- HiPPO-N (s5/ssm_init.py make_DPLR_HiPPO), in double --------------------------------------
// The normal part of HiPPO-LegS of size N, S = -(LegS A) + p p^T with p_n = sqrt(n + 1/2): (N, N)
// row-major, S = -1/2 I + K with K skew-symmetric.
std::vector<double> hippo_legs_normal(int64_t N);
// Eigen-decomposition of a Hermitian (n, n) row-major matrix by cyclic complex Jacobi rotations:
// w (n) ascending, V (n, n) row-major with the eigenvectors as columns (A = V diag(w) V^H).
void hermitian_eigh(int64_t n, const std::complex<double>* A, double* w, std::complex<double>* V);
// S = V diag(Lambda) V^H with Lambda (N) = -1/2 + i w, w ascending (the eigenvalues of -i K), V (N, N)
// unitary, row-major. S5 keeps the first N / 2 pairs (negative imaginary parts).
void hippo_n_eig(int64_t N, std::complex<double>* Lambda, std::complex<double>* V);

}  // namespace hippo
