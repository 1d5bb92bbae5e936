// Sequence mixers of the SSM family: the H3 layer (the centre of hippo) and the standalone S4D
// layer. Each has a parallel mode for training (forward over (B, L, D)) and a recurrent mode:
// an explicit state object, step() for one token in O(D N), and prefill() that runs the parallel
// mode and leaves the exact final state (closed form, no token-by-token loop).
#pragma once
#include <complex>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops_ssm.h"
#include "nn/module.h"

namespace hippo {

struct H3Config {
    int64_t d_model = 0;
    int64_t d_state = 64;    // N: shift-SSM taps, and 2x the number of complex diagonal modes
    int64_t head_dim = 1;    // P; H = d_model / P diagonal SSMs
    Discretization disc = Discretization::bilinear;
    std::string init = "lin";  // S4D-Lin ("lin") or S4D-Inv ("inv") imaginary parts
    float dt_min = 1e-3f, dt_max = 1e-1f;
    int64_t chunk = 8192;    // state passing above this length
};

// Recurrent state of one H3 layer for a batch of sequences.
struct H3State {
    int64_t batch = 0;
    int64_t pos = 0;                          // tokens consumed
    std::vector<float> keys;                  // (batch, N, D) ring buffer of raw keys, slot = t % N
    std::vector<std::complex<float>> x;       // (batch, H * P * P, M) diagonal-SSM states
    // Discretised parameters, computed once when the state is created (weights are fixed while
    // generating): shift taps (N, D), dA, dB, C per (head, mode).
    std::vector<float> taps;
    std::vector<std::complex<float>> dA, dB, C;
};

// H3 mixer exactly as the released code defines it (see the brief): q, k, v projections; the shift
// SSM on k; w = shift(k) * v; the diagonal SSM on w with its D skip; output = q * that; output
// projection. Parameter names equal the released checkpoints' names.
class H3 : public Module {
public:
    H3(const H3Config& cfg, Rng& rng);
    // u: (B, L, D) -> (B, L, D)
    Tensor forward(const Tensor& u) const;
    Tensor operator()(const Tensor& u) const { return forward(u); }

    H3State new_state(int64_t batch) const;
    // Runs the parallel mode (no gradient) and leaves `st` as if every token had been stepped.
    Tensor prefill(const Tensor& u, H3State& st) const;
    // u: (B, D) one token per sequence -> (B, D)
    Tensor step(const Tensor& u, H3State& st) const;

    const H3Config& config() const { return cfg_; }
    std::string type_name() const override { return "H3"; }
    std::string extra_repr() const override;

    std::shared_ptr<Linear> q_proj, k_proj, v_proj, output_linear;
    Tensor shift_B, shift_C, shift_D;                    // ssm_k_kernel.kernel.B (D, N), .C (1, D, N), ssm_k_D (D)
    Tensor log_dt, inv_A_real, A_imag, ssm_B, ssm_C, D;  // kernel.kernel.* (H), (H, M), (H, M), (H, M, 2), (1, H, M, 2); D (H)

private:
    // The mixing core after the projections: (B, L, D) q, k, v -> (B, L, D) before output_linear.
    Tensor mix(const Tensor& q, const Tensor& k, const Tensor& v, std::vector<std::complex<float>>* final_x) const;
    H3Config cfg_;
};

struct S4DConfig {
    int64_t d_model = 0;
    int64_t d_state = 64;  // N = 2 M
    Discretization disc = Discretization::zoh;
    std::string init = "lin";
    float dt_min = 1e-3f, dt_max = 1e-1f;
    int64_t chunk = 8192;
    bool glu = true;  // output head GLU(Linear(D, 2D)(.)); false: Linear(D, D)(.) as safari's synthetic S4D
};

struct S4DState {
    int64_t batch = 0;
    std::vector<std::complex<float>> x;  // (batch, D, M)
    std::vector<std::complex<float>> dA, dB, C;
};

// Standalone S4D layer as in the S4D paper's minimal block: y = GLU(Linear(D, 2D)(GELU(SSM(u) + D u))),
// or with glu = false y = Linear(D, D)(GELU(SSM(u) + D u)) (safari's S4D, postact None). The GLU
// makes the layer multiplicative, which is enough for it to learn induction head (98% in hippo),
// unlike the paper's S4D baseline (35.6%).
class S4D : public Module {
public:
    S4D(const S4DConfig& cfg, Rng& rng);
    Tensor forward(const Tensor& u) const;
    Tensor operator()(const Tensor& u) const { return forward(u); }
    S4DState new_state(int64_t batch) const;
    Tensor prefill(const Tensor& u, S4DState& st) const;
    Tensor step(const Tensor& u, S4DState& st) const;
    std::string type_name() const override { return "S4D"; }
    std::string extra_repr() const override;

    std::shared_ptr<Linear> output_linear;
    Tensor log_dt, inv_A_real, A_imag, ssm_B, ssm_C, D;

private:
    Tensor head(const Tensor& z) const;  // GELU, Linear, GLU (when glu)
    S4DConfig cfg_;
};

// Initial diagonal-SSM parameters (S4D-Lin / S4D-Inv, B = 1, C complex normal with E|C|^2 = 1,
// log dt uniform in [log dt_min, log dt_max]) for H heads and M modes, written into the tensors.
void s4d_init(Tensor& log_dt, Tensor& inv_A_real, Tensor& A_imag, Tensor& B, Tensor& C, const std::string& init,
              float dt_min, float dt_max, Rng& rng);

}  // namespace hippo
