// PART B of ops.h: matmul, linear, normalisation, softmax, cross-entropy, embedding, dropout.
// Forward and backward call kernels (kernels/gemm.h, kernels/norm.h) directly on contiguous
// buffers; nothing here is built from chains of generic ops.
//
// Pattern of every op: make the inputs contiguous (a no-op for contiguous tensors), run the
// forward kernel into a fresh tensor, then record() a node whose backward captures detached
// inputs / saved statistics (never `out` with its history) and returns one gradient per input.
#include <algorithm>
#include <cmath>
#include <functional>

#include "autograd/ops.h"
#include "common/rng.h"
#include "kernels/gemm.h"
#include "kernels/norm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace hippo {

namespace {

// Contiguous data of t, detached from its history (the recorded node takes the original t as
// input, so the gradient flows through t's own views).
Tensor data_of(const Tensor& t) {
    NoGradGuard ng;
    return t.contiguous().detach();
}

// record() for ops with optional inputs: undefined inputs are left out of the node (the engine
// expects every recorded input to exist) and their entries dropped from the gradient list.
void record_optional(Tensor& out, const char* name, const std::vector<Tensor>& inputs,
                     std::function<std::vector<Tensor>(const Tensor&)> backward) {
    std::vector<Tensor> present;
    std::vector<bool> keep;
    for (const Tensor& t : inputs) {
        keep.push_back(t.defined());
        if (t.defined()) present.push_back(t);
    }
    if (present.size() == inputs.size()) {
        record(out, name, present, std::move(backward));
        return;
    }
    record(out, name, present, [keep, bw = std::move(backward)](const Tensor& g) {
        std::vector<Tensor> all = bw(g), sel;
        for (size_t i = 0; i < all.size(); i++)
            if (keep[i]) sel.push_back(std::move(all[i]));
        return sel;
    });
}

std::vector<int64_t> leading_dims(const Shape& s, int drop) {
    std::vector<int64_t> d = s.vec();
    d.resize(d.size() - size_t(drop));
    return d;
}

// Column sums of a (R, N) row-major matrix, ADDED into out (N). Parallel over blocks of columns,
// each summed over the rows in order: the result does not depend on the thread count.
void colsum_add(float* out, const float* a, int64_t R, int64_t N) {
    constexpr int64_t CB = 64;
    int64_t nblocks = (N + CB - 1) / CB;
#pragma omp parallel for schedule(static) if (R * N > 65536)
    for (int64_t blk = 0; blk < nblocks; blk++) {
        int64_t j0 = blk * CB, jn = std::min(N, j0 + CB) - j0;
        float acc[CB] = {};
        for (int64_t r = 0; r < R; r++) {
            const float* p = a + r * N + j0;
#pragma omp simd
            for (int64_t j = 0; j < jn; j++) acc[j] += p[j];
        }
        for (int64_t j = 0; j < jn; j++) out[j0 + j] += acc[j];
    }
}

// nb GEMMs C_i = alpha op(A_i) op(B_i) + beta C_i with element strides sA, sB, sC between batches
// (a stride 0 shares that operand). With sC == 0 all products accumulate into one C, in batch order.
// Many small products run in parallel over the batch (OpenBLAS runs single-threaded inside a
// parallel region); big ones run one after the other, each threaded by the BLAS.
void batched_sgemm(int64_t nb, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t sA,
                   int64_t lda, const float* B, int64_t sB, int64_t ldb, float beta, float* C, int64_t sC,
                   int64_t ldc) {
    if (sC == 0) {
        for (int64_t i = 0; i < nb; i++)
            sgemm(ta, tb, M, N, K, 1.0f, A + i * sA, lda, B + i * sB, ldb, i == 0 ? beta : 1.0f, C, ldc);
        return;
    }
    bool small = double(M) * double(N) * double(K) < 64.0 * 64 * 64;
#pragma omp parallel for schedule(static) if (nb > 1 && small)
    for (int64_t i = 0; i < nb; i++)
        sgemm(ta, tb, M, N, K, 1.0f, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// matmul

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
    HIPPO_CHECK(a.defined() && b.defined(), "matmul: undefined input");
    HIPPO_CHECK(a.ndim() >= 2 && b.ndim() >= 2, "matmul: inputs need at least 2 dims, got %s and %s",
                a.shape().str().c_str(), b.shape().str().c_str());
    const int64_t a0 = a.size(-2), a1 = a.size(-1), b0 = b.size(-2), b1 = b.size(-1);
    const int64_t M = trans_a ? a1 : a0, K = trans_a ? a0 : a1;
    const int64_t Kb = trans_b ? b1 : b0, N = trans_b ? b0 : b1;
    HIPPO_CHECK(K == Kb, "matmul: inner dims differ: a %s%s gives K=%lld, b %s%s gives K=%lld", a.shape().str().c_str(),
                trans_a ? "^T" : "", (long long)K, b.shape().str().c_str(), trans_b ? "^T" : "", (long long)Kb);
    std::vector<int64_t> batch = leading_dims(a.shape(), 2);
    const bool shared_b = b.ndim() == 2;
    if (!shared_b)
        HIPPO_CHECK(leading_dims(b.shape(), 2) == batch,
                    "matmul: batch dims of a %s and b %s differ (b may also be 2-D)", a.shape().str().c_str(),
                    b.shape().str().c_str());
    int64_t nb = 1;
    for (int64_t d : batch) nb *= d;
    std::vector<int64_t> out_dims = batch;
    out_dims.push_back(M);
    out_dims.push_back(N);

    Tensor ac = data_of(a), bc = data_of(b);
    Tensor out = Tensor::empty(Shape(out_dims));
    const int64_t sA = a0 * a1, sB = shared_b ? 0 : b0 * b1, sC = M * N;
    if (shared_b && !trans_a)  // (nb*M, K) x B in one GEMM
        sgemm(false, trans_b, nb * M, N, K, 1.0f, ac.data(), a1, bc.data(), b1, 0.0f, out.data(), N);
    else
        batched_sgemm(nb, trans_a, trans_b, M, N, K, ac.data(), sA, a1, bc.data(), sB, b1, 0.0f, out.data(), sC, N);

    const bool need_a = a.requires_grad(), need_b = b.requires_grad();
    record(out, "matmul", {a, b}, [=](const Tensor& g) {
        Tensor gc = data_of(g);
        const float* dC = gc.data();
        Tensor da, db;
        if (need_a) {
            da = Tensor::empty(ac.shape());
            if (!trans_a) {  // dA (M,K) = dC op(B)^T
                if (shared_b)
                    sgemm(false, !trans_b, nb * M, K, N, 1.0f, dC, N, bc.data(), b1, 0.0f, da.data(), K);
                else
                    batched_sgemm(nb, false, !trans_b, M, K, N, dC, sC, N, bc.data(), sB, b1, 0.0f, da.data(), sA, K);
            } else {  // dA (K,M) = op(B) dC^T
                batched_sgemm(nb, trans_b, true, K, M, N, bc.data(), sB, b1, dC, sC, N, 0.0f, da.data(), sA, M);
            }
        }
        if (need_b) {
            db = Tensor::empty(bc.shape());
            if (shared_b && !trans_a) {  // all batches as one (nb*M)-long contraction
                if (!trans_b)
                    sgemm(true, false, K, N, nb * M, 1.0f, ac.data(), a1, dC, N, 0.0f, db.data(), N);
                else
                    sgemm(true, false, N, K, nb * M, 1.0f, dC, N, ac.data(), a1, 0.0f, db.data(), K);
            } else if (!trans_b) {  // dB (K,N) = op(A)^T dC
                batched_sgemm(nb, !trans_a, false, K, N, M, ac.data(), sA, a1, dC, sC, N, 0.0f, db.data(), sB, N);
            } else {  // dB (N,K) = dC^T op(A)
                batched_sgemm(nb, true, trans_a, N, K, M, dC, sC, N, ac.data(), sA, a1, 0.0f, db.data(), sB, K);
            }
        }
        return std::vector<Tensor>{da, db};
    });
    return out;
}

// ---------------------------------------------------------------------------------------------
// linear

// y (R, n) = row (n) in every row: the bias that the GEMM then accumulates onto (beta = 1).
static void broadcast_rows(float* y, const float* row, int64_t R, int64_t n) {
#pragma omp parallel for schedule(static) if (R * n > 65536)
    for (int64_t r = 0; r < R; r++) std::copy(row, row + n, y + r * n);
}

DecodeWeights parse_decode_weights(const std::string& name) {
    if (name == "fp32") return DecodeWeights::fp32;
    if (name == "bf16") return DecodeWeights::bf16;
    if (name == "int8") return DecodeWeights::int8;
    throw Error(strf("unknown decode weight format '%s' (expected fp32, bf16 or int8)", name.c_str()));
}

const char* decode_weights_name(DecodeWeights w) {
    return w == DecodeWeights::bf16 ? "bf16" : w == DecodeWeights::int8 ? "int8" : "fp32";
}

double decode_weights_bytes_per_param(DecodeWeights w) {
    return w == DecodeWeights::bf16 ? 2.0 : w == DecodeWeights::int8 ? 1.0 : 4.0;
}

DecodeWeight DecodeWeight::from(const Tensor& weight, DecodeWeights format) {
    HIPPO_CHECK(weight.defined() && weight.ndim() == 2, "DecodeWeight: weight must be (out, in), got %s",
                weight.defined() ? weight.shape().str().c_str() : "undefined");
    Tensor wc = data_of(weight);
    DecodeWeight w;
    w.format = format;
    w.rows = wc.size(0);
    w.cols = wc.size(1);
    if (format == DecodeWeights::bf16) {
        w.bf16.resize(bf16_packed_size(w.rows, w.cols));
        bf16_pack_nt(w.rows, w.cols, wc.data(), w.cols, w.bf16.data());
    } else if (format == DecodeWeights::int8) {
        w.s8.resize(s8_packed_size(w.rows, w.cols));
        w.scale.resize(size_t(w.rows));
        w.rowsum.resize(size_t(w.rows));
        s8_pack_nt(w.rows, w.cols, wc.data(), w.cols, w.s8.data(), w.scale.data(), w.rowsum.data());
    }
    return w;
}

Tensor linear_decode(const Tensor& x, const DecodeWeight& w, const Tensor& bias) {
    HIPPO_CHECK(x.defined() && !w.empty(), "linear_decode: undefined input or no decode weight");
    HIPPO_CHECK(!(grad_enabled() && x.requires_grad()), "linear_decode: no gradient through %s weights (inference only)",
                decode_weights_name(w.format));
    const int64_t out_f = w.rows, in_f = w.cols;
    HIPPO_CHECK(x.ndim() >= 1 && x.size(-1) == in_f, "linear_decode: x %s has %lld input features, weight expects %lld",
                x.shape().str().c_str(), (long long)x.size(-1), (long long)in_f);
    if (bias.defined())
        HIPPO_CHECK(bias.shape() == Shape{out_f}, "linear_decode: bias %s does not match out_features %lld",
                    bias.shape().str().c_str(), (long long)out_f);
    const int64_t R = x.numel() / in_f;
    std::vector<int64_t> out_dims = x.shape().vec();
    out_dims.back() = out_f;
    Tensor xc = data_of(x);
    Tensor out = Tensor::empty(Shape(out_dims));
    float* y = out.data();
    if (bias.defined()) broadcast_rows(y, data_of(bias).data(), R, out_f);
    const float beta = bias.defined() ? 1.0f : 0.0f;
    if (w.format == DecodeWeights::bf16)
        sgemm_nt_bf16(R, out_f, in_f, 1.0f, xc.data(), in_f, w.bf16.data(), beta, y, out_f);
    else
        gemm_nt_s8(R, out_f, in_f, 1.0f, xc.data(), in_f, w.s8.data(), w.scale.data(), w.rowsum.data(), beta, y, out_f);
    return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    HIPPO_CHECK(x.defined() && weight.defined(), "linear: undefined input");
    HIPPO_CHECK(weight.ndim() == 2, "linear: weight must be (out, in), got %s", weight.shape().str().c_str());
    HIPPO_CHECK(x.ndim() >= 1, "linear: x must have at least 1 dim");
    const int64_t out_f = weight.size(0), in_f = weight.size(1);
    HIPPO_CHECK(x.size(-1) == in_f, "linear: x %s has %lld input features, weight %s expects %lld",
                x.shape().str().c_str(), (long long)x.size(-1), weight.shape().str().c_str(), (long long)in_f);
    if (bias.defined())
        HIPPO_CHECK(bias.shape() == Shape{out_f}, "linear: bias %s does not match out_features %lld",
                    bias.shape().str().c_str(), (long long)out_f);
    const int64_t R = in_f > 0 ? x.numel() / in_f : 0;
    std::vector<int64_t> out_dims = x.shape().vec();
    out_dims.back() = out_f;

    Tensor xc = data_of(x), wc = data_of(weight), bc = bias.defined() ? data_of(bias) : Tensor();
    Tensor out = Tensor::empty(Shape(out_dims));
    float* y = out.data();
    if (bc.defined()) broadcast_rows(y, bc.data(), R, out_f);
    sgemm(false, true, R, out_f, in_f, 1.0f, xc.data(), in_f, wc.data(), in_f, bc.defined() ? 1.0f : 0.0f, y, out_f);

    const bool need_x = x.requires_grad(), need_w = weight.requires_grad(),
               need_b = bias.defined() && bias.requires_grad();
    record_optional(out, "linear", {x, weight, bias}, [=](const Tensor& g) {
        Tensor gc = data_of(g);
        const float* dy = gc.data();
        Tensor dx, dw, db;
        if (need_x) {  // dx (R, in) = dy (R, out) W (out, in)
            dx = Tensor::empty(xc.shape());
            sgemm(false, false, R, in_f, out_f, 1.0f, dy, out_f, wc.data(), in_f, 0.0f, dx.data(), in_f);
        }
        if (need_w) {  // dW (out, in) = dy^T x, one GEMM over all R rows
            dw = Tensor::empty(wc.shape());
            sgemm(true, false, out_f, in_f, R, 1.0f, dy, out_f, xc.data(), in_f, 0.0f, dw.data(), in_f);
        }
        if (need_b) {
            db = Tensor::zeros(Shape{out_f});
            colsum_add(db.data(), dy, R, out_f);
        }
        return std::vector<Tensor>{dx, dw, db};
    });
    return out;
}

// ---------------------------------------------------------------------------------------------
// normalisation

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
    HIPPO_CHECK(x.defined() && x.ndim() >= 1, "layer_norm: x must have at least 1 dim");
    const int64_t D = x.size(-1);
    HIPPO_CHECK(D > 0, "layer_norm: empty last dim in %s", x.shape().str().c_str());
    if (weight.defined())
        HIPPO_CHECK(weight.shape() == Shape{D}, "layer_norm: weight %s does not match x %s (want (%lld))",
                    weight.shape().str().c_str(), x.shape().str().c_str(), (long long)D);
    if (bias.defined())
        HIPPO_CHECK(bias.shape() == Shape{D}, "layer_norm: bias %s does not match x %s (want (%lld))",
                    bias.shape().str().c_str(), x.shape().str().c_str(), (long long)D);
    const int64_t R = x.numel() / D;
    Tensor xc = data_of(x), wc = weight.defined() ? data_of(weight) : Tensor(),
           bc = bias.defined() ? data_of(bias) : Tensor();
    Tensor out = Tensor::empty(x.shape());
    Tensor mean = Tensor::empty(Shape{R}), rstd = Tensor::empty(Shape{R});
    layernorm_forward(out.data(), mean.data(), rstd.data(), xc.data(), wc.defined() ? wc.data() : nullptr,
                      bc.defined() ? bc.data() : nullptr, R, D, eps);

    const bool need_w = weight.defined() && weight.requires_grad(), need_b = bias.defined() && bias.requires_grad();
    record_optional(out, "layer_norm", {x, weight, bias}, [=](const Tensor& g) {
        Tensor gc = data_of(g);
        Tensor dx = Tensor::empty(xc.shape());
        Tensor dw = need_w ? Tensor::zeros(Shape{D}) : Tensor();
        Tensor db = need_b ? Tensor::zeros(Shape{D}) : Tensor();
        Tensor scratch = (need_w || need_b) ? Tensor::empty(Shape{norm_backward_scratch_floats(D)}) : Tensor();
        layernorm_backward(dx.data(), need_w ? dw.data() : nullptr, need_b ? db.data() : nullptr, gc.data(),
                           xc.data(), wc.defined() ? wc.data() : nullptr, mean.data(), rstd.data(), R, D,
                           scratch.defined() ? scratch.data() : nullptr);
        return std::vector<Tensor>{dx, dw, db};
    });
    return out;
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
    HIPPO_CHECK(x.defined() && x.ndim() >= 1, "rms_norm: x must have at least 1 dim");
    const int64_t D = x.size(-1);
    HIPPO_CHECK(D > 0, "rms_norm: empty last dim in %s", x.shape().str().c_str());
    if (weight.defined())
        HIPPO_CHECK(weight.shape() == Shape{D}, "rms_norm: weight %s does not match x %s (want (%lld))",
                    weight.shape().str().c_str(), x.shape().str().c_str(), (long long)D);
    const int64_t R = x.numel() / D;
    Tensor xc = data_of(x), wc = weight.defined() ? data_of(weight) : Tensor();
    Tensor out = Tensor::empty(x.shape());
    Tensor rstd = Tensor::empty(Shape{R});
    rmsnorm_forward(out.data(), rstd.data(), xc.data(), wc.defined() ? wc.data() : nullptr, R, D, eps);

    const bool need_w = weight.defined() && weight.requires_grad();
    record_optional(out, "rms_norm", {x, weight}, [=](const Tensor& g) {
        Tensor gc = data_of(g);
        Tensor dx = Tensor::empty(xc.shape());
        Tensor dw = need_w ? Tensor::zeros(Shape{D}) : Tensor();
        Tensor scratch = need_w ? Tensor::empty(Shape{norm_backward_scratch_floats(D)}) : Tensor();
        rmsnorm_backward(dx.data(), need_w ? dw.data() : nullptr, gc.data(), xc.data(),
                         wc.defined() ? wc.data() : nullptr, rstd.data(), R, D,
                         scratch.defined() ? scratch.data() : nullptr);
        return std::vector<Tensor>{dx, dw};
    });
    return out;
}

// ---------------------------------------------------------------------------------------------
// softmax family

Tensor softmax(const Tensor& x) {
    HIPPO_CHECK(x.defined() && x.ndim() >= 1, "softmax: x must have at least 1 dim");
    const int64_t D = x.size(-1), R = D > 0 ? x.numel() / D : 0;
    Tensor xc = data_of(x);
    Tensor out = Tensor::empty(x.shape());
    softmax_forward(out.data(), xc.data(), R, D);
    Tensor y = out.detach();
    record(out, "softmax", {x}, [=](const Tensor& g) {
        Tensor gc = data_of(g);
        Tensor dx = Tensor::empty(y.shape());
        softmax_backward(dx.data(), gc.data(), y.data(), R, D);
        return std::vector<Tensor>{dx};
    });
    return out;
}

Tensor log_softmax(const Tensor& x) {
    HIPPO_CHECK(x.defined() && x.ndim() >= 1, "log_softmax: x must have at least 1 dim");
    const int64_t D = x.size(-1), R = D > 0 ? x.numel() / D : 0;
    Tensor xc = data_of(x);
    Tensor out = Tensor::empty(x.shape());
    logsoftmax_forward(out.data(), xc.data(), R, D);
    Tensor y = out.detach();
    record(out, "log_softmax", {x}, [=](const Tensor& g) {
        Tensor gc = data_of(g);
        Tensor dx = Tensor::empty(y.shape());
        logsoftmax_backward(dx.data(), gc.data(), y.data(), R, D);
        return std::vector<Tensor>{dx};
    });
    return out;
}

Tensor cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets, int32_t ignore_index) {
    HIPPO_CHECK(logits.defined() && logits.ndim() >= 1, "cross_entropy: logits must have at least 1 dim");
    const int64_t V = logits.size(-1);
    HIPPO_CHECK(V > 0, "cross_entropy: empty class dim in logits %s", logits.shape().str().c_str());
    const int64_t R = logits.numel() / V;
    HIPPO_CHECK(int64_t(targets.size()) == R, "cross_entropy: %zu targets for logits %s (%lld positions)",
                targets.size(), logits.shape().str().c_str(), (long long)R);
    for (int64_t r = 0; r < R; r++) {
        int32_t t = targets[size_t(r)];
        HIPPO_CHECK(t == ignore_index || (t >= 0 && t < V),
                    "cross_entropy: target %d at position %lld is out of range for %lld classes", t, (long long)r,
                    (long long)V);
    }
    Tensor xc = data_of(logits);
    Tensor losses = Tensor::empty(Shape{R}), lse = Tensor::empty(Shape{R});
    int64_t count = crossentropy_forward(losses.data(), lse.data(), xc.data(), targets.data(), R, V, ignore_index);
    double total = 0;  // fixed-order sum: deterministic
    for (int64_t r = 0; r < R; r++) total += losses.data()[r];
    Tensor out = Tensor::scalar(count > 0 ? float(total / double(count)) : 0.0f);

    std::vector<int32_t> tg = targets;
    record(out, "cross_entropy", {logits}, [=](const Tensor& g) {
        Tensor dx = Tensor::empty(xc.shape());
        float scale = count > 0 ? g.item() / float(count) : 0.0f;
        crossentropy_backward(dx.data(), xc.data(), lse.data(), tg.data(), R, V, ignore_index, scale);
        return std::vector<Tensor>{dx};
    });
    return out;
}

// ---------------------------------------------------------------------------------------------
// embedding, dropout

Tensor embedding(const Tensor& weight, const std::vector<int32_t>& ids, const Shape& ids_shape) {
    HIPPO_CHECK(weight.defined() && weight.ndim() == 2, "embedding: weight must be (V, D), got %s",
                weight.defined() ? weight.shape().str().c_str() : "undefined");
    const int64_t V = weight.size(0), D = weight.size(1), N = ids_shape.numel();
    HIPPO_CHECK(int64_t(ids.size()) == N, "embedding: %zu ids for ids shape %s", ids.size(), ids_shape.str().c_str());
    for (int64_t n = 0; n < N; n++) {
        int32_t id = ids[size_t(n)];
        HIPPO_CHECK(id >= 0 && id < V, "embedding: id %d at position %lld is out of range for V=%lld", id,
                    (long long)n, (long long)V);
    }
    std::vector<int64_t> out_dims = ids_shape.vec();
    HIPPO_CHECK(out_dims.size() < size_t(kMaxDims), "embedding: ids shape %s has too many dims", ids_shape.str().c_str());
    out_dims.push_back(D);
    Tensor wc = data_of(weight);
    Tensor out = Tensor::empty(Shape(out_dims));
    const float* w = wc.data();
    float* o = out.data();
#pragma omp parallel for schedule(static) if (N * D > 65536)
    for (int64_t n = 0; n < N; n++) std::copy(w + ids[size_t(n)] * D, w + ids[size_t(n)] * D + D, o + n * D);

    std::vector<int32_t> idv = ids;
    record(out, "embedding", {weight}, [=](const Tensor& g) {
        Tensor gc = data_of(g);
        Tensor dw = Tensor::zeros(Shape{V, D});
        const float* gp = gc.data();
        float* d = dw.data();
        // Scatter-add without races: thread t owns the vocabulary rows with id % T == t and visits
        // the ids in order, so each row sums its contributions in id order whatever T is.
#pragma omp parallel if (N * D > 65536)
        {
            int T = 1, t = 0;
#ifdef _OPENMP
            T = omp_get_num_threads();
            t = omp_get_thread_num();
#endif
            for (int64_t n = 0; n < N; n++) {
                int32_t id = idv[size_t(n)];
                if (id % T != t) continue;
                float* dst = d + int64_t(id) * D;
                const float* src = gp + n * D;
#pragma omp simd
                for (int64_t j = 0; j < D; j++) dst[j] += src[j];
            }
        }
        return std::vector<Tensor>{dw};
    });
    return out;
}

Tensor dropout(const Tensor& x, float p, uint64_t seed, bool training, uint64_t index_offset) {
    HIPPO_CHECK(x.defined(), "dropout: undefined input");
    HIPPO_CHECK(p >= 0.0f && p < 1.0f, "dropout: p must be in [0, 1), got %g", double(p));
    if (!training || p == 0.0f) return x;
    const float scale = 1.0f / (1.0f - p);
    const int64_t n = x.numel();
    Tensor xc = data_of(x);
    Tensor out = Tensor::empty(x.shape());
    const float* xp = xc.data();
    float* o = out.data();
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) o[i] = hash_uniform(seed, index_offset + uint64_t(i)) >= p ? xp[i] * scale : 0.0f;

    record(out, "dropout", {x}, [=](const Tensor& g) {
        Tensor gc = data_of(g);
        Tensor dx = Tensor::empty(gc.shape());
        const float* gp = gc.data();
        float* d = dx.data();
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) d[i] = hash_uniform(seed, index_offset + uint64_t(i)) >= p ? gp[i] * scale : 0.0f;
        return std::vector<Tensor>{dx};
    });
    return out;
}

}  // namespace hippo
