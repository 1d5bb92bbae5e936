// A small dense fp32 tensor with reverse-mode autograd (flashlight-style "tape": each result holds
// the node that made it; backward() visits the nodes in reverse topological order).
//
// Layout: row-major shapes written outermost first (as PyTorch), up to 6 dims, element strides.
// Storage is 64-byte aligned and comes from the caching allocator (common/alloc.h), so a training
// step that creates the same tensors each time does not go back to the OS.
//
// Views: reshape of a contiguous tensor, transpose, permute, slice and select share storage.
// Kernels need contiguous inputs; ops call contiguous(), which copies only when needed.
//
// Complex numbers: a complex tensor is a real tensor whose last dim is 2 (re, im), the same layout
// as torch.view_as_real and as the released checkpoints store complex parameters. The complex_*
// ops in ops.h work on that layout.
//
// Gradients: a leaf with requires_grad accumulates into grad() across backward() calls (gradient
// accumulation); zero_grad() clears it. Intermediate gradients are freed as soon as they are used.
// Under NoGradGuard no graph is recorded (inference, optimizer updates).
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "common/check.h"

namespace hippo {

constexpr int kMaxDims = 6;

class Shape {
public:
    Shape() = default;
    Shape(std::initializer_list<int64_t> dims);
    explicit Shape(const std::vector<int64_t>& dims);
    int ndim() const { return ndim_; }
    int64_t operator[](int i) const { return d_[i]; }
    int64_t& operator[](int i) { return d_[i]; }
    int64_t numel() const;
    std::vector<int64_t> vec() const { return {d_, d_ + ndim_}; }
    bool operator==(const Shape& o) const;
    bool operator!=(const Shape& o) const { return !(*this == o); }
    std::string str() const;  // "(2, 3, 4)"
    // Normalises a possibly negative dim index; throws hippo::Error when out of range.
    int axis(int dim) const;

private:
    int ndim_ = 0;
    int64_t d_[kMaxDims] = {};
};

struct Storage {
    float* data = nullptr;
    int64_t numel = 0;
    explicit Storage(int64_t n);
    ~Storage();
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
};

class Tensor;
struct TensorImpl;

// One recorded operation: its inputs and the function mapping the output gradient to the inputs'
// gradients (an undefined Tensor where an input needs none).
struct Node {
    std::string name;
    std::vector<std::shared_ptr<TensorImpl>> inputs;
    std::function<std::vector<Tensor>(const Tensor& grad_out)> backward;
};

struct TensorImpl {
    std::shared_ptr<Storage> storage;
    int64_t offset = 0;
    Shape shape;
    int64_t strides[kMaxDims] = {};
    bool requires_grad = false;
    std::shared_ptr<TensorImpl> grad;  // accumulated gradient (leaves)
    std::shared_ptr<Node> grad_fn;     // the op that made this tensor (non-leaves)
    std::string name;                  // optional, for parameters and error messages
};

class Tensor {
public:
    Tensor() = default;
    explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

    // ---- creation (uninitialised / filled / copied) ----
    static Tensor empty(const Shape& shape);
    static Tensor zeros(const Shape& shape);
    static Tensor ones(const Shape& shape);
    static Tensor full(const Shape& shape, float value);
    static Tensor from_vector(const Shape& shape, const std::vector<float>& values);
    static Tensor scalar(float value) { return full(Shape{}, value); }

    // ---- inspection ----
    bool defined() const { return impl_ != nullptr; }
    const Shape& shape() const { return impl_->shape; }
    int ndim() const { return impl_->shape.ndim(); }
    int64_t size(int dim) const { return impl_->shape[impl_->shape.axis(dim)]; }
    int64_t numel() const { return impl_->shape.numel(); }
    int64_t stride(int dim) const { return impl_->strides[impl_->shape.axis(dim)]; }
    bool is_contiguous() const;
    // Pointer to element 0. Only meaningful to index linearly when is_contiguous().
    float* data() const { return impl_->storage->data + impl_->offset; }
    float item() const;                 // value of a one-element tensor
    std::vector<float> to_vector() const;  // row-major copy
    const std::shared_ptr<TensorImpl>& impl() const { return impl_; }
    bool same_storage(const Tensor& o) const { return impl_->storage == o.impl_->storage; }

    // ---- autograd ----
    bool requires_grad() const { return impl_->requires_grad; }
    Tensor& set_requires_grad(bool on = true);
    Tensor grad() const { return Tensor(impl_->grad); }
    void zero_grad() { impl_->grad.reset(); }
    bool is_leaf() const { return impl_->grad_fn == nullptr; }
    // Reverse-mode pass from this tensor. A non-scalar root needs an explicit output gradient.
    void backward() const;
    void backward(const Tensor& grad_out) const;
    // With hooks (data-parallel gradient sync overlaps communication with the rest of backward):
    // leaf_ready(leaf) runs right after a leaf's gradient is final (a leaf is visited once, after
    // every node that uses it), after_node() after every node.
    struct BackwardHooks {
        std::function<void(const TensorImpl* leaf)> leaf_ready;
        std::function<void()> after_node;
    };
    void backward(const Tensor& grad_out, const BackwardHooks& hooks) const;
    // Same storage, no history.
    Tensor detach() const;
    Tensor& set_name(const std::string& n) { impl_->name = n; return *this; }
    const std::string& name() const { return impl_->name; }

    // ---- views and copies (differentiable; see ops.h for the rest) ----
    Tensor contiguous() const;
    Tensor clone() const;
    Tensor reshape(const Shape& s) const;  // -1 allowed once
    Tensor transpose(int d0, int d1) const;
    Tensor permute(const std::vector<int>& dims) const;
    Tensor slice(int dim, int64_t start, int64_t end) const;  // [start, end) along dim
    Tensor select(int dim, int64_t index) const;              // drops dim

    // In-place, no history: used by optimizers and initialisers under NoGradGuard.
    void fill_(float v);
    void copy_from(const Tensor& src);  // shapes must match

private:
    std::shared_ptr<TensorImpl> impl_;
};

// ---- grad mode ----
bool grad_enabled();
class NoGradGuard {
public:
    NoGradGuard();
    ~NoGradGuard();
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
    bool prev_;
};

// ---- helpers for writing ops ----
// True when grad mode is on and any input requires a gradient.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
// Records `out` as produced by `name` from `inputs`; `backward` maps dL/dout to dL/dinputs in the
// same order (undefined tensors for inputs that need none). Captured tensors must not be `out`
// itself with its history (use out.detach()) to avoid reference cycles.
void record(Tensor& out, const char* name, std::vector<Tensor> inputs,
            std::function<std::vector<Tensor>(const Tensor&)> backward);
// Contiguous copies of strided tensors, element by element (any rank).
void copy_strided(float* dst, const Tensor& src);

}  // namespace hippo
