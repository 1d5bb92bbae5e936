// Attention mixers: the MHA layer of the H3 hybrids (flash_attn's MHA as the released checkpoints
// use it) and a linear-attention layer with the same projection names. Both have a parallel mode
// (forward over (B, L, D)) and a recurrent mode: an explicit state, prefill() (parallel pass that
// fills the state) and step() for one token.
//
// Parameter names (as the checkpoints): Wqkv.weight (3d, d), Wqkv.bias (3d), out_proj.weight
// (d, d), out_proj.bias (d); the Wqkv output is laid out (3, heads, head_dim).
//
// Rotary buffer: the rotary checkpoints hold the persistent buffer `rotary_emb.inv_freq`
// (rotary_dim / 2). Module has no buffer concept, so it is registered as a parameter of a child
// module "rotary_emb" and then marked requires_grad = false: it is listed by named_parameters()
// (so checkpoints load / save it under its released name), never receives a gradient, and the
// optimizers skip it (they skip parameters without a gradient). It is, however, counted by
// num_parameters(). A proper fix needs Module::register_buffer (named_buffers(), included in
// state dicts, excluded from parameters()/num_parameters()/optimizers). The rotary op computes its
// cos/sin tables in double from (rotary_dim, base); inv_freq holds the same values in fp32.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops_attention.h"
#include "nn/module.h"

namespace hippo {

struct MHAConfig {
    int64_t d_model = 0;
    int64_t num_heads = 1;
    bool causal = true;
    int64_t rotary_dim = 0;       // 0 = no rotary; else even, <= head_dim
    float rotary_base = 10000.0f;
    float dropout = 0.0f;         // attention dropout, train mode only
    uint64_t dropout_seed = 0;    // forward(x) in train mode draws each mask from (seed, call count)
    // Block-sparse attention (BigBird): the pattern for a sequence of length L, or null for dense.
    // A layer with a pattern has no recurrent mode (prefill / step are errors).
    std::function<std::shared_ptr<const BlockMask>(int64_t L)> block_mask;
};

// KV cache of one MHA layer: keys (after rotary) and values, (batch, heads, cap, head_dim), the
// first `pos` rows of each (b, h) used. cap grows by doubling when needed.
struct MHAState {
    int64_t batch = 0, heads = 0, head_dim = 0;
    int64_t pos = 0, cap = 0;
    std::vector<float> k, v;
    void reserve(int64_t new_cap);
};

class RotaryEmbedding : public Module {
public:
    RotaryEmbedding(int64_t rotary_dim, float base);
    Tensor inv_freq;  // (rotary_dim / 2), requires_grad = false
    std::string type_name() const override { return "RotaryEmbedding"; }
};

class MHA : public Module {
public:
    MHA(const MHAConfig& cfg, Rng& rng);
    // x: (B, L, D) -> (B, L, D)
    Tensor forward(const Tensor& x) const;
    Tensor operator()(const Tensor& x) const { return forward(x); }
    // With the dropout mask given by the caller: drawn from dropout_seed, with x's batch rows at
    // batch_offset in the global batch (an LM passes its per-step seed, so masks follow the
    // checkpointed RNG on resume and do not depend on the data-parallel split).
    Tensor forward(const Tensor& x, uint64_t dropout_seed, int64_t batch_offset) const;

    MHAState new_state(int64_t batch, int64_t reserve_len = 0) const;
    // Parallel pass over (B, L, D) that appends the L tokens to the cache (no gradient). Works on an
    // empty or a non-empty cache (chunked prefill: causal attention aligned to the end).
    Tensor prefill(const Tensor& x, MHAState& st) const;
    // x: (B, D), one token per sequence -> (B, D); attention_decode over the cache.
    Tensor step(const Tensor& x, MHAState& st) const;

    const MHAConfig& config() const { return cfg_; }
    int64_t head_dim() const { return cfg_.d_model / cfg_.num_heads; }
    std::string type_name() const override { return "MHA"; }
    std::string extra_repr() const override;

    std::shared_ptr<Linear> Wqkv, out_proj;
    std::shared_ptr<RotaryEmbedding> rotary_emb;  // null without rotary

private:
    // qkv (B, L, 3d) -> q, k, v (B, L, H, Dh) with rotary applied at positions offset + l.
    void split_qkv(const Tensor& qkv, int64_t offset, Tensor& q, Tensor& k, Tensor& v) const;
    MHAConfig cfg_;
    mutable uint64_t calls_ = 0;
};

struct LinearAttentionConfig {
    int64_t d_model = 0;
    int64_t num_heads = 1;
    bool causal = true;
};

// Recurrent state: S = sum phi(k) v^T (B, H, Dh, Dh), z = sum phi(k) (B, H, Dh).
struct LinearAttentionState {
    int64_t batch = 0, pos = 0;
    std::vector<float> S, z;
};

// "Transformers are RNNs" layer: Wqkv (3, heads, head_dim) projections, linear attention with
// phi = elu + 1, out_proj.
class LinearAttention : public Module {
public:
    LinearAttention(const LinearAttentionConfig& cfg, Rng& rng);
    Tensor forward(const Tensor& x) const;
    Tensor operator()(const Tensor& x) const { return forward(x); }
    LinearAttentionState new_state(int64_t batch) const;
    Tensor prefill(const Tensor& x, LinearAttentionState& st) const;  // causal only
    Tensor step(const Tensor& x, LinearAttentionState& st) const;     // causal only
    std::string type_name() const override { return "LinearAttention"; }
    std::string extra_repr() const override;

    std::shared_ptr<Linear> Wqkv, out_proj;

private:
    LinearAttentionConfig cfg_;
};

}  // namespace hippo
