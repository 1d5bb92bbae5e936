#include "kernels/elementwise.h"

// GCC 12 reports the _mm512_undefined_ps() placeholders inside many AVX-512 intrinsics (getexp,
// scalef, sqrt, ...) as "may be used uninitialized" at every inlining site: a known false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <cstring>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels/simd_math.h"

namespace hippo::ew {

const char* name(BinOp op) {
    switch (op) {
        case BinOp::Add: return "add";
        case BinOp::Sub: return "sub";
        case BinOp::Mul: return "mul";
        case BinOp::Div: return "div";
    }
    return "?";
}

const char* name(UnOp op) {
    switch (op) {
        case UnOp::Exp: return "exp";
        case UnOp::Log: return "log";
        case UnOp::Sqrt: return "sqrt";
        case UnOp::Tanh: return "tanh";
        case UnOp::Sigmoid: return "sigmoid";
        case UnOp::Silu: return "silu";
        case UnOp::Relu: return "relu";
        case UnOp::Softplus: return "softplus";
        case UnOp::Gelu: return "gelu";
        case UnOp::GeluTanh: return "gelu_tanh";
    }
    return "?";
}

namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluC = 0.044715f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;

inline int thread_count() {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}
inline int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// ---- operand sources for the map driver: a pointer walked with the index, or a broadcast scalar
struct Ptr {
    const float* p;
    float s(int64_t i) const { return p[i]; }
#ifdef __AVX512F__
    __m512 v(int64_t i) const { return _mm512_loadu_ps(p + i); }
    __m512 vm(int64_t i, __mmask16 m) const { return _mm512_maskz_loadu_ps(m, p + i); }
#endif
};
struct Scal {
    float c;
    float s(int64_t) const { return c; }
#ifdef __AVX512F__
    __m512 v(int64_t) const { return _mm512_set1_ps(c); }
    __m512 vm(int64_t, __mmask16) const { return _mm512_set1_ps(c); }
#endif
};

// y[i] = f(in[i]...) for i in [lo, hi), one thread. With AVX-512 every element (tails included,
// through masks) goes through the same vector code, so a value never depends on its position.
template <class F, class... In>
inline void map_range(const F& f, float* y, int64_t lo, int64_t hi, bool stream, const In&... in) {
#ifdef __AVX512F__
    int64_t i = lo;
    if (stream) {
        int64_t mis = int64_t((reinterpret_cast<uintptr_t>(y + i) & 63) / 4);
        if (mis) {
            int64_t cnt = std::min<int64_t>(16 - mis, hi - i);
            __mmask16 m = __mmask16((1u << cnt) - 1);
            _mm512_mask_storeu_ps(y + i, m, f.v(in.vm(i, m)...));
            i += cnt;
        }
        for (; i + 16 <= hi; i += 16) _mm512_stream_ps(y + i, f.v(in.v(i)...));
    } else {
        for (; i + 32 <= hi; i += 32) {
            __m512 r0 = f.v(in.v(i)...);
            __m512 r1 = f.v(in.v(i + 16)...);
            _mm512_storeu_ps(y + i, r0);
            _mm512_storeu_ps(y + i + 16, r1);
        }
        for (; i + 16 <= hi; i += 16) _mm512_storeu_ps(y + i, f.v(in.v(i)...));
    }
    if (i < hi) {
        __mmask16 m = __mmask16((1u << (hi - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, f.v(in.vm(i, m)...));
    }
    if (stream) _mm_sfence();
#else
    (void)stream;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) y[i] = f.s(in.s(i)...);
#endif
}

// Whole-buffer map, threaded over static 16-aligned chunks.
template <class F, class... In>
void map(const F& f, float* y, int64_t n, const In&... in) {
    if (n <= 0) return;
    bool stream = n * int64_t(sizeof(float)) >= kStreamBytes;
    if (n <= kParallelMin) {
        map_range(f, y, 0, n, stream, in...);
        return;
    }
#pragma omp parallel
    {
        int nt = thread_count(), t = thread_id();
        int64_t chunk = ((n + nt - 1) / nt + 15) & ~int64_t(15);
        int64_t lo = std::min(n, t * chunk), hi = std::min(n, lo + chunk);
        if (lo < hi) map_range(f, y, lo, hi, stream, in...);
    }
}

// ---- binary functors
template <BinOp OP>
struct Bin {
    float s(float a, float b) const {
        if constexpr (OP == BinOp::Add) return a + b;
        else if constexpr (OP == BinOp::Sub) return a - b;
        else if constexpr (OP == BinOp::Mul) return a * b;
        else return a / b;
    }
#ifdef __AVX512F__
    __m512 v(__m512 a, __m512 b) const {
        if constexpr (OP == BinOp::Add) return _mm512_add_ps(a, b);
        else if constexpr (OP == BinOp::Sub) return _mm512_sub_ps(a, b);
        else if constexpr (OP == BinOp::Mul) return _mm512_mul_ps(a, b);
        else return _mm512_div_ps(a, b);
    }
#endif
};

inline float bin_ref(BinOp op, float a, float b) {
    switch (op) {
        case BinOp::Add: return a + b;
        case BinOp::Sub: return a - b;
        case BinOp::Mul: return a * b;
        case BinOp::Div: return a / b;
    }
    return 0;
}

template <class G>
void dispatch_bin(BinOp op, G&& g) {
    switch (op) {
        case BinOp::Add: g(Bin<BinOp::Add>{}); break;
        case BinOp::Sub: g(Bin<BinOp::Sub>{}); break;
        case BinOp::Mul: g(Bin<BinOp::Mul>{}); break;
        case BinOp::Div: g(Bin<BinOp::Div>{}); break;
    }
}

// Merge adjacent dims that are contiguous for every operand (and drop size-1 dims). strides is an
// array of `nops` stride arrays. Returns the new ndim (>= 1).
int coalesce(int ndim, int64_t* shape, int nops, int64_t* const* strides) {
    int64_t sh[8];
    int64_t st[4][8];
    int k = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) continue;
        if (k > 0) {
            bool ok = true;
            for (int o = 0; o < nops; o++) ok &= st[o][k - 1] == strides[o][d] * shape[d];
            if (ok) {
                sh[k - 1] *= shape[d];
                for (int o = 0; o < nops; o++) st[o][k - 1] = strides[o][d];
                continue;
            }
        }
        sh[k] = shape[d];
        for (int o = 0; o < nops; o++) st[o][k] = strides[o][d];
        k++;
    }
    if (k == 0) {
        sh[0] = 1;
        for (int o = 0; o < nops; o++) st[o][0] = 0;
        k = 1;
    }
    for (int d = 0; d < k; d++) {
        shape[d] = sh[d];
        for (int o = 0; o < nops; o++) strides[o][d] = st[o][d];
    }
    return k;
}

// Offsets of outer row `row` (over dims [0, nd-1)) for each operand.
inline void row_offsets(int64_t row, int nd, const int64_t* shape, int nops, int64_t* const* strides,
                        int64_t* offs) {
    for (int o = 0; o < nops; o++) offs[o] = 0;
    for (int d = nd - 2; d >= 0; d--) {
        int64_t i = row % shape[d];
        row /= shape[d];
        for (int o = 0; o < nops; o++) offs[o] += i * strides[o][d];
    }
}

}  // namespace

// =============================================================================================
// binary

void binary(BinOp op, float* y, const float* a, const float* b, int64_t n) {
    dispatch_bin(op, [&](auto f) { map(f, y, n, Ptr{a}, Ptr{b}); });
}
void binary_ref(BinOp op, float* y, const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = bin_ref(op, a[i], b[i]);
}

void binary_scalar(BinOp op, float* y, const float* a, float s, bool scalar_left, int64_t n) {
    dispatch_bin(op, [&](auto f) {
        if (scalar_left) map(f, y, n, Scal{s}, Ptr{a});
        else map(f, y, n, Ptr{a}, Scal{s});
    });
}
void binary_scalar_ref(BinOp op, float* y, const float* a, float s, bool scalar_left, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = scalar_left ? bin_ref(op, s, a[i]) : bin_ref(op, a[i], s);
}

// Rows of a 2-D problem: parallel over rows when there are many, else over each row's columns.
template <class RowFn>
static void for_rows(int64_t R, int64_t C, bool stream, const RowFn& row) {
    if (R * C <= kParallelMin) {
        for (int64_t r = 0; r < R; r++) row(r, 0, C, stream);
        return;
    }
    if (R >= 8) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < R; r++) row(r, 0, C, stream);
        return;
    }
#pragma omp parallel
    {
        int nt = thread_count(), t = thread_id();
        int64_t chunk = ((C + nt - 1) / nt + 15) & ~int64_t(15);
        int64_t lo = std::min(C, t * chunk), hi = std::min(C, lo + chunk);
        for (int64_t r = 0; r < R; r++)
            if (lo < hi) row(r, lo, hi, stream);
    }
}

void binary_row(BinOp op, float* y, const float* a, const float* b, int64_t R, int64_t C, bool swap) {
    if (R * C == 0) return;
    bool stream = R * C * int64_t(sizeof(float)) >= kStreamBytes;
    dispatch_bin(op, [&](auto f) {
        for_rows(R, C, stream, [&](int64_t r, int64_t lo, int64_t hi, bool st) {
            float* yr = y + r * C;
            const float* ar = a + r * C;
            if (swap) map_range(f, yr, lo, hi, st, Ptr{b}, Ptr{ar});
            else map_range(f, yr, lo, hi, st, Ptr{ar}, Ptr{b});
        });
    });
}
void binary_row_ref(BinOp op, float* y, const float* a, const float* b, int64_t R, int64_t C, bool swap) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++)
            y[r * C + c] = swap ? bin_ref(op, b[c], a[r * C + c]) : bin_ref(op, a[r * C + c], b[c]);
}

void binary_col(BinOp op, float* y, const float* a, const float* b, int64_t R, int64_t C, bool swap) {
    if (R * C == 0) return;
    bool stream = R * C * int64_t(sizeof(float)) >= kStreamBytes;
    dispatch_bin(op, [&](auto f) {
        for_rows(R, C, stream, [&](int64_t r, int64_t lo, int64_t hi, bool st) {
            float* yr = y + r * C;
            const float* ar = a + r * C;
            if (swap) map_range(f, yr, lo, hi, st, Scal{b[r]}, Ptr{ar});
            else map_range(f, yr, lo, hi, st, Ptr{ar}, Scal{b[r]});
        });
    });
}
void binary_col_ref(BinOp op, float* y, const float* a, const float* b, int64_t R, int64_t C, bool swap) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++)
            y[r * C + c] = swap ? bin_ref(op, b[r], a[r * C + c]) : bin_ref(op, a[r * C + c], b[r]);
}

void binary_strided(BinOp op, float* y, const float* a, const float* b, int ndim, const int64_t* shape_in,
                    const int64_t* sa_in, const int64_t* sb_in) {
    int64_t shape[8], sy[8], sa[8], sb[8];
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape_in[d];
    if (n == 0) return;
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        shape[d] = shape_in[d];
        sy[d] = s;
        s *= shape_in[d];
        sa[d] = sa_in[d];
        sb[d] = sb_in[d];
    }
    int64_t* strides[3] = {sy, sa, sb};
    int nd = coalesce(ndim, shape, 3, strides);
    int64_t C = shape[nd - 1], R = n / C;
    int64_t ia = sa[nd - 1], ib = sb[nd - 1];
    bool stream = n * int64_t(sizeof(float)) >= kStreamBytes;
    dispatch_bin(op, [&](auto f) {
        for_rows(R, C, stream, [&](int64_t r, int64_t lo, int64_t hi, bool st) {
            int64_t offs[3];
            row_offsets(r, nd, shape, 3, strides, offs);
            float* yr = y + offs[0];
            const float* ar = a + offs[1];
            const float* br = b + offs[2];
            if (ia == 1 && ib == 1) map_range(f, yr, lo, hi, st, Ptr{ar}, Ptr{br});
            else if (ia == 1 && ib == 0) map_range(f, yr, lo, hi, st, Ptr{ar}, Scal{br[0]});
            else if (ia == 0 && ib == 1) map_range(f, yr, lo, hi, st, Scal{ar[0]}, Ptr{br});
            else
                for (int64_t c = lo; c < hi; c++) yr[c] = f.s(ar[c * ia], br[c * ib]);
        });
    });
}

void binary_strided_ref(BinOp op, float* y, const float* a, const float* b, int ndim, const int64_t* shape,
                        const int64_t* sa, const int64_t* sb) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    int64_t idx[8] = {};
    for (int64_t k = 0; k < n; k++) {
        int64_t oa = 0, ob = 0;
        for (int d = 0; d < ndim; d++) {
            oa += idx[d] * sa[d];
            ob += idx[d] * sb[d];
        }
        y[k] = bin_ref(op, a[oa], b[ob]);
        for (int d = ndim - 1; d >= 0; d--) {
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
        }
    }
}

namespace {
struct Affine {
    float al, be;
    float s(float x) const { return al * x + be; }
#ifdef __AVX512F__
    __m512 v(__m512 x) const { return _mm512_fmadd_ps(_mm512_set1_ps(al), x, _mm512_set1_ps(be)); }
#endif
};
}  // namespace

void affine(float* y, const float* x, float alpha, float beta, int64_t n) { map(Affine{alpha, beta}, y, n, Ptr{x}); }
void affine_ref(float* y, const float* x, float alpha, float beta, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = float(double(alpha) * x[i] + beta);
}

// =============================================================================================
// unary maps

namespace {
#ifdef __AVX512F__
using namespace hippo::simd;
inline __m512 vz() { return _mm512_setzero_ps(); }
#endif

inline float sigmoid_s(float x) { return 1.0f / (1.0f + std::exp(-x)); }
// Phi(x) in double: in the far tail (x < -4) erfc's relative error is about 2 (x^2 / 2) times that
// of its argument, so a float x / sqrt2 would cost tens of ulp there.
inline double norm_cdf_d(float x) { return 0.5 * std::erfc(-double(x) * 0.70710678118654752440); }

template <UnOp OP>
struct Un {
    float s(float x) const {
        if constexpr (OP == UnOp::Exp) return std::exp(x);
        else if constexpr (OP == UnOp::Log) return std::log(x);
        else if constexpr (OP == UnOp::Sqrt) return std::sqrt(x);
        else if constexpr (OP == UnOp::Tanh) return std::tanh(x);
        else if constexpr (OP == UnOp::Sigmoid) return sigmoid_s(x);
        else if constexpr (OP == UnOp::Silu) return x / (1.0f + std::exp(-x));
        else if constexpr (OP == UnOp::Relu) return x < 0.0f ? 0.0f : x;
        else if constexpr (OP == UnOp::Softplus) return std::max(x, 0.0f) + std::log1p(std::exp(-std::fabs(x)));
        else if constexpr (OP == UnOp::Gelu) return float(double(x) * norm_cdf_d(x));
        else {
            float u = kSqrt2OverPi * (x + kGeluC * x * x * x);
            return x / (1.0f + std::exp(-2.0f * u));
        }
    }
#ifdef __AVX512F__
    __m512 v(__m512 x) const {
        if constexpr (OP == UnOp::Exp) return v_exp(x);
        else if constexpr (OP == UnOp::Log) return v_log(x);
        else if constexpr (OP == UnOp::Sqrt) return _mm512_sqrt_ps(x);
        else if constexpr (OP == UnOp::Tanh) return v_tanh(x);
        else if constexpr (OP == UnOp::Sigmoid) return v_sigmoid(x);
        else if constexpr (OP == UnOp::Silu)
            return _mm512_div_ps(x, _mm512_add_ps(v_set(1.0f), v_exp(_mm512_sub_ps(vz(), x))));
        else if constexpr (OP == UnOp::Relu) return _mm512_max_ps(vz(), x);
        else if constexpr (OP == UnOp::Softplus)
            return _mm512_add_ps(_mm512_max_ps(vz(), x), v_log1p_pos(v_exp(_mm512_sub_ps(vz(), v_abs(x)))));
        else if constexpr (OP == UnOp::Gelu) return _mm512_mul_ps(x, v_norm_cdf(x));
        else {
            __m512 x2 = _mm512_mul_ps(x, x);
            __m512 u = _mm512_mul_ps(_mm512_mul_ps(x, v_set(-2.0f * kSqrt2OverPi)),
                                     _mm512_fmadd_ps(x2, v_set(kGeluC), v_set(1.0f)));  // -2u
            return _mm512_div_ps(x, _mm512_add_ps(v_set(1.0f), v_exp(u)));
        }
    }
#endif
};

// dx = dy * f'(.) with t = saved output or input (see the header)
template <UnOp OP>
struct UnBwd {
    float s(float dy, float t) const {
        if constexpr (OP == UnOp::Exp) return dy * t;
        else if constexpr (OP == UnOp::Log) return dy / t;
        else if constexpr (OP == UnOp::Sqrt) return dy * 0.5f / t;
        else if constexpr (OP == UnOp::Tanh) return dy * (1.0f - t * t);
        else if constexpr (OP == UnOp::Sigmoid) return dy * t * (1.0f - t);
        else if constexpr (OP == UnOp::Silu) {
            float s = sigmoid_s(t);
            return dy * s * (1.0f + t * (1.0f - s));
        } else if constexpr (OP == UnOp::Relu) return t > 0.0f ? dy : 0.0f;
        else if constexpr (OP == UnOp::Softplus) return dy * sigmoid_s(t);
        else if constexpr (OP == UnOp::Gelu)
            return float(double(dy) * (norm_cdf_d(t) + double(t) * 0.39894228040143267794 * std::exp(-0.5 * double(t) * t)));
        else {
            float u = kSqrt2OverPi * (t + kGeluC * t * t * t);
            float s = sigmoid_s(2.0f * u);
            float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluC * t * t);
            return dy * (s + t * 2.0f * s * (1.0f - s) * du);
        }
    }
#ifdef __AVX512F__
    __m512 v(__m512 dy, __m512 t) const {
        const __m512 one = v_set(1.0f);
        if constexpr (OP == UnOp::Exp) return _mm512_mul_ps(dy, t);
        else if constexpr (OP == UnOp::Log) return _mm512_div_ps(dy, t);
        else if constexpr (OP == UnOp::Sqrt) return _mm512_div_ps(_mm512_mul_ps(dy, v_set(0.5f)), t);
        else if constexpr (OP == UnOp::Tanh) return _mm512_mul_ps(dy, _mm512_fnmadd_ps(t, t, one));
        else if constexpr (OP == UnOp::Sigmoid) return _mm512_mul_ps(_mm512_mul_ps(dy, t), _mm512_sub_ps(one, t));
        else if constexpr (OP == UnOp::Silu) {
            __m512 s = v_sigmoid(t);
            return _mm512_mul_ps(_mm512_mul_ps(dy, s), _mm512_fmadd_ps(t, _mm512_sub_ps(one, s), one));
        } else if constexpr (OP == UnOp::Relu)
            return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t, vz(), _CMP_GT_OQ), dy);
        else if constexpr (OP == UnOp::Softplus) return _mm512_mul_ps(dy, v_sigmoid(t));
        else if constexpr (OP == UnOp::Gelu) {
            __m512 pdf = _mm512_mul_ps(v_set(kInvSqrt2Pi), v_exp(_mm512_mul_ps(v_set(-0.5f), _mm512_mul_ps(t, t))));
            return _mm512_mul_ps(dy, _mm512_fmadd_ps(t, pdf, v_norm_cdf(t)));
        } else {
            __m512 t2 = _mm512_mul_ps(t, t);
            __m512 u2 = _mm512_mul_ps(_mm512_mul_ps(t, v_set(2.0f * kSqrt2OverPi)), _mm512_fmadd_ps(t2, v_set(kGeluC), one));
            __m512 s = v_sigmoid(u2);
            __m512 du = _mm512_mul_ps(v_set(kSqrt2OverPi), _mm512_fmadd_ps(t2, v_set(3.0f * kGeluC), one));
            __m512 ds = _mm512_mul_ps(_mm512_mul_ps(v_set(2.0f), s), _mm512_sub_ps(one, s));  // d sigmoid(2u)/du
            return _mm512_mul_ps(dy, _mm512_fmadd_ps(_mm512_mul_ps(t, ds), du, s));
        }
    }
#endif
};

template <template <UnOp> class T, class G>
void dispatch_un(UnOp op, G&& g) {
    switch (op) {
        case UnOp::Exp: g(T<UnOp::Exp>{}); break;
        case UnOp::Log: g(T<UnOp::Log>{}); break;
        case UnOp::Sqrt: g(T<UnOp::Sqrt>{}); break;
        case UnOp::Tanh: g(T<UnOp::Tanh>{}); break;
        case UnOp::Sigmoid: g(T<UnOp::Sigmoid>{}); break;
        case UnOp::Silu: g(T<UnOp::Silu>{}); break;
        case UnOp::Relu: g(T<UnOp::Relu>{}); break;
        case UnOp::Softplus: g(T<UnOp::Softplus>{}); break;
        case UnOp::Gelu: g(T<UnOp::Gelu>{}); break;
        case UnOp::GeluTanh: g(T<UnOp::GeluTanh>{}); break;
    }
}

// Double-precision references.
double un_ref(UnOp op, double x) {
    switch (op) {
        case UnOp::Exp: return std::exp(x);
        case UnOp::Log: return std::log(x);
        case UnOp::Sqrt: return std::sqrt(x);
        case UnOp::Tanh: return std::tanh(x);
        case UnOp::Sigmoid: return 1.0 / (1.0 + std::exp(-x));
        case UnOp::Silu: return x / (1.0 + std::exp(-x));
        case UnOp::Relu: return x < 0 ? 0.0 : x;
        case UnOp::Softplus: return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x)));
        case UnOp::Gelu: return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
        case UnOp::GeluTanh: {  // 0.5 x (1 + tanh u) = x sigmoid(2u), without cancellation
            double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
            return x / (1.0 + std::exp(-2.0 * u));
        }
    }
    return 0;
}

double un_bwd_ref(UnOp op, double dy, double t) {
    auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
    switch (op) {
        case UnOp::Exp: return dy * t;
        case UnOp::Log: return dy / t;
        case UnOp::Sqrt: return dy * 0.5 / t;
        case UnOp::Tanh: return dy * (1.0 - t * t);
        case UnOp::Sigmoid: return dy * t * (1.0 - t);
        case UnOp::Silu: return dy * sig(t) * (1.0 + t * (1.0 - sig(t)));
        case UnOp::Relu: return t > 0 ? dy : 0.0;
        case UnOp::Softplus: return dy * sig(t);
        case UnOp::Gelu:
            return dy * (0.5 * std::erfc(-t / std::sqrt(2.0)) + t * std::exp(-0.5 * t * t) / std::sqrt(2.0 * M_PI));
        case UnOp::GeluTanh: {
            double k = std::sqrt(2.0 / M_PI), u = k * (t + 0.044715 * t * t * t), s = sig(2.0 * u);
            return dy * (s + 2.0 * t * s * (1.0 - s) * k * (1.0 + 3.0 * 0.044715 * t * t));
        }
    }
    return 0;
}
}  // namespace

void unary(UnOp op, float* y, const float* x, int64_t n) {
    dispatch_un<Un>(op, [&](auto f) { map(f, y, n, Ptr{x}); });
}
void unary_ref(UnOp op, float* y, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = float(un_ref(op, double(x[i])));
}

bool unary_backward_uses_output(UnOp op) {
    return op == UnOp::Exp || op == UnOp::Sqrt || op == UnOp::Tanh || op == UnOp::Sigmoid;
}
void unary_backward(UnOp op, float* dx, const float* dy, const float* t, int64_t n) {
    dispatch_un<UnBwd>(op, [&](auto f) { map(f, dx, n, Ptr{dy}, Ptr{t}); });
}
void unary_backward_ref(UnOp op, float* dx, const float* dy, const float* t, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] = float(un_bwd_ref(op, double(dy[i]), double(t[i])));
}

// ---- pow
namespace {
struct PowGeneral {
    float p;
    float s(float x) const { return std::pow(x, p); }
#ifdef __AVX512F__
    __m512 v(__m512 x) const {  // scalar calls: general powers are rare
        alignas(64) float b[16];
        _mm512_store_ps(b, x);
        for (float& e : b) e = std::pow(e, p);
        return _mm512_load_ps(b);
    }
#endif
};
struct Square {
    float s(float x) const { return x * x; }
#ifdef __AVX512F__
    __m512 v(__m512 x) const { return _mm512_mul_ps(x, x); }
#endif
};
struct Recip {
    float s(float x) const { return 1.0f / x; }
#ifdef __AVX512F__
    __m512 v(__m512 x) const { return _mm512_div_ps(_mm512_set1_ps(1.0f), x); }
#endif
};
struct Rsqrt {
    float s(float x) const { return 1.0f / std::sqrt(x); }
#ifdef __AVX512F__
    __m512 v(__m512 x) const { return _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_sqrt_ps(x)); }
#endif
};
struct PowBwd {
    float p;
    float s(float dy, float x) const { return dy * p * std::pow(x, p - 1.0f); }
#ifdef __AVX512F__
    __m512 v(__m512 dy, __m512 x) const {
        alignas(64) float b[16];
        _mm512_store_ps(b, x);
        for (float& e : b) e = p * std::pow(e, p - 1.0f);
        return _mm512_mul_ps(dy, _mm512_load_ps(b));
    }
#endif
};
}  // namespace

void pow_scalar(float* y, const float* x, float p, int64_t n) {
    if (p == 1.0f) map(Affine{1.0f, 0.0f}, y, n, Ptr{x});
    else if (p == 2.0f) map(Square{}, y, n, Ptr{x});
    else if (p == 0.5f) unary(UnOp::Sqrt, y, x, n);
    else if (p == -1.0f) map(Recip{}, y, n, Ptr{x});
    else if (p == -0.5f) map(Rsqrt{}, y, n, Ptr{x});
    else map(PowGeneral{p}, y, n, Ptr{x});
}
void pow_scalar_ref(float* y, const float* x, float p, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = float(std::pow(double(x[i]), double(p)));
}
void pow_scalar_backward(float* dx, const float* dy, const float* x, float p, int64_t n) {
    if (p == 1.0f) map(Bin<BinOp::Mul>{}, dx, n, Ptr{dy}, Scal{1.0f});
    else if (p == 2.0f) {
        struct Sq2 {
            float s(float d, float x) const { return 2.0f * d * x; }
#ifdef __AVX512F__
            __m512 v(__m512 d, __m512 x) const { return _mm512_mul_ps(_mm512_add_ps(d, d), x); }
#endif
        };
        map(Sq2{}, dx, n, Ptr{dy}, Ptr{x});
    } else if (p == 0.0f) map(Affine{0.0f, 0.0f}, dx, n, Ptr{dy});
    else map(PowBwd{p}, dx, n, Ptr{dy}, Ptr{x});
}
void pow_scalar_backward_ref(float* dx, const float* dy, const float* x, float p, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        dx[i] = p == 0.0f ? 0.0f : float(double(dy[i]) * p * std::pow(double(x[i]), double(p) - 1.0));
}

// ---- fused div backward
void div_backward(float* da, float* db, const float* dy, const float* a, const float* b, int64_t n) {
    if (da) binary(BinOp::Div, da, dy, b, n);
    if (db) {
        struct DivB {
            float s(float d, float a, float b) const { return -d * a / (b * b); }
#ifdef __AVX512F__
            __m512 v(__m512 d, __m512 a, __m512 b) const {
                return _mm512_div_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), d), a), _mm512_mul_ps(b, b));
            }
#endif
        };
        map(DivB{}, db, n, Ptr{dy}, Ptr{a}, Ptr{b});
    }
}
void div_backward_ref(float* da, float* db, const float* dy, const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (da) da[i] = dy[i] / b[i];
        if (db) db[i] = float(-double(dy[i]) * a[i] / (double(b[i]) * b[i]));
    }
}

// =============================================================================================
// reductions

namespace {
// Sum of a contiguous run in a fixed order: 64 float lanes, then a fixed tree.
inline float run_sum(const float* x, int64_t n) {
#ifdef __AVX512F__
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(x + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(x + i + 48));
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
    if (i < n) s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(__mmask16((1u << (n - i)) - 1), x + i));
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
#else
    float acc[16] = {};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
#pragma omp simd
        for (int j = 0; j < 16; j++) acc[j] += x[i + j];
    for (int j = 0; i + j < n; j++) acc[j] += x[i + j];
    float s = 0;
    for (float v : acc) s += v;
    return s;
#endif
}

constexpr int64_t kSumBlock = 4096;  // float-lane partial sums are combined in double per block

inline float row_sum(const float* x, int64_t n) {
    if (n <= kSumBlock) return run_sum(x, n);
    double s = 0;
    for (int64_t i = 0; i < n; i += kSumBlock) s += run_sum(x + i, std::min(kSumBlock, n - i));
    return float(s);
}
}  // namespace

namespace {
constexpr int64_t kColChunk = 1024, kRowBlock = 64;
// out[j] = sum over r < rows of x[r * stride + j], j < cn <= kColChunk: kRowBlock rows at a time in
// float (vectorised across j), the blocks combined in double.
void col_sums(double* out, const float* x, int64_t rows, int64_t cn, int64_t stride) {
    alignas(64) float acc[kColChunk];
    for (int64_t j = 0; j < cn; j++) out[j] = 0.0;
    for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
        int64_t r1 = std::min(rows, r0 + kRowBlock);
        std::memcpy(acc, x + r0 * stride, size_t(cn) * sizeof(float));
        int64_t r = r0 + 1;
        for (; r + 4 <= r1; r += 4) {  // four rows per pass over acc: a quarter of the L1 traffic
            const float *x0 = x + r * stride, *x1 = x0 + stride, *x2 = x1 + stride, *x3 = x2 + stride;
#pragma omp simd
            for (int64_t j = 0; j < cn; j++) acc[j] += (x0[j] + x1[j]) + (x2[j] + x3[j]);
        }
        for (; r < r1; r++) {
            const float* xr = x + r * stride;
#pragma omp simd
            for (int64_t j = 0; j < cn; j++) acc[j] += xr[j];
        }
#pragma omp simd
        for (int64_t j = 0; j < cn; j++) out[j] += double(acc[j]);
    }
}
}  // namespace

void sum_dim(float* y, const float* x, int64_t outer, int64_t red, int64_t inner) {
    int64_t nout = outer * inner;
    if (nout == 0) return;
    if (red == 0) {
        std::fill_n(y, nout, 0.0f);
        return;
    }
    int64_t n = nout * red;
    if (inner == 1) {
        if (outer == 1) {
            // One long run: fixed blocks (set by n alone) summed in parallel, combined in order.
            constexpr int kMaxBlocks = 1024;
            int64_t blk = std::max<int64_t>(kSumBlock * 4, (red + kMaxBlocks - 1) / kMaxBlocks);
            int64_t nb = (red + blk - 1) / blk;
            double part[kMaxBlocks];
#pragma omp parallel for schedule(static) if (red > kParallelMin)
            for (int64_t b = 0; b < nb; b++) part[b] = row_sum(x + b * blk, std::min(blk, red - b * blk));
            double s = 0;
            for (int64_t b = 0; b < nb; b++) s += part[b];
            y[0] = float(s);
            return;
        }
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t o = 0; o < outer; o++) y[o] = row_sum(x + o * red, red);
        return;
    }
    // inner > 1: each task owns a chunk of inner columns of one outer slice and adds the rows
    // into it in order; blocks of kRowBlock rows are summed in float, blocks combined in double.
    if (outer == 1 && inner <= kColChunk && red >= 8 * kRowBlock && n > kParallelMin) {
        // Few long columns (a bias gradient): fixed row blocks (their number does not depend on the
        // thread count) summed in parallel, partials combined in block order.
        constexpr int kParts = 8;
        alignas(64) double part[kParts][kColChunk];
        int64_t rows = (red + kParts - 1) / kParts;
#pragma omp parallel for schedule(static)
        for (int b = 0; b < kParts; b++) {
            int64_t r0 = std::min(red, b * rows), r1 = std::min(red, r0 + rows);
            col_sums(part[b], x + r0 * inner, r1 - r0, inner, inner);
        }
        for (int64_t j = 0; j < inner; j++) {
            double t = 0;
            for (int b = 0; b < kParts; b++) t += part[b][j];
            y[j] = float(t);
        }
        return;
    }
    // Chunks stay >= 512 columns: narrower ones would walk DRAM in several strided passes.
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    int64_t chunk = kColChunk;
    while (chunk > 512 && outer * ((inner + chunk - 1) / chunk) < 4 * nt) chunk /= 2;
    int64_t nchunks = (inner + chunk - 1) / chunk;
    int64_t tasks = outer * nchunks;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t o = t / nchunks, c0 = (t % nchunks) * chunk, cn = std::min(chunk, inner - c0);
        alignas(64) double accd[kColChunk];
        col_sums(accd, x + o * red * inner + c0, red, cn, inner);
        float* ys = y + o * inner + c0;
        for (int64_t j = 0; j < cn; j++) ys[j] = float(accd[j]);
    }
}

void sum_dim_ref(float* y, const float* x, int64_t outer, int64_t red, int64_t inner) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double s = 0;
            for (int64_t r = 0; r < red; r++) s += x[(o * red + r) * inner + i];
            y[o * inner + i] = float(s);
        }
}

void max_dim(float* y, int64_t* idx, const float* x, int64_t outer, int64_t red, int64_t inner) {
    int64_t nout = outer * inner;
    if (nout == 0 || red == 0) return;
    int64_t n = nout * red;
    if (inner == 1) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t o = 0; o < outer; o++) {
            const float* xr = x + o * red;
            float best = xr[0];
            int64_t bi = 0;
            if (best == best)
                for (int64_t r = 1; r < red; r++) {
                    float v = xr[r];
                    if (v > best || v != v) {
                        best = v;
                        bi = r;
                        if (v != v) break;
                    }
                }
            y[o] = best;
            idx[o] = bi;
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t o = 0; o < outer; o++) {
        float* yo = y + o * inner;
        int64_t* io = idx + o * inner;
        const float* xo = x + o * red * inner;
        for (int64_t i = 0; i < inner; i++) {
            yo[i] = xo[i];
            io[i] = 0;
        }
        for (int64_t r = 1; r < red; r++) {
            const float* xr = xo + r * inner;
            for (int64_t i = 0; i < inner; i++) {
                float v = xr[i], b = yo[i];
                bool take = v > b || (v != v && b == b);
                yo[i] = take ? v : b;
                io[i] = take ? r : io[i];
            }
        }
    }
}

void max_dim_ref(float* y, int64_t* idx, const float* x, int64_t outer, int64_t red, int64_t inner) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            float best = x[o * red * inner + i];
            int64_t bi = 0;
            for (int64_t r = 1; r < red; r++) {
                float v = x[(o * red + r) * inner + i];
                if (std::isnan(best)) break;
                if (v > best || std::isnan(v)) {
                    best = v;
                    bi = r;
                }
            }
            y[o * inner + i] = best;
            idx[o * inner + i] = bi;
        }
}

void max_dim_backward(float* dx, const float* dy, const int64_t* idx, int64_t outer, int64_t red, int64_t inner) {
    int64_t n = outer * red * inner;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t o = 0; o < outer; o++) {
        float* d = dx + o * red * inner;
        std::memset(d, 0, size_t(red * inner) * sizeof(float));
        for (int64_t i = 0; i < inner; i++) d[idx[o * inner + i] * inner + i] = dy[o * inner + i];
    }
}

void broadcast_strided(float* y, const float* x, int ndim, const int64_t* shape_in, const int64_t* sx_in, float scale) {
    int64_t shape[8], sy[8], sx[8];
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape_in[d];
    if (n == 0) return;
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        shape[d] = shape_in[d];
        sy[d] = s;
        s *= shape_in[d];
        sx[d] = sx_in[d];
    }
    int64_t* strides[2] = {sy, sx};
    int nd = coalesce(ndim, shape, 2, strides);
    int64_t C = shape[nd - 1], R = n / C, ix = sx[nd - 1];
    bool stream = n * int64_t(sizeof(float)) >= kStreamBytes;
    Affine f{scale, 0.0f};
    for_rows(R, C, stream, [&](int64_t r, int64_t lo, int64_t hi, bool st) {
        int64_t offs[2];
        row_offsets(r, nd, shape, 2, strides, offs);
        float* yr = y + offs[0];
        const float* xr = x + offs[1];
        if (ix == 1) map_range(f, yr, lo, hi, st, Ptr{xr});
        else if (ix == 0) map_range(f, yr, lo, hi, st, Scal{xr[0]});
        else
            for (int64_t c = lo; c < hi; c++) yr[c] = scale * xr[c * ix];
    });
}

void copy_rows(float* dst, int64_t ds, const float* src, int64_t ss, int64_t rows, int64_t cols) {
    if (rows * cols == 0) return;
    if (ds == cols && ss == cols) {
        int64_t n = rows * cols;
#pragma omp parallel if (n > (int64_t(1) << 18))
        {
            int nt = thread_count(), t = thread_id();
            int64_t chunk = ((n + nt - 1) / nt + 15) & ~int64_t(15);
            int64_t lo = std::min(n, t * chunk), hi = std::min(n, lo + chunk);
            if (lo < hi) std::memcpy(dst + lo, src + lo, size_t(hi - lo) * sizeof(float));
        }
        return;
    }
#pragma omp parallel for schedule(static) if (rows * cols > (int64_t(1) << 18))
    for (int64_t r = 0; r < rows; r++) std::memcpy(dst + r * ds, src + r * ss, size_t(cols) * sizeof(float));
}

// =============================================================================================
// complex

namespace {
inline void cmul_s(float* y, const float* a, const float* b, bool conj_b) {
    float ar = a[0], ai = a[1], br = b[0], bi = conj_b ? -b[1] : b[1];
    y[0] = ar * br - ai * bi;
    y[1] = ar * bi + ai * br;
}

// Contiguous a (complex stride 1), b contiguous (ib = 1) or one broadcast value (ib = 0).
inline void cmul_run(float* y, const float* a, const float* b, int64_t ib, int64_t lo, int64_t hi, bool conj_b) {
    int64_t k = lo;
#ifdef __AVX512F__
    const __m512i odd = _mm512_set_epi32(int(0x80000000u), 0, int(0x80000000u), 0, int(0x80000000u), 0,
                                         int(0x80000000u), 0, int(0x80000000u), 0, int(0x80000000u), 0,
                                         int(0x80000000u), 0, int(0x80000000u), 0);
    __m512 bb = _mm512_setzero_ps();
    if (ib == 0) {
        alignas(64) float pair[16];
        for (int j = 0; j < 16; j += 2) {
            pair[j] = b[0];
            pair[j + 1] = b[1];
        }
        bb = _mm512_load_ps(pair);
    }
    auto step = [&](__m512 av, __m512 bv) {
        if (conj_b) bv = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(bv), odd));
        __m512 are = _mm512_moveldup_ps(av), aim = _mm512_movehdup_ps(av);
        __m512 bsw = _mm512_permute_ps(bv, 0xB1);  // (bi, br) pairs
        return _mm512_fmaddsub_ps(are, bv, _mm512_mul_ps(aim, bsw));
    };
    for (; k + 8 <= hi; k += 8) {
        __m512 av = _mm512_loadu_ps(a + 2 * k);
        __m512 bv = ib ? _mm512_loadu_ps(b + 2 * k) : bb;
        _mm512_storeu_ps(y + 2 * k, step(av, bv));
    }
    if (k < hi) {
        __mmask16 m = __mmask16((1u << (2 * (hi - k))) - 1);
        __m512 av = _mm512_maskz_loadu_ps(m, a + 2 * k);
        __m512 bv = ib ? _mm512_maskz_loadu_ps(m, b + 2 * k) : bb;
        _mm512_mask_storeu_ps(y + 2 * k, m, step(av, bv));
    }
#else
    for (; k < hi; k++) cmul_s(y + 2 * k, a + 2 * k, b + 2 * k * ib, conj_b);
#endif
}
}  // namespace

void complex_mul_strided(float* y, const float* a, const float* b, int ndim, const int64_t* shape_in,
                         const int64_t* sa_in, const int64_t* sb_in, bool conj_b) {
    int64_t shape[8], sy[8], sa[8], sb[8];
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape_in[d];
    if (n == 0) return;
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        shape[d] = shape_in[d];
        sy[d] = s;
        s *= shape_in[d];
        sa[d] = sa_in[d];
        sb[d] = sb_in[d];
    }
    int64_t* strides[3] = {sy, sa, sb};
    int nd = coalesce(ndim, shape, 3, strides);
    int64_t C = shape[nd - 1], R = n / C, ia = sa[nd - 1], ib = sb[nd - 1];
    for_rows(R, C, false, [&](int64_t r, int64_t lo, int64_t hi, bool) {
        int64_t offs[3];
        row_offsets(r, nd, shape, 3, strides, offs);
        float* yr = y + 2 * offs[0];
        const float* ar = a + 2 * offs[1];
        const float* br = b + 2 * offs[2];
        if (ia == 1 && (ib == 1 || ib == 0)) {
            cmul_run(yr, ar, br, ib, lo, hi, conj_b);
        } else if (ia == 0 && ib == 1 && !conj_b) {
            cmul_run(yr, br, ar, 0, lo, hi, false);  // multiplication commutes
        } else {
            for (int64_t c = lo; c < hi; c++) cmul_s(yr + 2 * c, ar + 2 * c * ia, br + 2 * c * ib, conj_b);
        }
    });
}

void complex_mul_strided_ref(float* y, const float* a, const float* b, int ndim, const int64_t* shape,
                             const int64_t* sa, const int64_t* sb, bool conj_b) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    int64_t idx[8] = {};
    for (int64_t k = 0; k < n; k++) {
        int64_t oa = 0, ob = 0;
        for (int d = 0; d < ndim; d++) {
            oa += idx[d] * sa[d];
            ob += idx[d] * sb[d];
        }
        double ar = a[2 * oa], ai = a[2 * oa + 1], br = b[2 * ob], bi = conj_b ? -b[2 * ob + 1] : b[2 * ob + 1];
        y[2 * k] = float(ar * br - ai * bi);
        y[2 * k + 1] = float(ar * bi + ai * br);
        for (int d = ndim - 1; d >= 0; d--) {
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
        }
    }
}

void complex_exp(float* y, const float* z, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (kParallelMin >> 3))
    for (int64_t k = 0; k < n; k++) {
        float m = std::exp(z[2 * k]), th = z[2 * k + 1];
        y[2 * k] = m * std::cos(th);
        y[2 * k + 1] = m * std::sin(th);
    }
}
void complex_exp_ref(float* y, const float* z, int64_t n) {
    for (int64_t k = 0; k < n; k++) {
        double m = std::exp(double(z[2 * k])), th = z[2 * k + 1];
        y[2 * k] = float(m * std::cos(th));
        y[2 * k + 1] = float(m * std::sin(th));
    }
}

void interleave(float* z, const float* re, const float* im, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
    for (int64_t k = 0; k < n; k++) {
        z[2 * k] = re ? re[k] : 0.0f;
        z[2 * k + 1] = im ? im[k] : 0.0f;
    }
}

void deinterleave(float* re, float* im, const float* z, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
    for (int64_t k = 0; k < n; k++) {
        if (re) re[k] = z[2 * k];
        if (im) im[k] = z[2 * k + 1];
    }
}

}  // namespace hippo::ew
