// The model interface every family implements, and the registry that builds a model from its
// config by architecture name ("arch": "lm" today; classifiers, encoder-decoders, ... next).
//
// train, eval, generate, score, bench and import reach models only through this interface:
//   - run_batch(): forward on a Batch, the mean loss (a tape node when gradients are on) and the
//     metric sums (loss sum, counted positions or sequences, correct predictions);
//   - an optional recurrent mode (new_state / prefill_last / step over token ids) for generation
//     and step-by-step scoring; families without one keep the defaults, which are clear errors;
//   - decode weights (bf16 / int8 copies for token-by-token decoding).
// Adding a family: one model file (a Model subclass) and one ArchDef line in models/model.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "data/source.h"
#include "models/config.h"
#include "nn/module.h"

namespace hippo {

// Recurrent state of a whole model (concrete type per family).
struct ModelState {
    virtual ~ModelState() = default;
    int64_t batch = 0;
    int64_t pos = 0;  // tokens consumed
};

struct BatchResult {
    Tensor loss;          // mean over the counted targets (scalar); undefined when count == 0
    double loss_sum = 0;  // sum over the counted targets
    int64_t count = 0;    // counted targets (token positions, or sequences for per-sequence labels)
    int64_t correct = 0;  // argmax predictions equal to the target (when metrics were asked for)
};

class Model : public Module {
public:
    virtual const ModelConfig& config() const = 0;
    // The batch's loss and metrics. training: dropout on (with dropout_seed; row_offset = the index
    // of the batch's first row in the global batch, so masks do not depend on the data-parallel
    // split). metrics: also count the correct predictions (evaluation).
    virtual BatchResult run_batch(const Batch& b, uint64_t dropout_seed, int64_t row_offset, bool metrics) const = 0;
    // One line per layer plus the parameter count.
    virtual std::string summary() const = 0;

    // Recurrent mode (generation). ids: B x L row-major.
    virtual bool has_recurrent_mode() const { return false; }
    virtual std::unique_ptr<ModelState> new_model_state(int64_t batch, int64_t max_len) const;
    // Parallel pass over the prompt leaving the state after it; the last position's logits (B, V).
    virtual Tensor prefill_last(const std::vector<int32_t>& ids, int64_t B, int64_t L, ModelState& st) const;
    // One token per sequence -> logits (B, V).
    virtual Tensor step(const std::vector<int32_t>& ids, ModelState& st) const;
    // Per-token logits (B, L, V) of token ids (B x L row-major), for scoring; families whose output
    // is not per token keep the default (an error).
    virtual Tensor forward_logits(const std::vector<int32_t>& ids, int64_t B, int64_t L) const;
    // Logits over the output vocabulary: the padded size (>= config().vocab_size).
    virtual int64_t vocab_padded() const { return config().vocab_size; }

    virtual void set_decode_weights(DecodeWeights w);
    virtual DecodeWeights decode_weights() const { return DecodeWeights::fp32; }
};

struct ArchDef {
    std::string name;
    std::string help;
    std::function<std::unique_ptr<Model>(const ModelConfig&, uint64_t seed)> make;
    // Parameters (floats) of a config, without building it.
    std::function<int64_t(const ModelConfig&)> param_count;
};

const std::vector<ArchDef>& architectures();
const ArchDef& find_architecture(const std::string& name);  // hippo::Error listing the choices

// Builds the model of `cfg` (initialised from `seed`) after checking that its parameters fit in
// this machine's memory (a one-line hippo::Error saying how much it needs otherwise).
// bytes_per_param: what each parameter costs in the caller's use (4 for inference; training adds a
// gradient and two AdamW moments, 16).
std::unique_ptr<Model> make_model(const ModelConfig& cfg, uint64_t seed, int64_t bytes_per_param = 4);

// Refuses (hippo::Error) an allocation of `bytes` for `what` that cannot fit in this machine's
// physical memory, naming both sizes.
void check_fits_in_memory(double bytes, const std::string& what);

}  // namespace hippo
