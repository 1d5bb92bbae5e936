// Differentiable operations on Tensor. Each op computes its forward with a kernel from
// src/kernels/ and, when any input requires grad, records a node whose backward is written by
// hand. Shapes follow PyTorch semantics unless noted.
//
// Broadcasting (add/sub/mul/div/maximum/where): numpy rules, trailing dims aligned; the backward
// sums the gradient over broadcast dims (sum_to).
#pragma once
#include <cstdint>
#include <string>
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

// Weight formats for decoding (token-by-token inference, where streaming the weights is the cost):
// fp32 is exact; bf16 rounds each weight to nearest even (half the bytes); int8 quantizes each
// output row symmetrically and each activation row on the fly (a quarter of the bytes; see
// gemm_nt_s8 in kernels/gemm.h).
enum class DecodeWeights { fp32, bf16, int8 };
DecodeWeights parse_decode_weights(const std::string& name);  // "fp32" | "bf16" | "int8", else hippo::Error
const char* decode_weights_name(DecodeWeights w);
double decode_weights_bytes_per_param(DecodeWeights w);  // 4, 2, 1

// A weight matrix (rows, cols) = an fp32 (out, in) weight converted to a decode format, packed for
// the decode GEMMs (kernels/gemm.h). It is a copy: later changes to the fp32 tensor do not reach
// it. Format fp32 means "no copy": the layer reads its fp32 tensor.
struct DecodeWeight {
    DecodeWeights format = DecodeWeights::fp32;
    int64_t rows = 0, cols = 0;
    std::vector<uint16_t> bf16;  // format bf16: sgemm_nt_bf16's packed layout
    std::vector<int8_t> s8;      // format int8: gemm_nt_s8's packed layout, with per-row scale and rowsum
    std::vector<float> scale;
    std::vector<int32_t> rowsum;
    static DecodeWeight from(const Tensor& weight, DecodeWeights format);
    bool empty() const { return format == DecodeWeights::fp32; }
};
// linear() with a decode weight, fp32 activations in and out: x (..., in) -> (..., out). No
// gradient: an input that requires grad is an error.
Tensor linear_decode(const Tensor& x, const DecodeWeight& weight, const Tensor& bias = Tensor());

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
