// Differentiable operations on Tensor. Each op computes its forward with a kernel from
// src/kernels/ and, when any input requires grad, records a node whose backward is written by
// hand. Shapes follow PyTorch semantics unless noted.
//
// Broadcasting (add/sub/mul/div/maximum/where): numpy rules, trailing dims aligned; the backward
// sums the gradient over broadcast dims (sum_to).
#pragma once
#include <cstdint>
#include <vector>

#include "autograd/tensor.h"

namespace hippo {

// ---- elementwise, broadcasting ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, float s);
Tensor mul_scalar(const Tensor& a, float s);
Tensor neg(const Tensor& a);
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator*(const Tensor& a, float s) { return mul_scalar(a, s); }
inline Tensor operator+(const Tensor& a, float s) { return add_scalar(a, s); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
// Sums `g` down to `shape` over the dims that broadcasting expanded (the backward of broadcasting).
Tensor sum_to(const Tensor& g, const Shape& shape);
Shape broadcast_shapes(const Shape& a, const Shape& b);

// ---- elementwise, unary ----
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor softplus(const Tensor& x);           // log(1 + e^x), stable for large |x|
Tensor gelu(const Tensor& x);               // exact: x * Phi(x)
Tensor gelu_tanh(const Tensor& x);          // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
Tensor pow_scalar(const Tensor& x, float p);

// ---- reductions ----
// dims: the dims to reduce (negative allowed); empty = all dims.
Tensor sum(const Tensor& x, const std::vector<int>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int>& dims = {}, bool keepdim = false);
// Max along one dim; the gradient goes to the first maximal element.
Tensor max(const Tensor& x, int dim, bool keepdim = false);

// ---- linear algebra ----
// a: (..., M, K) or (..., K, M) if trans_a; b: (..., K, N) or (..., N, K) if trans_b.
// Batch dims of a and b must be equal, or b may be 2-D (shared across the batch).
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// x: (..., in), weight: (out, in) as nn.Linear, bias: (out) or undefined -> (..., out)
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// A weight matrix (rows, cols) stored in bf16 for inference, made from an fp32 (out, in) weight by
// rounding to nearest even. It is a copy: later changes to the fp32 tensor do not reach it.
struct Bf16Weight {
    std::vector<uint16_t> data;  // the packed layout of sgemm_nt_bf16 (kernels/gemm.h)
    int64_t rows = 0, cols = 0;
    static Bf16Weight from(const Tensor& weight);
    bool empty() const { return data.empty(); }
};
// linear() with a bf16 weight, fp32 activations and accumulation: x (..., in) -> (..., out). No
// gradient: an input that requires grad is an error.
Tensor linear_bf16(const Tensor& x, const Bf16Weight& weight, const Tensor& bias = Tensor());

// ---- normalisation and softmax (over the last dim) ----
// x: (..., D), weight/bias: (D) or undefined
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps = 1e-5f);
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps = 1e-6f);
Tensor softmax(const Tensor& x);
Tensor log_softmax(const Tensor& x);
// logits: (..., V), targets: int ids with the leading shape of logits; positions whose target is
// ignore_index contribute nothing. Returns the mean over the counted positions (a scalar).
Tensor cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets, int32_t ignore_index = -100);

// ---- indexing and structure ----
// weight: (V, D), ids: any shape S of ints in [0, V) -> (S..., D)
Tensor embedding(const Tensor& weight, const std::vector<int32_t>& ids, const Shape& ids_shape);
// Inverted dropout with a counter-based RNG: element i is kept when hash_uniform(seed, i) >= p.
// Identity when !training or p == 0.
// index_offset shifts the counter: a data-parallel rank holding rows r0.. of a global batch passes
// r0 * (elements per row) and draws the same mask as one process holding the whole batch.
Tensor dropout(const Tensor& x, float p, uint64_t seed, bool training = true, uint64_t index_offset = 0);
Tensor concat(const std::vector<Tensor>& xs, int dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim);

// ---- complex numbers as trailing dim 2 (re, im) ----
Tensor complex_mul(const Tensor& a, const Tensor& b);  // (..., 2) x (..., 2), broadcasting
Tensor complex_exp(const Tensor& z);                   // e^(re) (cos im, sin im)
Tensor complex_real(const Tensor& z);                  // (..., 2) -> (...)
Tensor complex_imag(const Tensor& z);
Tensor make_complex(const Tensor& re, const Tensor& im);  // (...), (...) -> (..., 2)

}  // namespace hippo
