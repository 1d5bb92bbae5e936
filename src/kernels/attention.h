// Attention kernels on raw fp32 buffers: softmax attention (materialised reference and the tiled
// FlashAttention algorithm, forward + backward), single-query decoding against a KV cache with the
// keys split across threads, block-sparse (BigBird) masks, and linear attention ("Transformers are
// RNNs", feature map elu(x) + 1).
//
// Layout: every q, k, v, o buffer is contiguous (B, H, L, Dh): batch, heads, length, head dim;
// q, k have head dim D, v, o head dim Dv (= D unless AttnShape::Dv says otherwise).
// The autograd op (autograd/ops_attention.h) copies the (B, L, H, Dh) views of a fused Wqkv
// output into this layout; the copy is O(L Dh) per head against O(L^2 Dh) for the attention
// itself, and it lets the kernels read whole key / value rows with unit stride.
//
// Conventions:
//   * scale <= 0 means 1 / sqrt(Dh).
//   * causal with Lq != Lk is aligned bottom-right: query i may see key j iff j <= i + (Lk - Lq),
//     so the queries are the last Lq positions of the key sequence (what a KV cache needs).
//   * key_mask (B, Lk) bytes, nonzero = the key is valid (key padding mask); null = all valid.
//   * A query row that sees no key at all (fully masked) gets O = 0 and lse = +inf (so that the
//     backward's recomputed probabilities exp(s - lse) are 0); its gradients are 0. (laplace /
//     relu2: O = 0 too, since masked weights are 0; lse is 0 for every row there.)
//   * Dropout on the attention weights: weight (b, h, i, j) is kept iff
//     hash_uniform(seed, ((b*H + h)*Lq + i)*Lk + j) >= p and then scaled by 1 / (1 - p); the
//     backward regenerates the same mask. lse is that of the undropped softmax.
//   * lse: (B, H, Lq) natural-log log-sum-exp of the scaled, biased, masked scores of each row.
//
// Scores and weights (AttnParams):
//   s_ij = c_i * (q_i . k_j) + bias(i, j)     c_i = scale, or per row with scale_by_key_count
//   softmax:          w_ij = exp(s_ij - lse_i) over the allowed keys, o_i = sum_j w_ij v_j
//   laplace, relu2:   w_ij = f(s_ij) for allowed keys, 0 for masked ones, NOT normalised across
//                     keys (Mega's element-wise attention), o_i = sum_j w_ij v_j
//     laplace f(x) = 0.5 (1 + erf((x - mu) / (sigma sqrt2))), mu = sqrt(1/2), sigma = sqrt(1/(4 pi))
//             (the normal CDF at (x - mu) / sigma; Mega's code rounds mu, sigma to 6 digits)
//     relu2   f(x) = max(x, 0)^2
//   bias(i, j) = rel_bias[clamp(rel_bias_center + (j_abs - i_abs), 0, rel_bias_len - 1)] with the
//     absolute positions j_abs = j, i_abs = i + (Lk - Lq) (the causal alignment, also without
//     causal). Offsets beyond the table saturate at its ends; the kernels read the table only
//     through that clamp, so any table with rel_bias_len >= 1 is safe whatever the masks.
//     Mega "simple" bias: p of length 2 maxpos - 1, center maxpos - 1 (B_rel[i, j] = p[maxpos-1+j-i]);
//     Mega-chunk: a block-diagonal BlockMask of chunk x chunk blocks and p sized by the chunk.
//   Dropout multiplies w_ij (after f, or after the softmax) by the same hashed keep mask.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hippo {

struct AttnShape {
    int64_t B = 1, H = 1, Lq = 1, Lk = 1, D = 64;  // D = head dim of q and k
    int64_t Dv = 0;                                // head dim of v and o; 0 = D
    int64_t dv() const { return Dv > 0 ? Dv : D; }
};

// Weight function of the scores; see the conventions at the top.
enum class AttnFn : uint8_t { softmax = 0, laplace = 1, relu2 = 2 };

// Block mask over (query block, key block) pairs: block (bi, bj) covers queries
// [bi*block_q, (bi+1)*block_q) and keys [bj*block_k, ...). heads == 1: shared by all heads,
// else one (nbq x nbk) plane per head (BigBird draws random blocks per head).
struct BlockMask {
    int64_t block_q = 64, block_k = 64;
    int64_t nbq = 0, nbk = 0, heads = 1;
    std::vector<uint8_t> mask;  // (heads, nbq, nbk), nonzero = active
    bool active(int64_t h, int64_t bi, int64_t bj) const {
        return mask[size_t(((heads == 1 ? 0 : h) * nbq + bi) * nbk + bj)] != 0;
    }
    int64_t count_active() const;
    double density() const;  // active fraction
};

// Empty mask for (Lq, Lk) with the given block sizes.
BlockMask make_block_mask(int64_t Lq, int64_t Lk, int64_t block_q, int64_t block_k, int64_t heads = 1);
// BigBird-ITC pattern with square blocks of `block`: each query block attends to `window` blocks
// centred on itself (window odd; 3 = previous, own, next), to `global` global blocks (the first
// ceil(g/2) and last floor(g/2) blocks; causal: the first g blocks), which also attend to every
// block, and to `random` blocks per row drawn without repetition among the blocks not yet active
// (seeded; different per head when heads > 1). causal: only blocks bj <= bi are ever active (the
// kernel's causal flag masks inside the diagonal block).
BlockMask bigbird_block_mask(int64_t L, int64_t block, int64_t window, int64_t global, int64_t random, uint64_t seed,
                             bool causal, int64_t heads = 1);

struct AttnParams {
    bool causal = false;
    float scale = 0;                      // <= 0: 1/sqrt(D)
    const uint8_t* key_mask = nullptr;    // (B, Lk), nonzero = valid
    float dropout_p = 0;                  // 0 = no dropout
    uint64_t dropout_seed = 0;
    // Index of batch row 0 in a larger global batch (data-parallel ranks): the dropout mask of a row
    // depends on its global index, not on how the batch is split.
    int64_t dropout_batch_offset = 0;
    const BlockMask* block_mask = nullptr;
    AttnFn fn = AttnFn::softmax;
    // c_i = (scale > 0 ? scale : 1) / max(1, n_keys(b, h, i)) instead of the uniform scale, where
    // n_keys counts the keys row i may see under causal and block_mask and, when NOT causal, under
    // key_mask too. That is Mega's element-wise attention: it divides by the causal mask's row sum
    // (i + 1 within the chunk, padded keys included) when causal, else by the number of non-pad keys
    // of the chunk (or the chunk length). Works with every fn.
    bool scale_by_key_count = false;
    const float* rel_bias = nullptr;  // (rel_bias_len) relative position bias table; null = none
    int64_t rel_bias_center = 0;      // index of offset j_abs - i_abs = 0
    int64_t rel_bias_len = 0;         // entries of rel_bias (>= 1 when rel_bias is set)
};

// True when query i may attend to key j of (b, h) (causal, key mask, block mask; not dropout).
bool attn_allowed(const AttnShape& s, const AttnParams& p, int64_t b, int64_t h, int64_t i, int64_t j);

// Gradient of the bias table (both backwards): d_rel_bias (rel_bias_len) ACCUMULATES (+=)
// sum_{b,h,i,j} dL/ds_ij into the clamped entry of each pair (the caller zeroes it once per step,
// like any parameter gradient); entries no pair uses are untouched. null = not wanted. It requires
// rel_bias. dq, dk, dv are overwritten as before.

// ---- materialised reference (double accumulation, O(Lq Lk) memory per head) ----
// q (B,H,Lq,D), k (B,H,Lk,D), v (B,H,Lk,Dv); o (B,H,Lq,Dv); lse (B,H,Lq) may be null (for
// laplace / relu2 it is filled with 0: those weights need no row statistic).
void attention_forward_ref(float* o, float* lse, const float* q, const float* k, const float* v, const AttnShape& s,
                           const AttnParams& p);
// dq (B,H,Lq,D), dk (B,H,Lk,D), dv (B,H,Lk,Dv) are overwritten; dout (B,H,Lq,Dv).
void attention_backward_ref(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                            const float* v, const AttnShape& s, const AttnParams& p,
                            float* d_rel_bias = nullptr);

// ---- tiled (FlashAttention) ----
// Tiles of 64 queries x 64 keys; threads split (batch x heads x query tiles). The working set of a
// thread is O(64 D) floats: nothing of size Lq x Lk is ever stored. lse may be null only when
// a softmax backward does not follow. laplace / relu2 need no online softmax: each key tile adds
// f(S) V to the output; lse (if given) is filled with 0. Shapes as for the reference.
void attention_forward_tiled(float* o, float* lse, const float* q, const float* k, const float* v,
                             const AttnShape& s, const AttnParams& p);
// Recomputation backward from O and lse (D_i = rowsum(dO * O)). Work items are (b, h, range of key
// tiles); an item owns its dK, dV rows and, per key tile, packs K^T and V^T once and sweeps all
// query tiles: S, P, dP, dS, dV += P^T dO, dK += dS^T Q, dQ += dS K (5 tile products = 2.5x the
// forward's FLOPs). A head is one item when B*H >= 2 x threads or B*H is a multiple of the thread
// count (dQ then accumulates in place, and results do not depend on the thread count); otherwise a
// head is split into C ranges balanced by causal work, whose dQ contributions go to per-item
// buffers (C x Lq x D floats per head) summed in range order. Either way the results are
// identical run to run for a given thread count. Extra memory: Dvec (B*H*Lq) + those buffers +
// O(64 D) per thread.
// laplace / relu2: W = f(S), dS = f'(S) * dP (no Dvec; o and lse are not read and may be null).
// d_rel_bias: each work item sums dS along the diagonals j - i into its own (Lq + Lk + 63) floats
// (extra memory B*H*C times that); the items are added in item order, in double, so d_rel_bias too
// is identical run to run for a given thread count.
// scale_by_key_count: c_i is counted per (b, h, query block) from the active key blocks, O(Lq) per
// head when there is no block mask.
void attention_backward_tiled(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                              const float* v, const float* o, const float* lse, const AttnShape& s,
                              const AttnParams& p, float* d_rel_bias = nullptr);

// ---- decoding: one query per (b, h) against cached keys ----
// q (B,H,D); k_cache (B,H,cap,D), v_cache (B,H,cap,Dv) of which the first Lk rows are used;
// o (B,H,Dv); Dv = 0 means D. The keys are split into chunks across threads; partial (max, sum,
// weighted V) results are merged exactly (log-sum-exp merge) in chunk order. key_mask (B, Lk) or
// null. Softmax only, without bias (Mega's element-wise decoding is not covered here).
void attention_decode(float* o, const float* q, const float* k_cache, const float* v_cache, int64_t B, int64_t H,
                      int64_t cap, int64_t Lk, int64_t D, float scale, const uint8_t* key_mask = nullptr,
                      int64_t Dv = 0);

// ---- linear attention, phi(x) = elu(x) + 1 ----
// q, k (B,H,L,Dk), v (B,H,L,Dv); out (B,H,L,Dv).
//   causal:     out_i = phi(q_i)^T S_i / (phi(q_i) . z_i + eps), S_i = sum_{j<=i} phi(k_j) v_j^T, z_i = sum phi(k_j)
//   non-causal: the same with the sums over all j.
// The backward recomputes the prefix states in a forward scan (for dq) and accumulates
// R_j = sum_{i>=j} phi(q_i) g_i^T in a reverse scan (for dk, dv): O(L Dk Dv) time and O(Dk Dv + L)
// memory per (b, h). It needs the forward's output.
struct LinAttnShape {
    int64_t B = 1, H = 1, L = 1, Dk = 64, Dv = 64;
};
constexpr float kLinAttnEps = 1e-6f;
void linear_attention_forward(float* out, const float* q, const float* k, const float* v, const LinAttnShape& s,
                              bool causal, float eps = kLinAttnEps);
void linear_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                               const float* v, const float* out, const LinAttnShape& s, bool causal,
                               float eps = kLinAttnEps);
// Materialised (L x L) references in double.
void linear_attention_forward_ref(float* out, const float* q, const float* k, const float* v, const LinAttnShape& s,
                                  bool causal, float eps = kLinAttnEps);
void linear_attention_backward_ref(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                                   const float* v, const LinAttnShape& s, bool causal, float eps = kLinAttnEps);
// One recurrent step for B*H sequences: q, k (B,H,Dk), v (B,H,Dv); state S (B,H,Dk,Dv), z (B,H,Dk)
// is updated with this token first, then out (B,H,Dv) is read from it.
void linear_attention_step(float* out, float* S, float* z, const float* q, const float* k, const float* v, int64_t B,
                           int64_t H, int64_t Dk, int64_t Dv, float eps = kLinAttnEps);

}  // namespace hippo
