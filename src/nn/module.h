// Modules: named trees of parameters (flashlight / torch.nn style).
//
// A Module owns parameters (leaf Tensors with requires_grad) and child modules, both registered by
// name in a fixed order. named_parameters() walks the tree depth-first in registration order and
// returns dotted names such as "layers.3.mixer.q_proj.weight"; these names are the tensor names in
// checkpoints and the keys of optimizer state. A tensor registered twice (weight tying) is listed
// once, under its first name, as torch's named_parameters() does.
//
// Forward functions are not virtual: each module declares the forward signature it needs.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tensor.h"
#include "common/rng.h"

namespace hippo {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// How the optimizer treats a parameter, declared by the module that registers it:
//   standard: weight decay when it is a matrix (ndim >= 2), none otherwise;
//   ssm:      the SSM parameters (discretisation step, state matrix, input matrix) that train with
//             their own learning rate (ssm_lr) and no weight decay, as H3's and S4's recipes do.
enum class ParamTag { standard, ssm };

class Module {
public:
    Module() = default;
    virtual ~Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    // Registers a contiguous leaf tensor as a parameter (sets requires_grad and its name) and
    // returns it. Names are non-empty, contain no '.', and are unique among parameters and children.
    Tensor register_parameter(const std::string& name, Tensor t, ParamTag group = ParamTag::standard);
    template <class M>
    std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
        add_child(name, m);
        return m;
    }

    NamedTensors named_parameters() const;  // dotted names, registration order, ties listed once
    // The group of each parameter, in the order of named_parameters().
    std::vector<ParamTag> parameter_groups() const;
    std::vector<Tensor> parameters() const;
    // The parameter with this dotted name; hippo::Error if there is none.
    Tensor parameter(const std::string& dotted_name) const;
    const NamedTensors& local_parameters() const { return params_; }
    const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }
    int64_t num_parameters() const;  // total elements, ties counted once

    // Training mode, applied to the whole subtree (dropout etc. read is_training()).
    void train(bool on = true);
    void eval() { train(false); }
    bool is_training() const { return training_; }

    // Zeroes every parameter's gradient in place (the buffers stay, so gradients that are views of
    // an optimizer's flat gradient arena remain views of it).
    void zero_grad();

    // The module tree, one line per module and parameter, e.g.
    //   Model  (1,234 params)
    //     embed: Embedding(num=100, dim=8)  (800 params)
    //       weight (100, 8)
    std::string describe() const;
    virtual std::string type_name() const { return "Module"; }
    virtual std::string extra_repr() const { return ""; }  // "in=16, out=32, bias=true"

private:
    void add_child(const std::string& name, std::shared_ptr<Module> m);
    void collect_into(const std::string& prefix, std::unordered_set<const TensorImpl*>& seen, NamedTensors& out,
                      std::vector<ParamTag>* groups) const;
    void check_new_name(const std::string& name) const;
    void describe_into(std::string& out, const std::string& label, int depth) const;

    NamedTensors params_;
    std::vector<ParamTag> groups_;  // one per params_ entry
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
    bool training_ = true;
};

// Children named "0", "1", ... (torch.nn.ModuleList).
class ModuleList : public Module {
public:
    template <class M>
    std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
        items_.push_back(m);
        return register_module(std::to_string(items_.size() - 1), std::move(m));
    }
    size_t size() const { return items_.size(); }
    const std::shared_ptr<Module>& operator[](size_t i) const { return items_.at(i); }
    template <class M>
    std::shared_ptr<M> at(size_t i) const { return std::dynamic_pointer_cast<M>(items_.at(i)); }
    std::string type_name() const override { return "ModuleList"; }

private:
    std::vector<std::shared_ptr<Module>> items_;
};

// y = x W^T + b, weight (out, in), bias (out). Init as torch.nn.Linear: weight kaiming-uniform with
// a = sqrt(5) (bound 1/sqrt(in)), bias uniform(-1/sqrt(in), 1/sqrt(in)).
//
// Decode weights: with set_decode_weights(bf16 or int8), forward() of at most kDecodeRows rows
// without gradient (a token-by-token decode step) reads a bf16 or int8 copy of the weight taken at
// that moment, a half or a quarter of fp32's memory traffic; everything else, prefill and training
// included, stays fp32.
class Linear : public Module {
public:
    static constexpr int64_t kDecodeRows = 8;
    // x (..., in) is a decode step's input: no gradient recorded, at most kDecodeRows rows.
    static bool is_decode_input(const Tensor& x, int64_t in) {
        return !grad_enabled() && x.ndim() >= 1 && x.size(-1) == in && x.numel() <= kDecodeRows * in;
    }
    Linear(int64_t in_features, int64_t out_features, bool bias, Rng& rng);
    Tensor forward(const Tensor& x) const;
    void set_decode_weights(DecodeWeights format);
    DecodeWeights decode_weights() const { return weight_decode_.format; }
    Tensor operator()(const Tensor& x) const { return forward(x); }
    int64_t in_features() const { return in_; }
    int64_t out_features() const { return out_; }
    Tensor weight, bias;  // bias undefined when disabled
    std::string type_name() const override { return "Linear"; }
    std::string extra_repr() const override;

private:
    int64_t in_, out_;
    DecodeWeight weight_decode_;
};

// Layer normalisation over the last dim; weight = 1, bias = 0 (torch.nn.LayerNorm).
class LayerNorm : public Module {
public:
    explicit LayerNorm(int64_t dim, float eps = 1e-5f, bool affine = true, bool bias = true);
    Tensor forward(const Tensor& x) const;
    Tensor operator()(const Tensor& x) const { return forward(x); }
    Tensor weight, bias;  // undefined when not affine / no bias
    float eps;
    std::string type_name() const override { return "LayerNorm"; }
    std::string extra_repr() const override;

private:
    int64_t dim_;
};

// Lookup table (num, dim), init normal(0, 1) (torch.nn.Embedding).
class Embedding : public Module {
public:
    Embedding(int64_t num_embeddings, int64_t dim, Rng& rng);
    Tensor forward(const std::vector<int32_t>& ids, const Shape& ids_shape) const;
    Tensor weight;
    std::string type_name() const override { return "Embedding"; }
    std::string extra_repr() const override;

private:
    int64_t num_, dim_;
};

}  // namespace hippo
