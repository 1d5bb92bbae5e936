// Mega (Ma et al., ICLR 2023): the multi-dimensional damped EMA (MultiHeadEMA of
// facebookresearch/mega, fairseq/modules/exponential_moving_average.py), causal.
//
// Per channel d in [0, D) and expansion n in [0, h):
//   p = sigmoid(delta[d,n]), a = sigmoid(alpha[d,n]), q = 1 - p a  (in (0, 1): a damped real EMA)
//   K[d,l] = sum_n p beta[d,n] gamma[d,n] / sqrt(h) q^l
//   out = SiLU(K * x + omega x),   x, out (B, L, D)
// (the official code's names: its "delta" is the paper's alpha and its "alpha" the paper's delta).
// A real-mode diagonal SSM, so it runs through the same modal FlashConv as DSS/S4D (chunked state
// passing above `chunk`) and steps with an explicit state h (B, D, n): h <- q h + p beta x.
// Parameters under the official names and shapes: delta, alpha, beta (D, h, 1), gamma (D, h),
// omega (D). Not built: the bidirectional variant and kernel truncation.
#pragma once
#include <complex>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops_ssm.h"
#include "nn/module.h"

namespace hippo {

struct MegaEMAConfig {
    int64_t d_model = 0;
    int64_t ndim = 16;     // h: EMA expansion per channel
    int64_t chunk = 8192;  // state passing above this length
};

struct MegaEMAState {
    int64_t batch = 0;
    std::vector<std::complex<float>> x;        // (batch, D, h) EMA states (real values)
    std::vector<std::complex<float>> z, one, W;  // (D, h): q, 1, W/2 of the modal form
};

class MegaEMA : public Module {
public:
    MegaEMA(const MegaEMAConfig& cfg, Rng& rng);
    // x (B, L, D) -> SiLU(EMA(x) + omega x) (B, L, D)
    Tensor forward(const Tensor& x) const;
    MegaEMAState new_state(int64_t batch) const;
    Tensor prefill(const Tensor& x, MegaEMAState& st) const;
    Tensor step(const Tensor& x, MegaEMAState& st) const;  // x (B, D) -> (B, D)
    // The EMA alone, K * x + omega x, before the SiLU.
    Tensor ema(const Tensor& x, std::vector<std::complex<double>>* final_X = nullptr) const;
    std::string type_name() const override { return "MultiHeadEMA"; }
    std::string extra_repr() const override;
    const MegaEMAConfig& config() const { return cfg_; }

    Tensor delta, alpha, beta, gamma, omega;

private:
    ModalParameterisation parameterisation() const;
    MegaEMAConfig cfg_;
};

}  // namespace hippo
