// The residual block every stack is built of: a mixer slot and a feed-forward slot, pre-norm.
//
//   h = h + drop(Mixer(LN1(h)));  h = h + drop(FF(LN2(h)))      (no FF: the second line is absent)
//
// Parameter names: norm1.*, mixer.* (the mixer's own), norm2.* and the FF's (mlp.fc1.*, mlp.fc2.*
// for the dense MLP), as the released H3 checkpoints name them. This is mathematically equal to
// flash_attn's fused-residual Block(prenorm=True).
//
// Feed-forward kinds ("ff" in the model config): mlp (fc2(gelu_tanh(fc1(x))), width d_inner) or
// none. MoE, sparse and block-sparse feed-forwards plug in here as further kinds.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "models/config.h"
#include "models/mixer.h"
#include "nn/module.h"

namespace hippo {

// The dropout seed of one site (embedding, a block's residual branches) from a forward's seed: every
// mask of a step derives from that one seed, so runs are reproducible and resumable.
uint64_t dropout_site_seed(uint64_t seed, uint64_t site);

class FeedForward : public Module {
public:
    // x (..., D) -> (..., D)
    virtual Tensor forward(const Tensor& x) const = 0;
};

// The dense MLP: fc1 (D -> I), GELU (tanh form), fc2 (I -> D).
class MLP : public FeedForward {
public:
    MLP(int64_t d, int64_t inner, Rng& rng);
    Tensor forward(const Tensor& x) const override;
    std::string type_name() const override { return "MLP"; }
    std::shared_ptr<Linear> fc1, fc2;
};

// The feed-forward of layer `layer`, or null for "none"; `name` receives its parameter-name prefix.
std::shared_ptr<FeedForward> make_feed_forward(const ModelConfig& cfg, int64_t layer, Rng& rng, std::string* name);
// Its parameter count (floats).
int64_t feed_forward_param_count(const ModelConfig& cfg, int64_t layer);

class Block : public Module {
public:
    Block(const ModelConfig& cfg, int64_t layer, Rng& rng);
    // h (B, L, D) -> (B, L, D). row_offset: see Model::run_batch.
    Tensor forward(const Tensor& h, uint64_t seed, bool training, float resid_dropout, int64_t row_offset = 0) const;
    // h (B, D): one token
    Tensor step(const Tensor& h, MixerState& st) const;
    Tensor prefill(const Tensor& h, MixerState& st) const;
    std::string type_name() const override { return "Block"; }
    std::string extra_repr() const override { return "mixer=" + kind; }

    std::string kind;  // the mixer's registry name
    std::shared_ptr<LayerNorm> norm1, norm2;
    std::unique_ptr<SequenceMixer> mixer;
    std::shared_ptr<FeedForward> ff;  // null without a feed-forward

private:
    Tensor feed_forward(const Tensor& h) const;
};

}  // namespace hippo
