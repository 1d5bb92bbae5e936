// Vectorised fp32 transcendental functions for AVX-512 (16 lanes), used by the elementwise
// kernels. Compiled only when __AVX512F__ is defined; callers keep a portable std:: fallback.
//
// Accuracy (measured against double-precision references over the whole float range the callers
// use; see tests/test_elementwise_kernels.cpp):
//   v_exp     <= 2 ulp    range reduction x = n ln2 + r (two-constant Cody-Waite), degree-5
//                         polynomial for (e^r - 1 - r) / r^2, scale by 2^n with vscalefps (so
//                         overflow gives +inf and underflow gives denormals / 0 without branches)
//   v_log     <= 2 ulp    x = m 2^e with m in [1/sqrt2, sqrt2) (vgetexp/vgetmant), degree-7
//                         polynomial for (log1p(f) - f + f^2/2) / f^3
//   v_tanh    <= 3 ulp    odd polynomial near 0, 1 - 2 / (e^{2|x|} + 1) elsewhere
//   v_erf     ~1e-7 rel   odd polynomial on |x| < 1, 1 - e^{-x^2} R(1/x) on 1 <= |x| < 4
//   v_erfc_tail(a), a>=1  e^{-a^2} R(1/a), ~3e-7 relative up to a = 10 (0 beyond)
//   v_norm_cdf (gelu)     <= ~12 ulp in the far negative tail (R's fit error), ~1 ulp elsewhere
// The polynomial coefficients were fitted for this project (weighted least squares on Chebyshev
// nodes, numpy) and rounded to fp32.
// NaN inputs give NaN outputs (vminps/vmaxps keep the second operand, so clamps put x second).
#pragma once

#include "common/simd.h"
#ifdef __AVX512F__

namespace hippo::simd {

inline __m512 v_set(float v) { return _mm512_set1_ps(v); }

// e^x
inline __m512 v_exp(__m512 x) {
    x = _mm512_min_ps(v_set(88.8f), x);
    x = _mm512_max_ps(v_set(-104.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, v_set(1.44269504089f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, v_set(0.693359375f), x);  // x - n*ln2_hi (exact)
    r = _mm512_fnmadd_ps(n, v_set(-2.12194440e-4f), r);      // - n*ln2_lo
    __m512 p = v_set(0.000198264956f);
    p = _mm512_fmadd_ps(p, r, v_set(0.00139460212f));
    p = _mm512_fmadd_ps(p, r, v_set(0.00833342969f));
    p = _mm512_fmadd_ps(p, r, v_set(0.0416662693f));
    p = _mm512_fmadd_ps(p, r, v_set(0.166666657f));
    p = _mm512_fmadd_ps(p, r, v_set(0.5f));
    __m512 r2 = _mm512_mul_ps(r, r);
    __m512 y = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, v_set(1.0f)));
    return _mm512_scalef_ps(y, n);
}

// natural log; log(0) = -inf, log(x<0) = NaN, log(inf) = inf
inline __m512 v_log(__m512 x) {
    __m512 e = _mm512_getexp_ps(x);                                       // floor(log2 x)
    __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);  // [1, 2)
    __mmask16 big = _mm512_cmp_ps_mask(m, v_set(1.41421356f), _CMP_GT_OQ);
    m = _mm512_mask_mul_ps(m, big, m, v_set(0.5f));
    e = _mm512_mask_add_ps(e, big, e, v_set(1.0f));
    __m512 f = _mm512_sub_ps(m, v_set(1.0f));
    __m512 p = v_set(-0.0736286789f);
    p = _mm512_fmadd_ps(p, f, v_set(0.126203269f));
    p = _mm512_fmadd_ps(p, f, v_set(-0.13202104f));
    p = _mm512_fmadd_ps(p, f, v_set(0.142271146f));
    p = _mm512_fmadd_ps(p, f, v_set(-0.166213706f));
    p = _mm512_fmadd_ps(p, f, v_set(0.19999826f));
    p = _mm512_fmadd_ps(p, f, v_set(-0.250008523f));
    p = _mm512_fmadd_ps(p, f, v_set(0.333333552f));
    __m512 z = _mm512_mul_ps(f, f);
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(f, z), p);
    y = _mm512_fmadd_ps(e, v_set(-2.12194440e-4f), y);
    y = _mm512_fnmadd_ps(v_set(0.5f), z, y);
    __m512 r = _mm512_add_ps(f, y);
    r = _mm512_fmadd_ps(e, v_set(0.693359375f), r);
    // special values
    __mmask16 zero = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_EQ_OQ);
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    __mmask16 inf = _mm512_cmp_ps_mask(x, v_set(__builtin_inff()), _CMP_EQ_OQ);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    r = _mm512_mask_mov_ps(r, zero, v_set(-__builtin_inff()));
    r = _mm512_mask_mov_ps(r, inf, x);
    r = _mm512_mask_mov_ps(r, neg, v_set(__builtin_nanf("")));
    r = _mm512_mask_mov_ps(r, nan, x);
    return r;
}

// log(1 + t) for t >= 0 (accurate for tiny t): log(u) * t / (u - 1) with u = 1 + t.
inline __m512 v_log1p_pos(__m512 t) {
    __m512 u = _mm512_add_ps(t, v_set(1.0f));
    __m512 d = _mm512_sub_ps(u, v_set(1.0f));
    __m512 l = v_log(u);
    __mmask16 tiny = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_EQ_OQ);
    __m512 r = _mm512_mul_ps(l, _mm512_div_ps(t, _mm512_mask_mov_ps(d, tiny, v_set(1.0f))));
    return _mm512_mask_mov_ps(r, tiny, t);
}

inline __m512 v_abs(__m512 x) { return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff))); }
inline __m512 v_copysign(__m512 mag, __m512 sgn) {
    __m512i s = _mm512_and_si512(_mm512_castps_si512(sgn), _mm512_set1_epi32(int(0x80000000u)));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(mag), s));
}

// 1 / (1 + e^-x)
inline __m512 v_sigmoid(__m512 x) {
    return _mm512_div_ps(v_set(1.0f), _mm512_add_ps(v_set(1.0f), v_exp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

inline __m512 v_tanh(__m512 x) {
    __m512 a = v_abs(x);
    // |x| < 0.625: x + x^3 P(x^2) (odd polynomial, fitted)
    __m512 z = _mm512_mul_ps(x, x);
    __m512 p = v_set(-0.0057191262f);
    p = _mm512_fmadd_ps(p, z, v_set(0.0206532888f));
    p = _mm512_fmadd_ps(p, z, v_set(-0.0537447147f));
    p = _mm512_fmadd_ps(p, z, v_set(0.133315131f));
    p = _mm512_fmadd_ps(p, z, v_set(-0.333332866f));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
    // else: 1 - 2 / (e^{2|x|} + 1), sign of x
    __m512 e = v_exp(_mm512_add_ps(a, a));
    __m512 big = _mm512_sub_ps(v_set(1.0f), _mm512_div_ps(v_set(2.0f), _mm512_add_ps(e, v_set(1.0f))));
    big = v_copysign(big, x);
    __mmask16 m = _mm512_cmp_ps_mask(a, v_set(0.625f), _CMP_LT_OQ);
    __m512 r = _mm512_mask_mov_ps(big, m, small);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(r, nan, x);
}

// erfc(a) for a >= 1, given a^2 as hi + lo (hi = fl(a*a), lo its rounding error) so that callers
// with a = |x| / sqrt2 can pass x^2 / 2 exactly. Returns 0 beyond a = 10 (erfc(10) ~ 2e-45).
inline __m512 v_erfc_tail_sq(__m512 a, __m512 hi, __m512 lo) {
    __mmask16 zero = _mm512_cmp_ps_mask(a, v_set(10.0f), _CMP_GE_OQ);
    a = _mm512_min_ps(v_set(10.0f), a);
    __m512 t = _mm512_div_ps(v_set(1.0f), a);
    __m512 p = v_set(-0.033122927f);
    p = _mm512_fmadd_ps(p, t, v_set(0.245830253f));
    p = _mm512_fmadd_ps(p, t, v_set(-0.793317795f));
    p = _mm512_fmadd_ps(p, t, v_set(1.44877744f));
    p = _mm512_fmadd_ps(p, t, v_set(-1.59908128f));
    p = _mm512_fmadd_ps(p, t, v_set(0.98142302f));
    p = _mm512_fmadd_ps(p, t, v_set(-0.119446978f));
    p = _mm512_fmadd_ps(p, t, v_set(-0.266588539f));
    p = _mm512_fmadd_ps(p, t, v_set(-0.00111279509f));
    p = _mm512_fmadd_ps(p, t, v_set(0.56422317f));
    __m512 e = v_exp(_mm512_sub_ps(_mm512_setzero_ps(), hi));
    e = _mm512_fnmadd_ps(e, lo, e);  // e^{-hi-lo} ~ e^{-hi} (1 - lo)
    return _mm512_maskz_mov_ps(__mmask16(~zero), _mm512_mul_ps(_mm512_mul_ps(p, t), e));
}

inline __m512 v_erfc_tail(__m512 a) {
    __m512 hi = _mm512_mul_ps(a, a);
    return v_erfc_tail_sq(a, hi, _mm512_fmsub_ps(a, a, hi));
}

// erf(x) / x for |x| < 1, as a polynomial in x^2
inline __m512 v_erf_small_ratio(__m512 x) {
    __m512 s = _mm512_mul_ps(x, x);
    __m512 p = v_set(7.89820988e-05f);
    p = _mm512_fmadd_ps(p, s, v_set(-0.000802435388f));
    p = _mm512_fmadd_ps(p, s, v_set(0.00519005349f));
    p = _mm512_fmadd_ps(p, s, v_set(-0.0268548094f));
    p = _mm512_fmadd_ps(p, s, v_set(0.112836123f));
    p = _mm512_fmadd_ps(p, s, v_set(-0.376126289f));
    p = _mm512_fmadd_ps(p, s, v_set(1.12837923f));
    return p;
}

inline __m512 v_erf(__m512 x) {
    __m512 a = v_abs(x);
    __m512 small = _mm512_mul_ps(x, v_erf_small_ratio(x));
    __m512 big = v_copysign(_mm512_sub_ps(v_set(1.0f), v_erfc_tail(_mm512_max_ps(v_set(1.0f), a))), x);
    __mmask16 m = _mm512_cmp_ps_mask(a, v_set(1.0f), _CMP_LT_OQ);
    __m512 r = _mm512_mask_mov_ps(big, m, small);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(r, nan, x);
}

// Phi(x) = 0.5 (1 + erf(x / sqrt2)), computed without cancellation for negative x; the tail uses
// x^2 / 2 from the exact product x*x (rounding x / sqrt2 first would cost ~a^2 * 1e-7 relative).
inline __m512 v_norm_cdf(__m512 x) {
    __m512 z = _mm512_mul_ps(x, v_set(0.70710678118654752f));
    __m512 a = v_abs(z);
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(z, v_erf_small_ratio(z)), v_set(0.5f), v_set(0.5f));
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 hi = _mm512_mul_ps(x2, v_set(0.5f)), lo = _mm512_mul_ps(_mm512_fmsub_ps(x, x, x2), v_set(0.5f));
    __m512 tail = _mm512_mul_ps(v_set(0.5f), v_erfc_tail_sq(_mm512_max_ps(v_set(1.0f), a), hi, lo));  // Phi(-|x|)
    __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GT_OQ);
    __m512 big = _mm512_mask_sub_ps(tail, pos, v_set(1.0f), tail);
    __mmask16 m = _mm512_cmp_ps_mask(a, v_set(1.0f), _CMP_LT_OQ);
    __m512 r = _mm512_mask_mov_ps(big, m, small);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(r, nan, x);
}

}  // namespace hippo::simd
#endif
