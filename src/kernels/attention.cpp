#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/alloc.h"
#include "common/check.h"
#include "common/rng.h"

#include "common/simd.h"
#ifdef __AVX512F__

#include "kernels/simd_math.h"
#endif

// GCC 12 reports its own _mm512_undefined_ps() (inside the AVX-512 intrinsics) as uninitialised.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

namespace hippo {

namespace {

inline size_t sz(int64_t n) { return size_t(n); }
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int64_t kTile = 64;  // queries per tile and keys per tile (4 vectors of 16 lanes)

int max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// ---------------------------------------------------------------------------------------------
// 16-lane vector abstraction: AVX-512 registers, or plain arrays the compiler may vectorise.

#ifdef __AVX512F__
using V = __m512;
inline V vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, V x) { _mm512_storeu_ps(p, x); }
inline V vset(float x) { return _mm512_set1_ps(x); }
inline V vzero() { return _mm512_setzero_ps(); }
inline V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
inline V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
inline V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
inline V vmax(V a, V b) { return _mm512_max_ps(a, b); }
// e^x for x <= 0 (attention arguments); exactly 0 below -87 (so e^-inf = 0, masked weights vanish).
inline V vexp_neg(V x) {
    __mmask16 live = _mm512_cmp_ps_mask(x, vset(-87.0f), _CMP_GE_OQ);
    return _mm512_maskz_mov_ps(live, simd::v_exp(x));
}
#else
struct V {
    float f[16];
};
inline V vload(const float* p) {
    V r;
    for (int i = 0; i < 16; i++) r.f[i] = p[i];
    return r;
}
inline void vstore(float* p, V x) {
    for (int i = 0; i < 16; i++) p[i] = x.f[i];
}
inline V vset(float x) {
    V r;
    for (int i = 0; i < 16; i++) r.f[i] = x;
    return r;
}
inline V vzero() { return vset(0.0f); }
inline V vfma(V a, V b, V c) {
    for (int i = 0; i < 16; i++) c.f[i] = a.f[i] * b.f[i] + c.f[i];
    return c;
}
inline V vmul(V a, V b) {
    for (int i = 0; i < 16; i++) a.f[i] *= b.f[i];
    return a;
}
inline V vadd(V a, V b) {
    for (int i = 0; i < 16; i++) a.f[i] += b.f[i];
    return a;
}
inline V vsub(V a, V b) {
    for (int i = 0; i < 16; i++) a.f[i] -= b.f[i];
    return a;
}
inline V vmax(V a, V b) {
    for (int i = 0; i < 16; i++) a.f[i] = std::max(a.f[i], b.f[i]);
    return a;
}
inline V vexp_neg(V x) {
    for (int i = 0; i < 16; i++) x.f[i] = x.f[i] < -87.0f ? 0.0f : std::exp(x.f[i]);
    return x;
}
#endif

// ---------------------------------------------------------------------------------------------
// Element-wise attention functions on 16 lanes: returns f(x); with dfx also f'(x).
// laplace(x) = Phi(y), y = (x - mu) / sigma, and f'(x) = Phi'(y) / sigma = sqrt2 e^{-y^2/2}
// (sigma sqrt(2 pi) = sqrt(1/2)). AVX-512: simd_math.h's v_norm_cdf and v_exp; AVX2: the same
// polynomials in 8-lane intrinsics (~1e-7 absolute); otherwise std::erfc / std::exp per lane.

constexpr double kLapMu = 0.70710678118654752440;       // sqrt(1/2)
constexpr double kLapInvSigma = 3.54490770181103205460;  // 1 / sqrt(1/(4 pi))
constexpr double kSqrt2 = 1.41421356237309504880;

#ifdef __AVX512F__
inline V vlaplace(V x, V* dfx) {
    V y = vmul(vsub(x, vset(float(kLapMu))), vset(float(kLapInvSigma)));
    if (dfx) *dfx = vmul(vset(float(kSqrt2)), simd::v_exp(vmul(vset(-0.5f), vmul(y, y))));
    return simd::v_norm_cdf(y);
}
#elif defined(__AVX2__) && defined(__FMA__)
// Two 8-lane halves with the polynomials of simd_math.h (written out with AVX2 intrinsics: GCC
// does not vectorise the plain loop, whose compares are not if-converted under trapping math).
inline __m256 v8_exp(__m256 x) {  // e^x, x clamped to [-87, 88] so that 2^n stays a normal float
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(0.000198264956f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.00139460212f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.00833342969f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.0416662693f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.166666657f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    const __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
// Phi(y) = 1/2 + z erf_ratio(z^2) / 2 for |z| < 1 (z = y / sqrt2), else the erfc tail
// R(1/a) e^{-a^2} / (2a) (a = |z|), reflected for z > 0; e^{-z^2} is also f' / sqrt2.
inline __m256 v8_laplace(__m256 x, __m256* dfx) {
    const __m256 y =
        _mm256_mul_ps(_mm256_sub_ps(x, _mm256_set1_ps(float(kLapMu))), _mm256_set1_ps(float(kLapInvSigma)));
    const __m256 z = _mm256_mul_ps(y, _mm256_set1_ps(0.70710678118654752f));
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), z), s2 = _mm256_mul_ps(z, z);
    __m256 ps = _mm256_set1_ps(7.89820988e-05f);
    ps = _mm256_fmadd_ps(ps, s2, _mm256_set1_ps(-0.000802435388f));
    ps = _mm256_fmadd_ps(ps, s2, _mm256_set1_ps(0.00519005349f));
    ps = _mm256_fmadd_ps(ps, s2, _mm256_set1_ps(-0.0268548094f));
    ps = _mm256_fmadd_ps(ps, s2, _mm256_set1_ps(0.112836123f));
    ps = _mm256_fmadd_ps(ps, s2, _mm256_set1_ps(-0.376126289f));
    ps = _mm256_fmadd_ps(ps, s2, _mm256_set1_ps(1.12837923f));
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(z, ps), half, half);
    const __m256 e = v8_exp(_mm256_sub_ps(_mm256_setzero_ps(), s2));
    const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                                   _mm256_min_ps(_mm256_set1_ps(10.0f), _mm256_max_ps(_mm256_set1_ps(1.0f), a)));
    __m256 pt = _mm256_set1_ps(-0.033122927f);
    pt = _mm256_fmadd_ps(pt, t, _mm256_set1_ps(0.245830253f));
    pt = _mm256_fmadd_ps(pt, t, _mm256_set1_ps(-0.793317795f));
    pt = _mm256_fmadd_ps(pt, t, _mm256_set1_ps(1.44877744f));
    pt = _mm256_fmadd_ps(pt, t, _mm256_set1_ps(-1.59908128f));
    pt = _mm256_fmadd_ps(pt, t, _mm256_set1_ps(0.98142302f));
    pt = _mm256_fmadd_ps(pt, t, _mm256_set1_ps(-0.119446978f));
    pt = _mm256_fmadd_ps(pt, t, _mm256_set1_ps(-0.266588539f));
    pt = _mm256_fmadd_ps(pt, t, _mm256_set1_ps(-0.00111279509f));
    pt = _mm256_fmadd_ps(pt, t, _mm256_set1_ps(0.56422317f));
    const __m256 tail = _mm256_mul_ps(_mm256_mul_ps(half, pt), _mm256_mul_ps(t, e));  // Phi(-|y|), |z| >= 1
    const __m256 big = _mm256_blendv_ps(tail, _mm256_sub_ps(_mm256_set1_ps(1.0f), tail),
                                        _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GT_OQ));
    if (dfx) *dfx = _mm256_mul_ps(_mm256_set1_ps(float(kSqrt2)), e);
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, _mm256_set1_ps(1.0f), _CMP_LT_OQ));
}
inline V vlaplace(V x, V* dfx) {
    V out;
    __m256 d0, d1;
    _mm256_storeu_ps(out.f, v8_laplace(_mm256_loadu_ps(x.f), dfx ? &d0 : nullptr));
    _mm256_storeu_ps(out.f + 8, v8_laplace(_mm256_loadu_ps(x.f + 8), dfx ? &d1 : nullptr));
    if (dfx) {
        _mm256_storeu_ps(dfx->f, d0);
        _mm256_storeu_ps(dfx->f + 8, d1);
    }
    return out;
}
#else
inline V vlaplace(V x, V* dfx) {
    for (int l = 0; l < 16; l++) {
        const float y = (x.f[l] - float(kLapMu)) * float(kLapInvSigma);
        if (dfx) dfx->f[l] = float(kSqrt2) * std::exp(-0.5f * y * y);
        x.f[l] = 0.5f * std::erfc(-y * 0.70710678118654752f);
    }
    return x;
}
#endif

inline V vrelu2(V x, V* dfx) {
    V m = vmax(x, vzero());
    if (dfx) *dfx = vadd(m, m);
    return vmul(m, m);
}

inline V vattn_fn(AttnFn fn, V x, V* dfx) { return fn == AttnFn::laplace ? vlaplace(x, dfx) : vrelu2(x, dfx); }

// One 64-lane tile row: row += add, row *= c.
inline void row_add(float* row, const float* add) {
    for (int vv = 0; vv < 4; vv++) vstore(row + 16 * vv, vadd(vload(row + 16 * vv), vload(add + 16 * vv)));
}
inline void row_scale(float* row, float c) {
    const V cv = vset(c);
    for (int vv = 0; vv < 4; vv++) vstore(row + 16 * vv, vmul(vload(row + 16 * vv), cv));
}

// The same in double for the references.
inline double attn_fn_d(AttnFn fn, double x) {
    if (fn == AttnFn::laplace) return 0.5 * std::erfc(-(x - kLapMu) * kLapInvSigma / kSqrt2);
    const double m = std::max(x, 0.0);
    return m * m;
}
inline double attn_dfn_d(AttnFn fn, double x) {
    if (fn == AttnFn::laplace) {
        const double y = (x - kLapMu) * kLapInvSigma;
        return kSqrt2 * std::exp(-0.5 * y * y);
    }
    return 2.0 * std::max(x, 0.0);
}

// ---------------------------------------------------------------------------------------------
// Register-blocked micro-kernel. C is MR rows of NV*16 lanes (row stride ldc):
//   MODE 0:  C[r][:]  = sum_{k<K} A[r*ars + k*aks] * B[k*ldb + :]
//   MODE 1:  C[r][:] += ...
//   MODE 2:  C[r][:]  = C[r][:] * alpha[:] + ...   (alpha: NV vectors, per lane)
// A is read by scalar broadcasts, B by unit-stride vector loads, so every use below is a chain of
// FMAs on MR*NV accumulators (24 when NV = 4: 6 rows x 64 lanes).

template <int MR, int NV, int MODE>
inline void mk(float* C, int64_t ldc, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb,
               int64_t K, const V* alpha) {
    V acc[MR][NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) {
            if constexpr (MODE == 0) acc[r][v] = vzero();
            else if constexpr (MODE == 1) acc[r][v] = vload(C + r * ldc + 16 * v);
            else acc[r][v] = vmul(vload(C + r * ldc + 16 * v), alpha[v]);
        }
    for (int64_t k = 0; k < K; k++) {
        V b[NV];
        for (int v = 0; v < NV; v++) b[v] = vload(B + k * ldb + 16 * v);
        const float* a = A + k * aks;
        for (int r = 0; r < MR; r++) {
            V ar = vset(a[r * ars]);
            for (int v = 0; v < NV; v++) acc[r][v] = vfma(ar, b[v], acc[r][v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) vstore(C + r * ldc + 16 * v, acc[r][v]);
}

template <int M, int NV, int MODE>
inline void mk_tail(int64_t rem, float* C, int64_t ldc, const float* A, int64_t ars, int64_t aks, const float* B,
                    int64_t ldb, int64_t K, const V* alpha) {
    if constexpr (M > 0) {
        if (rem == M) mk<M, NV, MODE>(C, ldc, A, ars, aks, B, ldb, K, alpha);
        else mk_tail<M - 1, NV, MODE>(rem, C, ldc, A, ars, aks, B, ldb, K, alpha);
    }
}

template <int NV>
constexpr int rows_for() {
    return NV == 4 ? 6 : NV == 3 ? 8 : 8;
}

// R rows of NV*16 lanes.
template <int NV, int MODE>
void panel(float* C, int64_t ldc, int64_t R, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb,
           int64_t K, const V* alpha) {
    constexpr int MR = rows_for<NV>();
    int64_t r = 0;
    for (; r + MR <= R; r += MR) mk<MR, NV, MODE>(C + r * ldc, ldc, A + r * ars, ars, aks, B, ldb, K, alpha);
    if (r < R) mk_tail<MR - 1, NV, MODE>(R - r, C + r * ldc, ldc, A + r * ars, ars, aks, B, ldb, K, alpha);
}

// Any width W (multiple of 16): chunks of 64 lanes.
template <int MODE>
void panel_wide(float* C, int64_t ldc, int64_t R, const float* A, int64_t ars, int64_t aks, const float* B,
                int64_t ldb, int64_t K, int64_t W) {
    for (int64_t w0 = 0; w0 < W; w0 += 64) {
        int64_t nv = std::min<int64_t>(4, (W - w0) / 16);
        switch (nv) {
            case 4: panel<4, MODE>(C + w0, ldc, R, A, ars, aks, B + w0, ldb, K, nullptr); break;
            case 3: panel<3, MODE>(C + w0, ldc, R, A, ars, aks, B + w0, ldb, K, nullptr); break;
            case 2: panel<2, MODE>(C + w0, ldc, R, A, ars, aks, B + w0, ldb, K, nullptr); break;
            default: panel<1, MODE>(C + w0, ldc, R, A, ars, aks, B + w0, ldb, K, nullptr); break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Masks

float resolve_scale(float scale, int64_t D) { return scale > 0 ? scale : float(1.0 / std::sqrt(double(D))); }

enum class Tile { empty, full, partial };

struct MaskCtx {
    const AttnShape& s;
    const AttnParams& p;
    int64_t off;  // Lk - Lq (causal alignment)
};

Tile classify(const MaskCtx& c, int64_t b, int64_t h, int64_t i0, int64_t nq, int64_t j0, int64_t nk) {
    bool partial = false;
    if (c.p.causal) {
        if (j0 > i0 + nq - 1 + c.off) return Tile::empty;
        if (j0 + nk - 1 > i0 + c.off) partial = true;
    }
    if (c.p.key_mask) {
        const uint8_t* km = c.p.key_mask + b * c.s.Lk + j0;
        int64_t valid = 0;
        for (int64_t j = 0; j < nk; j++) valid += km[j] != 0;
        if (valid == 0) return Tile::empty;
        if (valid < nk) partial = true;
    }
    if (const BlockMask* bm = c.p.block_mask) {
        int64_t bi0 = i0 / bm->block_q, bi1 = (i0 + nq - 1) / bm->block_q;
        int64_t bj0 = j0 / bm->block_k, bj1 = (j0 + nk - 1) / bm->block_k;
        int64_t act = 0;
        for (int64_t bi = bi0; bi <= bi1; bi++)
            for (int64_t bj = bj0; bj <= bj1; bj++) act += bm->active(h, bi, bj);
        if (act == 0) return Tile::empty;
        if (act < (bi1 - bi0 + 1) * (bj1 - bj0 + 1)) partial = true;
    }
    return partial ? Tile::partial : Tile::full;
}

inline bool allowed(const MaskCtx& c, int64_t b, int64_t h, int64_t i, int64_t j) {
    if (c.p.causal && j > i + c.off) return false;
    if (c.p.key_mask && !c.p.key_mask[b * c.s.Lk + j]) return false;
    if (const BlockMask* bm = c.p.block_mask)
        if (!bm->active(h, i / bm->block_q, j / bm->block_k)) return false;
    return true;
}

inline uint64_t drop_index(const AttnShape& s, int64_t b, int64_t h, int64_t i, int64_t j) {
    return uint64_t(((b * s.H + h) * s.Lq + i) * s.Lk + j);
}

void check_params(const AttnShape& s, const AttnParams& p, const char* op) {
    HIPPO_CHECK(s.B >= 1 && s.H >= 1 && s.Lq >= 1 && s.Lk >= 1 && s.D >= 1 && s.Dv >= 0,
                "%s: bad shape B=%lld H=%lld Lq=%lld Lk=%lld D=%lld Dv=%lld", op, (long long)s.B, (long long)s.H,
                (long long)s.Lq, (long long)s.Lk, (long long)s.D, (long long)s.Dv);
    HIPPO_CHECK(p.fn == AttnFn::softmax || p.fn == AttnFn::laplace || p.fn == AttnFn::relu2,
                "%s: unknown attention function %d", op, int(p.fn));
    HIPPO_CHECK(!p.rel_bias || p.rel_bias_len >= 1, "%s: rel_bias needs rel_bias_len >= 1 (got %lld)", op,
                (long long)p.rel_bias_len);
    HIPPO_CHECK(p.dropout_p >= 0 && p.dropout_p < 1, "%s: dropout p=%g must be in [0, 1)", op, double(p.dropout_p));
    if (const BlockMask* bm = p.block_mask) {
        HIPPO_CHECK(bm->block_q >= 1 && bm->block_k >= 1 && bm->nbq * bm->block_q >= s.Lq &&
                        bm->nbk * bm->block_k >= s.Lk && (bm->heads == 1 || bm->heads == s.H) &&
                        int64_t(bm->mask.size()) == bm->heads * bm->nbq * bm->nbk,
                    "%s: block mask (%lld x %lld blocks of %lld x %lld, %lld heads) does not cover Lq=%lld Lk=%lld H=%lld",
                    op, (long long)bm->nbq, (long long)bm->nbk, (long long)bm->block_q, (long long)bm->block_k,
                    (long long)bm->heads, (long long)s.Lq, (long long)s.Lk, (long long)s.H);
    }
}

inline int64_t bias_index(const AttnParams& p, int64_t rel) {
    return std::clamp<int64_t>(p.rel_bias_center + rel, 0, p.rel_bias_len - 1);
}

// The bias along the diagonals of the (Lq x Lk) score matrix, so that a tile row reads 64 bias
// values with unit stride; both padded with 64 zeros past the last diagonal:
//   diag[u] = bias(i, j) for u = j - i + Lq - 1   (backward: keys are the lanes)
//   anti[t] = bias(i, j) for t = i - j + Lk - 1   (forward: queries are the lanes)
// (j_abs - i_abs = u - (Lk - 1) = (Lq - 1) - t.)
struct BiasTables {
    Buffer<float> diag, anti;
};
BiasTables make_bias_tables(const AttnShape& s, const AttnParams& p) {
    const int64_t n = s.Lq + s.Lk - 1;
    BiasTables t{Buffer<float>(size_t(n + kTile)), Buffer<float>(size_t(n + kTile))};
    for (int64_t u = 0; u < n + kTile; u++) {
        t.diag[size_t(u)] = u < n ? p.rel_bias[bias_index(p, u - (s.Lk - 1))] : 0.0f;
        t.anti[size_t(u)] = u < n ? p.rel_bias[bias_index(p, (s.Lq - 1) - u)] : 0.0f;
    }
    return t;
}

// c_i of scale_by_key_count, (B, H, Lq). n_keys: causal and block mask, and the key mask when not
// causal (see attention.h). Per (b, h, query block) the active key blocks are listed once; a row
// then costs O(active blocks), so this is O(Lq nbk / block_q + Lq active) per head.
Buffer<float> key_count_scales(const AttnShape& s, const AttnParams& p) {
    const int64_t Lq = s.Lq, Lk = s.Lk, off = Lk - Lq, BH = s.B * s.H;
    const BlockMask* bm = p.block_mask;
    const int64_t bq = bm ? bm->block_q : Lq, nbi = (Lq + bq - 1) / bq;
    const double base = p.scale > 0 ? double(p.scale) : 1.0;
    const bool use_km = p.key_mask && !p.causal;
    std::vector<int64_t> pre;  // (B, Lk + 1) prefix counts of valid keys
    if (use_km) {
        pre.assign(sz(s.B * (Lk + 1)), 0);
        for (int64_t b = 0; b < s.B; b++)
            for (int64_t j = 0; j < Lk; j++)
                pre[sz(b * (Lk + 1) + j + 1)] = pre[sz(b * (Lk + 1) + j)] + (p.key_mask[b * Lk + j] != 0);
    }
    Buffer<float> c(sz(BH * Lq));
#pragma omp parallel if (BH * Lq > 4096)
    {
        std::vector<std::pair<int64_t, int64_t>> ranges;
#pragma omp for schedule(static)
        for (int64_t it = 0; it < BH * nbi; it++) {
            const int64_t bh = it / nbi, bi = it % nbi, b = bh / s.H, h = bh % s.H;
            ranges.clear();
            if (bm) {
                for (int64_t bj = 0; bj < bm->nbk; bj++) {
                    const int64_t j0 = bj * bm->block_k, j1 = std::min(Lk, j0 + bm->block_k);
                    if (j0 < j1 && bm->active(h, bi, bj)) ranges.emplace_back(j0, j1);
                }
            } else {
                ranges.emplace_back(0, Lk);
            }
            for (int64_t i = bi * bq; i < std::min(Lq, (bi + 1) * bq); i++) {
                int64_t n = 0;
                for (auto [j0, j1] : ranges) {
                    if (p.causal) n += std::max<int64_t>(0, std::min(j1, i + off + 1) - j0);
                    else if (use_km) n += pre[sz(b * (Lk + 1) + j1)] - pre[sz(b * (Lk + 1) + j0)];
                    else n += j1 - j0;
                }
                c[sz(bh * Lq + i)] = float(base / double(std::max<int64_t>(n, 1)));
            }
        }
    }
    return c;
}

// Pads the head dim to a multiple of 16 with zeros (the slow path for odd head dims).
void pad_heads(float* dst, const float* src, int64_t rows, int64_t D, int64_t Dp) {
#pragma omp parallel for schedule(static) if (rows * Dp > 65536)
    for (int64_t r = 0; r < rows; r++) {
        std::memcpy(dst + r * Dp, src + r * D, size_t(D) * sizeof(float));
        std::memset(dst + r * Dp + D, 0, size_t(Dp - D) * sizeof(float));
    }
}
void unpad_heads(float* dst, const float* src, int64_t rows, int64_t D, int64_t Dp) {
#pragma omp parallel for schedule(static) if (rows * Dp > 65536)
    for (int64_t r = 0; r < rows; r++) std::memcpy(dst + r * D, src + r * Dp, size_t(D) * sizeof(float));
}

// ---------------------------------------------------------------------------------------------
// Tiled forward, one work item = (b, h, query tile). Layout inside a tile: queries are the 64
// vector lanes. Qt (D x 64) is the scaled query tile transposed; St (64 keys x 64 queries) the
// scores; Ot (Dv x 64) the unnormalised output, rescaled by alpha inside the P.V micro-kernel
// (softmax) or simply accumulated (laplace / relu2).
// Extras shared by the forward and the backward: rsc = per-row scales (B*H*Lq, null = uniform
// scale), anti / diag = bias tables (null = no bias).
struct Extras {
    const float* rsc = nullptr;
    const float* anti = nullptr;
    const float* diag = nullptr;
};

// kExt = false compiles the plain softmax path (Dv = D, no bias, uniform scale) without the
// extension branches, so that its code, and the compiler's FMA contractions in the non-AVX-512
// 16-lane loops, stay those of the kernel before the extensions (bit-identical results).
inline bool needs_ext(const AttnShape& s, const AttnParams& p) {
    return p.fn != AttnFn::softmax || p.rel_bias || p.scale_by_key_count || s.dv() != s.D;
}

template <bool kExt>
void forward_tiled_impl(float* o, float* lse, const float* q, const float* k, const float* v, const AttnShape& s,
                        const AttnParams& p, float scale, const Extras& ex) {
    const int64_t D = s.D, Dv = kExt ? s.dv() : D;
    const int64_t nqt = (s.Lq + kTile - 1) / kTile, nkt = (s.Lk + kTile - 1) / kTile;
    const int64_t items = s.B * s.H * nqt;
    const MaskCtx mc{s, p, s.Lk - s.Lq};
    const float keep_scale = p.dropout_p > 0 ? 1.0f / (1.0f - p.dropout_p) : 1.0f;
    const bool softmax = !kExt || p.fn == AttnFn::softmax;
    const bool par = items > 1 && s.B * s.H * s.Lq * s.Lk * std::max(D, Dv) > (1 << 18);
#pragma omp parallel if (par)
    {
        Buffer<float> Qt(sz(D * kTile)), Ot(sz(Dv * kTile)), St(sz(kTile * kTile));
        alignas(64) float m[kTile], l[kTile];
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++) {
            // Expensive causal tiles first: visit query tiles from the last.
            const int64_t bh = it / nqt, qt = p.causal ? nqt - 1 - it % nqt : it % nqt;
            const int64_t b = bh / s.H, h = bh % s.H, i0 = qt * kTile, nq = std::min(kTile, s.Lq - i0);
            const float* qh = q + (bh * s.Lq) * D;
            const float* kh = k + (bh * s.Lk) * D;
            const float* vh = v + (bh * s.Lk) * Dv;
            const float* ci = kExt && ex.rsc ? ex.rsc + bh * s.Lq + i0 : nullptr;
            for (int64_t d = 0; d < D; d++) {
                float* row = Qt.data() + d * kTile;
                if (ci)
                    for (int64_t i = 0; i < nq; i++) row[i] = qh[(i0 + i) * D + d] * ci[i];
                else
                    for (int64_t i = 0; i < nq; i++) row[i] = qh[(i0 + i) * D + d] * scale;
                for (int64_t i = nq; i < kTile; i++) row[i] = 0.0f;
            }
            std::memset(Ot.data(), 0, size_t(Dv * kTile) * sizeof(float));
            for (int64_t i = 0; i < kTile; i++) m[i] = -kInf, l[i] = 0.0f;
            for (int64_t kt = 0; kt < nkt; kt++) {
                const int64_t j0 = kt * kTile, nk = std::min(kTile, s.Lk - j0);
                Tile tk = classify(mc, b, h, i0, nq, j0, nk);
                if (tk == Tile::empty) continue;
                float* S = St.data();
                panel<4, 0>(S, kTile, nk, kh + j0 * D, D, 1, Qt.data(), kTile, D, nullptr);
                if (kExt && ex.anti)  // key row r: lanes i read anti[i0 + i - (j0 + r) + Lk - 1]
                    for (int64_t r = 0; r < nk; r++) row_add(S + r * kTile, ex.anti + (i0 - (j0 + r) + s.Lk - 1));
                if (!softmax) {
                    for (int64_t r = 0; r < nk; r++)
                        for (int vv = 0; vv < 4; vv++)
                            vstore(S + r * kTile + 16 * vv, vattn_fn(p.fn, vload(S + r * kTile + 16 * vv), nullptr));
                    if (tk == Tile::partial)
                        for (int64_t r = 0; r < nk; r++)
                            for (int64_t i = 0; i < nq; i++)
                                if (!allowed(mc, b, h, i0 + i, j0 + r)) S[r * kTile + i] = 0.0f;
                    if (p.dropout_p > 0)
                        for (int64_t r = 0; r < nk; r++)
                            for (int64_t i = 0; i < nq; i++) {
                                const uint64_t di = drop_index(s, b + p.dropout_batch_offset, h, i0 + i, j0 + r);
                                S[r * kTile + i] *= hash_uniform(p.dropout_seed, di) >= p.dropout_p ? keep_scale : 0.0f;
                            }
                    // Ot += V^T W
                    panel<4, 1>(Ot.data(), kTile, Dv, vh + j0 * Dv, 1, Dv, S, kTile, nk, nullptr);
                    continue;
                }
                if (tk == Tile::partial)
                    for (int64_t r = 0; r < nk; r++)
                        for (int64_t i = 0; i < nq; i++)
                            if (!allowed(mc, b, h, i0 + i, j0 + r)) S[r * kTile + i] = -kInf;
                V mx[4], mu[4], alpha[4], sum[4];
                for (int vv = 0; vv < 4; vv++) mx[vv] = vload(m + 16 * vv);
                for (int64_t r = 0; r < nk; r++)
                    for (int vv = 0; vv < 4; vv++) mx[vv] = vmax(mx[vv], vload(S + r * kTile + 16 * vv));
                for (int vv = 0; vv < 4; vv++) {
                    // m_use = 0 where the row has seen nothing yet (avoids -inf - -inf).
                    alignas(64) float t[16];
                    vstore(t, mx[vv]);
                    for (int z = 0; z < 16; z++)
                        if (t[z] == -kInf) t[z] = 0.0f;
                    mu[vv] = vload(t);
                    alpha[vv] = vexp_neg(vsub(vload(m + 16 * vv), mu[vv]));
                    vstore(m + 16 * vv, mx[vv]);
                    sum[vv] = vzero();
                }
                for (int64_t r = 0; r < nk; r++)
                    for (int vv = 0; vv < 4; vv++) {
                        V e = vexp_neg(vsub(vload(S + r * kTile + 16 * vv), mu[vv]));
                        sum[vv] = vadd(sum[vv], e);
                        vstore(S + r * kTile + 16 * vv, e);
                    }
                for (int vv = 0; vv < 4; vv++) vstore(l + 16 * vv, vfma(vload(l + 16 * vv), alpha[vv], sum[vv]));
                if (p.dropout_p > 0)
                    for (int64_t r = 0; r < nk; r++)
                        for (int64_t i = 0; i < nq; i++) {
                            float u = hash_uniform(p.dropout_seed, drop_index(s, b + p.dropout_batch_offset, h, i0 + i, j0 + r));
                            S[r * kTile + i] *= u >= p.dropout_p ? keep_scale : 0.0f;
                        }
                // Ot = Ot * alpha + V^T P  (rows d, lanes = queries)
                panel<4, 2>(Ot.data(), kTile, Dv, vh + j0 * Dv, 1, Dv, S, kTile, nk, alpha);
            }
            for (int64_t i = 0; i < nq; i++) {
                float* orow = o + (bh * s.Lq + i0 + i) * Dv;
                if (!softmax) {
                    for (int64_t d = 0; d < Dv; d++) orow[d] = Ot[size_t(d * kTile + i)];
                    if (lse) lse[bh * s.Lq + i0 + i] = 0.0f;
                    continue;
                }
                const float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
                for (int64_t d = 0; d < Dv; d++) orow[d] = Ot[size_t(d * kTile + i)] * inv;
                if (lse) lse[bh * s.Lq + i0 + i] = l[i] > 0 ? m[i] + std::log(l[i]) : kInf;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tiled backward. Work item = (b, h, range of key tiles). Inside: keys are the 64 lanes. For each
// key tile: Kt = scale * K_tile^T and Vt = V_tile^T packed once, then for every query tile i:
//   S = Q_i Kt, P = exp(S - lse_i), dP = dO_i Vt, dS = P (dP - Dvec_i)
//   dVt += dO_i^T P, dKt += Q_i^T dS, dQ_i += dS K_tile   (dQ scaled at the end)
// dQ goes to the head's rows of dq when the head is one item, else to the item's own buffer.
// laplace / relu2: P = f(S), dS = f'(S) dP. Per-row scales (rsc): Kt is unscaled, S's rows are
// multiplied by c_i after the product and dS's rows before the dK / dQ products. The bias
// gradient sums dS (before c_i) along diagonals into the item's dF (u = j - i + Lq - 1).

template <bool kExt>
void backward_tiled_impl(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                         const float* v, const float* o, const float* lse, const AttnShape& s, const AttnParams& p,
                         float scale, const Extras& ex, float* d_rel_bias) {
    const int64_t D = s.D, Dv = kExt ? s.dv() : D;
    const int64_t nqt = (s.Lq + kTile - 1) / kTile, nkt = (s.Lk + kTile - 1) / kTile;
    const int64_t BH = s.B * s.H;
    const MaskCtx mc{s, p, s.Lk - s.Lq};
    const float keep_scale = p.dropout_p > 0 ? 1.0f / (1.0f - p.dropout_p) : 1.0f;
    const bool softmax = !kExt || p.fn == AttnFn::softmax;
    const float kscale = kExt && ex.rsc ? 1.0f : scale;  // folded into Kt, and into dk, dq at the end

    // Dvec = rowsum(dO * O)
    Buffer<float> Dvec(softmax ? sz(BH * s.Lq) : 0);
    const bool par = s.B * s.H * s.Lq * s.Lk * std::max(D, Dv) > (1 << 18);
    if (softmax) {
#pragma omp parallel for schedule(static) if (par)
        for (int64_t r = 0; r < BH * s.Lq; r++) {
            double acc = 0;
            for (int64_t d = 0; d < Dv; d++) acc += double(dout[r * Dv + d]) * double(o[r * Dv + d]);
            Dvec[size_t(r)] = float(acc);
        }
    }

    // Split heads into chunks of key tiles when there are fewer heads than ~2 per thread.
    const int nt = max_threads();
    int64_t C = 1;
    if (BH < 2 * nt && BH % nt != 0) C = std::min<int64_t>(nkt, (2 * nt + BH - 1) / BH);
    // Chunk boundaries balanced by work (number of query tiles each key tile visits).
    std::vector<int64_t> bounds(sz(C + 1), 0);
    {
        std::vector<double> w(sz(nkt), 0.0);
        double tot = 0;
        for (int64_t kt = 0; kt < nkt; kt++) {
            int64_t first = 0;
            if (p.causal) first = std::clamp<int64_t>((kt * kTile - mc.off) / kTile, 0, nqt);
            w[size_t(kt)] = double(nqt - first) + 0.05;
            tot += w[size_t(kt)];
        }
        double acc = 0;
        int64_t c = 1;
        for (int64_t kt = 0; kt < nkt && c < C; kt++) {
            acc += w[size_t(kt)];
            while (c < C && acc >= tot * double(c) / double(C)) bounds[size_t(c++)] = kt + 1;
        }
        while (c < C) bounds[size_t(c++)] = nkt;
        bounds[size_t(C)] = nkt;
    }
    Buffer<float> part;
    if (C > 1) {
        part = Buffer<float>(size_t(BH * C * s.Lq * D));
    }
    const int64_t items = BH * C;
    const bool want_db = kExt && d_rel_bias != nullptr;
    const int64_t nF = s.Lq + s.Lk - 1 + kTile;  // diagonals + one tile row of padding lanes
    Buffer<float> dF(want_db ? sz(items * nF) : 0);
#pragma omp parallel if (par && items > 1)
    {
        Buffer<float> Kt(sz(D * kTile)), Vt(sz(Dv * kTile)), dKt(sz(D * kTile)), dVt(sz(Dv * kTile)),
            P(sz(kTile * kTile)), dS(sz(kTile * kTile)), Pd(p.dropout_p > 0 ? size_t(kTile * kTile) : 0),
            Fp(softmax ? 0 : sz(kTile * kTile));
        alignas(64) float zs[kTile];
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++) {
            const int64_t bh = it / C, c = it % C, b = bh / s.H, h = bh % s.H;
            const float* qh = q + bh * s.Lq * D;
            const float* doh = dout + bh * s.Lq * Dv;
            const float* kh = k + bh * s.Lk * D;
            const float* vh = v + bh * s.Lk * Dv;
            const float* lh = softmax ? lse + bh * s.Lq : nullptr;
            const float* Dh = softmax ? Dvec.data() + bh * s.Lq : nullptr;
            const float* ch = kExt && ex.rsc ? ex.rsc + bh * s.Lq : nullptr;
            float* dFi = want_db ? dF.data() + it * nF : nullptr;
            if (dFi) std::memset(dFi, 0, sz(nF) * sizeof(float));
            float* dqh = C > 1 ? part.data() + it * s.Lq * D : dq + bh * s.Lq * D;
            std::memset(dqh, 0, size_t(s.Lq * D) * sizeof(float));
            for (int64_t kt = bounds[size_t(c)]; kt < bounds[size_t(c + 1)]; kt++) {
                const int64_t j0 = kt * kTile, nk = std::min(kTile, s.Lk - j0);
                for (int64_t d = 0; d < D; d++) {
                    float* kr = Kt.data() + d * kTile;
                    for (int64_t j = 0; j < nk; j++) kr[j] = kh[(j0 + j) * D + d] * kscale;
                    for (int64_t j = nk; j < kTile; j++) kr[j] = 0.0f;
                }
                for (int64_t d = 0; d < Dv; d++) {
                    float* vr = Vt.data() + d * kTile;
                    for (int64_t j = 0; j < nk; j++) vr[j] = vh[(j0 + j) * Dv + d];
                    for (int64_t j = nk; j < kTile; j++) vr[j] = 0.0f;
                }
                std::memset(dKt.data(), 0, size_t(D * kTile) * sizeof(float));
                std::memset(dVt.data(), 0, size_t(Dv * kTile) * sizeof(float));
                int64_t qt0 = 0;
                if (p.causal) qt0 = std::clamp<int64_t>((j0 - mc.off) / kTile, 0, nqt);
                for (int64_t qt = qt0; qt < nqt; qt++) {
                    const int64_t i0 = qt * kTile, nq = std::min(kTile, s.Lq - i0);
                    Tile tk = classify(mc, b, h, i0, nq, j0, nk);
                    if (tk == Tile::empty) continue;
                    float* Sp = P.data();
                    panel<4, 0>(Sp, kTile, nq, qh + i0 * D, D, 1, Kt.data(), kTile, D, nullptr);
                    if (ch)
                        for (int64_t r = 0; r < nq; r++) row_scale(Sp + r * kTile, ch[i0 + r]);
                    if (kExt && ex.diag)  // query row r: lanes j read diag[j0 + j - (i0 + r) + Lq - 1]
                        for (int64_t r = 0; r < nq; r++) row_add(Sp + r * kTile, ex.diag + (j0 - (i0 + r) + s.Lq - 1));
                    if (softmax) {
                        if (tk == Tile::partial)
                            for (int64_t r = 0; r < nq; r++)
                                for (int64_t j = 0; j < nk; j++)
                                    if (!allowed(mc, b, h, i0 + r, j0 + j)) Sp[r * kTile + j] = -kInf;
                        // P = exp(S - lse), padded key lanes forced to 0
                        for (int64_t r = 0; r < nq; r++) {
                            V ls = vset(lh[i0 + r]);
                            for (int vv = 0; vv < 4; vv++)
                                vstore(Sp + r * kTile + 16 * vv, vexp_neg(vsub(vload(Sp + r * kTile + 16 * vv), ls)));
                            for (int64_t j = nk; j < kTile; j++) Sp[r * kTile + j] = 0.0f;
                        }
                    } else {
                        // P = f(S), Fp = f'(S); masked entries and padded key lanes 0 in both
                        float* F = Fp.data();
                        for (int64_t r = 0; r < nq; r++) {
                            for (int vv = 0; vv < 4; vv++) {
                                V df;
                                vstore(Sp + r * kTile + 16 * vv, vattn_fn(p.fn, vload(Sp + r * kTile + 16 * vv), &df));
                                vstore(F + r * kTile + 16 * vv, df);
                            }
                            for (int64_t j = nk; j < kTile; j++) Sp[r * kTile + j] = F[r * kTile + j] = 0.0f;
                        }
                        if (tk == Tile::partial)
                            for (int64_t r = 0; r < nq; r++)
                                for (int64_t j = 0; j < nk; j++)
                                    if (!allowed(mc, b, h, i0 + r, j0 + j)) Sp[r * kTile + j] = F[r * kTile + j] = 0.0f;
                    }
                    float* dP = dS.data();
                    panel<4, 0>(dP, kTile, nq, doh + i0 * Dv, Dv, 1, Vt.data(), kTile, Dv, nullptr);
                    const float* Pv = Sp;  // the weights V saw (dropped) for dV
                    if (p.dropout_p > 0) {
                        for (int64_t r = 0; r < nq; r++) {
                            for (int64_t j = 0; j < kTile; j++)
                                zs[j] = j < nk && hash_uniform(p.dropout_seed, drop_index(s, b + p.dropout_batch_offset, h, i0 + r, j0 + j)) >=
                                                      p.dropout_p
                                            ? keep_scale
                                            : 0.0f;
                            for (int64_t j = 0; j < kTile; j++) {
                                Pd[size_t(r * kTile + j)] = Sp[r * kTile + j] * zs[j];
                                dP[r * kTile + j] *= zs[j];
                            }
                        }
                        Pv = Pd.data();
                    }
                    if (softmax) {
                        for (int64_t r = 0; r < nq; r++) {
                            V dvec = vset(Dh[i0 + r]);
                            for (int vv = 0; vv < 4; vv++) {
                                V pr = vload(Sp + r * kTile + 16 * vv);
                                vstore(dP + r * kTile + 16 * vv, vmul(pr, vsub(vload(dP + r * kTile + 16 * vv), dvec)));
                            }
                        }
                    } else {
                        for (int64_t r = 0; r < nq; r++)
                            for (int vv = 0; vv < 4; vv++)
                                vstore(dP + r * kTile + 16 * vv,
                                       vmul(vload(Fp.data() + r * kTile + 16 * vv), vload(dP + r * kTile + 16 * vv)));
                    }
                    if (dFi)
                        for (int64_t r = 0; r < nq; r++) row_add(dFi + (j0 - (i0 + r) + s.Lq - 1), dP + r * kTile);
                    if (ch)
                        for (int64_t r = 0; r < nq; r++) row_scale(dP + r * kTile, ch[i0 + r]);
                    // dVt += dO_i^T Pv ; dKt += Q_i^T dS ; dQ_i += dS K_tile
                    panel<4, 1>(dVt.data(), kTile, Dv, doh + i0 * Dv, 1, Dv, Pv, kTile, nq, nullptr);
                    panel<4, 1>(dKt.data(), kTile, D, qh + i0 * D, 1, D, dP, kTile, nq, nullptr);
                    panel_wide<1>(dqh + i0 * D, D, nq, dP, kTile, 1, kh + j0 * D, D, nk, D);
                }
                for (int64_t j = 0; j < nk; j++) {
                    float* dkr = dk + (bh * s.Lk + j0 + j) * D;
                    float* dvr = dv + (bh * s.Lk + j0 + j) * Dv;
                    for (int64_t d = 0; d < D; d++) dkr[d] = dKt[size_t(d * kTile + j)] * kscale;
                    for (int64_t d = 0; d < Dv; d++) dvr[d] = dVt[size_t(d * kTile + j)];
                }
            }
        }
    }
    // dq = scale * (sum of the chunks, in chunk order)
#pragma omp parallel for schedule(static) if (par)
    for (int64_t bh = 0; bh < BH; bh++) {
        float* dqh = dq + bh * s.Lq * D;
        if (C > 1) {
            const float* p0 = part.data() + bh * C * s.Lq * D;
            for (int64_t e = 0; e < s.Lq * D; e++) {
                float acc = p0[e];
                for (int64_t c = 1; c < C; c++) acc += p0[c * s.Lq * D + e];
                dqh[e] = acc * kscale;
            }
        } else {
            for (int64_t e = 0; e < s.Lq * D; e++) dqh[e] *= kscale;
        }
    }
    // d_rel_bias += the items' diagonal sums (in item order), folded through the clamp
    if (want_db) {
        const int64_t n = s.Lq + s.Lk - 1;
        std::vector<double> tot(sz(n), 0.0);
#pragma omp parallel for schedule(static) if (items * n > 65536)
        for (int64_t u = 0; u < n; u++) {
            double acc = 0;
            for (int64_t it = 0; it < items; it++) acc += double(dF[sz(it * nF + u)]);
            tot[sz(u)] = acc;
        }
        // bias_index is non-decreasing in u: the clamped ends are runs of u summed before adding
        for (int64_t u = 0; u < n;) {
            const int64_t idx = bias_index(p, u - (s.Lk - 1));
            double acc = 0;
            for (; u < n && bias_index(p, u - (s.Lk - 1)) == idx; u++) acc += tot[sz(u)];
            d_rel_bias[idx] += float(acc);
        }
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Block masks

int64_t BlockMask::count_active() const {
    int64_t n = 0;
    for (uint8_t m : mask) n += m != 0;
    return n;
}
double BlockMask::density() const { return mask.empty() ? 0.0 : double(count_active()) / double(mask.size()); }

BlockMask make_block_mask(int64_t Lq, int64_t Lk, int64_t block_q, int64_t block_k, int64_t heads) {
    HIPPO_CHECK(block_q >= 1 && block_k >= 1 && heads >= 1, "make_block_mask: bad block sizes %lld x %lld",
                (long long)block_q, (long long)block_k);
    BlockMask m;
    m.block_q = block_q;
    m.block_k = block_k;
    m.nbq = (Lq + block_q - 1) / block_q;
    m.nbk = (Lk + block_k - 1) / block_k;
    m.heads = heads;
    m.mask.assign(sz(heads * m.nbq * m.nbk), 0);
    return m;
}

BlockMask bigbird_block_mask(int64_t L, int64_t block, int64_t window, int64_t global, int64_t random, uint64_t seed,
                             bool causal, int64_t heads) {
    HIPPO_CHECK(window >= 1 && window % 2 == 1, "bigbird_block_mask: window must be odd, got %lld", (long long)window);
    HIPPO_CHECK(global >= 0 && random >= 0, "bigbird_block_mask: negative block counts");
    BlockMask m = make_block_mask(L, L, block, block, heads);
    const int64_t n = m.nbq, w = window / 2;
    auto is_global = [&](int64_t bi) {
        if (causal) return bi < global;
        return bi < (global + 1) / 2 || bi >= n - global / 2;
    };
    for (int64_t h = 0; h < heads; h++) {
        uint8_t* M = m.mask.data() + h * n * n;
        for (int64_t bi = 0; bi < n; bi++)
            for (int64_t bj = 0; bj < n; bj++) {
                bool on = std::llabs(bi - bj) <= w || is_global(bi) || is_global(bj);
                if (causal && bj > bi) on = false;
                M[bi * n + bj] = on;
            }
        Rng rng(splitmix64(seed + 0x51ED27ull * uint64_t(h + 1)));
        for (int64_t bi = 0; bi < n; bi++) {
            std::vector<int64_t> cand;
            const int64_t hi = causal ? bi + 1 : n;
            for (int64_t bj = 0; bj < hi; bj++)
                if (!M[bi * n + bj]) cand.push_back(bj);
            for (int64_t r = 0; r < random && !cand.empty(); r++) {
                size_t pick = size_t(rng.below(cand.size()));
                M[bi * n + cand[pick]] = 1;
                cand[pick] = cand.back();
                cand.pop_back();
            }
        }
    }
    return m;
}

bool attn_allowed(const AttnShape& s, const AttnParams& p, int64_t b, int64_t h, int64_t i, int64_t j) {
    return allowed(MaskCtx{s, p, s.Lk - s.Lq}, b, h, i, j);
}

// ---------------------------------------------------------------------------------------------
// Reference

namespace {

// c_i of scale_by_key_count by brute force over the keys (the tiled path counts per block).
double ref_row_scale(const AttnShape& s, const AttnParams& p, int64_t b, int64_t h, int64_t i) {
    AttnParams pc = p;
    if (p.causal) pc.key_mask = nullptr;  // Mega: the causal count includes padded keys
    const MaskCtx mc{s, pc, s.Lk - s.Lq};
    int64_t n = 0;
    for (int64_t j = 0; j < s.Lk; j++) n += allowed(mc, b, h, i, j);
    return (p.scale > 0 ? double(p.scale) : 1.0) / double(std::max<int64_t>(n, 1));
}

inline double ref_bias(const AttnShape& s, const AttnParams& p, int64_t i, int64_t j) {
    return p.rel_bias ? double(p.rel_bias[bias_index(p, j - (i + s.Lk - s.Lq))]) : 0.0;
}

}  // namespace

void attention_forward_ref(float* o, float* lse, const float* q, const float* k, const float* v, const AttnShape& s,
                           const AttnParams& p) {
    check_params(s, p, "attention_forward_ref");
    const int64_t D = s.D, Dv = s.dv();
    const double scale = resolve_scale(p.scale, D);
    const MaskCtx mc{s, p, s.Lk - s.Lq};
    const double keep_scale = p.dropout_p > 0 ? 1.0 / (1.0 - double(p.dropout_p)) : 1.0;
    const bool softmax = p.fn == AttnFn::softmax;
#pragma omp parallel
    {
        std::vector<double> row(sz(s.Lk)), acc(sz(Dv), 0);
#pragma omp for schedule(static) collapse(2)
        for (int64_t bh = 0; bh < s.B * s.H; bh++)
            for (int64_t i = 0; i < s.Lq; i++) {
                const int64_t b = bh / s.H, h = bh % s.H;
                const float* qi = q + (bh * s.Lq + i) * D;
                const double sc = p.scale_by_key_count ? ref_row_scale(s, p, b, h, i) : scale;
                double mx = -INFINITY;
                for (int64_t j = 0; j < s.Lk; j++) {
                    if (!allowed(mc, b, h, i, j)) {
                        row[size_t(j)] = -INFINITY;
                        continue;
                    }
                    const float* kj = k + (bh * s.Lk + j) * D;
                    double dot = 0;
                    for (int64_t d = 0; d < D; d++) dot += double(qi[d]) * double(kj[d]);
                    row[size_t(j)] = dot * sc;
                    if (p.rel_bias) row[size_t(j)] += ref_bias(s, p, i, j);
                    mx = std::max(mx, row[size_t(j)]);
                }
                double sum = 0;
                for (int64_t j = 0; j < s.Lk; j++) {
                    if (softmax) row[size_t(j)] = row[size_t(j)] == -INFINITY ? 0.0 : std::exp(row[size_t(j)] - mx);
                    else row[size_t(j)] = row[size_t(j)] == -INFINITY ? 0.0 : attn_fn_d(p.fn, row[size_t(j)]);
                    sum += row[size_t(j)];
                }
                if (!softmax) sum = 1;  // no normalisation across keys
                std::fill(acc.begin(), acc.end(), 0.0);
                if (sum > 0)
                    for (int64_t j = 0; j < s.Lk; j++) {
                        double w = row[size_t(j)] / sum;
                        if (p.dropout_p > 0)
                            w *= hash_uniform(p.dropout_seed, drop_index(s, b + p.dropout_batch_offset, h, i, j)) >= p.dropout_p ? keep_scale
                                                                                                        : 0.0;
                        if (w == 0) continue;
                        const float* vj = v + (bh * s.Lk + j) * Dv;
                        for (int64_t d = 0; d < Dv; d++) acc[size_t(d)] += w * double(vj[d]);
                    }
                float* oi = o + (bh * s.Lq + i) * Dv;
                for (int64_t d = 0; d < Dv; d++) oi[d] = float(acc[size_t(d)]);
                if (lse) lse[bh * s.Lq + i] = !softmax ? 0.0f : sum > 0 ? float(mx + std::log(sum)) : kInf;
            }
    }
}

void attention_backward_ref(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                            const float* v, const AttnShape& s, const AttnParams& p, float* d_rel_bias) {
    check_params(s, p, "attention_backward_ref");
    HIPPO_CHECK(!d_rel_bias || p.rel_bias, "attention_backward_ref: d_rel_bias needs rel_bias");
    const int64_t D = s.D, Dv = s.dv(), Lq = s.Lq, Lk = s.Lk;
    const double scale = resolve_scale(p.scale, D);
    const MaskCtx mc{s, p, s.Lk - s.Lq};
    const double keep_scale = p.dropout_p > 0 ? 1.0 / (1.0 - double(p.dropout_p)) : 1.0;
    const bool softmax = p.fn == AttnFn::softmax;
    // per-head bias gradients, summed in head order below (no race, same result for any threads)
    std::vector<double> dbias(d_rel_bias ? sz(s.B * s.H * p.rel_bias_len) : 0, 0.0);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < s.B * s.H; bh++) {
        const int64_t b = bh / s.H, h = bh % s.H;
        const float* qh = q + bh * Lq * D;
        const float* kh = k + bh * Lk * D;
        const float* vh = v + bh * Lk * Dv;
        const float* gh = dout + bh * Lq * Dv;
        // P: softmax probabilities or f(s); Fd: f'(s) (laplace / relu2), 0 where masked
        std::vector<double> P(sz(Lq * Lk)), Z(sz(Lq * Lk), 1.0), dqa(sz(Lq * D), 0.0),
            dka(sz(Lk * D), 0.0), dva(sz(Lk * Dv), 0.0), Fd(softmax ? 0 : sz(Lq * Lk), 0.0), sc(sz(Lq));
        for (int64_t i = 0; i < Lq; i++) {
            double mx = -INFINITY;
            double* Pi = P.data() + i * Lk;
            sc[size_t(i)] = p.scale_by_key_count ? ref_row_scale(s, p, b, h, i) : scale;
            for (int64_t j = 0; j < Lk; j++) {
                if (!allowed(mc, b, h, i, j)) {
                    Pi[j] = -INFINITY;
                    continue;
                }
                double dot = 0;
                for (int64_t d = 0; d < D; d++) dot += double(qh[i * D + d]) * double(kh[j * D + d]);
                Pi[j] = dot * sc[size_t(i)];
                if (p.rel_bias) Pi[j] += ref_bias(s, p, i, j);
                mx = std::max(mx, Pi[j]);
                if (p.dropout_p > 0)
                    Z[size_t(i * Lk + j)] =
                        hash_uniform(p.dropout_seed, drop_index(s, b + p.dropout_batch_offset, h, i, j)) >= p.dropout_p ? keep_scale : 0.0;
            }
            if (!softmax) {
                for (int64_t j = 0; j < Lk; j++) {
                    if (Pi[j] == -INFINITY) {
                        Pi[j] = 0.0;
                        continue;
                    }
                    Fd[size_t(i * Lk + j)] = attn_dfn_d(p.fn, Pi[j]);
                    Pi[j] = attn_fn_d(p.fn, Pi[j]);
                }
                continue;
            }
            double sum = 0;
            for (int64_t j = 0; j < Lk; j++) {
                Pi[j] = Pi[j] == -INFINITY ? 0.0 : std::exp(Pi[j] - mx);
                sum += Pi[j];
            }
            for (int64_t j = 0; j < Lk; j++) Pi[j] = sum > 0 ? Pi[j] / sum : 0.0;
        }
        double* dbh = d_rel_bias ? dbias.data() + bh * p.rel_bias_len : nullptr;
        std::vector<double> dP(sz(Lk), 0.0);
        for (int64_t i = 0; i < Lq; i++) {
            const double* Pi = P.data() + i * Lk;
            const double* Zi = Z.data() + i * Lk;
            double rs = 0;
            for (int64_t j = 0; j < Lk; j++) {
                double g = 0;
                for (int64_t d = 0; d < Dv; d++) g += double(gh[i * Dv + d]) * double(vh[j * Dv + d]);
                dP[size_t(j)] = g * Zi[j];
                rs += Pi[j] * dP[size_t(j)];
                double w = Pi[j] * Zi[j];
                for (int64_t d = 0; d < Dv; d++) dva[size_t(j * Dv + d)] += w * double(gh[i * Dv + d]);
            }
            for (int64_t j = 0; j < Lk; j++) {
                // dL/ds_ij, then times c_i for q and k
                const double g = softmax ? Pi[j] * (dP[size_t(j)] - rs) : Fd[size_t(i * Lk + j)] * dP[size_t(j)];
                if (dbh && g != 0) dbh[bias_index(p, j - (i + Lk - Lq))] += g;
                double ds = g * sc[size_t(i)];
                if (ds == 0) continue;
                for (int64_t d = 0; d < D; d++) {
                    dqa[size_t(i * D + d)] += ds * double(kh[j * D + d]);
                    dka[size_t(j * D + d)] += ds * double(qh[i * D + d]);
                }
            }
        }
        for (int64_t e = 0; e < Lq * D; e++) dq[bh * Lq * D + e] = float(dqa[size_t(e)]);
        for (int64_t e = 0; e < Lk * D; e++) dk[bh * Lk * D + e] = float(dka[size_t(e)]);
        for (int64_t e = 0; e < Lk * Dv; e++) dv[bh * Lk * Dv + e] = float(dva[size_t(e)]);
    }
    if (d_rel_bias)
        for (int64_t t = 0; t < p.rel_bias_len; t++) {
            double acc = 0;
            for (int64_t bh = 0; bh < s.B * s.H; bh++) acc += dbias[sz(bh * p.rel_bias_len + t)];
            d_rel_bias[t] += float(acc);
        }
}

// ---------------------------------------------------------------------------------------------
// Tiled entry points (pad odd head dims to a multiple of 16)

namespace {

struct ExtraBufs {
    Buffer<float> rsc;
    BiasTables bias;
    Extras ex;
};
void make_extras(ExtraBufs& e, const AttnShape& s, const AttnParams& p) {
    if (p.scale_by_key_count) {
        e.rsc = key_count_scales(s, p);
        e.ex.rsc = e.rsc.data();
    }
    if (p.rel_bias) {
        e.bias = make_bias_tables(s, p);
        e.ex.anti = e.bias.anti.data();
        e.ex.diag = e.bias.diag.data();
    }
}

inline int64_t pad16(int64_t d) { return (d + 15) / 16 * 16; }

// Zero-padded copy of rows x d into rows x dp when d is not a multiple of 16; else the input.
const float* maybe_pad(Buffer<float>& buf, const float* src, int64_t rows, int64_t d, int64_t dp) {
    if (d == dp || !src) return src;
    buf = Buffer<float>(sz(rows * dp));
    pad_heads(buf.data(), src, rows, d, dp);
    return buf.data();
}

}  // namespace

void attention_forward_tiled(float* o, float* lse, const float* q, const float* k, const float* v,
                             const AttnShape& s, const AttnParams& p) {
    check_params(s, p, "attention_forward_tiled");
    const float scale = resolve_scale(p.scale, s.D);
    ExtraBufs e;
    make_extras(e, s, p);
    const int64_t D = s.D, Dv = s.dv(), Dp = pad16(D), Dvp = pad16(Dv), BH = s.B * s.H;
    const auto impl = needs_ext(s, p) ? forward_tiled_impl<true> : forward_tiled_impl<false>;
    if (D == Dp && Dv == Dvp) return impl(o, lse, q, k, v, s, p, scale, e.ex);
    Buffer<float> qp, kp, vp, op(Dv == Dvp ? 0 : sz(BH * s.Lq * Dvp));
    const float* qq = maybe_pad(qp, q, BH * s.Lq, D, Dp);
    const float* kk = maybe_pad(kp, k, BH * s.Lk, D, Dp);
    const float* vv = maybe_pad(vp, v, BH * s.Lk, Dv, Dvp);
    AttnShape sp = s;
    sp.D = Dp;
    sp.Dv = Dvp;
    impl(Dv == Dvp ? o : op.data(), lse, qq, kk, vv, sp, p, scale, e.ex);
    if (Dv != Dvp) unpad_heads(o, op.data(), BH * s.Lq, Dv, Dvp);
}

void attention_backward_tiled(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                              const float* v, const float* o, const float* lse, const AttnShape& s,
                              const AttnParams& p, float* d_rel_bias) {
    check_params(s, p, "attention_backward_tiled");
    HIPPO_CHECK(!d_rel_bias || p.rel_bias, "attention_backward_tiled: d_rel_bias needs rel_bias");
    HIPPO_CHECK(p.fn != AttnFn::softmax || (o && lse), "attention_backward_tiled: softmax needs o and lse");
    const float scale = resolve_scale(p.scale, s.D);
    ExtraBufs e;
    make_extras(e, s, p);
    const int64_t D = s.D, Dv = s.dv(), Dp = pad16(D), Dvp = pad16(Dv), BH = s.B * s.H;
    const auto impl = needs_ext(s, p) ? backward_tiled_impl<true> : backward_tiled_impl<false>;
    if (D == Dp && Dv == Dvp) return impl(dq, dk, dv, dout, q, k, v, o, lse, s, p, scale, e.ex, d_rel_bias);
    Buffer<float> qp, kp, vp, op, gp, dqp(D == Dp ? 0 : sz(BH * s.Lq * Dp)), dkp(D == Dp ? 0 : sz(BH * s.Lk * Dp)),
        dvp(Dv == Dvp ? 0 : sz(BH * s.Lk * Dvp));
    const float* qq = maybe_pad(qp, q, BH * s.Lq, D, Dp);
    const float* kk = maybe_pad(kp, k, BH * s.Lk, D, Dp);
    const float* vv = maybe_pad(vp, v, BH * s.Lk, Dv, Dvp);
    const float* oo = maybe_pad(op, o, BH * s.Lq, Dv, Dvp);
    const float* gg = maybe_pad(gp, dout, BH * s.Lq, Dv, Dvp);
    AttnShape sp = s;
    sp.D = Dp;
    sp.Dv = Dvp;
    impl(D == Dp ? dq : dqp.data(), D == Dp ? dk : dkp.data(), Dv == Dvp ? dv : dvp.data(), gg, qq, kk, vv, oo, lse, sp,
         p, scale, e.ex, d_rel_bias);
    if (D != Dp) {
        unpad_heads(dq, dqp.data(), BH * s.Lq, D, Dp);
        unpad_heads(dk, dkp.data(), BH * s.Lk, D, Dp);
    }
    if (Dv != Dvp) unpad_heads(dv, dvp.data(), BH * s.Lk, Dv, Dvp);
}

// ---------------------------------------------------------------------------------------------
// Decoding (split-KV)

void attention_decode(float* o, const float* q, const float* k_cache, const float* v_cache, int64_t B, int64_t H,
                      int64_t cap, int64_t Lk, int64_t D, float scale_in, const uint8_t* key_mask, int64_t Dv_in) {
    HIPPO_CHECK(B >= 1 && H >= 1 && D >= 1 && Dv_in >= 0 && Lk >= 0 && Lk <= cap, "attention_decode: bad shape");
    const int64_t Dv = Dv_in > 0 ? Dv_in : D;
    const float scale = resolve_scale(scale_in, D);
    const int64_t BH = B * H, nt = max_threads();
    int64_t C = 1;
    if (Lk >= 512 && BH < 4 * nt) C = std::min<int64_t>((4 * nt + BH - 1) / BH, Lk / 256);
    C = std::max<int64_t>(C, 1);
    const int64_t chunk = Lk == 0 ? 0 : (Lk + C - 1) / C;
    Buffer<float> pm(sz(BH * C)), pl(sz(BH * C)), pacc(sz(BH * C * Dv));
#pragma omp parallel if (BH * C > 1 && BH * Lk * D > 32768)
    {
        Buffer<float> sc(sz(std::max<int64_t>(chunk, 1)));
        std::vector<float> acc(sz(Dv), 0);
#pragma omp for schedule(static)
        for (int64_t it = 0; it < BH * C; it++) {
            const int64_t bh = it / C, c = it % C, b = bh / H;
            const int64_t j0 = std::min(Lk, c * chunk), j1 = std::min(Lk, j0 + chunk);
            const float* qv = q + bh * D;
            const float* kh = k_cache + bh * cap * D;
            const float* vh = v_cache + bh * cap * Dv;
            float mx = -kInf;
            for (int64_t j = j0; j < j1; j++) {
                if (key_mask && !key_mask[b * Lk + j]) {
                    sc[size_t(j - j0)] = -kInf;
                    continue;
                }
                const float* kr = kh + j * D;
                float dot = 0;
#pragma omp simd reduction(+ : dot)
                for (int64_t d = 0; d < D; d++) dot += qv[d] * kr[d];
                sc[size_t(j - j0)] = dot * scale;
                mx = std::max(mx, dot * scale);
            }
            std::fill(acc.begin(), acc.end(), 0.0f);
            float sum = 0;
            if (mx > -kInf)
                for (int64_t j = j0; j < j1; j++) {
                    float sj = sc[size_t(j - j0)];
                    if (sj == -kInf) continue;
                    float e = std::exp(sj - mx);
                    sum += e;
                    const float* vr = vh + j * Dv;
                    float* a = acc.data();
#pragma omp simd
                    for (int64_t d = 0; d < Dv; d++) a[d] += e * vr[d];
                }
            pm[size_t(it)] = mx;
            pl[size_t(it)] = sum;
            std::copy(acc.begin(), acc.end(), pacc.data() + it * Dv);
        }
    }
    // merge the partials of each (b, h) in chunk order
    for (int64_t bh = 0; bh < BH; bh++) {
        float M = -kInf;
        for (int64_t c = 0; c < C; c++) M = std::max(M, pm[size_t(bh * C + c)]);
        float* ov = o + bh * Dv;
        if (M == -kInf) {
            std::fill(ov, ov + Dv, 0.0f);
            continue;
        }
        float l = 0;
        std::fill(ov, ov + Dv, 0.0f);
        for (int64_t c = 0; c < C; c++) {
            float mc = pm[size_t(bh * C + c)];
            if (mc == -kInf) continue;
            float w = std::exp(mc - M);
            l += w * pl[size_t(bh * C + c)];
            const float* a = pacc.data() + (bh * C + c) * Dv;
            for (int64_t d = 0; d < Dv; d++) ov[d] += w * a[d];
        }
        for (int64_t d = 0; d < Dv; d++) ov[d] /= l;
    }
}

// ---------------------------------------------------------------------------------------------
// Linear attention

namespace {
inline float phi(float x) { return x > 0 ? x + 1.0f : std::exp(x); }
// dst[i] = phi(src[i]), 16 lanes at a time (the scalar exp dominated the scans otherwise)
inline void phi_row(float* dst, const float* src, int64_t n) {
    int64_t i = 0;
#ifdef __AVX512F__
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(src + i);
        __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ);
        __m512 e = simd::v_exp(_mm512_min_ps(x, _mm512_setzero_ps()));
        _mm512_storeu_ps(dst + i, _mm512_mask_add_ps(e, pos, x, _mm512_set1_ps(1.0f)));
    }
#endif
    for (; i < n; i++) dst[i] = phi(src[i]);
}
inline double phid(double x) { return x > 0 ? x + 1.0 : std::exp(x); }
inline double dphid(double x) { return x > 0 ? 1.0 : std::exp(x); }

void check_lin(const LinAttnShape& s, const char* op) {
    HIPPO_CHECK(s.B >= 1 && s.H >= 1 && s.L >= 1 && s.Dk >= 1 && s.Dv >= 1,
                "%s: bad shape B=%lld H=%lld L=%lld Dk=%lld Dv=%lld", op, (long long)s.B, (long long)s.H,
                (long long)s.L, (long long)s.Dk, (long long)s.Dv);
}

// S += a b^T (Dk x Dv), z += a
inline void rank1(float* S, float* z, const float* a, const float* bv, int64_t Dk, int64_t Dv) {
    for (int64_t d = 0; d < Dk; d++) {
        const float ad = a[d];
        float* Sr = S + d * Dv;
#pragma omp simd
        for (int64_t e = 0; e < Dv; e++) Sr[e] += ad * bv[e];
        if (z) z[d] += ad;
    }
}
// y = a^T S (Dv)
inline void vecmat(float* y, const float* a, const float* S, int64_t Dk, int64_t Dv) {
    std::fill(y, y + Dv, 0.0f);
    for (int64_t d = 0; d < Dk; d++) {
        const float ad = a[d];
        const float* Sr = S + d * Dv;
#pragma omp simd
        for (int64_t e = 0; e < Dv; e++) y[e] += ad * Sr[e];
    }
}
// y = S b (Dk)
inline void matvec(float* y, const float* S, const float* bv, int64_t Dk, int64_t Dv) {
    for (int64_t d = 0; d < Dk; d++) {
        const float* Sr = S + d * Dv;
        float acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t e = 0; e < Dv; e++) acc += Sr[e] * bv[e];
        y[d] = acc;
    }
}
}  // namespace

void linear_attention_forward(float* out, const float* q, const float* k, const float* v, const LinAttnShape& s,
                              bool causal, float eps) {
    check_lin(s, "linear_attention_forward");
    const int64_t L = s.L, Dk = s.Dk, Dv = s.Dv;
#pragma omp parallel if (s.B * s.H > 1 && s.B * s.H * s.L * s.Dk * s.Dv > (1 << 16))
    {
        std::vector<float> S(sz(Dk * Dv)), z(sz(Dk)), fq(sz(Dk)), fk(sz(Dk), 0.0f);
#pragma omp for schedule(dynamic, 1)
        for (int64_t bh = 0; bh < s.B * s.H; bh++) {
            const float* qh = q + bh * L * Dk;
            const float* kh = k + bh * L * Dk;
            const float* vh = v + bh * L * Dv;
            float* oh = out + bh * L * Dv;
            std::fill(S.begin(), S.end(), 0.0f);
            std::fill(z.begin(), z.end(), 0.0f);
            if (!causal)
                for (int64_t j = 0; j < L; j++) {
                    phi_row(fk.data(), kh + j * Dk, Dk);
                    rank1(S.data(), z.data(), fk.data(), vh + j * Dv, Dk, Dv);
                }
            for (int64_t i = 0; i < L; i++) {
                if (causal) {
                    phi_row(fk.data(), kh + i * Dk, Dk);
                    rank1(S.data(), z.data(), fk.data(), vh + i * Dv, Dk, Dv);
                }
                float den = eps;
                phi_row(fq.data(), qh + i * Dk, Dk);
                for (int64_t d = 0; d < Dk; d++) den += fq[size_t(d)] * z[size_t(d)];
                float* oi = oh + i * Dv;
                vecmat(oi, fq.data(), S.data(), Dk, Dv);
                const float inv = 1.0f / den;
                for (int64_t e = 0; e < Dv; e++) oi[e] *= inv;
            }
        }
    }
}

void linear_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                               const float* v, const float* out, const LinAttnShape& s, bool causal, float eps) {
    check_lin(s, "linear_attention_backward");
    const int64_t L = s.L, Dk = s.Dk, Dv = s.Dv;
#pragma omp parallel if (s.B * s.H > 1 && s.B * s.H * s.L * s.Dk * s.Dv > (1 << 16))
    {
        std::vector<float> S(sz(Dk * Dv)), z(sz(Dk)), fq(sz(Dk)), fk(sz(Dk)), gnum(sz(Dv)),
            tmp(sz(Dk));
        Buffer<float> gden(sz(L)), den(sz(L));
#pragma omp for schedule(dynamic, 1)
        for (int64_t bh = 0; bh < s.B * s.H; bh++) {
            const float* qh = q + bh * L * Dk;
            const float* kh = k + bh * L * Dk;
            const float* vh = v + bh * L * Dv;
            const float* oh = out + bh * L * Dv;
            const float* gh = dout + bh * L * Dv;
            float* dqh = dq + bh * L * Dk;
            float* dkh = dk + bh * L * Dk;
            float* dvh = dv + bh * L * Dv;
            std::fill(S.begin(), S.end(), 0.0f);
            std::fill(z.begin(), z.end(), 0.0f);
            if (!causal)
                for (int64_t j = 0; j < L; j++) {
                    phi_row(fk.data(), kh + j * Dk, Dk);
                    rank1(S.data(), z.data(), fk.data(), vh + j * Dv, Dk, Dv);
                }
            // forward scan: dq_i = phi'(q_i) (S_i g_num_i + z_i g_den_i)
            for (int64_t i = 0; i < L; i++) {
                if (causal) {
                    phi_row(fk.data(), kh + i * Dk, Dk);
                    rank1(S.data(), z.data(), fk.data(), vh + i * Dv, Dk, Dv);
                }
                float dn = eps;
                phi_row(fq.data(), qh + i * Dk, Dk);
                for (int64_t d = 0; d < Dk; d++) dn += fq[size_t(d)] * z[size_t(d)];
                const float inv = 1.0f / dn;
                float go = 0;
                for (int64_t e = 0; e < Dv; e++) {
                    gnum[size_t(e)] = gh[i * Dv + e] * inv;
                    go += gh[i * Dv + e] * oh[i * Dv + e];
                }
                const float gd = -go * inv;
                den[size_t(i)] = dn;
                gden[size_t(i)] = gd;
                matvec(tmp.data(), S.data(), gnum.data(), Dk, Dv);
                for (int64_t d = 0; d < Dk; d++)
                    dqh[i * Dk + d] = (tmp[size_t(d)] + z[size_t(d)] * gd) * (qh[i * Dk + d] > 0 ? 1.0f : fq[size_t(d)]);
            }
            // reverse scan (R, r in S, z): dphi(k)_j = R_j v_j + r_j, dv_j = R_j^T phi(k_j)
            std::fill(S.begin(), S.end(), 0.0f);
            std::fill(z.begin(), z.end(), 0.0f);
            auto add_query = [&](int64_t i) {
                const float inv = 1.0f / den[size_t(i)];
                for (int64_t e = 0; e < Dv; e++) gnum[size_t(e)] = gh[i * Dv + e] * inv;
                phi_row(fq.data(), qh + i * Dk, Dk);
                rank1(S.data(), nullptr, fq.data(), gnum.data(), Dk, Dv);
                const float gd = gden[size_t(i)];
                for (int64_t d = 0; d < Dk; d++) z[size_t(d)] += fq[size_t(d)] * gd;
            };
            if (!causal)
                for (int64_t i = 0; i < L; i++) add_query(i);
            for (int64_t j = L - 1; j >= 0; j--) {
                if (causal) add_query(j);
                phi_row(fk.data(), kh + j * Dk, Dk);
                matvec(tmp.data(), S.data(), vh + j * Dv, Dk, Dv);
                for (int64_t d = 0; d < Dk; d++)
                    dkh[j * Dk + d] = (tmp[size_t(d)] + z[size_t(d)]) * (kh[j * Dk + d] > 0 ? 1.0f : fk[size_t(d)]);
                vecmat(dvh + j * Dv, fk.data(), S.data(), Dk, Dv);
            }
        }
    }
}

void linear_attention_forward_ref(float* out, const float* q, const float* k, const float* v, const LinAttnShape& s,
                                  bool causal, float eps) {
    check_lin(s, "linear_attention_forward_ref");
    const int64_t L = s.L, Dk = s.Dk, Dv = s.Dv;
    for (int64_t bh = 0; bh < s.B * s.H; bh++)
        for (int64_t i = 0; i < L; i++) {
            std::vector<double> num(sz(Dv), 0.0);
            double den = eps;
            const int64_t jmax = causal ? i + 1 : L;
            for (int64_t j = 0; j < jmax; j++) {
                double a = 0;
                for (int64_t d = 0; d < Dk; d++)
                    a += phid(q[(bh * L + i) * Dk + d]) * phid(k[(bh * L + j) * Dk + d]);
                den += a;
                for (int64_t e = 0; e < Dv; e++) num[size_t(e)] += a * v[(bh * L + j) * Dv + e];
            }
            for (int64_t e = 0; e < Dv; e++) out[(bh * L + i) * Dv + e] = float(num[size_t(e)] / den);
        }
}

void linear_attention_backward_ref(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                                   const float* v, const LinAttnShape& s, bool causal, float eps) {
    check_lin(s, "linear_attention_backward_ref");
    const int64_t L = s.L, Dk = s.Dk, Dv = s.Dv;
    for (int64_t bh = 0; bh < s.B * s.H; bh++) {
        const float* qh = q + bh * L * Dk;
        const float* kh = k + bh * L * Dk;
        const float* vh = v + bh * L * Dv;
        const float* gh = dout + bh * L * Dv;
        std::vector<double> A(sz(L * L), 0.0), dfq(sz(L * Dk), 0.0), dfk(sz(L * Dk), 0.0),
            dva(sz(L * Dv), 0.0);
        for (int64_t i = 0; i < L; i++)
            for (int64_t j = 0; j < (causal ? i + 1 : L); j++) {
                double a = 0;
                for (int64_t d = 0; d < Dk; d++) a += phid(qh[i * Dk + d]) * phid(kh[j * Dk + d]);
                A[size_t(i * L + j)] = a;
            }
        for (int64_t i = 0; i < L; i++) {
            const int64_t jmax = causal ? i + 1 : L;
            std::vector<double> num(sz(Dv), 0.0);
            double den = eps;
            for (int64_t j = 0; j < jmax; j++) {
                den += A[size_t(i * L + j)];
                for (int64_t e = 0; e < Dv; e++) num[size_t(e)] += A[size_t(i * L + j)] * vh[j * Dv + e];
            }
            double gd = 0;
            for (int64_t e = 0; e < Dv; e++) gd -= gh[i * Dv + e] * num[size_t(e)] / (den * den);
            for (int64_t j = 0; j < jmax; j++) {
                double dA = gd;
                for (int64_t e = 0; e < Dv; e++) dA += gh[i * Dv + e] / den * vh[j * Dv + e];
                for (int64_t e = 0; e < Dv; e++) dva[size_t(j * Dv + e)] += A[size_t(i * L + j)] * gh[i * Dv + e] / den;
                for (int64_t d = 0; d < Dk; d++) {
                    dfq[size_t(i * Dk + d)] += dA * phid(kh[j * Dk + d]);
                    dfk[size_t(j * Dk + d)] += dA * phid(qh[i * Dk + d]);
                }
            }
        }
        for (int64_t e = 0; e < L * Dk; e++) {
            dq[bh * L * Dk + e] = float(dfq[size_t(e)] * dphid(qh[e]));
            dk[bh * L * Dk + e] = float(dfk[size_t(e)] * dphid(kh[e]));
        }
        for (int64_t e = 0; e < L * Dv; e++) dv[bh * L * Dv + e] = float(dva[size_t(e)]);
    }
}

void linear_attention_step(float* out, float* S, float* z, const float* q, const float* k, const float* v, int64_t B,
                           int64_t H, int64_t Dk, int64_t Dv, float eps) {
#pragma omp parallel if (B * H * Dk * Dv > 65536)
    {
        std::vector<float> fq(sz(Dk)), fk(sz(Dk));
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < B * H; bh++) {
            float* Sh = S + bh * Dk * Dv;
            float* zh = z + bh * Dk;
            for (int64_t d = 0; d < Dk; d++) {
                fk[size_t(d)] = phi(k[bh * Dk + d]);
                fq[size_t(d)] = phi(q[bh * Dk + d]);
            }
            rank1(Sh, zh, fk.data(), v + bh * Dv, Dk, Dv);
            float den = eps;
            for (int64_t d = 0; d < Dk; d++) den += fq[size_t(d)] * zh[d];
            float* oh = out + bh * Dv;
            vecmat(oh, fq.data(), Sh, Dk, Dv);
            for (int64_t e = 0; e < Dv; e++) oh[e] /= den;
        }
    }
}

}  // namespace hippo
