// Attention-family ops as single tape nodes with hand-written backward (kernels/attention.h).
//
// Layout of q, k, v, outputs and gradients: (B, L, H, Dh), any strides with a unit last stride
// being the fast case, e.g. the select(2, i) views of a fused Wqkv output reshaped to
// (B, L, 3, H, Dh). The ops copy into the kernels' contiguous (B, H, L, Dh) layout (O(L Dh) per
// head, small next to the O(L^2 Dh) attention) and copy the result back to (B, L, H, Dh).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "autograd/tensor.h"
#include "kernels/attention.h"

namespace hippo {

struct AttentionOptions {
    bool causal = false;                           // bottom-right aligned when Lq != Lk (see kernels/attention.h)
    float scale = 0;                               // <= 0: 1/sqrt(Dh)
    std::vector<uint8_t> key_mask;                 // (B, Lk), nonzero = valid; empty = all valid
    float dropout_p = 0;                           // on the attention weights, only when training
    uint64_t dropout_seed = 0;
    int64_t dropout_batch_offset = 0;              // see AttnParams
    bool training = true;
    std::shared_ptr<const BlockMask> block_mask;   // block-sparse pattern (BigBird etc.) or null
    bool materialized = false;                     // use the O(L^2) reference kernels (tests, benchmarks)
    // Mega's options (see kernels/attention.h): the weight function, scores scaled by 1 / (number
    // of keys the row sees), and the centre of the relative position bias table passed to the
    // overload below (score(i, j) += rel_bias[rel_bias_center + j - i], clamped to the table).
    AttnFn fn = AttnFn::softmax;
    bool scale_by_key_count = false;
    int64_t rel_bias_center = 0;
};

// Softmax attention: q (B, Lq, H, Dh), k, v (B, Lk, H, Dh) -> (B, Lq, H, Dh).
// Saves O and the per-row log-sum-exp (B*H*Lq floats) for the recomputation backward.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& opt = {});
// The same with v (B, Lk, H, Dv) of its own head dim (output (B, Lq, H, Dv)) and a relative
// position bias table rel_bias (Lb) shared by the heads (undefined: none), which gets a gradient.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& rel_bias,
                 const AttentionOptions& opt);

// Linear attention with phi = elu + 1: q, k (B, L, H, Dk), v (B, L, H, Dv) -> (B, L, H, Dv).
Tensor linear_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal);

// Rotary position embedding, GPT-NeoX rotate_half style: x (B, L, H, Dh); in each head the first
// rotary_dim dims are split in halves (x1, x2) and rotated: (x1 cos - x2 sin, x2 cos + x1 sin) with
// angle (position_offset + l) * base^(-2i / rotary_dim), i < rotary_dim / 2; the other dims pass
// through. cos/sin computed in double. Backward: rotation by the negative angle.
Tensor rotary(const Tensor& x, int64_t rotary_dim, float base = 10000.0f, int64_t position_offset = 0);

// Row-major copies between (B, L, H, D) (any strides) and contiguous (B, H, L, D) buffers.
void copy_blhd_to_bhld(float* dst, const Tensor& x);
Tensor bhld_to_blhd(const float* src, int64_t B, int64_t H, int64_t L, int64_t D);

}  // namespace hippo
