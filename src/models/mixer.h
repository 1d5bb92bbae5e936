// Sequence mixers behind one interface, so a model stack can hold any of them per layer, and the
// registry that makes a mixer available to every model stack by its config name.
//
// A SequenceMixer wraps the layer Module (registered in the block as "mixer", so parameter names are
// backbone.layers.N.mixer.*) and exposes the parallel forward and, where the math allows, the
// recurrent prefill/step modes.
//
// Adding a mixer: one layer file in nn/, one file src/models/mixers/NAME.cpp that defines its
// MixerDef (and the ConfigBlock it reads, when it has its own), one line in
// src/models/mixers/registry.cpp, one test and one config. Parameters that train with the SSM
// learning rate and no weight decay are tagged by the layer when it registers them
// (Module::register_parameter(..., ParamTag::ssm)), not found by their names.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/tensor.h"
#include "common/schema.h"
#include "models/config.h"
#include "nn/module.h"

namespace hippo {

// Per-layer recurrent state (concrete type per mixer kind).
struct MixerState {
    virtual ~MixerState() = default;
};

class SequenceMixer {
public:
    virtual ~SequenceMixer() = default;
    virtual std::shared_ptr<Module> module() const = 0;
    // x (B, L, D) -> (B, L, D). dropout_seed / training: for mixers with internal dropout.
    // row_offset: the index of x's first batch row in the global batch (dropout masks, see MHA).
    virtual Tensor forward(const Tensor& x, uint64_t dropout_seed, bool training, int64_t row_offset = 0) const = 0;
    // Recurrent mode; mixers without one keep these defaults (a one-line hippo::Error).
    virtual bool has_recurrent_mode() const { return true; }
    virtual std::unique_ptr<MixerState> new_state(int64_t batch, int64_t max_len) const;
    // x (B, L, D): the parallel mode, leaving the state as if every token had been stepped.
    virtual Tensor prefill(const Tensor& x, MixerState& st) const;
    // x (B, D) -> (B, D): one token.
    virtual Tensor step(const Tensor& x, MixerState& st) const;
    virtual const char* name() const = 0;
    // What the block calls: xn = the normed input, h = the block's input (before the norm). A mixer
    // whose output gates the residual stream itself (Mega: h + phi (H - h)) needs h and returns
    // the increment the block adds to it; the others ignore h.
    virtual Tensor forward_block(const Tensor& xn, const Tensor& h, uint64_t dropout_seed, bool training,
                                 int64_t row_offset = 0) const {
        (void)h;
        return forward(xn, dropout_seed, training, row_offset);
    }
    virtual Tensor prefill_block(const Tensor& xn, const Tensor& h, MixerState& st) const {
        (void)h;
        return prefill(xn, st);
    }
    virtual Tensor step_block(const Tensor& xn, const Tensor& h, MixerState& st) const {
        (void)h;
        return step(xn, st);
    }
};

// A config block ("ssm_cfg") and its schema; a block may be read by several mixers of one family.
struct ConfigBlock {
    std::string key;
    Schema schema;
};

struct MixerDef {
    std::string name;                  // the config name ("h3")
    std::vector<std::string> aliases;  // also accepted ("mha")
    std::vector<std::string> blocks;   // the config blocks it reads ("ssm_cfg"); cfg.block(key)
    bool default_mlp = true;           // a block's feed-forward slot default
    std::string help;                  // one line for the docs and error messages
    // Checks that need the whole model config (num_heads divides d_model, ...); may be null.
    std::function<void(const ModelConfig&, const std::string& where)> validate;
    // Builds the mixer of layer `layer`.
    std::function<std::unique_ptr<SequenceMixer>(const ModelConfig&, int64_t layer, Rng&)> make;
    // Its number of parameters (floats), without building it: memory is checked before allocation.
    std::function<int64_t(const ModelConfig&)> param_count;
};

// The registry (src/models/mixers/registry.cpp).
const std::vector<MixerDef>& mixer_registry();
const std::vector<ConfigBlock>& config_blocks();
// By name or alias; hippo::Error listing the choices.
const MixerDef& find_mixer(const std::string& name);
// "h3, s4d, gss, ..." (error messages, help).
std::string mixer_names();

// Builds the mixer of layer `layer` (0-based) of `cfg`.
std::unique_ptr<SequenceMixer> make_mixer(const std::string& name, const ModelConfig& cfg, int64_t layer, Rng& rng);

// The adapter most mixers use: a layer with forward(x), new_state(batch), prefill(x, state) and
// step(x, state).
template <class Layer, class LayerState>
class LayerMixer : public SequenceMixer {
protected:
    struct State : MixerState {
        LayerState s;
    };

public:
    LayerMixer(std::shared_ptr<Layer> m, const char* name) : m_(std::move(m)), name_(name) {}
    std::shared_ptr<Module> module() const override { return m_; }
    Tensor forward(const Tensor& x, uint64_t, bool, int64_t) const override { return m_->forward(x); }
    std::unique_ptr<MixerState> new_state(int64_t batch, int64_t) const override {
        auto st = std::make_unique<State>();
        st->s = m_->new_state(batch);
        return st;
    }
    Tensor prefill(const Tensor& x, MixerState& st) const override { return m_->prefill(x, as(st).s); }
    Tensor step(const Tensor& x, MixerState& st) const override { return m_->step(x, as(st).s); }
    const char* name() const override { return name_; }
    const std::shared_ptr<Layer>& layer() const { return m_; }

protected:
    State& as(MixerState& st) const {
        auto* p = dynamic_cast<State*>(&st);
        HIPPO_CHECK(p, "%s: recurrent state of another mixer kind", name_);
        return *p;
    }
    std::shared_ptr<Layer> m_;
    const char* name_;
};

// Typed reads of a parsed block (the schema has already checked kinds and ranges).
inline int64_t blk_int(const nlohmann::json& b, const char* k) { return b.at(k).get<int64_t>(); }
inline double blk_num(const nlohmann::json& b, const char* k) { return b.at(k).get<double>(); }
inline std::string blk_str(const nlohmann::json& b, const char* k) { return b.at(k).get<std::string>(); }

}  // namespace hippo
