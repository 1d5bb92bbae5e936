#include "autograd/tensor.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "common/alloc.h"

namespace hippo {

// ---------------------------------------------------------------------------------------------
// Shape

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::vector<int64_t>(dims)) {}

Shape::Shape(const std::vector<int64_t>& dims) {
    HIPPO_CHECK(dims.size() <= size_t(kMaxDims), "tensors have at most %d dims, got %zu", kMaxDims, dims.size());
    ndim_ = int(dims.size());
    for (int i = 0; i < ndim_; i++) {
        HIPPO_CHECK(dims[i] >= 0, "negative dimension %lld in a shape", (long long)dims[i]);
        d_[i] = dims[i];
    }
}

int64_t Shape::numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim_; i++) n *= d_[i];
    return n;
}

bool Shape::operator==(const Shape& o) const {
    if (ndim_ != o.ndim_) return false;
    for (int i = 0; i < ndim_; i++)
        if (d_[i] != o.d_[i]) return false;
    return true;
}

std::string Shape::str() const {
    std::string s = "(";
    for (int i = 0; i < ndim_; i++) s += strf("%s%lld", i ? ", " : "", (long long)d_[i]);
    return s + ")";
}

int Shape::axis(int dim) const {
    int a = dim < 0 ? dim + ndim_ : dim;
    HIPPO_CHECK(a >= 0 && a < ndim_, "dim %d out of range for a tensor of shape %s", dim, str().c_str());
    return a;
}

// ---------------------------------------------------------------------------------------------
// Storage

Storage::Storage(int64_t n) : numel(n) {
    data = static_cast<float*>(cached_alloc(size_t(std::max<int64_t>(n, 1)) * sizeof(float)));
}
Storage::~Storage() { cached_free(data, size_t(std::max<int64_t>(numel, 1)) * sizeof(float)); }

// ---------------------------------------------------------------------------------------------
// Creation

static void set_contiguous_strides(TensorImpl& t) {
    int64_t s = 1;
    for (int i = t.shape.ndim() - 1; i >= 0; i--) {
        t.strides[i] = s;
        s *= t.shape[i];
    }
}

Tensor Tensor::empty(const Shape& shape) {
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = std::make_shared<Storage>(shape.numel());
    impl->shape = shape;
    set_contiguous_strides(*impl);
    return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, float value) {
    Tensor t = empty(shape);
    std::fill_n(t.data(), t.numel(), value);
    return t;
}
Tensor Tensor::zeros(const Shape& shape) { return full(shape, 0.0f); }
Tensor Tensor::ones(const Shape& shape) { return full(shape, 1.0f); }

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
    HIPPO_CHECK(int64_t(values.size()) == shape.numel(), "from_vector: %zu values for shape %s",
                values.size(), shape.str().c_str());
    Tensor t = empty(shape);
    std::copy(values.begin(), values.end(), t.data());
    return t;
}

// ---------------------------------------------------------------------------------------------
// Inspection

bool Tensor::is_contiguous() const {
    int64_t s = 1;
    for (int i = ndim() - 1; i >= 0; i--) {
        if (impl_->shape[i] != 1 && impl_->strides[i] != s) return false;
        s *= impl_->shape[i];
    }
    return true;
}

float Tensor::item() const {
    HIPPO_CHECK(numel() == 1, "item() needs a one-element tensor, got shape %s", shape().str().c_str());
    return data()[0];
}

void copy_strided(float* dst, const Tensor& src) {
    const TensorImpl& t = *src.impl();
    int64_t n = t.shape.numel();
    if (n == 0) return;
    if (src.is_contiguous()) {
        std::memcpy(dst, src.data(), size_t(n) * sizeof(float));
        return;
    }
    // Walk the index space with the innermost dim as a tight loop.
    int nd = t.shape.ndim();
    int64_t inner = t.shape[nd - 1], inner_stride = t.strides[nd - 1];
    int64_t idx[kMaxDims] = {};
    const float* base = src.data();
    for (int64_t done = 0; done < n; done += inner) {
        int64_t off = 0;
        for (int i = 0; i < nd - 1; i++) off += idx[i] * t.strides[i];
        const float* p = base + off;
        for (int64_t j = 0; j < inner; j++) dst[j] = p[j * inner_stride];
        dst += inner;
        for (int i = nd - 2; i >= 0; i--) {
            if (++idx[i] < t.shape[i]) break;
            idx[i] = 0;
        }
    }
}

std::vector<float> Tensor::to_vector() const {
    std::vector<float> v(static_cast<size_t>(numel()));
    copy_strided(v.data(), *this);
    return v;
}

// ---------------------------------------------------------------------------------------------
// Grad mode and recording

static thread_local bool g_grad_enabled = true;
bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
    if (!g_grad_enabled) return false;
    for (const Tensor* t : inputs)
        if (t && t->defined() && t->requires_grad()) return true;
    return false;
}

void record(Tensor& out, const char* name, std::vector<Tensor> inputs,
            std::function<std::vector<Tensor>(const Tensor&)> backward) {
    if (!g_grad_enabled) return;
    bool any = false;
    for (auto& t : inputs) any |= t.defined() && t.requires_grad();
    if (!any) return;
    auto node = std::make_shared<Node>();
    node->name = name;
    for (auto& t : inputs) node->inputs.push_back(t.impl());
    node->backward = std::move(backward);
    out.impl()->grad_fn = std::move(node);
    out.impl()->requires_grad = true;
}

Tensor& Tensor::set_requires_grad(bool on) {
    HIPPO_CHECK(is_leaf() || on, "cannot turn off requires_grad of a non-leaf tensor");
    impl_->requires_grad = on;
    return *this;
}

Tensor Tensor::detach() const {
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = impl_->storage;
    impl->offset = impl_->offset;
    impl->shape = impl_->shape;
    std::copy(impl_->strides, impl_->strides + kMaxDims, impl->strides);
    return Tensor(std::move(impl));
}

// ---------------------------------------------------------------------------------------------
// Backward

// a + b into a fresh contiguous tensor (gradients reaching one tensor along several paths).
static Tensor add_grads(const Tensor& a, const Tensor& b) {
    Tensor out = a.contiguous().clone();
    Tensor bc = b.contiguous();
    float* o = out.data();
    const float* p = bc.data();
    int64_t n = out.numel();
#pragma omp parallel for simd if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) o[i] += p[i];
    return out;
}

void Tensor::backward() const {
    HIPPO_CHECK(numel() == 1, "backward() without an output gradient needs a one-element tensor, got %s",
                shape().str().c_str());
    backward(Tensor::ones(shape()));
}

void Tensor::backward(const Tensor& grad_out) const { backward(grad_out, BackwardHooks{}); }

void Tensor::backward(const Tensor& grad_out, const BackwardHooks& hooks) const {
    HIPPO_CHECK(requires_grad(), "backward() on a tensor that does not require grad");
    HIPPO_CHECK(grad_out.shape() == shape(), "backward(): gradient shape %s does not match tensor shape %s",
                grad_out.shape().str().c_str(), shape().str().c_str());
    NoGradGuard no_grad;  // gradient computations are not recorded

    // Reverse topological order by an iterative depth-first search.
    std::vector<TensorImpl*> order;
    std::unordered_set<TensorImpl*> seen;
    std::vector<std::pair<TensorImpl*, size_t>> stack{{impl_.get(), 0}};
    seen.insert(impl_.get());
    while (!stack.empty()) {
        auto& [t, next] = stack.back();
        if (t->grad_fn && next < t->grad_fn->inputs.size()) {
            TensorImpl* in = t->grad_fn->inputs[next++].get();
            if (in && in->requires_grad && !seen.count(in)) {  // undefined optional inputs are null
                seen.insert(in);
                stack.push_back({in, 0});
            }
            continue;
        }
        order.push_back(t);
        stack.pop_back();
    }

    std::unordered_map<TensorImpl*, Tensor> grads;
    grads[impl_.get()] = grad_out;
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        TensorImpl* t = *it;
        auto found = grads.find(t);
        if (found == grads.end()) continue;
        Tensor g = std::move(found->second);
        grads.erase(found);
        if (!t->grad_fn) {
            // Leaf: accumulate into .grad, in place when a buffer exists (optimizers may keep
            // gradients in one flat arena), else as an owned contiguous copy.
            if (t->grad) {
                Tensor dst(t->grad);
                HIPPO_ASSERT(dst.shape() == g.shape() && dst.is_contiguous());
                Tensor gc = g.contiguous();
                float* o = dst.data();
                const float* p = gc.data();
                int64_t n = dst.numel();
#pragma omp parallel for simd if (n > (1 << 16))
                for (int64_t i = 0; i < n; i++) o[i] += p[i];
            } else {
                t->grad = g.contiguous().clone().impl();
            }
            if (hooks.leaf_ready) hooks.leaf_ready(t);
            if (hooks.after_node) hooks.after_node();
            continue;
        }
        std::vector<Tensor> gins = t->grad_fn->backward(g);
        HIPPO_ASSERT(gins.size() == t->grad_fn->inputs.size(), "op %s returned %zu grads for %zu inputs",
                     t->grad_fn->name.c_str(), gins.size(), t->grad_fn->inputs.size());
        for (size_t i = 0; i < gins.size(); i++) {
            TensorImpl* in = t->grad_fn->inputs[i].get();
            if (!gins[i].defined() || !in || !in->requires_grad) continue;
            HIPPO_ASSERT(gins[i].shape() == in->shape, "op %s: grad %zu has shape %s, input has %s",
                         t->grad_fn->name.c_str(), i, gins[i].shape().str().c_str(), in->shape.str().c_str());
            auto slot = grads.find(in);
            if (slot == grads.end())
                grads.emplace(in, std::move(gins[i]));
            else
                slot->second = add_grads(slot->second, gins[i]);
        }
        if (hooks.after_node) hooks.after_node();
    }
}

// ---------------------------------------------------------------------------------------------
// Views and copies

Tensor Tensor::contiguous() const {
    if (is_contiguous()) return *this;
    Tensor out = empty(shape());
    copy_strided(out.data(), *this);
    record(out, "contiguous", {*this}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
    return out;
}

Tensor Tensor::clone() const {
    Tensor out = empty(shape());
    copy_strided(out.data(), *this);
    record(out, "clone", {*this}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
    return out;
}

static Tensor make_view(const Tensor& base, const Shape& shape, const int64_t* strides, int64_t offset) {
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = base.impl()->storage;
    impl->offset = offset;
    impl->shape = shape;
    std::copy(strides, strides + shape.ndim(), impl->strides);
    return Tensor(std::move(impl));
}

Tensor Tensor::reshape(const Shape& s) const {
    std::vector<int64_t> dims = s.vec();
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < int(dims.size()); i++) {
        if (dims[i] == -1) {
            HIPPO_CHECK(infer < 0, "reshape: only one dim may be -1");
            infer = i;
        } else {
            known *= dims[i];
        }
    }
    if (infer >= 0) {
        HIPPO_CHECK(known > 0 && numel() % known == 0, "reshape: cannot infer -1 for %s from %s",
                    s.str().c_str(), shape().str().c_str());
        dims[infer] = numel() / known;
    }
    Shape target(dims);
    HIPPO_CHECK(target.numel() == numel(), "reshape: %s has %lld elements, target %s has %lld",
                shape().str().c_str(), (long long)numel(), target.str().c_str(), (long long)target.numel());
    Tensor src = contiguous();
    int64_t strides[kMaxDims];
    int64_t st = 1;
    for (int i = target.ndim() - 1; i >= 0; i--) {
        strides[i] = st;
        st *= target[i];
    }
    Tensor out = make_view(src, target, strides, src.impl()->offset);
    Shape in_shape = shape();
    record(out, "reshape", {src}, [in_shape](const Tensor& g) { return std::vector<Tensor>{g.reshape(in_shape)}; });
    return out;
}

Tensor Tensor::permute(const std::vector<int>& dims) const {
    HIPPO_CHECK(int(dims.size()) == ndim(), "permute: %zu dims given for a %d-dim tensor", dims.size(), ndim());
    std::vector<int64_t> shp(dims.size());
    int64_t strides[kMaxDims];
    std::vector<int> inverse(dims.size(), -1);
    for (int i = 0; i < ndim(); i++) {
        int a = shape().axis(dims[i]);
        HIPPO_CHECK(inverse[a] < 0, "permute: dim %d repeated", dims[i]);
        inverse[a] = i;
        shp[i] = shape()[a];
        strides[i] = impl_->strides[a];
    }
    Tensor out = make_view(*this, Shape(shp), strides, impl_->offset);
    record(out, "permute", {*this}, [inverse](const Tensor& g) { return std::vector<Tensor>{g.permute(inverse)}; });
    return out;
}

Tensor Tensor::transpose(int d0, int d1) const {
    std::vector<int> p(static_cast<size_t>(ndim()));
    for (int i = 0; i < ndim(); i++) p[i] = i;
    std::swap(p[shape().axis(d0)], p[shape().axis(d1)]);
    return permute(p);
}

Tensor Tensor::slice(int dim, int64_t start, int64_t end) const {
    int a = shape().axis(dim);
    int64_t n = shape()[a];
    HIPPO_CHECK(0 <= start && start <= end && end <= n, "slice [%lld, %lld) out of range for dim %d of size %lld",
                (long long)start, (long long)end, dim, (long long)n);
    Shape s = shape();
    s[a] = end - start;
    Tensor out = make_view(*this, s, impl_->strides, impl_->offset + start * impl_->strides[a]);
    Shape in_shape = shape();
    record(out, "slice", {*this}, [in_shape, a, start, end](const Tensor& g) {
        Tensor gi = Tensor::zeros(in_shape);
        gi.slice(a, start, end).copy_from(g);
        return std::vector<Tensor>{gi};
    });
    return out;
}

Tensor Tensor::select(int dim, int64_t index) const {
    int a = shape().axis(dim);
    HIPPO_CHECK(index >= 0 && index < shape()[a], "select: index %lld out of range for dim %d of size %lld",
                (long long)index, dim, (long long)shape()[a]);
    std::vector<int64_t> dims = shape().vec();
    dims.erase(dims.begin() + a);
    return slice(a, index, index + 1).reshape(Shape(dims));
}

void Tensor::fill_(float v) {
    HIPPO_CHECK(is_contiguous(), "fill_ needs a contiguous tensor");
    std::fill_n(data(), numel(), v);
}

void Tensor::copy_from(const Tensor& src) {
    HIPPO_CHECK(src.shape() == shape(), "copy_from: shape %s into %s", src.shape().str().c_str(), shape().str().c_str());
    if (is_contiguous()) {
        copy_strided(data(), src);
        return;
    }
    // Strided destination (a slice of a bigger tensor): copy through a contiguous source.
    Tensor s = src.contiguous();
    const float* p = s.data();
    int nd = ndim();
    int64_t idx[kMaxDims] = {};
    int64_t n = numel();
    for (int64_t k = 0; k < n; k++) {
        int64_t off = 0;
        for (int i = 0; i < nd; i++) off += idx[i] * impl_->strides[i];
        data()[off] = p[k];
        for (int i = nd - 1; i >= 0; i--) {
            if (++idx[i] < shape()[i]) break;
            idx[i] = 0;
        }
    }
}

}  // namespace hippo
