#include "models/mixer.h"

#include <type_traits>

#include "nn/attention.h"
#include "nn/gss.h"
#include "nn/ssm_layers.h"

namespace hippo {

namespace {

template <class S>
S& state_as(MixerState& st, const char* what) {
    auto* p = dynamic_cast<S*>(&st);
    HIPPO_CHECK(p, "%s: recurrent state of another mixer kind", what);
    return *p;
}

Discretization disc_of(const std::string& s, Discretization def) {
    if (s.empty()) return def;
    return s == "zoh" ? Discretization::zoh : Discretization::bilinear;
}

// Adapts a layer with forward(x), new_state(batch[, max_len]), prefill(x, state) and step(x, state)
// to the SequenceMixer interface: all five mixer kinds differ only in how the layer is configured.
template <class Layer, class LayerState>
class LayerMixer : public SequenceMixer {
    struct State : MixerState {
        LayerState s;
    };

public:
    LayerMixer(std::shared_ptr<Layer> m, const char* name) : m_(std::move(m)), name_(name) {}
    std::shared_ptr<Module> module() const override { return m_; }
    Tensor forward(const Tensor& x, uint64_t dropout_seed, bool, int64_t row_offset) const override {
        if constexpr (std::is_same_v<Layer, MHA>) return m_->forward(x, dropout_seed, row_offset);
        else return m_->forward(x);
    }
    std::unique_ptr<MixerState> new_state(int64_t batch, int64_t max_len) const override {
        auto st = std::make_unique<State>();
        if constexpr (std::is_same_v<Layer, MHA>) st->s = m_->new_state(batch, max_len);  // KV cache capacity
        else st->s = m_->new_state(batch);
        return st;
    }
    Tensor prefill(const Tensor& x, MixerState& st) const override { return m_->prefill(x, state_as<State>(st, name_).s); }
    Tensor step(const Tensor& x, MixerState& st) const override { return m_->step(x, state_as<State>(st, name_).s); }

private:
    std::shared_ptr<Layer> m_;
    const char* name_;
};

std::unique_ptr<SequenceMixer> make_h3(const ModelConfig& c, Rng& rng) {
    H3Config h;
    h.d_model = c.d_model;
    h.d_state = c.ssm.d_state;
    h.head_dim = c.ssm.head_dim;
    h.disc = disc_of(c.ssm.disc, Discretization::bilinear);
    h.init = c.ssm.init;
    h.dt_min = float(c.ssm.dt_min);
    h.dt_max = float(c.ssm.dt_max);
    return std::make_unique<LayerMixer<H3, H3State>>(std::make_shared<H3>(h, rng), "H3");
}

std::unique_ptr<SequenceMixer> make_s4d(const ModelConfig& c, Rng& rng) {
    S4DConfig s;
    s.d_model = c.d_model;
    s.d_state = c.ssm.d_state;
    s.disc = disc_of(c.ssm.disc, Discretization::zoh);
    s.init = c.ssm.init;
    s.dt_min = float(c.ssm.dt_min);
    s.dt_max = float(c.ssm.dt_max);
    s.glu = c.ssm.postact == "glu";
    return std::make_unique<LayerMixer<S4D, S4DState>>(std::make_shared<S4D>(s, rng), "S4D");
}

std::unique_ptr<SequenceMixer> make_gss(const ModelConfig& c, Rng& rng) {
    GSSConfig g;
    g.d_model = c.d_model;
    g.d_state = c.gss.d_state;
    g.expand = c.gss.expand;
    g.bottleneck = c.gss.bottleneck;
    return std::make_unique<LayerMixer<GSS, GSSState>>(std::make_shared<GSS>(g, rng), "GSS");
}

// Note [attention dropout and resume]: MHA draws its attention-dropout masks from (its seed, a call
// counter) that is not part of the training state, so a resumed run is bit-identical to the
// uninterrupted one only with attn_cfg.dropout = 0 (the default here).
std::unique_ptr<SequenceMixer> make_mha(const ModelConfig& c, int64_t layer, Rng& rng) {
    MHAConfig a;
    a.d_model = c.d_model;
    a.num_heads = c.attn.num_heads;
    a.causal = true;
    a.rotary_dim = c.attn.rotary_emb_dim;
    a.dropout = float(c.attn.dropout);
    a.dropout_seed = rng.next_u64() ^ uint64_t(layer);
    return std::make_unique<LayerMixer<MHA, MHAState>>(std::make_shared<MHA>(a, rng), "MHA");
}

std::unique_ptr<SequenceMixer> make_linear_attention(const ModelConfig& c, Rng& rng) {
    LinearAttentionConfig a;
    a.d_model = c.d_model;
    a.num_heads = c.attn.num_heads;
    a.causal = true;
    return std::make_unique<LayerMixer<LinearAttention, LinearAttentionState>>(std::make_shared<LinearAttention>(a, rng),
                                                                               "LinearAttention");
}

}  // namespace

std::unique_ptr<SequenceMixer> make_mixer(MixerKind kind, const ModelConfig& cfg, int64_t layer, Rng& rng) {
    switch (kind) {
        case MixerKind::h3: return make_h3(cfg, rng);
        case MixerKind::s4d: return make_s4d(cfg, rng);
        case MixerKind::gss: return make_gss(cfg, rng);
        case MixerKind::attention: return make_mha(cfg, layer, rng);
        case MixerKind::linear_attention: return make_linear_attention(cfg, rng);
    }
    throw Error(strf("layer %lld: unknown mixer kind", (long long)layer));
}

}  // namespace hippo
