#include "models/mixer.h"

#include "nn/gss.h"
#include "nn/ssm_layers.h"

#include "nn/attention.h"

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

class H3Mixer : public SequenceMixer {
    struct State : MixerState {
        H3State s;
    };

public:
    H3Mixer(const ModelConfig& c, Rng& rng) {
        H3Config h;
        h.d_model = c.d_model;
        h.d_state = c.ssm.d_state;
        h.head_dim = c.ssm.head_dim;
        h.disc = disc_of(c.ssm.disc, Discretization::bilinear);
        h.init = c.ssm.init;
        h.dt_min = float(c.ssm.dt_min);
        h.dt_max = float(c.ssm.dt_max);
        m_ = std::make_shared<H3>(h, rng);
    }
    std::shared_ptr<Module> module() const override { return m_; }
    Tensor forward(const Tensor& x, uint64_t, bool) const override { return m_->forward(x); }
    std::unique_ptr<MixerState> new_state(int64_t batch, int64_t) const override {
        auto st = std::make_unique<State>();
        st->s = m_->new_state(batch);
        return st;
    }
    Tensor prefill(const Tensor& x, MixerState& st) const override { return m_->prefill(x, state_as<State>(st, "H3").s); }
    Tensor step(const Tensor& x, MixerState& st) const override { return m_->step(x, state_as<State>(st, "H3").s); }

private:
    std::shared_ptr<H3> m_;
};

class S4DMixer : public SequenceMixer {
    struct State : MixerState {
        S4DState s;
    };

public:
    S4DMixer(const ModelConfig& c, Rng& rng) {
        S4DConfig s;
        s.d_model = c.d_model;
        s.d_state = c.ssm.d_state;
        s.disc = disc_of(c.ssm.disc, Discretization::zoh);
        s.init = c.ssm.init;
        s.dt_min = float(c.ssm.dt_min);
        s.dt_max = float(c.ssm.dt_max);
        m_ = std::make_shared<S4D>(s, rng);
    }
    std::shared_ptr<Module> module() const override { return m_; }
    Tensor forward(const Tensor& x, uint64_t, bool) const override { return m_->forward(x); }
    std::unique_ptr<MixerState> new_state(int64_t batch, int64_t) const override {
        auto st = std::make_unique<State>();
        st->s = m_->new_state(batch);
        return st;
    }
    Tensor prefill(const Tensor& x, MixerState& st) const override { return m_->prefill(x, state_as<State>(st, "S4D").s); }
    Tensor step(const Tensor& x, MixerState& st) const override { return m_->step(x, state_as<State>(st, "S4D").s); }

private:
    std::shared_ptr<S4D> m_;
};

class GSSMixer : public SequenceMixer {
    struct State : MixerState {
        GSSState s;
    };

public:
    GSSMixer(const ModelConfig& c, Rng& rng) {
        GSSConfig g;
        g.d_model = c.d_model;
        g.d_state = c.gss.d_state;
        g.expand = c.gss.expand;
        g.bottleneck = c.gss.bottleneck;
        m_ = std::make_shared<GSS>(g, rng);
    }
    std::shared_ptr<Module> module() const override { return m_; }
    Tensor forward(const Tensor& x, uint64_t, bool) const override { return m_->forward(x); }
    std::unique_ptr<MixerState> new_state(int64_t batch, int64_t) const override {
        auto st = std::make_unique<State>();
        st->s = m_->new_state(batch);
        return st;
    }
    Tensor prefill(const Tensor& x, MixerState& st) const override { return m_->prefill(x, state_as<State>(st, "GSS").s); }
    Tensor step(const Tensor& x, MixerState& st) const override { return m_->step(x, state_as<State>(st, "GSS").s); }

private:
    std::shared_ptr<GSS> m_;
};

// Note [attention dropout and resume]: MHA draws its attention-dropout masks from (its seed, a call
// counter) that is not part of the training state, so a resumed run is bit-identical to the
// uninterrupted one only with attn_cfg.dropout = 0 (the default here).
class MHAMixer : public SequenceMixer {
    struct State : MixerState {
        MHAState s;
    };

public:
    MHAMixer(const ModelConfig& c, int64_t layer, Rng& rng) {
        MHAConfig a;
        a.d_model = c.d_model;
        a.num_heads = c.attn.num_heads;
        a.causal = true;
        a.rotary_dim = c.attn.rotary_emb_dim;
        a.dropout = float(c.attn.dropout);
        a.dropout_seed = rng.next_u64() ^ uint64_t(layer);
        m_ = std::make_shared<MHA>(a, rng);
    }
    std::shared_ptr<Module> module() const override { return m_; }
    Tensor forward(const Tensor& x, uint64_t, bool) const override { return m_->forward(x); }
    std::unique_ptr<MixerState> new_state(int64_t batch, int64_t max_len) const override {
        auto st = std::make_unique<State>();
        st->s = m_->new_state(batch, max_len);
        return st;
    }
    Tensor prefill(const Tensor& x, MixerState& st) const override { return m_->prefill(x, state_as<State>(st, "MHA").s); }
    Tensor step(const Tensor& x, MixerState& st) const override { return m_->step(x, state_as<State>(st, "MHA").s); }

private:
    std::shared_ptr<MHA> m_;
};

class LinearAttentionMixer : public SequenceMixer {
    struct State : MixerState {
        LinearAttentionState s;
    };

public:
    LinearAttentionMixer(const ModelConfig& c, Rng& rng) {
        LinearAttentionConfig a;
        a.d_model = c.d_model;
        a.num_heads = c.attn.num_heads;
        a.causal = true;
        m_ = std::make_shared<LinearAttention>(a, rng);
    }
    std::shared_ptr<Module> module() const override { return m_; }
    Tensor forward(const Tensor& x, uint64_t, bool) const override { return m_->forward(x); }
    std::unique_ptr<MixerState> new_state(int64_t batch, int64_t) const override {
        auto st = std::make_unique<State>();
        st->s = m_->new_state(batch);
        return st;
    }
    Tensor prefill(const Tensor& x, MixerState& st) const override {
        return m_->prefill(x, state_as<State>(st, "LinearAttention").s);
    }
    Tensor step(const Tensor& x, MixerState& st) const override { return m_->step(x, state_as<State>(st, "LinearAttention").s); }

private:
    std::shared_ptr<LinearAttention> m_;
};

}  // namespace


std::unique_ptr<SequenceMixer> make_mixer(MixerKind kind, const ModelConfig& cfg, int64_t layer, Rng& rng) {
    switch (kind) {
        case MixerKind::h3: return std::make_unique<H3Mixer>(cfg, rng);
        case MixerKind::s4d: return std::make_unique<S4DMixer>(cfg, rng);
        case MixerKind::gss: return std::make_unique<GSSMixer>(cfg, rng);
        case MixerKind::attention: return std::make_unique<MHAMixer>(cfg, layer, rng);
        case MixerKind::linear_attention: return std::make_unique<LinearAttentionMixer>(cfg, rng);
    }
    throw Error(strf("layer %lld: unknown mixer kind", (long long)layer));
}

}  // namespace hippo
