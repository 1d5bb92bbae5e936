#include "autograd/ops_attention.h"

#include <cmath>
#include <cstring>

#include "common/check.h"

namespace hippo {

namespace {

void check_blhd(const Tensor& t, const char* what, const char* op) {
    HIPPO_CHECK(t.defined() && t.ndim() == 4, "%s: %s must be (B, L, H, Dh), got %s", op, what,
                t.defined() ? t.shape().str().c_str() : "undefined");
}

Tensor bhld(const Tensor& x) {
    Tensor t = Tensor::empty({x.size(0), x.size(2), x.size(1), x.size(3)});
    copy_blhd_to_bhld(t.data(), x);
    return t;
}

}  // namespace

void copy_blhd_to_bhld(float* dst, const Tensor& x_in) {
    Tensor x = x_in.stride(3) == 1 ? x_in : x_in.contiguous();
    const int64_t B = x.size(0), L = x.size(1), H = x.size(2), D = x.size(3);
    const int64_t sb = x.stride(0), sl = x.stride(1), sh = x.stride(2);
    const float* src = x.data();
#pragma omp parallel for collapse(2) schedule(static) if (B * L * H * D > 65536)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t l = 0; l < L; l++)
                std::memcpy(dst + ((b * H + h) * L + l) * D, src + b * sb + l * sl + h * sh, size_t(D) * sizeof(float));
}

Tensor bhld_to_blhd(const float* src, int64_t B, int64_t H, int64_t L, int64_t D) {
    Tensor y = Tensor::empty({B, L, H, D});
    float* dst = y.data();
#pragma omp parallel for collapse(2) schedule(static) if (B * L * H * D > 65536)
    for (int64_t b = 0; b < B; b++)
        for (int64_t l = 0; l < L; l++)
            for (int64_t h = 0; h < H; h++)
                std::memcpy(dst + ((b * L + l) * H + h) * D, src + ((b * H + h) * L + l) * D, size_t(D) * sizeof(float));
    return y;
}

Tensor attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const AttentionOptions& opt) {
    return attention(q_in, k_in, v_in, Tensor(), opt);
}

Tensor attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& rel_bias_in,
                 const AttentionOptions& opt) {
    const char* op = "attention";
    check_blhd(q_in, "q", op);
    check_blhd(k_in, "k", op);
    check_blhd(v_in, "v", op);
    const int64_t B = q_in.size(0), Lq = q_in.size(1), H = q_in.size(2), D = q_in.size(3), Lk = k_in.size(1),
                  Dv = v_in.size(3);
    HIPPO_CHECK(k_in.size(0) == B && k_in.size(2) == H && k_in.size(3) == D && v_in.size(0) == B &&
                    v_in.size(1) == Lk && v_in.size(2) == H,
                "%s: q %s, k %s, v %s do not match", op, q_in.shape().str().c_str(), k_in.shape().str().c_str(),
                v_in.shape().str().c_str());
    HIPPO_CHECK(opt.key_mask.empty() || int64_t(opt.key_mask.size()) == B * Lk,
                "%s: key mask has %zu entries, expected B*Lk = %lld", op, opt.key_mask.size(), (long long)(B * Lk));
    const bool has_bias = rel_bias_in.defined();
    HIPPO_CHECK(!has_bias || (rel_bias_in.ndim() == 1 && rel_bias_in.numel() >= 1),
                "%s: the relative position bias must be a vector, got %s", op, rel_bias_in.shape().str().c_str());
    AttnShape s{B, H, Lq, Lk, D};
    s.Dv = Dv;
    Tensor q = bhld(q_in), k = bhld(k_in), v = bhld(v_in);
    Tensor rb = has_bias ? rel_bias_in.contiguous() : Tensor();
    Tensor o = Tensor::empty({B, H, Lq, Dv}), lse = Tensor::empty({B, H, Lq});
    // Options captured by value (key mask and block mask kept alive for the backward).
    auto keep = std::make_shared<AttentionOptions>(opt);
    auto params = [keep, rb]() {
        AttnParams p;
        p.causal = keep->causal;
        p.scale = keep->scale;
        p.key_mask = keep->key_mask.empty() ? nullptr : keep->key_mask.data();
        p.dropout_p = keep->training ? keep->dropout_p : 0.0f;
        p.dropout_seed = keep->dropout_seed;
        p.dropout_batch_offset = keep->dropout_batch_offset;
        p.block_mask = keep->block_mask.get();
        p.fn = keep->fn;
        p.scale_by_key_count = keep->scale_by_key_count;
        if (rb.defined()) {
            p.rel_bias = rb.data();
            p.rel_bias_center = keep->rel_bias_center;
            p.rel_bias_len = rb.numel();
        }
        return p;
    };
    AttnParams p = params();
    if (opt.materialized) attention_forward_ref(o.data(), lse.data(), q.data(), k.data(), v.data(), s, p);
    else attention_forward_tiled(o.data(), lse.data(), q.data(), k.data(), v.data(), s, p);
    Tensor y = bhld_to_blhd(o.data(), B, H, Lq, Dv);
    record(y, op, {q_in, k_in, v_in, rel_bias_in}, [q, k, v, o, lse, s, params, keep, rb](const Tensor& g_in) {
        Tensor g = bhld(g_in);
        Tensor dq = Tensor::empty(q.shape()), dk = Tensor::empty(k.shape()), dv = Tensor::empty(v.shape());
        Tensor drb = rb.defined() ? Tensor::zeros(rb.shape()) : Tensor();
        AttnParams p = params();
        float* pdrb = drb.defined() ? drb.data() : nullptr;
        if (keep->materialized)
            attention_backward_ref(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(), v.data(), s, p, pdrb);
        else
            attention_backward_tiled(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(), v.data(),
                                     o.data(), lse.data(), s, p, pdrb);
        return std::vector<Tensor>{bhld_to_blhd(dq.data(), s.B, s.H, s.Lq, s.D),
                                   bhld_to_blhd(dk.data(), s.B, s.H, s.Lk, s.D),
                                   bhld_to_blhd(dv.data(), s.B, s.H, s.Lk, s.Dv), drb};
    });
    return y;
}

Tensor linear_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, bool causal) {
    const char* op = "linear_attention";
    check_blhd(q_in, "q", op);
    check_blhd(k_in, "k", op);
    check_blhd(v_in, "v", op);
    const int64_t B = q_in.size(0), L = q_in.size(1), H = q_in.size(2), Dk = q_in.size(3), Dv = v_in.size(3);
    HIPPO_CHECK(k_in.shape() == q_in.shape() && v_in.size(0) == B && v_in.size(1) == L && v_in.size(2) == H,
                "%s: q %s, k %s, v %s do not match", op, q_in.shape().str().c_str(), k_in.shape().str().c_str(),
                v_in.shape().str().c_str());
    LinAttnShape s{B, H, L, Dk, Dv};
    Tensor q = bhld(q_in), k = bhld(k_in), v = bhld(v_in);
    Tensor o = Tensor::empty({B, H, L, Dv});
    linear_attention_forward(o.data(), q.data(), k.data(), v.data(), s, causal);
    Tensor y = bhld_to_blhd(o.data(), B, H, L, Dv);
    record(y, op, {q_in, k_in, v_in}, [q, k, v, o, s, causal](const Tensor& g_in) {
        Tensor g = bhld(g_in);
        Tensor dq = Tensor::empty(q.shape()), dk = Tensor::empty(k.shape()), dv = Tensor::empty(v.shape());
        linear_attention_backward(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(), v.data(), o.data(),
                                  s, causal);
        return std::vector<Tensor>{bhld_to_blhd(dq.data(), s.B, s.H, s.L, s.Dk),
                                   bhld_to_blhd(dk.data(), s.B, s.H, s.L, s.Dk),
                                   bhld_to_blhd(dv.data(), s.B, s.H, s.L, s.Dv)};
    });
    return y;
}

namespace {
// y = rotate(x, sign * angle), x and y contiguous (B, L, H, D)
void rotary_apply(float* y, const float* x, const std::vector<float>& cs, const std::vector<float>& sn, int64_t B,
                  int64_t L, int64_t H, int64_t D, int64_t rd, float sign) {
    const int64_t half = rd / 2;
#pragma omp parallel for collapse(2) schedule(static) if (B * L * H * D > 65536)
    for (int64_t b = 0; b < B; b++)
        for (int64_t l = 0; l < L; l++)
            for (int64_t h = 0; h < H; h++) {
                const float* xr = x + ((b * L + l) * H + h) * D;
                float* yr = y + ((b * L + l) * H + h) * D;
                const float* c = cs.data() + l * half;
                const float* s = sn.data() + l * half;
                for (int64_t i = 0; i < half; i++) {
                    float x1 = xr[i], x2 = xr[i + half], si = sign * s[i];
                    yr[i] = x1 * c[i] - x2 * si;
                    yr[i + half] = x2 * c[i] + x1 * si;
                }
                for (int64_t i = rd; i < D; i++) yr[i] = xr[i];
            }
}
}  // namespace

Tensor rotary(const Tensor& x_in, int64_t rotary_dim, float base, int64_t position_offset) {
    const char* op = "rotary";
    check_blhd(x_in, "x", op);
    const int64_t B = x_in.size(0), L = x_in.size(1), H = x_in.size(2), D = x_in.size(3);
    HIPPO_CHECK(rotary_dim >= 0 && rotary_dim % 2 == 0 && rotary_dim <= D,
                "%s: rotary_dim %lld must be even and <= head dim %lld", op, (long long)rotary_dim, (long long)D);
    HIPPO_CHECK(position_offset >= 0, "%s: negative position offset", op);
    const int64_t half = rotary_dim / 2;
    std::vector<float> cs(size_t(L * half)), sn(size_t(L * half));
    for (int64_t i = 0; i < half; i++) {
        const double inv = 1.0 / std::pow(double(base), double(2 * i) / double(rotary_dim));
        for (int64_t l = 0; l < L; l++) {
            const double a = double(position_offset + l) * inv;
            cs[size_t(l * half + i)] = float(std::cos(a));
            sn[size_t(l * half + i)] = float(std::sin(a));
        }
    }
    Tensor x = x_in.contiguous();
    Tensor y = Tensor::empty(x.shape());
    rotary_apply(y.data(), x.data(), cs, sn, B, L, H, D, rotary_dim, 1.0f);
    record(y, op, {x_in}, [cs, sn, B, L, H, D, rotary_dim](const Tensor& g_in) {
        Tensor g = g_in.contiguous();
        Tensor dx = Tensor::empty(g.shape());
        rotary_apply(dx.data(), g.data(), cs, sn, B, L, H, D, rotary_dim, -1.0f);
        return std::vector<Tensor>{dx};
    });
    return y;
}

}  // namespace hippo
