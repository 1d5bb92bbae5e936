// Language-model stacks built from a ModelConfig (models/config.h), GPT-2 style pre-norm, with the
// parameter names of the released H3 checkpoints (h3.md section 6.2):
//
//   backbone.embeddings.word_embeddings.weight      (Vpad, D)   also the output head (tied)
//   backbone.embeddings.position_embeddings.weight  (P, D)      only when max_position_embeddings > 0
//   backbone.layers.N.norm1.{weight,bias}
//   backbone.layers.N.mixer.*                       H3 / S4D / GSS / attention parameters
//   backbone.layers.N.norm2.{weight,bias}           \ absent in blocks without MLP
//   backbone.layers.N.mlp.fc1.* , mlp.fc2.*         /  (GSS stacks by default)
//   backbone.ln_f.{weight,bias}
//   lm_head.weight                                  tied to word_embeddings: not a separate tensor
//
// Block N: models/block.h (pre-norm, mixer slot + feed-forward slot).
// Model: h = drop_emb(E[ids] (+ P[pos])); blocks; logits = LN_f(h) E^T, vocabulary padded up to a
// multiple of pad_vocab_size_multiple (padded rows exist in the logits). LayerNorm eps 1e-5.
//
// GSS blocks: per ssm.md section 5 GSS layers are stacked without a separate FFN, so a GSS model
// defaults to "mlp": false (block = LN -> GSS -> add); set "mlp": true to add the usual MLP.
//
// Init (GPT-2 / h3.md 1.6): every Linear N(0, initializer_range) with zero bias, embeddings
// N(0, initializer_range), out_proj.weight and fc2.weight N(0, initializer_range / sqrt(2 n_layer));
// H3's output_linear is not rescaled; SSM parameters keep their own init.
//
// Dropout: embedding and residual dropout (train mode only), from the counter-based dropout op with
// one seed per forward (the trainer draws it from its "dropout" RNG) and one derived seed per site,
// so a run is reproducible and resumable.
//
// Recurrent mode (generation): new_state(), prefill(ids) (parallel mode, leaves the exact state) and
// step(one id per sequence) -> logits (B, Vpad).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/block.h"
#include "models/config.h"
#include "models/model.h"
#include "nn/module.h"

namespace hippo {

struct LMState : ModelState {
    std::vector<std::unique_ptr<MixerState>> layers;
};

class LMModel : public Model {
public:
    // Builds and initialises the model; `seed` seeds the initialisation.
    LMModel(const ModelConfig& cfg, uint64_t seed);
    // Parameters of `cfg` without building it (the sum the constructor allocates).
    static int64_t param_count(const ModelConfig& cfg);

    // ids (B, L) row-major -> logits (B, L, Vpad). dropout_seed is used in training mode only.
    // row_offset: the index of ids' first row in a larger global batch (data-parallel ranks), so the
    // embedding, residual and attention dropout masks do not depend on how the batch is split; all
    // of them derive from dropout_seed, so a resumed run draws the same masks.
    Tensor forward(const std::vector<int32_t>& ids, int64_t B, int64_t L, uint64_t dropout_seed = 0,
                   int64_t row_offset = 0) const;
    Tensor forward_logits(const std::vector<int32_t>& ids, int64_t B, int64_t L) const override {
        return forward(ids, B, L);
    }
    // Next-token cross-entropy over the targets that are not kIgnoreIndex; accuracy of the argmax.
    BatchResult run_batch(const Batch& b, uint64_t dropout_seed, int64_t row_offset, bool metrics) const override;

    bool has_recurrent_mode() const override;
    LMState new_state(int64_t batch, int64_t max_len = 0) const;
    std::unique_ptr<ModelState> new_model_state(int64_t batch, int64_t max_len) const override;
    Tensor prefill(const std::vector<int32_t>& ids, int64_t B, int64_t L, ModelState& st) const;  // (B, L, Vpad)
    // As prefill, but only the last position's logits (B, Vpad): what generation needs, without
    // the (B, L, Vpad) tensor that long prompts would make.
    Tensor prefill_last(const std::vector<int32_t>& ids, int64_t B, int64_t L, ModelState& st) const override;
    Tensor step(const std::vector<int32_t>& ids, ModelState& st) const override;  // (B) -> (B, Vpad)

    // Takes the decode copies (bf16 or int8, or none for fp32) of every Linear's weight and of the
    // tied output head from the current weights (call again after changing them).
    void set_decode_weights(DecodeWeights w) override;
    DecodeWeights decode_weights() const override { return decode_weights_; }

    const ModelConfig& config() const override { return cfg_; }
    int64_t vocab_padded() const override { return cfg_.padded_vocab(); }
    std::string summary() const override;
    std::string type_name() const override { return "LMModel"; }

    Tensor word_embeddings, position_embeddings;  // the latter undefined without positions
    std::vector<std::shared_ptr<Block>> blocks;
    std::shared_ptr<LayerNorm> ln_f;

private:
    Tensor embed(const std::vector<int32_t>& ids, int64_t B, int64_t L, int64_t pos0) const;
    Tensor prefill_hidden(const std::vector<int32_t>& ids, int64_t B, int64_t L, LMState& st) const;
    LMState& lm_state(ModelState& st) const;
    Tensor head(const Tensor& h) const;
    void init_weights(Rng& rng);
    ModelConfig cfg_;
    DecodeWeights decode_weights_ = DecodeWeights::fp32;
    DecodeWeight head_decode_;  // word_embeddings in the decode format
};

}  // namespace hippo
