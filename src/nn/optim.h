// Optimizers (torch.optim.AdamW / SGD semantics) over flat buffers, and gradient clipping.
//
// Note [flat buffers]: as in llm.c, every per-parameter quantity lives in one flat buffer per kind
// with each parameter at a fixed, 64-byte aligned offset (same offsets in every buffer):
//   - the gradient arena: the constructor points every parameter's grad at a view of it, so
//     backward() accumulates straight into the arena (tensor.cpp accumulates in place into an
//     existing grad buffer). A data-parallel all-reduce is then one call on grad_arena(), and
//     zero_grad() is one memset instead of freeing and reallocating per-parameter gradients;
//   - the moments (AdamW m and v, SGD momentum).
// If something replaces a parameter's grad (Tensor::zero_grad() resets it), step() and zero_grad()
// copy it back into the arena (undefined = zeros) and re-point the parameter at its view.
//
// Update loops split the buffers into fixed-size chunks and run them OpenMP-parallel; each element
// is updated independently, so results do not depend on the thread count.
//
// Differences from torch, by design: every parameter takes part in every step (an untouched
// parameter has a zero gradient rather than None, so weight decay and moment decay still apply,
// as in llm.c), and the step count is one per optimizer, not per parameter.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace hippo {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct ParamGroup {
    NamedTensors params;                // (dotted name, parameter); names unique over all groups
    double lr_scale = 1.0;              // this group's lr = optimizer lr * lr_scale
    std::optional<float> weight_decay;  // unset: the optimizer's default
};

// The usual split: tensors with >= 2 dims (matrices, embeddings) decay, vectors (biases, norm
// gains) do not. Returns {decay group, no-decay group}, empty groups dropped.
std::vector<ParamGroup> decay_groups(const NamedTensors& params, float weight_decay);

class Optimizer {
public:
    virtual ~Optimizer() = default;
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;

    // One update from the current gradients; increments step_count().
    virtual void step() = 0;
    // Zeroes the gradient arena (gradients stay views of it).
    void zero_grad();

    void set_lr(double lr);  // the base lr, scaled per group by lr_scale (schedules call this)
    double lr() const { return lr_; }
    int64_t step_count() const { return step_; }
    void set_step_count(int64_t s);  // for checkpoint restore

    const std::string& name() const { return name_; }  // "adamw", "sgd"
    const std::vector<ParamGroup>& groups() const { return groups_; }
    const NamedTensors& named_parameters() const { return params_; }
    // The whole flat gradient arena as one 1-D tensor (padding between parameters is zero).
    Tensor grad_arena() const { return grad_arena_; }
    // Total L2 norm of all gradients; clips them as clip_grad_norm() below.
    double clip_grad_norm(double max_norm);

    // ---- ZeRO-1 (train/grad_sync.h): optimizer state for a part of the arena only ----
    // The arena layout: total_size() floats, every parameter at a fixed offset.
    int64_t total_size() const { return total_; }
    // Offset of the i-th parameter of named_parameters() in the arena.
    int64_t param_offset(size_t i) const { return slots_[i].offset; }
    // The state buffers (AdamW: m, v; SGD: the momentum, if any) cover arena offsets
    // [state_begin(), state_end()) and step() updates only the parameter elements in that range.
    int64_t state_begin() const { return state_begin_; }
    int64_t state_end() const { return state_end_; }
    std::vector<Tensor> state_buffers() const { return state_bufs_; }
    // Replaces the state buffers by `buffers` (one per state kind, each end - begin floats) covering
    // [begin, end). shard_state(b, e) keeps the current values of [b, e) (which must lie inside the
    // current range): memory drops to (e - b) / total_size() of the full state.
    void set_state_range(int64_t begin, int64_t end, std::vector<Tensor> buffers);
    void shard_state(int64_t begin, int64_t end);
    // Copies the parameters' values at arena offsets [begin, end) into / out of a buffer with the
    // arena layout (padding between parameters is left alone).
    void params_to_flat(float* flat, int64_t begin, int64_t end) const;
    void params_from_flat(const float* flat, int64_t begin, int64_t end);

    // Checkpoint support: hyper-parameters as strings (lr, betas, per-group settings, ...) and the
    // state tensors, named "<kind>.<param name>", as views into the flat buffers (so restoring a
    // checkpoint is a copy into them).
    virtual std::map<std::string, std::string> hyperparameters() const;
    virtual NamedTensors state_tensors() const = 0;

protected:
    Optimizer(std::string name, std::vector<ParamGroup> groups, double lr, float default_weight_decay);
    // Re-points gradients that no longer are views of the arena (see the note above), copying
    // their values into it when keep_values (an undefined gradient counts as zeros).
    void bind_grads(bool keep_values = true);
    // A zero-initialised buffer with the arena's layout.
    Tensor new_flat_buffer() const { return Tensor::zeros({total_}); }
    // Subclasses register their state buffers once (full range) and read them back through
    // state_bufs_ (set_state_range may replace them).
    void register_state(std::vector<Tensor> buffers);
    // The chunks of work inside [state_begin_, state_end_).
    void rebuild_chunks();
    NamedTensors views_of(const Tensor& flat, const std::string& prefix) const;

    struct Slot {
        float* param;
        int64_t offset;  // into every flat buffer
        int64_t numel;
        int group;
    };
    struct Chunk {
        int slot;
        int64_t begin, end;  // element range inside the slot
    };
    std::vector<Slot> slots_;
    std::vector<Chunk> chunks_;  // the unit of parallel work, inside the state range
    std::vector<Tensor> state_bufs_;
    int64_t state_begin_ = 0, state_end_ = 0;
    std::vector<float> group_wd_;
    float* grads_ = nullptr;     // grad_arena_.data()
    double lr_ = 0;
    int64_t step_ = 0;

private:
    std::string name_;
    std::vector<ParamGroup> groups_;
    NamedTensors params_;
    std::vector<std::shared_ptr<TensorImpl>> grad_views_;
    Tensor grad_arena_;
    int64_t total_ = 0;
};

struct AdamWOptions {
    double lr = 1e-3;
    double beta1 = 0.9, beta2 = 0.999;
    double eps = 1e-8;
    float weight_decay = 1e-2f;  // default for groups that do not set one
};

// torch.optim.AdamW (amsgrad=False, maximize=False):
//   p *= 1 - lr * wd
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
class AdamW : public Optimizer {
public:
    AdamW(std::vector<ParamGroup> groups, const AdamWOptions& opt = {});
    AdamW(const NamedTensors& params, const AdamWOptions& opt = {}) : AdamW({ParamGroup{params, 1.0, std::nullopt}}, opt) {}
    void step() override;
    std::map<std::string, std::string> hyperparameters() const override;
    NamedTensors state_tensors() const override;  // "m.<param>", "v.<param>"
    const AdamWOptions& options() const { return opt_; }

private:
    AdamWOptions opt_;
};

struct SGDOptions {
    double lr = 1e-2;
    double momentum = 0;
    double dampening = 0;
    bool nesterov = false;
    float weight_decay = 0;  // default for groups that do not set one
};

// torch.optim.SGD (maximize=False):
//   d = g + wd p
//   b = d on the first step, else momentum b + (1 - dampening) d      (when momentum != 0)
//   d = nesterov ? d + momentum b : b
//   p -= lr d
class SGD : public Optimizer {
public:
    SGD(std::vector<ParamGroup> groups, const SGDOptions& opt = {});
    SGD(const NamedTensors& params, const SGDOptions& opt = {}) : SGD({ParamGroup{params, 1.0, std::nullopt}}, opt) {}
    void step() override;
    std::map<std::string, std::string> hyperparameters() const override;
    NamedTensors state_tensors() const override;  // "momentum.<param>" when momentum != 0
    const SGDOptions& options() const { return opt_; }

private:
    SGDOptions opt_;
};

// torch.nn.utils.clip_grad_norm_ (L2): total = sqrt(sum of squares of all gradients), computed in
// double in a fixed order (independent of the thread count); if total is finite the gradients are
// multiplied by min(1, max_norm / (total + 1e-6)). A NaN or inf total is returned as is and the
// gradients are left untouched, so the caller can skip the step. Parameters without a gradient are
// ignored.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
double grad_norm(const std::vector<Tensor>& params);  // the total norm alone

}  // namespace hippo
