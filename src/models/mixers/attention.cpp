// Softmax attention (flash_attn's MHA as the released H3 hybrids use it) and its "attn_cfg" block,
// shared with linear attention and BigBird.
#include "models/mixer.h"
#include "nn/attention.h"

namespace hippo {

ConfigBlock attn_cfg_block() {
    Schema s("attn_cfg");
    s.integer("num_heads", 1, 1, 1 << 16, "attention heads (divides d_model)")
        .integer("rotary_emb_dim", 0, 0, 1 << 16, "rotary dims per head (0: none; even, <= head_dim)")
        .number("dropout", 0.0, 0.0, 0.999, "attention-weight dropout (training only)");
    return {"attn_cfg", s};
}

void check_attn_cfg(const ModelConfig& c, const std::string& where) {
    const nlohmann::json& b = c.block("attn_cfg");
    const int64_t h = blk_int(b, "num_heads"), r = blk_int(b, "rotary_emb_dim");
    HIPPO_CHECK(c.d_model % h == 0, "%s: d_model %lld is not a multiple of attn_cfg.num_heads %lld", where.c_str(),
                (long long)c.d_model, (long long)h);
    HIPPO_CHECK(r % 2 == 0 && r <= c.d_model / h, "%s: attn_cfg.rotary_emb_dim %lld must be even and <= head_dim %lld",
                where.c_str(), (long long)r, (long long)(c.d_model / h));
}

// MHA draws its dropout masks from the caller's per-step seed and the global row index, and its KV
// cache is sized by the caller.
class MHAMixer : public LayerMixer<MHA, MHAState> {
public:
    using LayerMixer::LayerMixer;
    Tensor forward(const Tensor& x, uint64_t dropout_seed, bool, int64_t row_offset) const override {
        return m_->forward(x, dropout_seed, row_offset);
    }
    bool has_recurrent_mode() const override { return !m_->config().block_mask; }
    std::unique_ptr<MixerState> new_state(int64_t batch, int64_t max_len) const override {
        auto st = std::make_unique<State>();
        st->s = m_->new_state(batch, max_len);
        return st;
    }
};

MHAConfig mha_config(const ModelConfig& c, int64_t layer, Rng& rng) {
    const nlohmann::json& b = c.block("attn_cfg");
    MHAConfig a;
    a.d_model = c.d_model;
    a.num_heads = blk_int(b, "num_heads");
    a.causal = true;
    a.rotary_dim = blk_int(b, "rotary_emb_dim");
    a.dropout = float(blk_num(b, "dropout"));
    a.dropout_seed = rng.next_u64() ^ uint64_t(layer);
    return a;
}

int64_t mha_param_count(const ModelConfig& c) {
    const int64_t D = c.d_model;
    // Wqkv, out_proj, and the rotary inv_freq buffer (listed as a parameter, see nn/attention.h).
    return 3 * D * D + 3 * D + D * D + D + blk_int(c.block("attn_cfg"), "rotary_emb_dim") / 2;
}

std::unique_ptr<SequenceMixer> make_mha_mixer(const MHAConfig& a, Rng& rng) {
    return std::make_unique<MHAMixer>(std::make_shared<MHA>(a, rng), "MHA");
}

MixerDef attention_mixer() {
    MixerDef d;
    d.name = "attention";
    d.aliases = {"mha"};
    d.blocks = {"attn_cfg"};
    d.help = "exact softmax attention (tiled, FlashAttention-style), causal, optional rotary";
    d.validate = check_attn_cfg;
    d.make = [](const ModelConfig& c, int64_t layer, Rng& rng) { return make_mha_mixer(mha_config(c, layer, rng), rng); };
    d.param_count = mha_param_count;
    return d;
}

}  // namespace hippo
