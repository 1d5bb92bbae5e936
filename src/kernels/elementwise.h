// Elementwise, broadcasting, reduction and complex kernels on raw fp32 buffers.
//
// Conventions (as the other kernels): pure functions, explicit sizes, no allocation inside, any
// buffer may be empty (n = 0). Outputs must not partially overlap inputs (y == x exactly is fine
// for the elementwise maps). Threading: OpenMP over large sizes with static partitions; every
// output element is computed by one thread in a fixed order, so results are bit-identical run to
// run and independent of the thread count (reductions included: they sum each output in a fixed
// order).
//
// Each kernel has a `_ref` twin: the plain scalar loop using std:: maths, which the tests compare
// against. With AVX-512 the fast versions use the polynomial approximations of simd_math.h
// (within a few ulp of the reference); without AVX-512 they are plain loops that the compiler
// vectorises, with std:: maths for the transcendentals.
//
// Big outputs (>= kStreamBytes) are written with non-temporal stores: the output of a 64 MiB map
// does not fit in cache anyway, and streaming saves the read-for-ownership traffic.
#pragma once
#include <cstdint>

namespace hippo::ew {

constexpr int64_t kParallelMin = 1 << 15;        // elements below which kernels stay single-threaded
constexpr int64_t kStreamBytes = int64_t(8) << 20;  // output size from which stores stream past cache

enum class BinOp { Add, Sub, Mul, Div };
enum class UnOp { Exp, Log, Sqrt, Tanh, Sigmoid, Silu, Relu, Softplus, Gelu, GeluTanh };
const char* name(BinOp op);
const char* name(UnOp op);

// ---- binary, with the broadcast shapes the ops layer dispatches to ----
// y[i] = a[i] op b[i]
void binary(BinOp op, float* y, const float* a, const float* b, int64_t n);
void binary_ref(BinOp op, float* y, const float* a, const float* b, int64_t n);
// y[i] = a[i] op s, or s op a[i] when scalar_left
void binary_scalar(BinOp op, float* y, const float* a, float s, bool scalar_left, int64_t n);
void binary_scalar_ref(BinOp op, float* y, const float* a, float s, bool scalar_left, int64_t n);
// Row broadcast (bias add): a is (R, C), b is (C): y[r,c] = a[r,c] op b[c]  (b[c] op a[r,c] if swap)
void binary_row(BinOp op, float* y, const float* a, const float* b, int64_t R, int64_t C, bool swap);
void binary_row_ref(BinOp op, float* y, const float* a, const float* b, int64_t R, int64_t C, bool swap);
// Column broadcast: a is (R, C), b is (R): y[r,c] = a[r,c] op b[r]  (b[r] op a[r,c] if swap)
void binary_col(BinOp op, float* y, const float* a, const float* b, int64_t R, int64_t C, bool swap);
void binary_col_ref(BinOp op, float* y, const float* a, const float* b, int64_t R, int64_t C, bool swap);
// General: y is contiguous with `shape` (ndim <= 6); sa/sb are the element strides of a and b
// over that shape (0 along broadcast dims).
void binary_strided(BinOp op, float* y, const float* a, const float* b, int ndim, const int64_t* shape,
                    const int64_t* sa, const int64_t* sb);
void binary_strided_ref(BinOp op, float* y, const float* a, const float* b, int ndim, const int64_t* shape,
                        const int64_t* sa, const int64_t* sb);

// y = alpha * x + beta (add_scalar, mul_scalar, neg)
void affine(float* y, const float* x, float alpha, float beta, int64_t n);
void affine_ref(float* y, const float* x, float alpha, float beta, int64_t n);

// ---- unary maps and their fused backward ----
void unary(UnOp op, float* y, const float* x, int64_t n);
void unary_ref(UnOp op, float* y, const float* x, int64_t n);
// dx = dy * f'(.). `t` is the saved forward tensor: the OUTPUT y for Exp, Sqrt, Tanh, Sigmoid;
// the INPUT x for Log, Silu, Relu, Softplus, Gelu, GeluTanh.
bool unary_backward_uses_output(UnOp op);
void unary_backward(UnOp op, float* dx, const float* dy, const float* t, int64_t n);
void unary_backward_ref(UnOp op, float* dx, const float* dy, const float* t, int64_t n);
// y = x^p (p = 2, 0.5, 1, -1 take exact fast paths); dx = dy * p * x^(p-1)
void pow_scalar(float* y, const float* x, float p, int64_t n);
void pow_scalar_ref(float* y, const float* x, float p, int64_t n);
void pow_scalar_backward(float* dx, const float* dy, const float* x, float p, int64_t n);
void pow_scalar_backward_ref(float* dx, const float* dy, const float* x, float p, int64_t n);
// Fused backward of same-shape a / b: da = dy / b, db = -dy * a / b^2 (either may be null).
void div_backward(float* da, float* db, const float* dy, const float* a, const float* b, int64_t n);
void div_backward_ref(float* da, float* db, const float* dy, const float* a, const float* b, int64_t n);

// ---- reductions over the middle dim of x viewed as (outer, red, inner) -> (outer, inner) ----
// Each output is summed in a fixed order (vector lanes then a fixed tree), whatever the threads.
void sum_dim(float* y, const float* x, int64_t outer, int64_t red, int64_t inner);
void sum_dim_ref(float* y, const float* x, int64_t outer, int64_t red, int64_t inner);  // double accumulation
// Max with the index of the first maximal element (NaN counts as maximal). red >= 1.
void max_dim(float* y, int64_t* idx, const float* x, int64_t outer, int64_t red, int64_t inner);
void max_dim_ref(float* y, int64_t* idx, const float* x, int64_t outer, int64_t red, int64_t inner);
// Backward of max: dx (outer, red, inner) = 0 except dx[o, idx[o,i], i] = dy[o, i].
void max_dim_backward(float* dx, const float* dy, const int64_t* idx, int64_t outer, int64_t red, int64_t inner);

// y (contiguous, `shape`) = scale * x[strides] (x broadcast with 0 strides): the backward of sums
void broadcast_strided(float* y, const float* x, int ndim, const int64_t* shape, const int64_t* sx, float scale);

// 2-D block copy: rows x cols floats from src (row stride ss) into dst (row stride ds).
void copy_rows(float* dst, int64_t ds, const float* src, int64_t ss, int64_t rows, int64_t cols);

// ---- complex (interleaved re, im pairs) ----
// y[k] = a[k] * b[k] (or a * conj(b)), over a broadcast index space: y is contiguous with `shape`
// (in complex elements), sa/sb are strides in complex elements.
void complex_mul_strided(float* y, const float* a, const float* b, int ndim, const int64_t* shape,
                         const int64_t* sa, const int64_t* sb, bool conj_b);
void complex_mul_strided_ref(float* y, const float* a, const float* b, int ndim, const int64_t* shape,
                             const int64_t* sa, const int64_t* sb, bool conj_b);
// y = e^z for n complex numbers; backward dz = dy * conj(y)
void complex_exp(float* y, const float* z, int64_t n);
void complex_exp_ref(float* y, const float* z, int64_t n);
// z[k] = (re[k], im[k]); either source may be null (zeros)
void interleave(float* z, const float* re, const float* im, int64_t n);
// re[k] = z[2k], im[k] = z[2k+1]; either destination may be null
void deinterleave(float* re, float* im, const float* z, int64_t n);

}  // namespace hippo::ew
