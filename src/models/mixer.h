// Sequence mixers behind one interface, so a model stack can hold any of them per layer.
// A SequenceMixer wraps the layer Module (registered in the block as "mixer", so parameter names are
// backbone.layers.N.mixer.*) and exposes the parallel forward and the recurrent prefill/step modes.
//
// Kinds: h3 (nn/ssm_layers.h), s4d (nn/ssm_layers.h), gss (nn/gss.h), and attention /
// linear_attention from nn/attention.h (another engineer's module; when it is absent, creating those
// kinds is a hippo::Error "not built yet").
#pragma once
#include <cstdint>
#include <memory>

#include "autograd/tensor.h"
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
    virtual std::unique_ptr<MixerState> new_state(int64_t batch, int64_t max_len) const = 0;
    // x (B, L, D): the parallel mode, leaving the state as if every token had been stepped.
    virtual Tensor prefill(const Tensor& x, MixerState& st) const = 0;
    // x (B, D) -> (B, D): one token.
    virtual Tensor step(const Tensor& x, MixerState& st) const = 0;
};

// Builds the mixer of layer `layer` (0-based) of `cfg`.
std::unique_ptr<SequenceMixer> make_mixer(MixerKind kind, const ModelConfig& cfg, int64_t layer, Rng& rng);

}  // namespace hippo
