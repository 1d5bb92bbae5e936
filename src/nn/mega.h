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
#include "kernels/attention.h"
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

// One Mega layer: moving-average gated attention (MovingAverageGatedAttention of
// facebookresearch/mega, fairseq/modules/moving_average_gated_attention.py), causal, single head,
// without its own norm (hippo's Block applies the pre-norm) and with the gated residual:
//
//   xn = Norm(x)                                          (the Block's norm1)
//   v = SiLU(v_proj(xn))                                  (B, L, hdim)
//   mx = MultiHeadEMA(xn)                                 (B, L, D)
//   [u | zr | hx] = mx_proj(mx)                           D | zdim + hdim | D
//   phi = sigmoid(u);  [z | r] = SiLU(zr);  q = z gamma0 + beta0,  k = z gamma1 + beta1
//   O = Attn(q, k, v)  (softmax: scaled by zdim^-1/2; laplace / relu2: by 1/(keys seen), no
//                       normalisation), + the simple relative position bias p[maxpos-1 + j - i],
//                       causal; chunk > 0: within chunks of `chunk` tokens only (Mega-chunk)
//   Hh = SiLU(hx + h_proj(O r))
//   y = x + phi (Hh - x)          (the layer returns phi (Hh - x); the Block adds x)
//
// The attention is hippo's tiled kernel (kernels/attention.h: Dv != D, the bias table and its
// gradient, laplace / relu2, a block-diagonal mask for chunks): O(L) memory, and O(L chunk) time
// with chunks. Recurrent mode: the EMA's step and the keys / values of the visible window (all
// previous tokens, or those of the current chunk).
// Parameters under the official names: move.* (MultiHeadEMA), v_proj, mx_proj, h_proj, gamma (2, zdim),
// beta (2, zdim), rel_pos_bias.rel_pos_bias (2 maxpos - 1), maxpos = chunk if chunk > 0 else
// max_positions. Not built: dropout inside the layer, rotary bias, bidirectional, padding masks.
struct MegaConfig {
    int64_t d_model = 0;
    int64_t zdim = 64, hdim = 0, ndim = 16;  // hdim 0: 2 d_model
    AttnFn fn = AttnFn::softmax;
    int64_t chunk = 0;                       // 0: full attention; else Mega-chunk
    int64_t max_positions = 1024;            // longest sequence (full attention)
    int64_t ema_chunk = 8192;                // EMA state passing above this length
};

struct MegaState {
    int64_t batch = 0, pos = 0, cap = 0;
    MegaEMAState ema;
    std::vector<float> k, v;  // (batch, cap, zdim), (batch, cap, hdim): keys / values of the window
};

class MegaLayer : public Module {
public:
    MegaLayer(const MegaConfig& cfg, Rng& rng);
    // xn, x (B, L, D) -> phi (Hh - x) (B, L, D)
    Tensor forward(const Tensor& xn, const Tensor& x) const;
    MegaState new_state(int64_t batch, int64_t max_len) const;
    Tensor prefill(const Tensor& xn, const Tensor& x, MegaState& st) const;
    Tensor step(const Tensor& xn, const Tensor& x, MegaState& st) const;  // (B, D) -> (B, D)
    std::string type_name() const override { return "MovingAverageGatedAttention"; }
    std::string extra_repr() const override;
    const MegaConfig& config() const { return cfg_; }
    int64_t maxpos() const { return cfg_.chunk > 0 ? cfg_.chunk : cfg_.max_positions; }

    std::shared_ptr<MegaEMA> move;
    std::shared_ptr<Linear> v_proj, mx_proj, h_proj;
    Tensor gamma, beta, rel_pos_bias;

private:
    struct Parts {
        Tensor v, phi, q, k, r, hx;
    };
    Parts parts(const Tensor& xn, const Tensor& mx) const;
    Tensor finish(const Parts& p, const Tensor& O, const Tensor& x) const;
    MegaConfig cfg_;
};

}  // namespace hippo
