// S4 (Gu, Goel, Re, ICLR 2022): the original DPLR state space layer with the HiPPO-LegS
// initialisation, as the official S4Block of state-spaces/s4 (models/s4/s4.py) with its defaults
// (FFTConv mode 'dplr', channels 1, GELU after the convolution, final_act 'glu'):
//
//   y = GLU(Linear(H, 2H)(GELU(K * u + D u))),   u, y (B, L, H)
//
// K (H, L) is the DPLR kernel (kernels/s4_dplr.h) of C~, which is attuned to the kernel length
// l_max: sequences of any L <= l_max use the first L taps (the official forward(L) with
// L < l_kernel); longer ones are refused (raise s4_cfg.l_max). The convolution is one FFT over the
// sequence: the DPLR system has no stable modal form (its eigenvectors are those of HiPPO-LegS,
// exponentially ill-conditioned), so there is no chunked state passing as for the diagonal SSMs.
// Recurrent mode: the O(N) Woodbury step of the bilinear DPLR system (prefill runs the steps).
//
// Parameters under the official state_dict names and shapes: layer.D (1, H),
// layer.kernel.{inv_dt (H, 1), A_real (S, N2), A_imag (S, N2), B (1, S, N2, 2), P (1, S, N2, 2),
// C (1, H, N2, 2) = C~ for l_max}, output_linear.0.{weight (2H, H), bias (2H)}; S = n_ssm.
// Not built: channels > 1, the bidirectional variant, rank > 1, other measures than LegS.
#pragma once
#include <complex>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/s4_dplr.h"
#include "nn/module.h"

namespace hippo {

struct S4Config {
    int64_t d_model = 0;
    int64_t d_state = 64;   // N (N2 = N/2 stored complex modes)
    int64_t n_ssm = 0;      // S copies of (A, B, P); 0: one per feature (the official default)
    int64_t l_max = 1024;   // the kernel length C~ is attuned to
    double dt_min = 1e-3, dt_max = 1e-1;
};

struct S4State {
    int64_t batch = 0;
    std::vector<std::complex<float>> x;  // (batch * H, N2)
    S4DplrStep tables;
};

class S4 : public Module {
public:
    S4(const S4Config& cfg, Rng& rng);
    Tensor forward(const Tensor& u) const;  // (B, L, H) -> (B, L, H)
    Tensor operator()(const Tensor& u) const { return forward(u); }
    S4State new_state(int64_t batch) const;
    Tensor prefill(const Tensor& u, S4State& st) const;
    Tensor step(const Tensor& u, S4State& st) const;  // (B, H) -> (B, H)
    // K * u + D u, before the GELU.
    Tensor ssm(const Tensor& u) const;
    std::string type_name() const override { return "S4"; }
    std::string extra_repr() const override;
    const S4Config& config() const { return cfg_; }

    std::shared_ptr<Linear> out;  // output_linear.0
    Tensor D, inv_dt, A_real, A_imag, B, P, C;

private:
    Tensor head(const Tensor& z) const;
    S4Config cfg_;
};

}  // namespace hippo
