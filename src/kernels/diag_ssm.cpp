#include "kernels/diag_ssm.h"

#include <vector>

#include "common/simd.h"

namespace hippo {

void diag_ssm_discretize(std::complex<float>* dA, std::complex<float>* dB, std::complex<float>* Cc,
                         const float* log_dt, const float* inv_A_real, const float* A_imag, const float* B,
                         const float* C, int64_t H, int64_t M, Discretization disc) {
    std::vector<std::complex<double>> a(size_t(H * M)), b(size_t(H * M));
    s4d_discretize(a.data(), b.data(), nullptr, log_dt, inv_A_real, A_imag, B, C, H, M, disc);
    for (int64_t i = 0; i < H * M; i++) {
        dA[i] = std::complex<float>(a[size_t(i)]);
        dB[i] = std::complex<float>(b[size_t(i)]);
        Cc[i] = {C[2 * i], C[2 * i + 1]};
    }
}

namespace {

// One channel: x <- dA x + dB w, returns 2 Re(sum C x). x, dA, dB, C: (M).
inline float step_channel(std::complex<float>* x, const std::complex<float>* dA, const std::complex<float>* dB,
                          const std::complex<float>* C, float w, int64_t M) {
    // Spelled out in real arithmetic: std::complex's operator* checks for inf/NaN through a
    // library call (C99 Annex G) unless compiled with -fcx-limited-range, which would also block
    // vectorisation. Returns sum_m 2 Re(C_m x_m) after x_m = dA_m x_m + dB_m w.
    float* xf = reinterpret_cast<float*>(x);
    const float* a = reinterpret_cast<const float*>(dA);
    const float* bb = reinterpret_cast<const float*>(dB);
    const float* c = reinterpret_cast<const float*>(C);
    float acc = 0;
    int64_t m = 0;
#ifdef __AVX512F__
    // 8 interleaved complex numbers per register: (re, im) pairs; moveldup / movehdup broadcast a
    // pair's re / im, and fmaddsub gives (ar xr - ai xi, ar xi + ai xr) in one instruction.
    if (M >= 8) {
        const __m512 wv = _mm512_set1_ps(w);
        const __m512 re_minus_im = _mm512_setr_ps(1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1);
        __m512 accv = _mm512_setzero_ps();
        for (; m + 8 <= M; m += 8) {
            const __m512 av = _mm512_loadu_ps(a + 2 * m), xv = _mm512_loadu_ps(xf + 2 * m);
            const __m512 swapped = _mm512_permute_ps(xv, 0xB1);  // (xi, xr)
            const __m512 ax = _mm512_fmaddsub_ps(_mm512_moveldup_ps(av), xv, _mm512_mul_ps(_mm512_movehdup_ps(av), swapped));
            const __m512 nx = _mm512_fmadd_ps(_mm512_loadu_ps(bb + 2 * m), wv, ax);
            _mm512_storeu_ps(xf + 2 * m, nx);
            accv = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(c + 2 * m), re_minus_im), nx, accv);
        }
        acc = _mm512_reduce_add_ps(accv);
    }
#endif
    for (; m < M; m++) {
        const float xr = xf[2 * m], xi = xf[2 * m + 1];
        const float nr = a[2 * m] * xr - a[2 * m + 1] * xi + bb[2 * m] * w;
        const float ni = a[2 * m] * xi + a[2 * m + 1] * xr + bb[2 * m + 1] * w;
        xf[2 * m] = nr;
        xf[2 * m + 1] = ni;
        acc += c[2 * m] * nr - c[2 * m + 1] * ni;
    }
    return 2.0f * acc;
}

}  // namespace

void diag_ssm_step(float* y, std::complex<float>* x, const float* w, const std::complex<float>* dA,
                   const std::complex<float>* dB, const std::complex<float>* C, int64_t n, int64_t M,
                   int64_t channels_per_head) {
    for (int64_t i = 0; i < n; i++) {
        const int64_t row = (i / channels_per_head) * M;
        y[i] = step_channel(x + i * M, dA + row, dB + row, C + row, w[i], M);
    }
}

void diag_ssm_step_ref(double* y, std::complex<double>* x, const double* w, const std::complex<double>* dA,
                       const std::complex<double>* dB, const std::complex<double>* C, int64_t n, int64_t M,
                       int64_t channels_per_head) {
    for (int64_t i = 0; i < n; i++) {
        const int64_t row = (i / channels_per_head) * M;
        std::complex<double>* xi = x + i * M;
        double acc = 0;
        for (int64_t m = 0; m < M; m++) {
            xi[m] = dA[row + m] * xi[m] + dB[row + m] * w[i];
            acc += 2.0 * (C[row + m] * xi[m]).real();
        }
        y[i] = acc;
    }
}

}  // namespace hippo
