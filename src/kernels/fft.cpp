// hippo's power-of-two real FFT. Our own code; algorithms from the textbooks (Cooley-Tukey
// radix-4 decimation in frequency / time, the real-input "split" of a half-length complex FFT).
//
// Note [fft layout]
// n = 2m real points are read as m complex points z[j] = x[2j] + i x[2j+1]; Z = DFT_m(z) and
//   X[k] = E[k] + W_n^k O[k],  E = (Z[k] + conj Z[m-k])/2,  O = (Z[k] - conj Z[m-k])/(2i),
// and X[m-k] = conj(E[k] - W_n^k O[k]), so one pass over pairs (k, m-k) finishes the real FFT.
//
// The complex FFT (vector path, m >= 256, b = log2 m) keeps data split: re[m] then im[m].
//  1. radix-4 DIF passes on blocks of size L = m, m/4, ... (span s = L/4 >= 16), vectorised along
//     the butterfly index j (16 consecutive j per register, no shuffles). Within a block the four
//     outputs go to quarters 0..3 as frequency residues (0, 2, 1, 3), i.e. bit-reversed, so after
//     all passes position P holds Z[bitrev_b(P)], as for radix-2 DIF. The first pass reads the
//     interleaved input directly (two permutes per register). When b - 4 is odd one radix-2 pass
//     (L = 32) follows. Passes run depth first: once a block fits in L1 all its passes are done.
//  2. The last four radix-2 levels are one 16-point DFT per block of 16 consecutive elements.
//     Block B's outputs q = 0..15 are Z[q m/16 + rev(B)] (rev over b-4 bits). We take the 16
//     blocks B = rev(c0 + l), l = 0..15 (c0 a multiple of 16), transpose them in registers (lane l
//     = block l), and run the 16-point DFT across lanes: output register q then holds Z[q m/16 + c0
//     + l] for l = 0..15, 16 consecutive bins in natural order. No bit-reversal pass is needed.
// The inverse runs the mirror image: pre-processing (X -> 2Z), the transposed inverse codelet
// (natural -> bit-reversed blocks), then radix-4 DIT passes with conjugate twiddles, the last of
// which writes interleaved output.
#include "kernels/fft.h"

#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "common/alloc.h"
#include "common/check.h"

#include "common/simd.h"

namespace hippo {

namespace {

constexpr int64_t kVecMinM = 256;   // vector path needs m/16 >= 16 blocks for the transposed codelet
constexpr int64_t kLeafL = 2048;    // depth-first: blocks of <= kLeafL complex (16 KiB) do all passes

inline uint32_t bitrev(uint32_t v, int bits) {
    uint32_t r = 0;
    for (int i = 0; i < bits; i++) {
        r = (r << 1) | (v & 1);
        v >>= 1;
    }
    return r;
}

inline size_t pad16(size_t v) { return (v + 15) / 16 * 16; }

// ---- scalar pieces (all paths) -------------------------------------------------------------------

// Forward post-processing for bins k and m-k (1 <= k <= m/2) from split Z; writes interleaved X.
inline void post_pair(const float* zr, const float* zi, int64_t m, int64_t k, float wr, float wi,
                      float* X) {
    float ar = zr[k], ai = zi[k], br = zr[m - k], bi = zi[m - k];
    float er = 0.5f * (ar + br), ei = 0.5f * (ai - bi);
    float orr = 0.5f * (ai + bi), oi = -0.5f * (ar - br);
    float tr = wr * orr - wi * oi, ti = wr * oi + wi * orr;
    X[2 * k] = er + tr;
    X[2 * k + 1] = ei + ti;
    X[2 * (m - k)] = er - tr;
    X[2 * (m - k) + 1] = -(ei - ti);
}

// Inverse pre-processing for bins k and m-k (1 <= k <= m/2) from interleaved X; writes split 2Z*scale.
inline void pre_pair(const float* X, int64_t m, int64_t k, float wr, float wi, float scale, float* zr,
                     float* zi) {
    float ar = X[2 * k], ai = X[2 * k + 1], br = X[2 * (m - k)], bi = X[2 * (m - k) + 1];
    float fr = ar + br, fi = ai - bi;        // F = Xk + conj Xmk
    float dr = ar - br, di = ai + bi;        // D = Xk - conj Xmk
    float gr = wr * dr + wi * di, gi = wr * di - wi * dr;  // G = conj(W) D
    // Z[k] = F + iG, Z[m-k] = conj(F - iG)
    zr[k] = scale * (fr - gi);
    zi[k] = scale * (fi + gr);
    zr[m - k] = scale * (fr + gi);
    zi[m - k] = -scale * (fi - gr);
}

// Z-domain pair product: given Za, Zb at (k, m-k), returns Zc with Xc = Xa * Xb (or Xa * conj Xb)
// at k and m-k, Zc = pre(Xc)/2 so that inverse_unordered (which scales by 2) matches inverse().
template <bool kConj>
inline void zmul_pair(const float* a, const float* b, float* c, int64_t m, int64_t k, float wr,
                      float wi) {
    auto post = [&](const float* s, float& xr, float& xi, float& yr, float& yi) {
        float ar = s[k], ai = s[m + k], br = s[m - k], bi = s[m + m - k];
        float er = 0.5f * (ar + br), ei = 0.5f * (ai - bi);
        float orr = 0.5f * (ai + bi), oi = -0.5f * (ar - br);
        float tr = wr * orr - wi * oi, ti = wr * oi + wi * orr;
        xr = er + tr, xi = ei + ti;       // X[k]
        yr = er - tr, yi = -(ei - ti);    // X[m-k]
    };
    float axr, axi, ayr, ayi, bxr, bxi, byr, byi;
    post(a, axr, axi, ayr, ayi);
    post(b, bxr, bxi, byr, byi);
    if (kConj) bxi = -bxi, byi = -byi;
    float pr = axr * bxr - axi * bxi, pi = axr * bxi + axi * bxr;  // Xc[k]
    float qr = ayr * byr - ayi * byi, qi = ayr * byi + ayi * byr;  // Xc[m-k]
    float fr = pr + qr, fi = pi - qi, dr = pr - qr, di = pi + qi;
    float gr = wr * dr + wi * di, gi = wr * di - wi * dr;
    c[k] = 0.5f * (fr - gi);
    c[m + k] = 0.5f * (fi + gr);
    c[m - k] = 0.5f * (fr + gi);
    c[m + m - k] = -0.5f * (fi - gr);
}

// In-place radix-2 complex FFT on split arrays (scalar fallback), natural order in and out.
// tw: W_m^k (k < m/2), re block then im block. inverse: conjugate twiddles.
void scalar_cfft(float* re, float* im, int64_t m, const float* twr, const float* twi, int log2m,
                 bool inverse) {
    for (int64_t i = 0; i < m; i++) {
        int64_t j = bitrev(uint32_t(i), log2m);
        if (j > i) {
            std::swap(re[i], re[j]);
            std::swap(im[i], im[j]);
        }
    }
    for (int64_t len = 2; len <= m; len *= 2) {
        int64_t half = len / 2, step = m / len;
        for (int64_t s = 0; s < m; s += len)
            for (int64_t j = 0; j < half; j++) {
                float wr = twr[j * step], wi = inverse ? -twi[j * step] : twi[j * step];
                int64_t a = s + j, b = a + half;
                float xr = re[b] * wr - im[b] * wi, xi = re[b] * wi + im[b] * wr;
                re[b] = re[a] - xr;
                im[b] = im[a] - xi;
                re[a] += xr;
                im[a] += xi;
            }
    }
}

#ifdef __AVX512F__
// ---- AVX-512 kernels -----------------------------------------------------------------------------

struct cv {
    __m512 r, i;
};
inline cv add(cv a, cv b) { return {_mm512_add_ps(a.r, b.r), _mm512_add_ps(a.i, b.i)}; }
inline cv sub(cv a, cv b) { return {_mm512_sub_ps(a.r, b.r), _mm512_sub_ps(a.i, b.i)}; }
inline cv mul(cv a, cv w) {  // a * w
    return {_mm512_fmsub_ps(a.r, w.r, _mm512_mul_ps(a.i, w.i)),
            _mm512_fmadd_ps(a.r, w.i, _mm512_mul_ps(a.i, w.r))};
}
inline cv mulc(cv a, cv w) {  // a * conj(w)
    return {_mm512_fmadd_ps(a.r, w.r, _mm512_mul_ps(a.i, w.i)),
            _mm512_fmsub_ps(a.i, w.r, _mm512_mul_ps(a.r, w.i))};
}
inline cv mul_negi(cv a) {  // -i a
    return {a.i, _mm512_sub_ps(_mm512_setzero_ps(), a.r)};
}
inline cv mul_posi(cv a) {  // +i a
    return {_mm512_sub_ps(_mm512_setzero_ps(), a.i), a.r};
}
inline cv ld(const float* re, const float* im) { return {_mm512_loadu_ps(re), _mm512_loadu_ps(im)}; }
inline void st(float* re, float* im, cv a) {
    _mm512_storeu_ps(re, a.r);
    _mm512_storeu_ps(im, a.i);
}
inline __m512i idx(int a0, int a1, int a2, int a3, int a4, int a5, int a6, int a7, int a8, int a9,
                   int a10, int a11, int a12, int a13, int a14, int a15) {
    return _mm512_setr_epi32(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15);
}
// 16 interleaved complex (32 floats) -> split
inline cv ld_interleaved(const float* p) {
    const __m512i ev = idx(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = idx(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __m512 lo = _mm512_loadu_ps(p), hi = _mm512_loadu_ps(p + 16);
    return {_mm512_permutex2var_ps(lo, ev, hi), _mm512_permutex2var_ps(lo, od, hi)};
}
inline void st_interleaved(float* p, cv a) {
    const __m512i lo = idx(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = idx(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_storeu_ps(p, _mm512_permutex2var_ps(a.r, lo, a.i));
    _mm512_storeu_ps(p + 16, _mm512_permutex2var_ps(a.r, hi, a.i));
}

// As above with only `valid` floats readable from p (the rest taken as zero).
inline cv ld_interleaved_lim(const float* p, int64_t valid) {
    if (valid >= 32) return ld_interleaved(p);
    if (valid <= 0) return {_mm512_setzero_ps(), _mm512_setzero_ps()};
    const __m512i ev = idx(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = idx(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __mmask16 mlo = valid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
    __mmask16 mhi = valid >= 16 ? __mmask16((1u << (valid - 16)) - 1) : __mmask16(0);
    __m512 lo = _mm512_maskz_loadu_ps(mlo, p), hi = _mm512_maskz_loadu_ps(mhi, p + 16);
    return {_mm512_permutex2var_ps(lo, ev, hi), _mm512_permutex2var_ps(lo, od, hi)};
}
// Stores only the first `valid` of the 32 interleaved floats.
inline void st_interleaved_lim(float* p, cv a, int64_t valid) {
    if (valid >= 32) return st_interleaved(p, a);
    if (valid <= 0) return;
    const __m512i lo = idx(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = idx(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    __mmask16 mlo = valid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
    __mmask16 mhi = valid >= 16 ? __mmask16((1u << (valid - 16)) - 1) : __mmask16(0);
    _mm512_mask_storeu_ps(p, mlo, _mm512_permutex2var_ps(a.r, lo, a.i));
    _mm512_mask_storeu_ps(p + 16, mhi, _mm512_permutex2var_ps(a.r, hi, a.i));
}

// ---- radix-4 DIF pass on one block of L = 4s complex (s multiple of 16) ----
// tw: w1r, w1i, w2r, w2i, w3r, w3i, each s floats (W_L^{j r}).
// kIn: source is interleaved complex `src` (2L floats, of which the first src_len are read, the rest
// taken as zeros) instead of re/im.
template <bool kIn>
inline void dif4_block(const float* src, float* re, float* im, int64_t s, const float* tw,
                       int64_t src_len = 0) {
    const float *w1r = tw, *w1i = tw + s, *w2r = tw + 2 * s, *w2i = tw + 3 * s, *w3r = tw + 4 * s,
                *w3i = tw + 5 * s;
    for (int64_t j = 0; j < s; j += 16) {
        cv a0, a1, a2, a3;
        if constexpr (kIn) {
            if (2 * (j + 3 * s) + 32 <= src_len) {
                a0 = ld_interleaved(src + 2 * j);
                a1 = ld_interleaved(src + 2 * (j + s));
                a2 = ld_interleaved(src + 2 * (j + 2 * s));
                a3 = ld_interleaved(src + 2 * (j + 3 * s));
            } else {
                a0 = ld_interleaved_lim(src + 2 * j, src_len - 2 * j);
                a1 = ld_interleaved_lim(src + 2 * (j + s), src_len - 2 * (j + s));
                a2 = ld_interleaved_lim(src + 2 * (j + 2 * s), src_len - 2 * (j + 2 * s));
                a3 = ld_interleaved_lim(src + 2 * (j + 3 * s), src_len - 2 * (j + 3 * s));
            }
        } else {
            a0 = ld(re + j, im + j);
            a1 = ld(re + j + s, im + j + s);
            a2 = ld(re + j + 2 * s, im + j + 2 * s);
            a3 = ld(re + j + 3 * s, im + j + 3 * s);
        }
        cv t0 = add(a0, a2), t1 = sub(a0, a2), t2 = add(a1, a3), t3 = mul_negi(sub(a1, a3));
        cv b0 = add(t0, t2), b2 = sub(t0, t2), b1 = add(t1, t3), b3 = sub(t1, t3);
        b1 = mul(b1, ld(w1r + j, w1i + j));
        b2 = mul(b2, ld(w2r + j, w2i + j));
        b3 = mul(b3, ld(w3r + j, w3i + j));
        st(re + j, im + j, b0);
        st(re + j + s, im + j + s, b2);
        st(re + j + 2 * s, im + j + 2 * s, b1);
        st(re + j + 3 * s, im + j + 3 * s, b3);
    }
}

// ---- radix-4 DIT pass (inverse) on one block; kOut: write interleaved complex to dst, only its
// first dst_len floats ----
template <bool kOut>
inline void dit4_block(float* dst, float* re, float* im, int64_t s, const float* tw, int64_t dst_len = 0) {
    const float *w1r = tw, *w1i = tw + s, *w2r = tw + 2 * s, *w2i = tw + 3 * s, *w3r = tw + 4 * s,
                *w3i = tw + 5 * s;
    for (int64_t j = 0; j < s; j += 16) {
        cv y0 = ld(re + j, im + j);
        cv y2 = ld(re + j + s, im + j + s);
        cv y1 = ld(re + j + 2 * s, im + j + 2 * s);
        cv y3 = ld(re + j + 3 * s, im + j + 3 * s);
        y1 = mulc(y1, ld(w1r + j, w1i + j));
        y2 = mulc(y2, ld(w2r + j, w2i + j));
        y3 = mulc(y3, ld(w3r + j, w3i + j));
        cv t0 = add(y0, y2), t1 = sub(y0, y2), t2 = add(y1, y3), t3 = mul_posi(sub(y1, y3));
        cv a0 = add(t0, t2), a1 = add(t1, t3), a2 = sub(t0, t2), a3 = sub(t1, t3);
        if constexpr (kOut) {
            if (2 * (j + 3 * s) + 32 <= dst_len) {
                st_interleaved(dst + 2 * j, a0);
                st_interleaved(dst + 2 * (j + s), a1);
                st_interleaved(dst + 2 * (j + 2 * s), a2);
                st_interleaved(dst + 2 * (j + 3 * s), a3);
            } else {
                st_interleaved_lim(dst + 2 * j, a0, dst_len - 2 * j);
                st_interleaved_lim(dst + 2 * (j + s), a1, dst_len - 2 * (j + s));
                st_interleaved_lim(dst + 2 * (j + 2 * s), a2, dst_len - 2 * (j + 2 * s));
                st_interleaved_lim(dst + 2 * (j + 3 * s), a3, dst_len - 2 * (j + 3 * s));
            }
        } else {
            st(re + j, im + j, a0);
            st(re + j + s, im + j + s, a1);
            st(re + j + 2 * s, im + j + 2 * s, a2);
            st(re + j + 3 * s, im + j + 3 * s, a3);
        }
    }
}

// ---- radix-2 pass at L = 32 (span 16) over a region of `len` complex ----
inline void dif2_32(float* re, float* im, int64_t len, const float* tw) {
    cv w = ld(tw, tw + 16);
    for (int64_t b = 0; b < len; b += 32) {
        cv a0 = ld(re + b, im + b), a1 = ld(re + b + 16, im + b + 16);
        st(re + b, im + b, add(a0, a1));
        st(re + b + 16, im + b + 16, mul(sub(a0, a1), w));
    }
}
inline void dit2_32(float* re, float* im, int64_t len, const float* tw) {
    cv w = ld(tw, tw + 16);
    for (int64_t b = 0; b < len; b += 32) {
        cv y0 = ld(re + b, im + b), y1 = mulc(ld(re + b + 16, im + b + 16), w);
        st(re + b, im + b, add(y0, y1));
        st(re + b + 16, im + b + 16, sub(y0, y1));
    }
}

// ---- 16x16 transpose in registers ----
inline void transpose16(__m512* r) {
    __m512 a[16], b[16];
    for (int k = 0; k < 16; k += 2) {
        a[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
        a[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int g = 0; g < 16; g += 4) {
        __m512d a0 = _mm512_castps_pd(a[g]), a1 = _mm512_castps_pd(a[g + 1]);
        __m512d a2 = _mm512_castps_pd(a[g + 2]), a3 = _mm512_castps_pd(a[g + 3]);
        b[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        b[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        b[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        b[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    // b[4g + c] lane L = rows 4g..4g+3 of column 4L + c
    for (int c = 0; c < 4; c++) {
        __m512 d = _mm512_shuffle_f32x4(b[c], b[4 + c], 0x88);
        __m512 d2 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0xDD);
        __m512 e = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0x88);
        __m512 e2 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(d, e, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(d, e, 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(d2, e2, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(d2, e2, 0xDD);
    }
}

inline cv cmul_const(cv a, float wr, float wi) {
    __m512 vr = _mm512_set1_ps(wr), vi = _mm512_set1_ps(wi);
    return {_mm512_fmsub_ps(a.r, vr, _mm512_mul_ps(a.i, vi)),
            _mm512_fmadd_ps(a.r, vi, _mm512_mul_ps(a.i, vr))};
}

// 4-point DFT in place (natural order), forward (sign -1) or inverse (+1).
template <bool kInv>
inline void dft4(cv& u0, cv& u1, cv& u2, cv& u3) {
    cv t0 = add(u0, u2), t1 = sub(u0, u2), t2 = add(u1, u3);
    cv t3 = kInv ? mul_posi(sub(u1, u3)) : mul_negi(sub(u1, u3));
    u0 = add(t0, t2);
    u1 = add(t1, t3);
    u2 = sub(t0, t2);
    u3 = sub(t1, t3);
}

// 16-point DFT across lanes: x[p] -> x[q] natural order.
template <bool kInv>
inline void dft16(cv* x) {
    // p = b + 4a, q = c + 4d: X[c+4d] = sum_b W4^{bd} W16^{bc} sum_a x[b+4a] W4^{ac}
    for (int b = 0; b < 4; b++) dft4<kInv>(x[b], x[b + 4], x[b + 8], x[b + 12]);
    // now x[b + 4c] = y_b[c]; twiddle by W16^{bc}
    const float c1 = 0.92387953251128674f, s1 = 0.38268343236508978f, h = 0.70710678118654752f;
    const float sg = kInv ? 1.f : -1.f;  // W16^k = cos(2 pi k/16) + sg i sin(2 pi k/16)
    x[1 + 4] = cmul_const(x[1 + 4], c1, sg * s1);       // b=1,c=1: W^1
    x[1 + 8] = cmul_const(x[1 + 8], h, sg * h);         // b=1,c=2: W^2
    x[1 + 12] = cmul_const(x[1 + 12], s1, sg * c1);     // b=1,c=3: W^3
    x[2 + 4] = cmul_const(x[2 + 4], h, sg * h);         // b=2,c=1: W^2
    x[2 + 8] = kInv ? mul_posi(x[2 + 8]) : mul_negi(x[2 + 8]);  // W^4
    x[2 + 12] = cmul_const(x[2 + 12], -h, sg * h);      // b=2,c=3: W^6
    x[3 + 4] = cmul_const(x[3 + 4], s1, sg * c1);       // b=3,c=1: W^3
    x[3 + 8] = cmul_const(x[3 + 8], -h, sg * h);        // b=3,c=2: W^6
    x[3 + 12] = cmul_const(x[3 + 12], -c1, -sg * s1);   // b=3,c=3: W^9
    for (int c = 0; c < 4; c++) dft4<kInv>(x[4 * c], x[4 * c + 1], x[4 * c + 2], x[4 * c + 3]);
    // now x[4c + d] = X[c + 4d]; transpose the 4x4 index
    cv y[16];
    for (int c = 0; c < 4; c++)
        for (int d = 0; d < 4; d++) y[c + 4 * d] = x[4 * c + d];
    for (int q = 0; q < 16; q++) x[q] = y[q];
}

// Forward codelet: src split (bit-reversed blocks) -> dst split natural order.
void codelet_fwd(const float* sre, const float* sim, float* dre, float* dim, int64_t m, int log2m) {
    const int bb = log2m - 8;  // bits of c0/16
    const int64_t lane_stride = int64_t(16) << bb;  // rev4(l) * 2^{b-8} blocks of 16
    const int64_t q_stride = m / 16;
    for (int64_t t = 0; t < (int64_t(1) << bb); t++) {
        int64_t base = int64_t(bitrev(uint32_t(t), bb)) * 16;
        __m512 vr[16], vi[16];
        for (int l = 0; l < 16; l++) {
            int64_t off = base + int64_t(bitrev(uint32_t(l), 4)) * lane_stride;
            vr[l] = _mm512_loadu_ps(sre + off);
            vi[l] = _mm512_loadu_ps(sim + off);
        }
        transpose16(vr);
        transpose16(vi);
        cv x[16];
        for (int p = 0; p < 16; p++) x[p] = {vr[p], vi[p]};
        dft16<false>(x);
        int64_t c0 = t * 16;
        for (int q = 0; q < 16; q++) st(dre + q * q_stride + c0, dim + q * q_stride + c0, x[q]);
    }
}

// Inverse codelet: src split natural order -> dst split bit-reversed blocks, times `scale`.
template <bool kScale>
void codelet_inv(const float* sre, const float* sim, float* dre, float* dim, int64_t m, int log2m,
                 float scale) {
    const int bb = log2m - 8;
    const int64_t lane_stride = int64_t(16) << bb;
    const int64_t q_stride = m / 16;
    const __m512 vs = _mm512_set1_ps(scale);
    for (int64_t t = 0; t < (int64_t(1) << bb); t++) {
        int64_t c0 = t * 16;
        cv x[16];
        for (int q = 0; q < 16; q++) {
            x[q] = ld(sre + q * q_stride + c0, sim + q * q_stride + c0);
            if constexpr (kScale) x[q] = {_mm512_mul_ps(x[q].r, vs), _mm512_mul_ps(x[q].i, vs)};
        }
        dft16<true>(x);
        __m512 vr[16], vi[16];
        for (int p = 0; p < 16; p++) vr[p] = x[p].r, vi[p] = x[p].i;
        transpose16(vr);
        transpose16(vi);
        int64_t base = int64_t(bitrev(uint32_t(t), bb)) * 16;
        for (int l = 0; l < 16; l++) {
            int64_t off = base + int64_t(bitrev(uint32_t(l), 4)) * lane_stride;
            _mm512_storeu_ps(dre + off, vr[l]);
            _mm512_storeu_ps(dim + off, vi[l]);
        }
    }
}

inline __m512 reverse16(__m512 v) {
    return _mm512_permutex2var_ps(v, idx(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), v);
}

// Forward post-processing, vector part: bins k in [16, m/2) and their mirrors.
void post_vec(const float* zr, const float* zi, int64_t m, const float* wr_, const float* wi_,
              float* X) {
    const __m512 half = _mm512_set1_ps(0.5f);
    // store of the mirror: lane l of (r, i) is bin m-k0-l; output bins m-k0-15 .. m-k0 interleaved
    const __m512i rlo = idx(15, 31, 14, 30, 13, 29, 12, 28, 11, 27, 10, 26, 9, 25, 8, 24);
    const __m512i rhi = idx(7, 23, 6, 22, 5, 21, 4, 20, 3, 19, 2, 18, 1, 17, 0, 16);
    for (int64_t k0 = 16; k0 + 16 <= m / 2; k0 += 16) {
        cv a = ld(zr + k0, zi + k0);
        cv b = {reverse16(_mm512_loadu_ps(zr + m - k0 - 15)), reverse16(_mm512_loadu_ps(zi + m - k0 - 15))};
        cv e = {_mm512_mul_ps(half, _mm512_add_ps(a.r, b.r)), _mm512_mul_ps(half, _mm512_sub_ps(a.i, b.i))};
        cv o = {_mm512_mul_ps(half, _mm512_add_ps(a.i, b.i)), _mm512_mul_ps(half, _mm512_sub_ps(b.r, a.r))};
        cv t = mul(o, ld(wr_ + k0, wi_ + k0));
        cv xk = add(e, t);
        cv xm = {_mm512_sub_ps(e.r, t.r), _mm512_sub_ps(t.i, e.i)};
        st_interleaved(X + 2 * k0, xk);
        _mm512_storeu_ps(X + 2 * (m - k0 - 15), _mm512_permutex2var_ps(xm.r, rlo, xm.i));
        _mm512_storeu_ps(X + 2 * (m - k0 - 15) + 16, _mm512_permutex2var_ps(xm.r, rhi, xm.i));
    }
}

// Inverse pre-processing, vector part (bins k in [16, m/2) and mirrors): X -> split 2 Z scale.
void pre_vec(const float* X, int64_t m, const float* wr_, const float* wi_, float scale, float* zr,
             float* zi) {
    const __m512 vs = _mm512_set1_ps(scale);
    const __m512i ev_rev = idx(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od_rev = idx(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (int64_t k0 = 16; k0 + 16 <= m / 2; k0 += 16) {
        cv a = ld_interleaved(X + 2 * k0);
        const float* pm = X + 2 * (m - k0 - 15);
        __m512 lo = _mm512_loadu_ps(pm), hi = _mm512_loadu_ps(pm + 16);
        cv b = {_mm512_permutex2var_ps(lo, ev_rev, hi), _mm512_permutex2var_ps(lo, od_rev, hi)};
        cv f = {_mm512_add_ps(a.r, b.r), _mm512_sub_ps(a.i, b.i)};
        cv d = {_mm512_sub_ps(a.r, b.r), _mm512_add_ps(a.i, b.i)};
        cv g = mulc(d, ld(wr_ + k0, wi_ + k0));
        __m512 zkr = _mm512_mul_ps(vs, _mm512_sub_ps(f.r, g.i));
        __m512 zki = _mm512_mul_ps(vs, _mm512_add_ps(f.i, g.r));
        __m512 zmr = _mm512_mul_ps(vs, _mm512_add_ps(f.r, g.i));
        __m512 zmi = _mm512_mul_ps(vs, _mm512_sub_ps(g.r, f.i));
        _mm512_storeu_ps(zr + k0, zkr);
        _mm512_storeu_ps(zi + k0, zki);
        _mm512_storeu_ps(zr + m - k0 - 15, reverse16(zmr));
        _mm512_storeu_ps(zi + m - k0 - 15, reverse16(zmi));
    }
}

// Z-domain spectrum product, vector part.
template <bool kConj>
void zmul_vec(const float* a, const float* b, float* c, int64_t m, const float* wr_, const float* wi_) {
    const __m512 half = _mm512_set1_ps(0.5f);
    for (int64_t k0 = 16; k0 + 16 <= m / 2; k0 += 16) {
        cv w = ld(wr_ + k0, wi_ + k0);
        auto post = [&](const float* s, cv& xk, cv& xm) {
            cv p = {_mm512_loadu_ps(s + k0), _mm512_loadu_ps(s + m + k0)};
            cv q = {reverse16(_mm512_loadu_ps(s + m - k0 - 15)),
                    reverse16(_mm512_loadu_ps(s + 2 * m - k0 - 15))};
            cv e = {_mm512_add_ps(p.r, q.r), _mm512_sub_ps(p.i, q.i)};  // 2E
            cv o = {_mm512_add_ps(p.i, q.i), _mm512_sub_ps(q.r, p.r)};  // 2O
            cv t = mul(o, w);
            xk = add(e, t);
            xm = {_mm512_sub_ps(e.r, t.r), _mm512_sub_ps(t.i, e.i)};  // 2 X[m-k]
        };
        cv ak, am, bk, bm;
        post(a, ak, am);
        post(b, bk, bm);
        // products (each factor carries 2, product 4; final scaling 1/8 below)
        cv pk = kConj ? mulc(ak, bk) : mul(ak, bk);
        cv pm = kConj ? mulc(am, bm) : mul(am, bm);
        cv f = {_mm512_add_ps(pk.r, pm.r), _mm512_sub_ps(pk.i, pm.i)};
        cv d = {_mm512_sub_ps(pk.r, pm.r), _mm512_add_ps(pk.i, pm.i)};
        cv g = mulc(d, w);
        const __m512 s8 = _mm512_mul_ps(half, _mm512_set1_ps(0.25f));
        __m512 zkr = _mm512_mul_ps(s8, _mm512_sub_ps(f.r, g.i));
        __m512 zki = _mm512_mul_ps(s8, _mm512_add_ps(f.i, g.r));
        __m512 zmr = _mm512_mul_ps(s8, _mm512_add_ps(f.r, g.i));
        __m512 zmi = _mm512_mul_ps(s8, _mm512_sub_ps(g.r, f.i));
        _mm512_storeu_ps(c + k0, zkr);
        _mm512_storeu_ps(c + m + k0, zki);
        _mm512_storeu_ps(c + m - k0 - 15, reverse16(zmr));
        _mm512_storeu_ps(c + 2 * m - k0 - 15, reverse16(zmi));
    }
}
#endif  // __AVX512F__

}  // namespace

// ---- plan ----------------------------------------------------------------------------------------

RealFFT::RealFFT(int64_t n) {
    HIPPO_CHECK(n >= 1 && n <= kMaxSize && (n & (n - 1)) == 0,
                "RealFFT: size %lld is not a power of two in [1, 2^22]", (long long)n);
    n_ = n;
    m_ = n / 2;
    log2m_ = 0;
    while ((int64_t(1) << log2m_) < m_) log2m_++;
#ifdef __AVX512F__
    vec_ = m_ >= kVecMinM;
#endif
    const int64_t m = m_;
    // layout of tw_
    size_t off = 0;
    post_stride_ = pad16(size_t(m / 2 + 1));
    post_off_ = off;
    off += 2 * post_stride_;
    scal_off_ = off;
    if (!vec_) off += 2 * pad16(size_t(m / 2 + 1));
    if (vec_) {
        int R = log2m_ - 4;
        int l = log2m_;
        for (int r = R; r >= 2; r -= 2, l -= 2) {
            lvl_off_[l] = off;
            off += 6 * (size_t(1) << (l - 2));
        }
        r2_off_ = off;
        off += 32;
    }
    tw_floats_ = off;
    tw_ = static_cast<float*>(aligned_alloc_bytes((tw_floats_ + 16) * sizeof(float)));
    std::memset(tw_, 0, (tw_floats_ + 16) * sizeof(float));
    const double pi2 = 2.0 * M_PI;
    // W_n^k = exp(-2 pi i k / n), k = 0..m/2
    for (int64_t k = 0; k <= m / 2; k++) {
        double a = pi2 * double(k) / double(n);
        tw_[post_off_ + k] = float(std::cos(a));
        tw_[post_off_ + post_stride_ + k] = float(-std::sin(a));
    }
    if (!vec_) {
        size_t st = pad16(size_t(m / 2 + 1));
        for (int64_t k = 0; k < m / 2; k++) {
            double a = pi2 * double(k) / double(m);
            tw_[scal_off_ + k] = float(std::cos(a));
            tw_[scal_off_ + st + k] = float(-std::sin(a));
        }
    } else {
        build_vector_plan();
    }
}

void RealFFT::build_vector_plan() {
    const double pi2 = 2.0 * M_PI;
    int R = log2m_ - 4;
    int l = log2m_;
    for (int r = R; r >= 2; r -= 2, l -= 2) {
        int64_t L = int64_t(1) << l, s = L / 4;
        float* t = tw_ + lvl_off_[l];
        for (int rr = 1; rr <= 3; rr++)
            for (int64_t j = 0; j < s; j++) {
                // exact argument reduction: (j * rr) mod L
                int64_t e = (j * rr) % L;
                double a = pi2 * double(e) / double(L);
                t[(2 * (rr - 1)) * s + j] = float(std::cos(a));
                t[(2 * (rr - 1) + 1) * s + j] = float(-std::sin(a));
            }
    }
    for (int j = 0; j < 16; j++) {
        double a = pi2 * j / 32.0;
        tw_[r2_off_ + j] = float(std::cos(a));
        tw_[r2_off_ + 16 + j] = float(-std::sin(a));
    }
}

RealFFT::~RealFFT() {
    if (tw_) aligned_free(tw_);
}

RealFFT::RealFFT(RealFFT&& o) noexcept { *this = std::move(o); }

RealFFT& RealFFT::operator=(RealFFT&& o) noexcept {
    if (this != &o) {
        if (tw_) aligned_free(tw_);
        std::memcpy(static_cast<void*>(this), static_cast<const void*>(&o), sizeof(RealFFT));
        o.tw_ = nullptr;
    }
    return *this;
}

size_t RealFFT::work_floats() const { return size_t(4 * m_ + 64); }

namespace {
inline int64_t clamp_len(int64_t len, int64_t n) { return len < 0 || len > n ? n : len; }
// Deinterleaves the first len reals of x (zeros beyond) into m complex split points.
inline void load_split(const float* x, int64_t len, int64_t m, float* zr, float* zi) {
    for (int64_t j = 0; j < m; j++) {
        zr[j] = 2 * j < len ? x[2 * j] : 0.0f;
        zi[j] = 2 * j + 1 < len ? x[2 * j + 1] : 0.0f;
    }
}
inline void store_interleaved(const float* zr, const float* zi, int64_t len, float* x) {
    for (int64_t i = 0; i < len; i++) x[i] = (i & 1) ? zi[i >> 1] : zr[i >> 1];
}
inline float* align_work(float* w) {
    uintptr_t p = reinterpret_cast<uintptr_t>(w);
    return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
}
// Plan internals handed to the kernels.
struct PlanView {
    int64_t m;
    int log2m;
    const float* tw;
    const size_t* lvl_off;
    size_t r2_off;
};

#ifdef __AVX512F__
// Runs all DIF passes from level size L (a block at re/im, first pass possibly from interleaved src)
// lmin: smallest radix-4 level (log2); levels are l = log2m, log2m-2, ..., lmin; r2: a radix-2
// level (L = 32) follows (log2m - 4 odd). Every recursion ends in a leaf (l and lmin have the
// parity of log2m), which does its remaining levels while it sits in L1.
void dif_rec(const PlanView& p, const float* src, float* re, float* im, int64_t L, int lmin, bool r2,
             int64_t src_len = 0) {
    int l = 0;
    while ((int64_t(1) << l) < L) l++;
    if (L <= kLeafL && !src) {
        // breadth first within this block
        for (int ll = l; ll >= lmin; ll -= 2) {
            int64_t LL = int64_t(1) << ll;
            const float* tw = p.tw + p.lvl_off[ll];
            for (int64_t b = 0; b < L; b += LL) dif4_block<false>(nullptr, re + b, im + b, LL / 4, tw);
        }
        if (r2) dif2_32(re, im, L, p.tw + p.r2_off);
        return;
    }
    const float* tw = p.tw + p.lvl_off[l];
    if (src)
        dif4_block<true>(src, re, im, L / 4, tw, src_len);
    else
        dif4_block<false>(nullptr, re, im, L / 4, tw);
    for (int q = 0; q < 4; q++) dif_rec(p, nullptr, re + q * (L / 4), im + q * (L / 4), L / 4, lmin, r2);
}

void dit_rec(const PlanView& p, float* dst, float* re, float* im, int64_t L, int lmin, bool r2,
             int64_t dst_len = 0) {
    int l = 0;
    while ((int64_t(1) << l) < L) l++;
    if (L <= kLeafL && !dst) {
        if (r2) dit2_32(re, im, L, p.tw + p.r2_off);
        for (int ll = lmin; ll <= l; ll += 2) {
            int64_t LL = int64_t(1) << ll;
            const float* tw = p.tw + p.lvl_off[ll];
            for (int64_t b = 0; b < L; b += LL) dit4_block<false>(nullptr, re + b, im + b, LL / 4, tw);
        }
        return;
    }
    for (int q = 0; q < 4; q++) dit_rec(p, nullptr, re + q * (L / 4), im + q * (L / 4), L / 4, lmin, r2);
    const float* tw = p.tw + p.lvl_off[l];
    if (dst)
        dit4_block<true>(dst, re, im, L / 4, tw, dst_len);
    else
        dit4_block<false>(nullptr, re, im, L / 4, tw);
}

// Complex forward FFT of m interleaved points x -> split natural-order (dre, dim). a: 2m scratch.
void cfft_fwd_vec(const PlanView& p, const float* x, float* dre, float* dim, float* a, int64_t len) {
    const int64_t m = p.m;
    float *are = a, *aim = a + m;
    int R = p.log2m - 4;
    int lmin = (R % 2) ? 7 : 6;  // smallest radix-4 level
    dif_rec(p, x, are, aim, m, lmin, R % 2, len);
    codelet_fwd(are, aim, dre, dim, m, p.log2m);
}

// Complex inverse FFT: split natural (sre, sim) times scale -> interleaved x (m complex). a: 2m.
template <bool kScale>
void cfft_inv_vec(const PlanView& p, const float* sre, const float* sim, float* x, float* a, float scale,
                  int64_t len) {
    const int64_t m = p.m;
    float *are = a, *aim = a + m;
    int R = p.log2m - 4;
    int lmin = (R % 2) ? 7 : 6;
    codelet_inv<kScale>(sre, sim, are, aim, m, p.log2m, scale);
    dit_rec(p, x, are, aim, m, lmin, R % 2, len);
}
#endif
}  // namespace

void RealFFT::forward(const float* x, float* X, float* work, int64_t len) const {
    work = align_work(work);
    len = clamp_len(len, n_);
    const int64_t m = m_;
    if (n_ == 1) {
        X[0] = len > 0 ? x[0] : 0.0f;
        X[1] = 0;
        X[2] = 0;  // n+2 = 3 floats; keep defined
        return;
    }
    const float* wr = tw_ + post_off_;
    const float* wi = wr + post_stride_;
    float *zr = work + 2 * m, *zi = work + 3 * m;
    if (vec_) {
#ifdef __AVX512F__
        PlanView p{m, log2m_, tw_, lvl_off_, r2_off_};
        cfft_fwd_vec(p, x, zr, zi, work, len);
        post_vec(zr, zi, m, wr, wi, X);
        for (int64_t k = 1; k < 16; k++) post_pair(zr, zi, m, k, wr[k], wi[k], X);
#endif
    } else {
        load_split(x, len, m, zr, zi);
        scalar_cfft(zr, zi, m, tw_ + scal_off_, tw_ + scal_off_ + pad16(size_t(m / 2 + 1)), log2m_, false);
        for (int64_t k = 1; k < m / 2; k++) post_pair(zr, zi, m, k, wr[k], wi[k], X);
    }
    if (m >= 2) {
        // k = m/2 pairs with itself: X = conj(Z[m/2])
        X[m] = zr[m / 2];
        X[m + 1] = -zi[m / 2];
    }
    float r0 = zr[0], i0 = zi[0];
    X[0] = r0 + i0;
    X[1] = 0;
    X[2 * m] = r0 - i0;
    X[2 * m + 1] = 0;
}

void RealFFT::inverse(const float* X, float* x, float* work, float scale, int64_t len) const {
    work = align_work(work);
    len = clamp_len(len, n_);
    const int64_t m = m_;
    if (n_ == 1) {
        if (len > 0) x[0] = X[0] * scale;
        return;
    }
    const float* wr = tw_ + post_off_;
    const float* wi = wr + post_stride_;
    float *zr = work + 2 * m, *zi = work + 3 * m;
    // k = 0 and k = m/2 first (reads of X before any write to x; x may alias X but only the last
    // pass writes x)
    float x0 = X[0], xm = X[2 * m];
    float z0r = scale * (x0 + xm), z0i = scale * (x0 - xm);
    float hr = 0, hi = 0;
    if (m >= 2) hr = 2 * scale * X[m], hi = -2 * scale * X[m + 1];
    if (vec_) {
#ifdef __AVX512F__
        for (int64_t k = 1; k < 16; k++) pre_pair(X, m, k, wr[k], wi[k], scale, zr, zi);
        pre_vec(X, m, wr, wi, scale, zr, zi);
        zr[0] = z0r, zi[0] = z0i, zr[m / 2] = hr, zi[m / 2] = hi;
        PlanView p{m, log2m_, tw_, lvl_off_, r2_off_};
        cfft_inv_vec<false>(p, zr, zi, x, work, 1.0f, len);
#endif
    } else {
        for (int64_t k = 1; k < m / 2; k++) pre_pair(X, m, k, wr[k], wi[k], scale, zr, zi);
        zr[0] = z0r, zi[0] = z0i;
        if (m >= 2) zr[m / 2] = hr, zi[m / 2] = hi;
        scalar_cfft(zr, zi, m, tw_ + scal_off_, tw_ + scal_off_ + pad16(size_t(m / 2 + 1)), log2m_, true);
        store_interleaved(zr, zi, len, x);
    }
}

// ---- unordered (Z-domain) API ----------------------------------------------------------------------

void RealFFT::forward_unordered(const float* x, float* S, float* work, int64_t len) const {
    work = align_work(work);
    len = clamp_len(len, n_);
    const int64_t m = m_;
    if (n_ == 1) {
        S[0] = len > 0 ? x[0] : 0.0f;
        S[1] = S[2] = 0;
        return;
    }
    if (vec_) {
#ifdef __AVX512F__
        PlanView p{m, log2m_, tw_, lvl_off_, r2_off_};
        cfft_fwd_vec(p, x, S, S + m, work, len);
#endif
    } else {
        float *zr = work + 2 * m, *zi = work + 3 * m;
        load_split(x, len, m, zr, zi);
        scalar_cfft(zr, zi, m, tw_ + scal_off_, tw_ + scal_off_ + pad16(size_t(m / 2 + 1)), log2m_, false);
        std::memcpy(S, zr, sizeof(float) * m);
        std::memcpy(S + m, zi, sizeof(float) * m);
    }
    S[2 * m] = S[2 * m + 1] = 0;
}

void RealFFT::inverse_unordered(const float* S, float* x, float* work, float scale, int64_t len) const {
    work = align_work(work);
    len = clamp_len(len, n_);
    const int64_t m = m_;
    if (n_ == 1) {
        if (len > 0) x[0] = S[0] * scale;
        return;
    }
    if (vec_) {
#ifdef __AVX512F__
        PlanView p{m, log2m_, tw_, lvl_off_, r2_off_};
        cfft_inv_vec<true>(p, S, S + m, x, work, 2.0f * scale, len);
#endif
    } else {
        float *zr = work + 2 * m, *zi = work + 3 * m;
        for (int64_t j = 0; j < m; j++) zr[j] = 2 * scale * S[j], zi[j] = 2 * scale * S[m + j];
        scalar_cfft(zr, zi, m, tw_ + scal_off_, tw_ + scal_off_ + pad16(size_t(m / 2 + 1)), log2m_, true);
        store_interleaved(zr, zi, len, x);
    }
}

namespace {
template <bool kConj>
void zmul_all(const float* a, const float* b, float* c, int64_t n, int64_t m, bool vec, const float* wr,
              const float* wi) {
    if (n == 1) {
        c[0] = a[0] * b[0];
        return;
    }
    // k = 0: X0 = Zr + Zi, Xm = Zr - Zi (real); Zc[0] = ((X0c + Xmc) + i (X0c - Xmc)) / 2
    float a0 = a[0] + a[m], am = a[0] - a[m], b0 = b[0] + b[m], bm = b[0] - b[m];
    float c0 = a0 * b0, cm = am * bm;
    // k = m/2: X = conj Z[m/2]; the product is computed there and mapped back the same way
    float hr = 0, hi = 0;
    if (m >= 2) {
        float ar = a[m / 2], ai = -a[m + m / 2], br = b[m / 2], bi = -b[m + m / 2];
        if (kConj) bi = -bi;
        float pr = ar * br - ai * bi, pi = ar * bi + ai * br;
        hr = pr, hi = -pi;
    }
    int64_t kv = 1;
#ifdef __AVX512F__
    if (vec) {
        for (int64_t k = 1; k < 16; k++) zmul_pair<kConj>(a, b, c, m, k, wr[k], wi[k]);
        zmul_vec<kConj>(a, b, c, m, wr, wi);
        kv = m / 2;
    }
#endif
    for (int64_t k = kv; k < m / 2; k++) zmul_pair<kConj>(a, b, c, m, k, wr[k], wi[k]);
    c[0] = 0.5f * (c0 + cm);
    c[m] = 0.5f * (c0 - cm);
    if (m >= 2) c[m / 2] = hr, c[m + m / 2] = hi;
    c[2 * m] = c[2 * m + 1] = 0;
}
}  // namespace

void RealFFT::spectrum_mul(const float* a, const float* b, float* out) const {
    zmul_all<false>(a, b, out, n_, m_, vec_, tw_ + post_off_, tw_ + post_off_ + post_stride_);
}
void RealFFT::spectrum_mul_conj(const float* a, const float* b, float* out) const {
    zmul_all<true>(a, b, out, n_, m_, vec_, tw_ + post_off_, tw_ + post_off_ + post_stride_);
}

void RealFFT::unordered_to_ordered(const float* S, float* X) const {
    const int64_t m = m_;
    if (n_ == 1) {
        X[0] = S[0], X[1] = X[2] = 0;
        return;
    }
    const float* wr = tw_ + post_off_;
    const float* wi = wr + post_stride_;
    for (int64_t k = 1; k < m / 2; k++) post_pair(S, S + m, m, k, wr[k], wi[k], X);
    if (m >= 2) X[m] = S[m / 2], X[m + 1] = -S[m + m / 2];
    float r0 = S[0], i0 = S[m];
    X[0] = r0 + i0, X[1] = 0, X[2 * m] = r0 - i0, X[2 * m + 1] = 0;
}

void RealFFT::ordered_to_unordered(const float* X, float* S) const {
    const int64_t m = m_;
    if (n_ == 1) {
        S[0] = X[0], S[1] = S[2] = 0;
        return;
    }
    const float* wr = tw_ + post_off_;
    const float* wi = wr + post_stride_;
    for (int64_t k = 1; k < m / 2; k++) pre_pair(X, m, k, wr[k], wi[k], 0.5f, S, S + m);
    if (m >= 2) S[m / 2] = X[m], S[m + m / 2] = -X[m + 1];
    S[0] = 0.5f * (X[0] + X[2 * m]), S[m] = 0.5f * (X[0] - X[2 * m]);
    S[2 * m] = S[2 * m + 1] = 0;
}

// ---- references ------------------------------------------------------------------------------------

void rfft_ref(const float* x, double* X, int64_t n) {
    std::vector<double> c(static_cast<size_t>(n)), s(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; t++) {
        double a = 2.0 * M_PI * double(t) / double(n);
        c[t] = std::cos(a), s[t] = std::sin(a);
    }
    for (int64_t k = 0; k <= n / 2; k++) {
        double re = 0, im = 0;
        int64_t e = 0;
        for (int64_t j = 0; j < n; j++) {
            re += double(x[j]) * c[e];
            im -= double(x[j]) * s[e];
            e += k;
            if (e >= n) e -= n;
        }
        X[2 * k] = re, X[2 * k + 1] = im;
    }
}

void irfft_ref(const double* X, double* x, int64_t n) {
    std::vector<double> c(static_cast<size_t>(n)), s(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; t++) {
        double a = 2.0 * M_PI * double(t) / double(n);
        c[t] = std::cos(a), s[t] = std::sin(a);
    }
    const int64_t h = n / 2;
    for (int64_t j = 0; j < n; j++) {
        double acc = X[0];
        int64_t e = j;
        for (int64_t k = 1; k < (n + 1) / 2; k++, e += j) {
            if (e >= n) e %= n;
            acc += 2.0 * (X[2 * k] * c[e] - X[2 * k + 1] * s[e]);
        }
        if (n % 2 == 0 && n >= 2) acc += (j % 2 ? -1.0 : 1.0) * X[2 * h];
        x[j] = acc;
    }
}

}  // namespace hippo
