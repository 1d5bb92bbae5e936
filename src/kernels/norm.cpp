#include "kernels/norm.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/simd.h"

namespace hippo {

// =============================================================================================
// Row primitives. Each works on one row of D contiguous floats; the kernels below are written in
// terms of them. AVX-512 versions keep several independent accumulators (to hide FMA / max
// latency) and finish the tail with a masked load; portable versions are plain loops.
// =============================================================================================
namespace {

#ifdef __AVX512F__

inline __mmask16 tail_mask(int64_t rem) { return __mmask16((1u << rem) - 1u); }

// exp(x) for 16 lanes: n = round(x log2 e), r = x - n ln2 (Cody-Waite, two constants), degree-6
// Taylor polynomial on |r| <= ln2/2 (truncation ~1.2e-7 relative), then 2^n by vscalefps, which
// also produces denormals and 0 / inf at the ends of the range. NaN passes through.
inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);  // NaN in x comes back as x (second operand)
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

inline float row_max(const float* x, int64_t D) {
    const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int64_t j = 0;
    for (; j + 64 <= D; j += 64) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + j));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + j + 16));
        m2 = _mm512_max_ps(m2, _mm512_loadu_ps(x + j + 32));
        m3 = _mm512_max_ps(m3, _mm512_loadu_ps(x + j + 48));
    }
    for (; j + 16 <= D; j += 16) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + j));
    if (j < D) m1 = _mm512_max_ps(m1, _mm512_mask_loadu_ps(ninf, tail_mask(D - j), x + j));
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

inline float row_sum(const float* x, int64_t D) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t j = 0;
    for (; j + 64 <= D; j += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + j));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + j + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(x + j + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(x + j + 48));
    }
    for (; j + 16 <= D; j += 16) s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + j));
    if (j < D) s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(tail_mask(D - j), x + j));
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

inline float row_dot(const float* a, const float* b, int64_t D) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t j = 0;
    for (; j + 64 <= D; j += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 16), _mm512_loadu_ps(b + j + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 32), _mm512_loadu_ps(b + j + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 48), _mm512_loadu_ps(b + j + 48), s3);
    }
    for (; j + 16 <= D; j += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s0);
    if (j < D) {
        __mmask16 m = tail_mask(D - j);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + j), _mm512_maskz_loadu_ps(m, b + j), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

// sum((x - c)^2)
inline float row_sqdev(const float* x, float c, int64_t D) {
    const __m512 vc = _mm512_set1_ps(c);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t j = 0;
    for (; j + 64 <= D; j += 64) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + j), vc), d1 = _mm512_sub_ps(_mm512_loadu_ps(x + j + 16), vc);
        __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(x + j + 32), vc), d3 = _mm512_sub_ps(_mm512_loadu_ps(x + j + 48), vc);
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
        s2 = _mm512_fmadd_ps(d2, d2, s2);
        s3 = _mm512_fmadd_ps(d3, d3, s3);
    }
    for (; j + 16 <= D; j += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + j), vc);
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    if (j < D) {
        __mmask16 m = tail_mask(D - j);
        __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + j), vc);
        s1 = _mm512_fmadd_ps(d, d, s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

// out = ((x - mean) * rstd) * w + b  (w, b may be nullptr)
inline void row_norm_affine(float* out, const float* x, float mean, float rstd, const float* w, const float* b,
                            int64_t D) {
    const __m512 vm = _mm512_set1_ps(mean), vr = _mm512_set1_ps(rstd);
    auto one = [&](int64_t j, __mmask16 m) {
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vm), vr);
        if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + j));
        if (b) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + j));
        _mm512_mask_storeu_ps(out + j, m, v);
    };
    int64_t j = 0;
    for (; j + 16 <= D; j += 16) one(j, __mmask16(0xFFFF));
    if (j < D) one(j, tail_mask(D - j));
}

// sum(exp(x - c)). pf: where the next rows start (prefetched into L2 while this row, already in
// cache, is busy with exps, so DRAM keeps streaming during the compute) or nullptr.
inline float row_exp_sum(const float* x, float c, int64_t D, const float* pf = nullptr) {
    const __m512 vc = _mm512_set1_ps(c);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int64_t j = 0;
    for (; j + 32 <= D; j += 32) {
        if (pf) {
            _mm_prefetch(reinterpret_cast<const char*>(pf + j), _MM_HINT_T1);
            _mm_prefetch(reinterpret_cast<const char*>(pf + j + 16), _MM_HINT_T1);
        }
        s0 = _mm512_add_ps(s0, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), vc)));
        s1 = _mm512_add_ps(s1, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j + 16), vc)));
    }
    for (; j + 16 <= D; j += 16) s0 = _mm512_add_ps(s0, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), vc)));
    if (j < D) {
        __mmask16 m = tail_mask(D - j);
        s1 = _mm512_add_ps(s1, _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vc))));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// out = exp(x - c); returns sum(out). pf as for row_exp_sum.
inline float row_exp_store_sum(float* out, const float* x, float c, int64_t D, const float* pf = nullptr) {
    const __m512 vc = _mm512_set1_ps(c);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int64_t j = 0;
    for (; j + 32 <= D; j += 32) {
        if (pf) {
            _mm_prefetch(reinterpret_cast<const char*>(pf + j), _MM_HINT_T1);
            _mm_prefetch(reinterpret_cast<const char*>(pf + j + 16), _MM_HINT_T1);
        }
        __m512 e0 = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), vc));
        __m512 e1 = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j + 16), vc));
        _mm512_storeu_ps(out + j, e0);
        _mm512_storeu_ps(out + j + 16, e1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
    }
    for (; j + 16 <= D; j += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), vc));
        _mm512_storeu_ps(out + j, e);
        s0 = _mm512_add_ps(s0, e);
    }
    if (j < D) {
        __mmask16 m = tail_mask(D - j);
        __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vc)));
        _mm512_mask_storeu_ps(out + j, m, e);
        s1 = _mm512_add_ps(s1, e);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// out = exp(x - c) * s
inline void row_exp_scale(float* out, const float* x, float c, float s, int64_t D) {
    const __m512 vc = _mm512_set1_ps(c), vs = _mm512_set1_ps(s);
    int64_t j = 0;
    for (; j + 16 <= D; j += 16)
        _mm512_storeu_ps(out + j, _mm512_mul_ps(exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), vc)), vs));
    if (j < D) {
        __mmask16 m = tail_mask(D - j);
        _mm512_mask_storeu_ps(out + j, m, _mm512_mul_ps(exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vc)), vs));
    }
}

// out = x * s
inline void row_scale(float* out, const float* x, float s, int64_t D) {
    const __m512 vs = _mm512_set1_ps(s);
    int64_t j = 0;
    for (; j + 16 <= D; j += 16) _mm512_storeu_ps(out + j, _mm512_mul_ps(_mm512_loadu_ps(x + j), vs));
    if (j < D) {
        __mmask16 m = tail_mask(D - j);
        _mm512_mask_storeu_ps(out + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + j), vs));
    }
}

// out = x + c
inline void row_add(float* out, const float* x, float c, int64_t D) {
    const __m512 vc = _mm512_set1_ps(c);
    int64_t j = 0;
    for (; j + 16 <= D; j += 16) _mm512_storeu_ps(out + j, _mm512_add_ps(_mm512_loadu_ps(x + j), vc));
    if (j < D) {
        __mmask16 m = tail_mask(D - j);
        _mm512_mask_storeu_ps(out + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + j), vc));
    }
}

// dx = y * (dy - c)
inline void row_softmax_bwd(float* dx, const float* dy, const float* y, float c, int64_t D) {
    const __m512 vc = _mm512_set1_ps(c);
    int64_t j = 0;
    for (; j + 16 <= D; j += 16)
        _mm512_storeu_ps(dx + j, _mm512_mul_ps(_mm512_loadu_ps(y + j), _mm512_sub_ps(_mm512_loadu_ps(dy + j), vc)));
    if (j < D) {
        __mmask16 m = tail_mask(D - j);
        _mm512_mask_storeu_ps(dx + j, m,
                              _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + j), _mm512_sub_ps(_mm512_maskz_loadu_ps(m, dy + j), vc)));
    }
}

// dx = dy - exp(y) * s
inline void row_logsoftmax_bwd(float* dx, const float* dy, const float* y, float s, int64_t D) {
    const __m512 vs = _mm512_set1_ps(s);
    int64_t j = 0;
    for (; j + 16 <= D; j += 16)
        _mm512_storeu_ps(dx + j, _mm512_fnmadd_ps(exp512(_mm512_loadu_ps(y + j)), vs, _mm512_loadu_ps(dy + j)));
    if (j < D) {
        __mmask16 m = tail_mask(D - j);
        _mm512_mask_storeu_ps(dx + j, m,
                              _mm512_fnmadd_ps(exp512(_mm512_maskz_loadu_ps(m, y + j)), vs, _mm512_maskz_loadu_ps(m, dy + j)));
    }
}

#else  // portable

inline float row_max(const float* x, int64_t D) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < D; j++) m = std::max(m, x[j]);
    return m;
}
inline float row_sum(const float* x, int64_t D) {
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < D; j++) s += x[j];
    return s;
}
inline float row_dot(const float* a, const float* b, int64_t D) {
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < D; j++) s += a[j] * b[j];
    return s;
}
inline float row_sqdev(const float* x, float c, int64_t D) {
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < D; j++) s += (x[j] - c) * (x[j] - c);
    return s;
}
inline void row_norm_affine(float* out, const float* x, float mean, float rstd, const float* w, const float* b,
                            int64_t D) {
    for (int64_t j = 0; j < D; j++) {
        float v = (x[j] - mean) * rstd;
        if (w) v *= w[j];
        if (b) v += b[j];
        out[j] = v;
    }
}
inline float row_exp_sum(const float* x, float c, int64_t D, const float* = nullptr) {
    float s = 0;
    for (int64_t j = 0; j < D; j++) s += std::exp(x[j] - c);
    return s;
}
inline float row_exp_store_sum(float* out, const float* x, float c, int64_t D, const float* = nullptr) {
    float s = 0;
    for (int64_t j = 0; j < D; j++) s += (out[j] = std::exp(x[j] - c));
    return s;
}
inline void row_exp_scale(float* out, const float* x, float c, float s, int64_t D) {
    for (int64_t j = 0; j < D; j++) out[j] = std::exp(x[j] - c) * s;
}
inline void row_scale(float* out, const float* x, float s, int64_t D) {
    for (int64_t j = 0; j < D; j++) out[j] = x[j] * s;
}
inline void row_add(float* out, const float* x, float c, int64_t D) {
    for (int64_t j = 0; j < D; j++) out[j] = x[j] + c;
}
inline void row_softmax_bwd(float* dx, const float* dy, const float* y, float c, int64_t D) {
    for (int64_t j = 0; j < D; j++) dx[j] = y[j] * (dy[j] - c);
}
inline void row_logsoftmax_bwd(float* dx, const float* dy, const float* y, float s, int64_t D) {
    for (int64_t j = 0; j < D; j++) dx[j] = dy[j] - std::exp(y[j]) * s;
}

#endif

// Prefetch target for row r's compute pass: the same offset about 16 KiB further on (at least
// one row), i.e. the rows this thread will read next. Used by the read-only cross-entropy forward,
// where it measured a little faster on (2048, 50304); softmax / log-softmax did not gain from it.
inline const float* prefetch_ahead(const float* xr, int64_t D) {
    int64_t rows = D >= 4096 ? 1 : (4096 + D - 1) / std::max<int64_t>(D, 1);
    return xr + rows * D;
}

}  // namespace

void vexp(float* out, const float* x, int64_t n) {
#ifdef __AVX512F__
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(out + j, exp512(_mm512_loadu_ps(x + j)));
    if (j < n) {
        __mmask16 m = tail_mask(n - j);
        _mm512_mask_storeu_ps(out + j, m, exp512(_mm512_maskz_loadu_ps(m, x + j)));
    }
#else
    for (int64_t j = 0; j < n; j++) out[j] = std::exp(x[j]);
#endif
}

// =============================================================================================
// Layer norm
// =============================================================================================

void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* weight,
                       const float* bias, int64_t R, int64_t D, float eps) {
    // Two passes over each row for the statistics (mean, then squared deviations: no catastrophic
    // cancellation) and one to write; the row stays in L1/L2, so DRAM sees one read + one write.
#pragma omp parallel for schedule(static) if (R * D > 4096)
    for (int64_t r = 0; r < R; r++) {
        const float* xr = x + r * D;
        float m = D > 0 ? row_sum(xr, D) / float(D) : 0.0f;
        float var = D > 0 ? row_sqdev(xr, m, D) / float(D) : 0.0f;
        float s = 1.0f / std::sqrt(var + eps);
        row_norm_affine(out + r * D, xr, m, s, weight, bias, D);
        if (mean) mean[r] = m;
        if (rstd) rstd[r] = s;
    }
}

void layernorm_forward_ref(float* out, float* mean, float* rstd, const float* x, const float* weight,
                           const float* bias, int64_t R, int64_t D, float eps) {
    for (int64_t r = 0; r < R; r++) {
        const float* xr = x + r * D;
        double m = 0, v = 0;
        for (int64_t j = 0; j < D; j++) m += xr[j];
        m = D > 0 ? m / double(D) : 0.0;
        for (int64_t j = 0; j < D; j++) v += (xr[j] - m) * (xr[j] - m);
        v = D > 0 ? v / double(D) : 0.0;
        double s = 1.0 / std::sqrt(v + eps);
        for (int64_t j = 0; j < D; j++) {
            double o = (xr[j] - m) * s;
            if (weight) o *= weight[j];
            if (bias) o += bias[j];
            out[r * D + j] = float(o);
        }
        if (mean) mean[r] = float(m);
        if (rstd) rstd[r] = float(s);
    }
}

// Sums the per-chunk partials part[c * stride + j] (c = 0..kNormChunks-1, in that order) into dst[j].
static void add_chunk_partials(float* dst, const float* part, int64_t stride, int64_t D) {
#pragma omp parallel for schedule(static) if (D * kNormChunks > 16384)
    for (int64_t j = 0; j < D; j++) {
        float s = 0;
        for (int64_t c = 0; c < kNormChunks; c++) s += part[c * stride + j];
        dst[j] += s;
    }
}

namespace {

// One row of the layer-norm backward. HW: weight present; HP: accumulate parameter partials.
// dnorm = dout * w; a = mean(dnorm), b = mean(dnorm * xhat); dx = (dnorm - a - xhat * b) * rstd.
#ifdef __AVX512F__
template <bool HW, bool HP>
inline void layernorm_backward_row(float* dxr, float* pw, float* pb, const float* gr, const float* xr,
                                   const float* w, float m, float s, int64_t D) {
    const __m512 vm = _mm512_set1_ps(m), vs = _mm512_set1_ps(s);
    __m512 va = _mm512_setzero_ps(), vb = _mm512_setzero_ps();
    for (int64_t j = 0; j < D; j += 16) {  // masked tail: g = 0 there, so it adds nothing
        __mmask16 k = D - j >= 16 ? __mmask16(0xFFFF) : tail_mask(D - j);
        __m512 dn = _mm512_maskz_loadu_ps(k, gr + j);
        if (HW) dn = _mm512_mul_ps(dn, _mm512_maskz_loadu_ps(k, w + j));
        __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + j), vm), vs);
        va = _mm512_add_ps(va, dn);
        vb = _mm512_fmadd_ps(dn, xh, vb);
    }
    const __m512 a = _mm512_set1_ps(_mm512_reduce_add_ps(va) / float(D));
    const __m512 b = _mm512_set1_ps(_mm512_reduce_add_ps(vb) / float(D));
    for (int64_t j = 0; j < D; j += 16) {
        __mmask16 k = D - j >= 16 ? __mmask16(0xFFFF) : tail_mask(D - j);
        __m512 g = _mm512_maskz_loadu_ps(k, gr + j);
        __m512 dn = HW ? _mm512_mul_ps(g, _mm512_maskz_loadu_ps(k, w + j)) : g;
        __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + j), vm), vs);
        __m512 dx = _mm512_mul_ps(_mm512_fnmadd_ps(xh, b, _mm512_sub_ps(dn, a)), vs);
        _mm512_mask_storeu_ps(dxr + j, k, dx);
        if (HP) {
            _mm512_mask_storeu_ps(pw + j, k, _mm512_fmadd_ps(g, xh, _mm512_maskz_loadu_ps(k, pw + j)));
            _mm512_mask_storeu_ps(pb + j, k, _mm512_add_ps(g, _mm512_maskz_loadu_ps(k, pb + j)));
        }
    }
}
#else
template <bool HW, bool HP>
inline void layernorm_backward_row(float* dxr, float* pw, float* pb, const float* gr, const float* xr,
                                   const float* w, float m, float s, int64_t D) {
    // dnorm = dout * w; a = mean(dnorm), b = mean(dnorm * xhat)
    float a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
    for (int64_t j = 0; j < D; j++) {
        float dn = HW ? gr[j] * w[j] : gr[j];
        a += dn;
        b += dn * ((xr[j] - m) * s);
    }
    a /= float(D);
    b /= float(D);
#pragma omp simd
    for (int64_t j = 0; j < D; j++) {
        float xh = (xr[j] - m) * s;
        float dn = HW ? gr[j] * w[j] : gr[j];
        dxr[j] = (dn - a - xh * b) * s;
        if (HP) {
            pw[j] += gr[j] * xh;
            pb[j] += gr[j];
        }
    }
}

#endif

template <bool HW, bool HP>
void layernorm_backward_impl(float* dx, float* scratch, const float* dout, const float* x, const float* weight,
                             const float* mean, const float* rstd, int64_t R, int64_t D) {
    if (!HP) {
#pragma omp parallel for schedule(static) if (R * D > 4096)
        for (int64_t r = 0; r < R; r++)
            layernorm_backward_row<HW, false>(dx + r * D, nullptr, nullptr, dout + r * D, x + r * D, weight,
                                              mean[r], rstd[r], D);
        return;
    }
    // Chunk c owns rows [c*chunk, (c+1)*chunk) and its own partial sums scratch[c*2D .. c*2D+2D):
    // [dweight | dbias]. The chunking does not depend on the thread count.
    const int64_t chunk = (R + kNormChunks - 1) / kNormChunks;
#pragma omp parallel for schedule(static) if (R * D > 4096)
    for (int64_t c = 0; c < kNormChunks; c++) {
        float* pw = scratch + c * 2 * D;
        float* pb = pw + D;
        std::fill_n(pw, 2 * D, 0.0f);
        int64_t r0 = std::min(R, c * chunk), r1 = std::min(R, r0 + chunk);
        for (int64_t r = r0; r < r1; r++)
            layernorm_backward_row<HW, true>(dx + r * D, pw, pb, dout + r * D, x + r * D, weight, mean[r], rstd[r], D);
    }
}

// One row of the RMS-norm backward: y = xhat * w, xhat = x * rstd;
// dx = rstd * (dn - xhat * mean(dn * xhat)), dn = dout * w.
#ifdef __AVX512F__
template <bool HW, bool HP>
inline void rmsnorm_backward_row(float* dxr, float* pw, const float* gr, const float* xr, const float* w, float s,
                                 int64_t D) {
    const __m512 vs = _mm512_set1_ps(s);
    __m512 vb = _mm512_setzero_ps();
    for (int64_t j = 0; j < D; j += 16) {
        __mmask16 k = D - j >= 16 ? __mmask16(0xFFFF) : tail_mask(D - j);
        __m512 dn = _mm512_maskz_loadu_ps(k, gr + j);
        if (HW) dn = _mm512_mul_ps(dn, _mm512_maskz_loadu_ps(k, w + j));
        vb = _mm512_fmadd_ps(dn, _mm512_maskz_loadu_ps(k, xr + j), vb);
    }
    const __m512 b = _mm512_set1_ps(_mm512_reduce_add_ps(vb) * s / float(D));
    for (int64_t j = 0; j < D; j += 16) {
        __mmask16 k = D - j >= 16 ? __mmask16(0xFFFF) : tail_mask(D - j);
        __m512 g = _mm512_maskz_loadu_ps(k, gr + j);
        __m512 dn = HW ? _mm512_mul_ps(g, _mm512_maskz_loadu_ps(k, w + j)) : g;
        __m512 xh = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, xr + j), vs);
        _mm512_mask_storeu_ps(dxr + j, k, _mm512_mul_ps(_mm512_fnmadd_ps(xh, b, dn), vs));
        if (HP) _mm512_mask_storeu_ps(pw + j, k, _mm512_fmadd_ps(g, xh, _mm512_maskz_loadu_ps(k, pw + j)));
    }
}
#else
template <bool HW, bool HP>
inline void rmsnorm_backward_row(float* dxr, float* pw, const float* gr, const float* xr, const float* w, float s,
                                 int64_t D) {
    float b = 0;
#pragma omp simd reduction(+ : b)
    for (int64_t j = 0; j < D; j++) b += (HW ? gr[j] * w[j] : gr[j]) * xr[j];
    b *= s / float(D);
#pragma omp simd
    for (int64_t j = 0; j < D; j++) {
        float xh = xr[j] * s;
        float dn = HW ? gr[j] * w[j] : gr[j];
        dxr[j] = (dn - xh * b) * s;
        if (HP) pw[j] += gr[j] * xh;
    }
}

#endif

template <bool HW, bool HP>
void rmsnorm_backward_impl(float* dx, float* scratch, const float* dout, const float* x, const float* weight,
                           const float* rstd, int64_t R, int64_t D) {
    if (!HP) {
#pragma omp parallel for schedule(static) if (R * D > 4096)
        for (int64_t r = 0; r < R; r++)
            rmsnorm_backward_row<HW, false>(dx + r * D, nullptr, dout + r * D, x + r * D, weight, rstd[r], D);
        return;
    }
    const int64_t chunk = (R + kNormChunks - 1) / kNormChunks;
#pragma omp parallel for schedule(static) if (R * D > 4096)
    for (int64_t c = 0; c < kNormChunks; c++) {
        float* pw = scratch + c * D;
        std::fill_n(pw, D, 0.0f);
        int64_t r0 = std::min(R, c * chunk), r1 = std::min(R, r0 + chunk);
        for (int64_t r = r0; r < r1; r++)
            rmsnorm_backward_row<HW, true>(dx + r * D, pw, dout + r * D, x + r * D, weight, rstd[r], D);
    }
}

}  // namespace

void layernorm_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                        const float* weight, const float* mean, const float* rstd, int64_t R, int64_t D,
                        float* scratch) {
    const bool hp = dweight || dbias;
    if (weight) {
        if (hp) layernorm_backward_impl<true, true>(dx, scratch, dout, x, weight, mean, rstd, R, D);
        else layernorm_backward_impl<true, false>(dx, scratch, dout, x, weight, mean, rstd, R, D);
    } else {
        if (hp) layernorm_backward_impl<false, true>(dx, scratch, dout, x, weight, mean, rstd, R, D);
        else layernorm_backward_impl<false, false>(dx, scratch, dout, x, weight, mean, rstd, R, D);
    }
    if (dweight) add_chunk_partials(dweight, scratch, 2 * D, D);
    if (dbias) add_chunk_partials(dbias, scratch + D, 2 * D, D);
}

void layernorm_backward_ref(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                            const float* weight, const float* mean, const float* rstd, int64_t R, int64_t D) {
    for (int64_t r = 0; r < R; r++) {
        const float* xr = x + r * D;
        const float* gr = dout + r * D;
        double a = 0, b = 0;
        for (int64_t j = 0; j < D; j++) {
            double xh = (double(xr[j]) - mean[r]) * rstd[r];
            double dn = double(gr[j]) * (weight ? weight[j] : 1.0);
            a += dn;
            b += dn * xh;
        }
        a /= double(D);
        b /= double(D);
        for (int64_t j = 0; j < D; j++) {
            double xh = (double(xr[j]) - mean[r]) * rstd[r];
            double dn = double(gr[j]) * (weight ? weight[j] : 1.0);
            dx[r * D + j] = float((dn - a - xh * b) * rstd[r]);
            if (dweight) dweight[j] += float(gr[j] * xh);
            if (dbias) dbias[j] += gr[j];
        }
    }
}

// =============================================================================================
// RMS norm
// =============================================================================================

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* weight, int64_t R, int64_t D,
                     float eps) {
#pragma omp parallel for schedule(static) if (R * D > 4096)
    for (int64_t r = 0; r < R; r++) {
        const float* xr = x + r * D;
        float ms = D > 0 ? row_dot(xr, xr, D) / float(D) : 0.0f;
        float s = 1.0f / std::sqrt(ms + eps);
        row_norm_affine(out + r * D, xr, 0.0f, s, weight, nullptr, D);
        if (rstd) rstd[r] = s;
    }
}

void rmsnorm_forward_ref(float* out, float* rstd, const float* x, const float* weight, int64_t R, int64_t D,
                         float eps) {
    for (int64_t r = 0; r < R; r++) {
        const float* xr = x + r * D;
        double ms = 0;
        for (int64_t j = 0; j < D; j++) ms += double(xr[j]) * xr[j];
        ms = D > 0 ? ms / double(D) : 0.0;
        double s = 1.0 / std::sqrt(ms + eps);
        for (int64_t j = 0; j < D; j++) out[r * D + j] = float(xr[j] * s * (weight ? weight[j] : 1.0));
        if (rstd) rstd[r] = float(s);
    }
}

void rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x, const float* weight,
                      const float* rstd, int64_t R, int64_t D, float* scratch) {
    if (weight) {
        if (dweight) rmsnorm_backward_impl<true, true>(dx, scratch, dout, x, weight, rstd, R, D);
        else rmsnorm_backward_impl<true, false>(dx, scratch, dout, x, weight, rstd, R, D);
    } else {
        if (dweight) rmsnorm_backward_impl<false, true>(dx, scratch, dout, x, weight, rstd, R, D);
        else rmsnorm_backward_impl<false, false>(dx, scratch, dout, x, weight, rstd, R, D);
    }
    if (dweight) add_chunk_partials(dweight, scratch, D, D);
}

void rmsnorm_backward_ref(float* dx, float* dweight, const float* dout, const float* x, const float* weight,
                          const float* rstd, int64_t R, int64_t D) {
    for (int64_t r = 0; r < R; r++) {
        const float* xr = x + r * D;
        const float* gr = dout + r * D;
        double b = 0;
        for (int64_t j = 0; j < D; j++) b += double(gr[j]) * (weight ? weight[j] : 1.0) * xr[j] * rstd[r];
        b /= double(D);
        for (int64_t j = 0; j < D; j++) {
            double xh = double(xr[j]) * rstd[r];
            double dn = double(gr[j]) * (weight ? weight[j] : 1.0);
            dx[r * D + j] = float((dn - xh * b) * rstd[r]);
            if (dweight) dweight[j] += float(gr[j] * xh);
        }
    }
}

// =============================================================================================
// Softmax / log-softmax
// =============================================================================================

void softmax_forward(float* out, const float* x, int64_t R, int64_t D) {
    // max (reads the row from memory), exp + store + sum (row now in L1/L2), scale in place.
#pragma omp parallel for schedule(static) if (R * D > 4096)
    for (int64_t r = 0; r < R; r++) {
        const float* xr = x + r * D;
        float* o = out + r * D;
        float m = row_max(xr, D);
        float s = row_exp_store_sum(o, xr, m, D);
        row_scale(o, o, 1.0f / s, D);
    }
}

void softmax_forward_ref(float* out, const float* x, int64_t R, int64_t D) {
    for (int64_t r = 0; r < R; r++) {
        const float* xr = x + r * D;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < D; j++) m = std::max(m, double(xr[j]));
        for (int64_t j = 0; j < D; j++) s += std::exp(double(xr[j]) - m);
        for (int64_t j = 0; j < D; j++) out[r * D + j] = float(std::exp(double(xr[j]) - m) / s);
    }
}

void softmax_backward(float* dx, const float* dy, const float* y, int64_t R, int64_t D) {
#pragma omp parallel for schedule(static) if (R * D > 4096)
    for (int64_t r = 0; r < R; r++) {
        float c = row_dot(dy + r * D, y + r * D, D);
        row_softmax_bwd(dx + r * D, dy + r * D, y + r * D, c, D);
    }
}

void softmax_backward_ref(float* dx, const float* dy, const float* y, int64_t R, int64_t D) {
    for (int64_t r = 0; r < R; r++) {
        double c = 0;
        for (int64_t j = 0; j < D; j++) c += double(dy[r * D + j]) * y[r * D + j];
        for (int64_t j = 0; j < D; j++) dx[r * D + j] = float(y[r * D + j] * (dy[r * D + j] - c));
    }
}

void logsoftmax_forward(float* out, const float* x, int64_t R, int64_t D) {
#pragma omp parallel for schedule(static) if (R * D > 4096)
    for (int64_t r = 0; r < R; r++) {
        const float* xr = x + r * D;
        float m = row_max(xr, D);
        float s = row_exp_sum(xr, m, D);
        row_add(out + r * D, xr, -(m + std::log(s)), D);
    }
}

void logsoftmax_forward_ref(float* out, const float* x, int64_t R, int64_t D) {
    for (int64_t r = 0; r < R; r++) {
        const float* xr = x + r * D;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < D; j++) m = std::max(m, double(xr[j]));
        for (int64_t j = 0; j < D; j++) s += std::exp(double(xr[j]) - m);
        double lse = m + std::log(s);
        for (int64_t j = 0; j < D; j++) out[r * D + j] = float(xr[j] - lse);
    }
}

void logsoftmax_backward(float* dx, const float* dy, const float* y, int64_t R, int64_t D) {
#pragma omp parallel for schedule(static) if (R * D > 4096)
    for (int64_t r = 0; r < R; r++) {
        float s = row_sum(dy + r * D, D);
        row_logsoftmax_bwd(dx + r * D, dy + r * D, y + r * D, s, D);
    }
}

void logsoftmax_backward_ref(float* dx, const float* dy, const float* y, int64_t R, int64_t D) {
    for (int64_t r = 0; r < R; r++) {
        double s = 0;
        for (int64_t j = 0; j < D; j++) s += dy[r * D + j];
        for (int64_t j = 0; j < D; j++) dx[r * D + j] = float(dy[r * D + j] - std::exp(double(y[r * D + j])) * s);
    }
}

// =============================================================================================
// Cross-entropy
// =============================================================================================

int64_t crossentropy_forward(float* losses, float* lse, const float* logits, const int32_t* targets, int64_t R,
                             int64_t V, int32_t ignore_index) {
    int64_t count = 0;
#pragma omp parallel for schedule(static) reduction(+ : count) if (R * V > 4096)
    for (int64_t r = 0; r < R; r++) {
        if (targets[r] == ignore_index) {
            losses[r] = 0.0f;
            lse[r] = 0.0f;
            continue;
        }
        const float* xr = logits + r * V;
        float m = row_max(xr, V);
        float l = m + std::log(row_exp_sum(xr, m, V, r + 1 < R ? prefetch_ahead(xr, V) : nullptr));
        lse[r] = l;
        losses[r] = l - xr[targets[r]];
        count++;
    }
    return count;
}

int64_t crossentropy_forward_ref(float* losses, float* lse, const float* logits, const int32_t* targets,
                                 int64_t R, int64_t V, int32_t ignore_index) {
    int64_t count = 0;
    for (int64_t r = 0; r < R; r++) {
        if (targets[r] == ignore_index) {
            losses[r] = lse[r] = 0.0f;
            continue;
        }
        const float* xr = logits + r * V;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < V; j++) m = std::max(m, double(xr[j]));
        for (int64_t j = 0; j < V; j++) s += std::exp(double(xr[j]) - m);
        double l = m + std::log(s);
        lse[r] = float(l);
        losses[r] = float(l - xr[targets[r]]);
        count++;
    }
    return count;
}

void crossentropy_backward(float* dlogits, const float* logits, const float* lse, const int32_t* targets,
                           int64_t R, int64_t V, int32_t ignore_index, float scale) {
#pragma omp parallel for schedule(static) if (R * V > 4096)
    for (int64_t r = 0; r < R; r++) {
        float* d = dlogits + r * V;
        if (targets[r] == ignore_index) {
            std::fill_n(d, V, 0.0f);
            continue;
        }
        row_exp_scale(d, logits + r * V, lse[r], scale, V);
        d[targets[r]] -= scale;
    }
}

void crossentropy_backward_ref(float* dlogits, const float* logits, const float* lse, const int32_t* targets,
                               int64_t R, int64_t V, int32_t ignore_index, float scale) {
    for (int64_t r = 0; r < R; r++) {
        for (int64_t j = 0; j < V; j++) {
            double v = 0;
            if (targets[r] != ignore_index)
                v = (std::exp(double(logits[r * V + j]) - lse[r]) - (j == targets[r] ? 1.0 : 0.0)) * scale;
            dlogits[r * V + j] = float(v);
        }
    }
}

}  // namespace hippo
