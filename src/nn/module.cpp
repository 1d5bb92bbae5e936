#include "nn/module.h"

#include <cmath>
#include <unordered_set>

#include "autograd/ops.h"
#include "nn/init.h"

namespace hippo {

namespace {

// 1234567 -> "1,234,567"
std::string grouped(int64_t n) {
    std::string s = std::to_string(n), out;
    int k = 0;
    for (auto it = s.rbegin(); it != s.rend(); ++it) {
        if (k++ && k % 3 == 1 && *it != '-') out.insert(out.begin(), ',');
        out.insert(out.begin(), *it);
    }
    return out;
}

}  // namespace

// Depth-first walk in registration order; `seen` drops tensors reached a second time.
// With `groups`, also the group of each listed parameter.
void Module::collect_into(const std::string& prefix, std::unordered_set<const TensorImpl*>& seen, NamedTensors& out,
                          std::vector<ParamTag>* groups) const {
    for (size_t i = 0; i < params_.size(); i++)
        if (seen.insert(params_[i].second.impl().get()).second) {
            out.emplace_back(prefix + params_[i].first, params_[i].second);
            if (groups) groups->push_back(groups_[i]);
        }
    for (const auto& [name, child] : children_) child->collect_into(prefix + name + ".", seen, out, groups);
}

std::vector<ParamTag> Module::parameter_groups() const {
    std::unordered_set<const TensorImpl*> seen;
    NamedTensors out;
    std::vector<ParamTag> groups;
    collect_into("", seen, out, &groups);
    return groups;
}

void Module::check_new_name(const std::string& name) const {
    HIPPO_CHECK(!name.empty() && name.find('.') == std::string::npos,
                "module member name '%s' must be non-empty and contain no '.'", name.c_str());
    for (const auto& p : params_)
        HIPPO_CHECK(p.first != name, "%s already has a parameter named '%s'", type_name().c_str(), name.c_str());
    for (const auto& c : children_)
        HIPPO_CHECK(c.first != name, "%s already has a submodule named '%s'", type_name().c_str(), name.c_str());
}

Tensor Module::register_parameter(const std::string& name, Tensor t, ParamTag group) {
    check_new_name(name);
    HIPPO_CHECK(t.defined(), "register_parameter('%s'): undefined tensor", name.c_str());
    HIPPO_CHECK(t.is_leaf(), "register_parameter('%s'): parameters must be leaf tensors", name.c_str());
    HIPPO_CHECK(t.is_contiguous(), "register_parameter('%s'): parameters must be contiguous", name.c_str());
    t.set_requires_grad(true);
    if (t.name().empty()) t.set_name(name);
    params_.emplace_back(name, t);
    groups_.push_back(group);
    return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
    check_new_name(name);
    HIPPO_CHECK(m != nullptr, "register_module('%s'): null module", name.c_str());
    HIPPO_CHECK(m.get() != this, "register_module('%s'): a module cannot contain itself", name.c_str());
    children_.emplace_back(name, std::move(m));
}

NamedTensors Module::named_parameters() const {
    NamedTensors out;
    std::unordered_set<const TensorImpl*> seen;
    collect_into("", seen, out, nullptr);
    return out;
}

std::vector<Tensor> Module::parameters() const {
    std::vector<Tensor> out;
    for (auto& [name, t] : named_parameters()) out.push_back(t);
    return out;
}

Tensor Module::parameter(const std::string& dotted_name) const {
    const Module* m = this;
    std::string rest = dotted_name;
    for (size_t dot; (dot = rest.find('.')) != std::string::npos;) {
        std::string head = rest.substr(0, dot);
        const Module* next = nullptr;
        for (const auto& [name, child] : m->children_)
            if (name == head) next = child.get();
        HIPPO_CHECK(next, "no parameter named '%s' (no submodule '%s')", dotted_name.c_str(), head.c_str());
        m = next;
        rest = rest.substr(dot + 1);
    }
    for (const auto& [name, t] : m->params_)
        if (name == rest) return t;
    throw Error(strf("no parameter named '%s'", dotted_name.c_str()));
}

int64_t Module::num_parameters() const {
    int64_t n = 0;
    for (auto& [name, t] : named_parameters()) n += t.numel();
    return n;
}

void Module::train(bool on) {
    training_ = on;
    for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad() {
    for (auto& [name, t] : named_parameters()) {
        Tensor g = t.grad();
        if (g.defined()) g.fill_(0.0f);
    }
}

void Module::describe_into(std::string& out, const std::string& label, int depth) const {
    std::string indent(size_t(2 * depth), ' ');
    std::string extra = extra_repr();
    out += indent + label + type_name() + (extra.empty() ? "" : "(" + extra + ")");
    out += "  (" + grouped(num_parameters()) + " params)\n";
    for (const auto& [name, t] : params_)
        out += indent + "  " + name + " " + t.shape().str() + "\n";
    for (const auto& [name, child] : children_) child->describe_into(out, name + ": ", depth + 1);
}

std::string Module::describe() const {
    std::string out;
    describe_into(out, "", 0);
    return out;
}

// ---------------------------------------------------------------------------------------------

Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias, Rng& rng)
    : in_(in_features), out_(out_features) {
    HIPPO_CHECK(in_features > 0 && out_features > 0, "Linear: bad sizes in=%lld out=%lld",
                (long long)in_features, (long long)out_features);
    weight = Tensor::empty({out_features, in_features});
    init::kaiming_uniform_(weight, std::sqrt(5.0f), rng);
    register_parameter("weight", weight);
    if (with_bias) {
        float bound = float(1.0 / std::sqrt(double(in_features)));
        bias = Tensor::empty({out_features});
        init::uniform_(bias, -bound, bound, rng);
        register_parameter("bias", bias);
    }
}

Tensor Linear::forward(const Tensor& x) const {
    if (!weight_decode_.empty() && is_decode_input(x, in_)) return linear_decode(x, weight_decode_, bias);
    return linear(x, weight, bias);
}

void Linear::set_decode_weights(DecodeWeights format) { weight_decode_ = DecodeWeight::from(weight, format); }

std::string Linear::extra_repr() const {
    return strf("in=%lld, out=%lld, bias=%s", (long long)in_, (long long)out_, bias.defined() ? "true" : "false");
}

LayerNorm::LayerNorm(int64_t dim, float eps_, bool affine, bool with_bias) : eps(eps_), dim_(dim) {
    HIPPO_CHECK(dim > 0, "LayerNorm: bad dim %lld", (long long)dim);
    if (affine) {
        weight = register_parameter("weight", Tensor::ones({dim}));
        if (with_bias) bias = register_parameter("bias", Tensor::zeros({dim}));
    }
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }

std::string LayerNorm::extra_repr() const {
    return strf("dim=%lld, eps=%g, affine=%s", (long long)dim_, double(eps), weight.defined() ? "true" : "false");
}

Embedding::Embedding(int64_t num_embeddings, int64_t dim, Rng& rng) : num_(num_embeddings), dim_(dim) {
    HIPPO_CHECK(num_embeddings > 0 && dim > 0, "Embedding: bad sizes num=%lld dim=%lld",
                (long long)num_embeddings, (long long)dim);
    weight = Tensor::empty({num_embeddings, dim});
    init::normal_(weight, 0.0f, 1.0f, rng);
    register_parameter("weight", weight);
}

Tensor Embedding::forward(const std::vector<int32_t>& ids, const Shape& ids_shape) const {
    return embedding(weight, ids, ids_shape);
}

std::string Embedding::extra_repr() const {
    return strf("num=%lld, dim=%lld", (long long)num_, (long long)dim_);
}

}  // namespace hippo
