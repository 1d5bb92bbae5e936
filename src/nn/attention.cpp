#include "nn/attention.h"

#include <cmath>
#include <cstring>

#include "autograd/ops.h"
#include "common/check.h"

namespace hippo {

void MHAState::reserve(int64_t new_cap) {
    if (new_cap <= cap) return;
    new_cap = std::max(new_cap, 2 * cap);
    std::vector<float> nk(size_t(batch * heads * new_cap * head_dim)), nv(nk.size());
    for (int64_t bh = 0; pos > 0 && bh < batch * heads; bh++) {  // (memcpy from an empty cache is UB)
        std::memcpy(nk.data() + bh * new_cap * head_dim, k.data() + bh * cap * head_dim,
                    size_t(pos * head_dim) * sizeof(float));
        std::memcpy(nv.data() + bh * new_cap * head_dim, v.data() + bh * cap * head_dim,
                    size_t(pos * head_dim) * sizeof(float));
    }
    k.swap(nk);
    v.swap(nv);
    cap = new_cap;
}

RotaryEmbedding::RotaryEmbedding(int64_t rotary_dim, float base) {
    Tensor t = Tensor::empty({rotary_dim / 2});
    for (int64_t i = 0; i < rotary_dim / 2; i++)
        t.data()[i] = float(1.0 / std::pow(double(base), double(2 * i) / double(rotary_dim)));
    inv_freq = register_parameter("inv_freq", t);
    inv_freq.set_requires_grad(false);
}

MHA::MHA(const MHAConfig& cfg, Rng& rng) : cfg_(cfg) {
    HIPPO_CHECK(cfg.d_model > 0 && cfg.num_heads > 0 && cfg.d_model % cfg.num_heads == 0,
                "MHA: d_model %lld is not a multiple of num_heads %lld", (long long)cfg.d_model,
                (long long)cfg.num_heads);
    const int64_t dh = cfg.d_model / cfg.num_heads;
    HIPPO_CHECK(cfg.rotary_dim >= 0 && cfg.rotary_dim % 2 == 0 && cfg.rotary_dim <= dh,
                "MHA: rotary_dim %lld must be even and <= head_dim %lld", (long long)cfg.rotary_dim, (long long)dh);
    HIPPO_CHECK(cfg.dropout >= 0 && cfg.dropout < 1, "MHA: dropout %g out of [0, 1)", double(cfg.dropout));
    Wqkv = register_module("Wqkv", std::make_shared<Linear>(cfg.d_model, 3 * cfg.d_model, true, rng));
    out_proj = register_module("out_proj", std::make_shared<Linear>(cfg.d_model, cfg.d_model, true, rng));
    if (cfg.rotary_dim > 0)
        rotary_emb = register_module("rotary_emb", std::make_shared<RotaryEmbedding>(cfg.rotary_dim, cfg.rotary_base));
}

std::string MHA::extra_repr() const {
    return strf("d_model=%lld, heads=%lld, causal=%s, rotary_dim=%lld, dropout=%g", (long long)cfg_.d_model,
                (long long)cfg_.num_heads, cfg_.causal ? "true" : "false", (long long)cfg_.rotary_dim,
                double(cfg_.dropout));
}

void MHA::split_qkv(const Tensor& qkv, int64_t offset, Tensor& q, Tensor& k, Tensor& v) const {
    const int64_t B = qkv.size(0), L = qkv.size(1), H = cfg_.num_heads, dh = head_dim();
    Tensor r = qkv.reshape({B, L, 3, H, dh});
    q = r.select(2, 0);
    k = r.select(2, 1);
    v = r.select(2, 2);
    if (cfg_.rotary_dim > 0) {
        q = rotary(q, cfg_.rotary_dim, cfg_.rotary_base, offset);
        k = rotary(k, cfg_.rotary_dim, cfg_.rotary_base, offset);
    }
}

Tensor MHA::forward(const Tensor& x) const {
    const uint64_t seed = is_training() && cfg_.dropout > 0 ? splitmix64(cfg_.dropout_seed ^ splitmix64(calls_++)) : 0;
    return forward(x, seed, 0);
}

Tensor MHA::forward(const Tensor& x, uint64_t dropout_seed, int64_t batch_offset) const {
    HIPPO_CHECK(x.ndim() == 3 && x.size(2) == cfg_.d_model, "MHA: input must be (B, L, %lld), got %s",
                (long long)cfg_.d_model, x.shape().str().c_str());
    const int64_t B = x.size(0), L = x.size(1);
    Tensor q, k, v;
    split_qkv(Wqkv->forward(x), 0, q, k, v);
    AttentionOptions opt;
    opt.causal = cfg_.causal;
    opt.training = is_training();
    if (cfg_.block_mask) opt.block_mask = cfg_.block_mask(L);
    if (is_training() && cfg_.dropout > 0) {
        opt.dropout_p = cfg_.dropout;
        opt.dropout_seed = dropout_seed;
        opt.dropout_batch_offset = batch_offset;
    }
    Tensor o = attention(q, k, v, opt);
    return out_proj->forward(o.reshape({B, L, cfg_.d_model}));
}

MHAState MHA::new_state(int64_t batch, int64_t reserve_len) const {
    HIPPO_CHECK(!cfg_.block_mask, "block-sparse attention has no recurrent mode (no prefill / step)");
    MHAState st;
    st.batch = batch;
    st.heads = cfg_.num_heads;
    st.head_dim = head_dim();
    st.reserve(std::max<int64_t>(reserve_len, 16));
    return st;
}

Tensor MHA::prefill(const Tensor& x, MHAState& st) const {
    NoGradGuard no_grad;
    HIPPO_CHECK(x.ndim() == 3 && x.size(0) == st.batch && x.size(2) == cfg_.d_model,
                "MHA prefill: input %s does not match a state for batch %lld, width %lld", x.shape().str().c_str(),
                (long long)st.batch, (long long)cfg_.d_model);
    const int64_t B = x.size(0), L = x.size(1), H = cfg_.num_heads, dh = head_dim(), P = st.pos;
    Tensor q, k, v;
    split_qkv(Wqkv->forward(x), P, q, k, v);
    st.reserve(P + L);
    Tensor qb = Tensor::empty({B, H, L, dh}), kb = Tensor::empty({B, H, L, dh}), vb = Tensor::empty({B, H, L, dh});
    copy_blhd_to_bhld(qb.data(), q);
    copy_blhd_to_bhld(kb.data(), k);
    copy_blhd_to_bhld(vb.data(), v);
    for (int64_t bh = 0; bh < B * H; bh++) {
        std::memcpy(st.k.data() + (bh * st.cap + P) * dh, kb.data() + bh * L * dh, size_t(L * dh) * sizeof(float));
        std::memcpy(st.v.data() + (bh * st.cap + P) * dh, vb.data() + bh * L * dh, size_t(L * dh) * sizeof(float));
    }
    st.pos = P + L;
    const int64_t Lk = st.pos;
    // Contiguous (B, H, Lk, dh) keys and values of the whole cache.
    Tensor ka = Tensor::empty({B, H, Lk, dh}), va = Tensor::empty({B, H, Lk, dh});
    for (int64_t bh = 0; bh < B * H; bh++) {
        std::memcpy(ka.data() + bh * Lk * dh, st.k.data() + bh * st.cap * dh, size_t(Lk * dh) * sizeof(float));
        std::memcpy(va.data() + bh * Lk * dh, st.v.data() + bh * st.cap * dh, size_t(Lk * dh) * sizeof(float));
    }
    AttnShape s{B, H, L, Lk, dh};
    AttnParams p;
    p.causal = cfg_.causal;
    Tensor o = Tensor::empty({B, H, L, dh});
    attention_forward_tiled(o.data(), nullptr, qb.data(), ka.data(), va.data(), s, p);
    return out_proj->forward(bhld_to_blhd(o.data(), B, H, L, dh).reshape({B, L, cfg_.d_model}));
}

Tensor MHA::step(const Tensor& x, MHAState& st) const {
    NoGradGuard no_grad;
    HIPPO_CHECK(x.ndim() == 2 && x.size(0) == st.batch && x.size(1) == cfg_.d_model,
                "MHA step: input must be (%lld, %lld), got %s", (long long)st.batch, (long long)cfg_.d_model,
                x.shape().str().c_str());
    const int64_t B = x.size(0), H = cfg_.num_heads, dh = head_dim(), P = st.pos;
    Tensor q, k, v;
    split_qkv(Wqkv->forward(x.reshape({B, 1, cfg_.d_model})), P, q, k, v);
    q = q.contiguous();  // (B, 1, H, dh) == (B, H, dh)
    k = k.contiguous();
    v = v.contiguous();
    st.reserve(P + 1);
    for (int64_t bh = 0; bh < B * H; bh++) {
        std::memcpy(st.k.data() + (bh * st.cap + P) * dh, k.data() + bh * dh, size_t(dh) * sizeof(float));
        std::memcpy(st.v.data() + (bh * st.cap + P) * dh, v.data() + bh * dh, size_t(dh) * sizeof(float));
    }
    st.pos = P + 1;
    Tensor o = Tensor::empty({B, cfg_.d_model});
    // Non-causal layers also only see the cached past while generating.
    attention_decode(o.data(), q.data(), st.k.data(), st.v.data(), B, H, st.cap, st.pos, dh, 0.0f);
    return out_proj->forward(o);
}

// ---------------------------------------------------------------------------------------------

LinearAttention::LinearAttention(const LinearAttentionConfig& cfg, Rng& rng) : cfg_(cfg) {
    HIPPO_CHECK(cfg.d_model > 0 && cfg.num_heads > 0 && cfg.d_model % cfg.num_heads == 0,
                "LinearAttention: d_model %lld is not a multiple of num_heads %lld", (long long)cfg.d_model,
                (long long)cfg.num_heads);
    Wqkv = register_module("Wqkv", std::make_shared<Linear>(cfg.d_model, 3 * cfg.d_model, true, rng));
    out_proj = register_module("out_proj", std::make_shared<Linear>(cfg.d_model, cfg.d_model, true, rng));
}

std::string LinearAttention::extra_repr() const {
    return strf("d_model=%lld, heads=%lld, causal=%s", (long long)cfg_.d_model, (long long)cfg_.num_heads,
                cfg_.causal ? "true" : "false");
}

Tensor LinearAttention::forward(const Tensor& x) const {
    HIPPO_CHECK(x.ndim() == 3 && x.size(2) == cfg_.d_model, "LinearAttention: input must be (B, L, %lld), got %s",
                (long long)cfg_.d_model, x.shape().str().c_str());
    const int64_t B = x.size(0), L = x.size(1), H = cfg_.num_heads, dh = cfg_.d_model / H;
    Tensor r = Wqkv->forward(x).reshape({B, L, 3, H, dh});
    Tensor o = linear_attention(r.select(2, 0), r.select(2, 1), r.select(2, 2), cfg_.causal);
    return out_proj->forward(o.reshape({B, L, cfg_.d_model}));
}

LinearAttentionState LinearAttention::new_state(int64_t batch) const {
    const int64_t H = cfg_.num_heads, dh = cfg_.d_model / H;
    LinearAttentionState st;
    st.batch = batch;
    st.S.assign(size_t(batch * H * dh * dh), 0.0f);
    st.z.assign(size_t(batch * H * dh), 0.0f);
    return st;
}

Tensor LinearAttention::prefill(const Tensor& x, LinearAttentionState& st) const {
    NoGradGuard no_grad;
    HIPPO_CHECK(cfg_.causal, "LinearAttention prefill: only causal layers have a recurrent mode");
    HIPPO_CHECK(x.ndim() == 3 && x.size(0) == st.batch && x.size(2) == cfg_.d_model && st.pos == 0,
                "LinearAttention prefill: input %s does not match a fresh state for batch %lld",
                x.shape().str().c_str(), (long long)st.batch);
    const int64_t B = x.size(0), L = x.size(1), H = cfg_.num_heads, dh = cfg_.d_model / H;
    Tensor r = Wqkv->forward(x).reshape({B, L, 3, H, dh});
    Tensor k = r.select(2, 1).contiguous(), v = r.select(2, 2).contiguous();
    Tensor o = linear_attention(r.select(2, 0), k, v, true);
    // Final state S = sum_t phi(k_t) v_t^T, z = sum_t phi(k_t)
#pragma omp parallel for schedule(static) if (B * H * L * dh * dh > (1 << 16))
    for (int64_t bh = 0; bh < B * H; bh++) {
        const int64_t b = bh / H, h = bh % H;
        float* S = st.S.data() + bh * dh * dh;
        float* z = st.z.data() + bh * dh;
        for (int64_t t = 0; t < L; t++) {
            const float* kt = k.data() + ((b * L + t) * H + h) * dh;
            const float* vt = v.data() + ((b * L + t) * H + h) * dh;
            for (int64_t d = 0; d < dh; d++) {
                const float f = kt[d] > 0 ? kt[d] + 1.0f : std::exp(kt[d]);
                z[d] += f;
                for (int64_t e = 0; e < dh; e++) S[d * dh + e] += f * vt[e];
            }
        }
    }
    st.pos = L;
    return out_proj->forward(o.reshape({B, L, cfg_.d_model}));
}

Tensor LinearAttention::step(const Tensor& x, LinearAttentionState& st) const {
    NoGradGuard no_grad;
    HIPPO_CHECK(cfg_.causal, "LinearAttention step: only causal layers have a recurrent mode");
    HIPPO_CHECK(x.ndim() == 2 && x.size(0) == st.batch && x.size(1) == cfg_.d_model,
                "LinearAttention step: input must be (%lld, %lld), got %s", (long long)st.batch,
                (long long)cfg_.d_model, x.shape().str().c_str());
    const int64_t B = x.size(0), H = cfg_.num_heads, dh = cfg_.d_model / H;
    Tensor r = Wqkv->forward(x).reshape({B, 3, H, dh});
    Tensor q = r.select(1, 0).contiguous(), k = r.select(1, 1).contiguous(), v = r.select(1, 2).contiguous();
    Tensor o = Tensor::empty({B, cfg_.d_model});
    linear_attention_step(o.data(), st.S.data(), st.z.data(), q.data(), k.data(), v.data(), B, H, dh, dh);
    st.pos++;
    return out_proj->forward(o);
}

}  // namespace hippo
