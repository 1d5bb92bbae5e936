// Row-wise kernels over the last dim (llm.c style): layer norm, RMS norm, softmax, log-softmax and
// fused cross-entropy, forward and backward, on raw contiguous fp32 buffers.
//
// Conventions (all kernels):
//   - a "row" is one contiguous run of D floats; R rows are stored back to back (row stride D);
//   - no allocation inside; buffers that hold partial sums are passed in by the caller;
//   - OpenMP over rows with a static schedule, so every output element is computed by the same
//     arithmetic whatever the thread count; reductions across rows (dweight, dbias) go through a
//     fixed number of row chunks (kNormChunks) summed in a fixed order, so they do not depend on
//     the thread count either;
//   - AVX-512 paths under #ifdef __AVX512F__, a portable path beside them;
//   - each kernel has a plain `_ref` version (double accumulation, std::exp) that tests compare to.
// Backward kernels WRITE dx (=) and ACCUMULATE (+=) into dweight / dbias, as noted per kernel.
#pragma once
#include <cstdint>

namespace hippo {

// Row chunks used for the deterministic cross-row reduction of dweight / dbias.
constexpr int64_t kNormChunks = 16;
// Floats of scratch the layernorm / rmsnorm backward kernels need for width D.
inline int64_t norm_backward_scratch_floats(int64_t D) { return kNormChunks * 2 * D; }

// ---- layer norm ----
// x, out: (R, D); weight, bias: (D) or nullptr (= ones / zeros); mean, rstd: (R) written (may be
// nullptr when the backward is not needed). out = (x - mean) * rstd * weight + bias,
// rstd = 1 / sqrt(var + eps) with the biased variance.
void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* weight,
                       const float* bias, int64_t R, int64_t D, float eps);
void layernorm_forward_ref(float* out, float* mean, float* rstd, const float* x, const float* weight,
                           const float* bias, int64_t R, int64_t D, float eps);
// dout, x, dx: (R, D); mean, rstd: (R) from the forward. dx is written (=). dweight, dbias: (D),
// ACCUMULATED (+=), either may be nullptr; weight may be nullptr (= ones). scratch: at least
// norm_backward_scratch_floats(D) floats (unused when both dweight and dbias are nullptr).
void layernorm_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                        const float* weight, const float* mean, const float* rstd, int64_t R, int64_t D,
                        float* scratch);
void layernorm_backward_ref(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                            const float* weight, const float* mean, const float* rstd, int64_t R, int64_t D);

// ---- RMS norm ----
// out = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps); weight (D) or nullptr; rstd (R) or nullptr.
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* weight, int64_t R, int64_t D,
                     float eps);
void rmsnorm_forward_ref(float* out, float* rstd, const float* x, const float* weight, int64_t R, int64_t D,
                         float eps);
// dx written (=); dweight (D) ACCUMULATED (+=) or nullptr; scratch as for layernorm_backward.
void rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x, const float* weight,
                      const float* rstd, int64_t R, int64_t D, float* scratch);
void rmsnorm_backward_ref(float* dx, float* dweight, const float* dout, const float* x, const float* weight,
                          const float* rstd, int64_t R, int64_t D);

// ---- softmax / log-softmax ----
// x, out: (R, D). out may alias x (in place).
void softmax_forward(float* out, const float* x, int64_t R, int64_t D);
void softmax_forward_ref(float* out, const float* x, int64_t R, int64_t D);
// y = softmax output (R, D); dx = y * (dy - sum(dy * y)) written (=). dx may alias dy.
void softmax_backward(float* dx, const float* dy, const float* y, int64_t R, int64_t D);
void softmax_backward_ref(float* dx, const float* dy, const float* y, int64_t R, int64_t D);
// out = x - max - log(sum(exp(x - max))). out may alias x.
void logsoftmax_forward(float* out, const float* x, int64_t R, int64_t D);
void logsoftmax_forward_ref(float* out, const float* x, int64_t R, int64_t D);
// y = log-softmax output; dx = dy - exp(y) * sum(dy) written (=). dx may alias dy.
void logsoftmax_backward(float* dx, const float* dy, const float* y, int64_t R, int64_t D);
void logsoftmax_backward_ref(float* dx, const float* dy, const float* y, int64_t R, int64_t D);

// ---- fused cross-entropy (log-softmax + NLL) ----
// logits: (R, V); targets: (R). For a counted row (targets[r] != ignore_index):
//   lse[r] = log(sum(exp(logits[r]))), losses[r] = lse[r] - logits[r, targets[r]];
// for an ignored row losses[r] = 0 and lse[r] = 0. Targets must be ignore_index or in [0, V)
// (the caller validates). Returns the number of counted rows.
int64_t crossentropy_forward(float* losses, float* lse, const float* logits, const int32_t* targets, int64_t R,
                             int64_t V, int32_t ignore_index);
int64_t crossentropy_forward_ref(float* losses, float* lse, const float* logits, const int32_t* targets,
                                 int64_t R, int64_t V, int32_t ignore_index);
// dlogits (R, V) written (=): counted rows get (softmax(logits[r]) - onehot(targets[r])) * scale, ignored
// rows get 0. With scale = dloss / count this is the gradient of the mean loss.
void crossentropy_backward(float* dlogits, const float* logits, const float* lse, const int32_t* targets,
                           int64_t R, int64_t V, int32_t ignore_index, float scale);
void crossentropy_backward_ref(float* dlogits, const float* logits, const float* lse, const int32_t* targets,
                               int64_t R, int64_t V, int32_t ignore_index, float scale);

// Vectorised exp used by the kernels above (|rel err| ~ 2 ulp on [-87, 88]; 0 below -104;
// +inf above 88.7). Exposed for tests.
void vexp(float* out, const float* x, int64_t n);

}  // namespace hippo
