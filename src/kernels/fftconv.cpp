#include "kernels/fftconv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/alloc.h"
#include "common/check.h"
#include "kernels/simd_transpose.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace hippo {

namespace {

constexpr int64_t kBlock = kFftConvBlock;
inline int64_t pad16(int64_t v) { return (v + 15) / 16 * 16; }

void check_shape(const FftConvShape& s) {
    HIPPO_CHECK(s.B >= 0 && s.L >= 1 && s.C >= 1 && s.P >= 1 && s.C % s.P == 0,
                "fftconv: bad shape B=%lld L=%lld C=%lld P=%lld", (long long)s.B, (long long)s.L, (long long)s.C,
                (long long)s.P);
}

}  // namespace


void fftconv_gather_rows(float* rows, int64_t stride, const float* u, const float* v, int64_t b, int64_t l0,
                         int64_t T, int64_t c0, int64_t cb, int64_t L, int64_t C, int64_t n) {
    (void)n;
    int64_t l = 0;
#ifdef __AVX512F__
    // Full blocks: 16 times x 16 channels at a time, transposed in registers.
    if (cb == kBlock)
        for (; l + 16 <= T; l += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                int64_t base = (b * L + l0 + l + i) * C + c0;
                r[i] = v ? _mm512_mul_ps(_mm512_loadu_ps(u + base), _mm512_loadu_ps(v + base)) : _mm512_loadu_ps(u + base);
            }
            transpose16x16(r);
            for (int c = 0; c < 16; c++) _mm512_storeu_ps(rows + c * stride + l, r[c]);
        }
#endif
    for (; l < T; l++) {
        int64_t base = (b * L + l0 + l) * C + c0;
        if (v) {
            for (int64_t c = 0; c < cb; c++) rows[c * stride + l] = u[base + c] * v[base + c];
        } else {
            for (int64_t c = 0; c < cb; c++) rows[c * stride + l] = u[base + c];
        }
    }
}

void fftconv_scatter_output(float* y, const float* u, const float* v, const float* q, const float* zrows,
                            int64_t stride, const float* d, int64_t b, int64_t l0, int64_t T, int64_t c0, int64_t cb,
                            int64_t L, int64_t C) {
    int64_t l = 0;
#ifdef __AVX512F__
    if (cb == kBlock) {
        const __m512 dv = _mm512_loadu_ps(d);
        for (; l + 16 <= T; l += 16) {
            __m512 z[16];
            for (int c = 0; c < 16; c++) z[c] = _mm512_loadu_ps(zrows + c * stride + l);
            transpose16x16(z);
            for (int i = 0; i < 16; i++) {
                int64_t base = (b * L + l0 + l + i) * C + c0;
                __m512 w = v ? _mm512_mul_ps(_mm512_loadu_ps(u + base), _mm512_loadu_ps(v + base)) : _mm512_loadu_ps(u + base);
                __m512 o = _mm512_fmadd_ps(dv, w, z[i]);
                if (q) o = _mm512_mul_ps(o, _mm512_loadu_ps(q + base));
                _mm512_storeu_ps(y + base, o);
            }
        }
    }
#endif
    for (; l < T; l++) {
        int64_t base = (b * L + l0 + l) * C + c0;
        for (int64_t c = 0; c < cb; c++) {
            float w = v ? u[base + c] * v[base + c] : u[base + c];
            float z = zrows[c * stride + l] + d[c] * w;
            y[base + c] = q ? q[base + c] * z : z;
        }
    }
}

void fftconv_scatter_grads(float* du, float* dv, float* dq, const float* dy, const float* u, const float* v,
                           const float* q, const float* zrows, const float* dwrows, int64_t stride, const float* d,
                           int64_t b, int64_t l0, int64_t T, int64_t c0, int64_t cb, int64_t L, int64_t C) {
    int64_t l = 0;
#ifdef __AVX512F__
    if (cb == kBlock) {
        const __m512 dd = _mm512_loadu_ps(d);
        for (; l + 16 <= T; l += 16) {
            __m512 z[16], g[16];
            for (int c = 0; c < 16; c++) g[c] = _mm512_loadu_ps(dwrows + c * stride + l);
            transpose16x16(g);
            if (q) {
                for (int c = 0; c < 16; c++) z[c] = _mm512_loadu_ps(zrows + c * stride + l);
                transpose16x16(z);
            }
            for (int i = 0; i < 16; i++) {
                int64_t base = (b * L + l0 + l + i) * C + c0;
                __m512 uu = _mm512_loadu_ps(u + base);
                __m512 vv = v ? _mm512_loadu_ps(v + base) : _mm512_set1_ps(1.0f);
                __m512 w = _mm512_mul_ps(uu, vv);
                __m512 gy = _mm512_loadu_ps(dy + base);
                __m512 dz = gy;
                if (q) {
                    dz = _mm512_mul_ps(gy, _mm512_loadu_ps(q + base));
                    _mm512_storeu_ps(dq + base, _mm512_mul_ps(gy, _mm512_fmadd_ps(dd, w, z[i])));
                }
                __m512 dw = _mm512_fmadd_ps(dd, dz, g[i]);
                _mm512_storeu_ps(du + base, _mm512_mul_ps(dw, vv));
                if (v) _mm512_storeu_ps(dv + base, _mm512_mul_ps(dw, uu));
            }
        }
    }
#endif
    for (; l < T; l++) {
        int64_t base = (b * L + l0 + l) * C + c0;
        for (int64_t c = 0; c < cb; c++) {
            float uu = u[base + c], vv = v ? v[base + c] : 1.0f, w = uu * vv;
            float dz = q ? dy[base + c] * q[base + c] : dy[base + c];
            if (q) dq[base + c] = dy[base + c] * (zrows[c * stride + l] + d[c] * w);
            float dw = dwrows[c * stride + l] + d[c] * dz;
            du[base + c] = dw * vv;
            if (v) dv[base + c] = dw * uu;
        }
    }
}

int64_t fftconv_fft_size(int64_t L) {
    int64_t n = 16;
    while (n < 2 * L) n *= 2;
    return n;
}

void fftconv_kernel_spectrum(float* Kf, const float* K, int64_t Hk, int64_t L, const RealFFT& fft) {
    const int64_t n = fft.size();
    HIPPO_ASSERT(n >= 2 * L);
    const float inv_n = 1.0f / float(n);
#pragma omp parallel
    {
        Buffer<float> work(fft.work_floats() + 16);
#pragma omp for schedule(static)
        for (int64_t h = 0; h < Hk; h++) {
            float* row = Kf + h * (n + 2);
            for (int64_t l = 0; l < L; l++) row[l] = K[h * L + l] * inv_n;
            fft.forward_unordered(row, row, work.data(), L);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fused forward

void fftconv_forward(float* y, const float* u, const float* v, const float* q, const float* Kf, const float* D,
                     const FftConvShape& s, const RealFFT& fft) {
    check_shape(s);
    const int64_t n = fft.size(), stride = pad16(n + 2);
    HIPPO_CHECK(n == fftconv_fft_size(s.L), "fftconv: FFT size %lld does not fit L=%lld", (long long)n, (long long)s.L);
    const int64_t nblocks = (s.C + kBlock - 1) / kBlock;
#pragma omp parallel
    {
        Buffer<float> rows(size_t(kBlock * stride)), work(fft.work_floats() + 16);
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblocks; blk++) {
            const int64_t c0 = blk * kBlock, cb = std::min(kBlock, s.C - c0);
            for (int64_t b = 0; b < s.B; b++) {
                fftconv_gather_rows(rows.data(), stride, u, v, b, 0, s.L, c0, cb, s.L, s.C, n);
                for (int64_t c = 0; c < cb; c++) {
                    float* r = rows.data() + c * stride;
                    const float* kf = Kf + ((c0 + c) / s.P) * (n + 2);
                    fft.forward_unordered(r, r, work.data(), s.L);
                    fft.spectrum_mul(r, kf, r);
                    fft.inverse_unordered(r, r, work.data(), 1.0f, s.L);
                }
                // y = q * (z + D w), w recomputed from u, v (cheaper than keeping it).
                float d[kBlock];
                for (int64_t c = 0; c < cb; c++) d[c] = D[(c0 + c) / s.P];
                fftconv_scatter_output(y, u, v, q, rows.data(), stride, d, b, 0, s.L, c0, cb, s.L, s.C);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fused backward
//
// With dz = dy * q (or dy):
//   dq = dy * z,  dw = corr(dz, K) + D dz,  du = dw * v,  dv = dw * u,
//   dK[j] = sum_b sum_l dz[l] w[l-j],  dD = sum_b sum_l dz[l] w[l].
// Correlations are products with conjugate spectra; zero padding to n >= 2L keeps them exact.
// Tasks are channel blocks with the batch loop inside, so dK and dD accumulate without races.

void fftconv_backward(float* du, float* dv, float* dq, float* dK, float* dD, const float* dy, const float* u,
                      const float* v, const float* q, const float* Kf, const float* D, const FftConvShape& s,
                      const RealFFT& fft) {
    check_shape(s);
    const int64_t n = fft.size(), stride = pad16(n + 2);
    HIPPO_CHECK(n == fftconv_fft_size(s.L), "fftconv: FFT size %lld does not fit L=%lld", (long long)n, (long long)s.L);
    const int64_t nblocks = (s.C + kBlock - 1) / kBlock;
    const int64_t Hk = s.kernels();
    // With several channels per kernel, per-channel dK rows are summed afterwards in a fixed order.
    Buffer<float> dK_channels(s.P > 1 ? size_t(s.C * s.L) : 0);
    Buffer<double> dD_channels(size_t(s.C), 0.0);
    const float inv_n = 1.0f / float(n);
#pragma omp parallel
    {
        // wf: spectra of w; zr: z rows; g: dz spectra then dw rows; acc: sum_b G conj(Wf).
        Buffer<float> wf(size_t(kBlock * stride)), zr(size_t(kBlock * stride)), g(size_t(kBlock * stride)),
            acc(size_t(kBlock * stride)), work(fft.work_floats() + 16);
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblocks; blk++) {
            const int64_t c0 = blk * kBlock, cb = std::min(kBlock, s.C - c0);
            float d[kBlock];
            double dd[kBlock] = {};
            for (int64_t c = 0; c < cb; c++) d[c] = D[(c0 + c) / s.P];
            for (int64_t c = 0; c < cb; c++) std::memset(acc.data() + c * stride, 0, size_t(n + 2) * sizeof(float));
            for (int64_t b = 0; b < s.B; b++) {
                fftconv_gather_rows(wf.data(), stride, u, v, b, 0, s.L, c0, cb, s.L, s.C, n);
                fftconv_gather_rows(g.data(), stride, dy, q, b, 0, s.L, c0, cb, s.L, s.C, n);  // dz = dy * q
                for (int64_t c = 0; c < cb; c++) {
                    float* W = wf.data() + c * stride;
                    float* Z = zr.data() + c * stride;
                    float* G = g.data() + c * stride;
                    float* A = acc.data() + c * stride;
                    const float* kf = Kf + ((c0 + c) / s.P) * (n + 2);
                    // dD needs sum dz * w in the time domain: take it before the transforms.
                    double sdw = 0;
                    for (int64_t l = 0; l < s.L; l++) sdw += double(G[l]) * double(W[l]);
                    dd[c] += sdw;
                    fft.forward_unordered(W, W, work.data(), s.L);
                    if (q) {
                        fft.spectrum_mul(W, kf, Z);
                        fft.inverse_unordered(Z, Z, work.data(), 1.0f, s.L);
                    }
                    fft.forward_unordered(G, G, work.data(), s.L);
                    fft.spectrum_mul_conj(G, W, W);  // W no longer needed: reuse it for G conj(Wf)
                    for (int64_t i = 0; i < n + 2; i++) A[i] += W[i];
                    fft.spectrum_mul_conj(G, kf, G);
                    fft.inverse_unordered(G, G, work.data(), 1.0f, s.L);
                }
                fftconv_scatter_grads(du, dv, dq, dy, u, v, q, zr.data(), g.data(), stride, d, b, 0, s.L, c0, cb, s.L, s.C);
            }
            for (int64_t c = 0; c < cb; c++) {
                float* A = acc.data() + c * stride;
                fft.inverse_unordered(A, A, work.data(), inv_n, s.L);
                float* dst = s.P > 1 ? dK_channels.data() + (c0 + c) * s.L : dK + (c0 + c) * s.L;
                std::memcpy(dst, A, size_t(s.L) * sizeof(float));
                dD_channels[size_t(c0 + c)] = dd[c];
            }
        }
    }
    for (int64_t h = 0; h < Hk; h++) {
        double sd = 0;
        for (int64_t p = 0; p < s.P; p++) sd += dD_channels[size_t(h * s.P + p)];
        dD[h] = float(sd);
        if (s.P > 1) {
            float* dst = dK + h * s.L;
            std::memcpy(dst, dK_channels.data() + (h * s.P) * s.L, size_t(s.L) * sizeof(float));
            for (int64_t p = 1; p < s.P; p++) {
                const float* src = dK_channels.data() + (h * s.P + p) * s.L;
                for (int64_t l = 0; l < s.L; l++) dst[l] += src[l];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Direct convolution, vectorised over channels. Kt: (L, C) transposed kernel taps.

static Buffer<float> transpose_taps(const float* K, const FftConvShape& s) {
    Buffer<float> Kt(size_t(s.L * s.C));
    for (int64_t j = 0; j < s.L; j++)
        for (int64_t c = 0; c < s.C; c++) Kt[size_t(j * s.C + c)] = K[(c / s.P) * s.L + j];
    return Kt;
}

void fftconv_forward_direct(float* y, const float* u, const float* v, const float* q, const float* K,
                            const float* D, const FftConvShape& s) {
    check_shape(s);
    Buffer<float> Kt = transpose_taps(K, s);
    Buffer<float> w(size_t(s.B * s.L * s.C));
    const int64_t total = s.B * s.L * s.C;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < total; i++) w[size_t(i)] = v ? u[i] * v[i] : u[i];
#pragma omp parallel
    {
        Buffer<float> acc(size_t(s.C));
#pragma omp for schedule(static)
        for (int64_t bl = 0; bl < s.B * s.L; bl++) {
            int64_t b = bl / s.L, l = bl % s.L;
            std::fill(acc.begin(), acc.end(), 0.0f);
            for (int64_t j = 0; j <= l; j++) {
                const float* kt = Kt.data() + j * s.C;
                const float* wr = w.data() + (b * s.L + l - j) * s.C;
#pragma omp simd
                for (int64_t c = 0; c < s.C; c++) acc[size_t(c)] += kt[c] * wr[c];
            }
            int64_t base = bl * s.C;
            for (int64_t c = 0; c < s.C; c++) {
                float z = acc[size_t(c)] + D[c / s.P] * w[size_t(base + c)];
                y[base + c] = q ? q[base + c] * z : z;
            }
        }
    }
}

void fftconv_backward_direct(float* du, float* dv, float* dq, float* dK, float* dD, const float* dy,
                             const float* u, const float* v, const float* q, const float* K, const float* D,
                             const FftConvShape& s) {
    check_shape(s);
    Buffer<float> Kt = transpose_taps(K, s);
    const int64_t total = s.B * s.L * s.C;
    Buffer<float> w(static_cast<size_t>(total)), dz(static_cast<size_t>(total));
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < total; i++) {
        w[size_t(i)] = v ? u[i] * v[i] : u[i];
        dz[size_t(i)] = q ? dy[i] * q[i] : dy[i];
    }
    // dq needs z: recompute the forward.
    if (q) {
        fftconv_forward_direct(dq, u, v, nullptr, K, D, s);
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < total; i++) dq[i] *= dy[i];
    }
#pragma omp parallel
    {
        Buffer<float> acc(size_t(s.C));
        // dw[l] = sum_{l' >= l} K[l' - l] dz[l'] + D dz[l]
#pragma omp for schedule(static)
        for (int64_t bl = 0; bl < s.B * s.L; bl++) {
            int64_t b = bl / s.L, l = bl % s.L;
            std::fill(acc.begin(), acc.end(), 0.0f);
            for (int64_t lp = l; lp < s.L; lp++) {
                const float* kt = Kt.data() + (lp - l) * s.C;
                const float* g = dz.data() + (b * s.L + lp) * s.C;
#pragma omp simd
                for (int64_t c = 0; c < s.C; c++) acc[size_t(c)] += kt[c] * g[c];
            }
            int64_t base = bl * s.C;
            for (int64_t c = 0; c < s.C; c++) {
                float dw = acc[size_t(c)] + D[c / s.P] * dz[size_t(base + c)];
                du[base + c] = v ? dw * v[base + c] : dw;
                if (v) dv[base + c] = dw * u[base + c];
            }
        }
        // dK[j] per channel: sum_b sum_{l >= j} dz[l] w[l - j]; threads split j.
        Buffer<double> kacc(size_t(s.C));
#pragma omp for schedule(static)
        for (int64_t j = 0; j < s.L; j++) {
            std::fill(kacc.begin(), kacc.end(), 0.0);
            for (int64_t b = 0; b < s.B; b++)
                for (int64_t l = j; l < s.L; l++) {
                    const float* g = dz.data() + (b * s.L + l) * s.C;
                    const float* wr = w.data() + (b * s.L + l - j) * s.C;
                    for (int64_t c = 0; c < s.C; c++) kacc[size_t(c)] += double(g[c]) * double(wr[c]);
                }
            for (int64_t h = 0; h < s.kernels(); h++) {
                double t = 0;
                for (int64_t p = 0; p < s.P; p++) t += kacc[size_t(h * s.P + p)];
                dK[h * s.L + j] = float(t);
            }
        }
    }
    for (int64_t h = 0; h < s.kernels(); h++) {
        double t = 0;
        for (int64_t b = 0; b < s.B; b++)
            for (int64_t l = 0; l < s.L; l++)
                for (int64_t p = 0; p < s.P; p++) {
                    int64_t i = (b * s.L + l) * s.C + h * s.P + p;
                    t += double(dz[size_t(i)]) * double(w[size_t(i)]);
                }
        dD[h] = float(t);
    }
}

// ---------------------------------------------------------------------------------------------
// Unfused pipeline through a (B, C, n+2) spectrum buffer: every step is a full pass.

void fftconv_forward_unfused(float* y, const float* u, const float* v, const float* q, const float* Kf,
                             const float* D, const FftConvShape& s, const RealFFT& fft) {
    check_shape(s);
    const int64_t n = fft.size(), rows = s.B * s.C, stride = pad16(n + 2);
    Buffer<float> X(size_t(rows * stride));
    // pass 1: gate and transpose into zero-padded rows
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t b = r / s.C, c = r % s.C;
        float* x = X.data() + r * stride;
        for (int64_t l = 0; l < s.L; l++) {
            int64_t i = (b * s.L + l) * s.C + c;
            x[l] = v ? u[i] * v[i] : u[i];
        }
    }
    // pass 2: forward FFTs
#pragma omp parallel
    {
        Buffer<float> work(fft.work_floats() + 16);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) fft.forward_unordered(X.data() + r * stride, X.data() + r * stride, work.data(), s.L);
    }
    // pass 3: spectrum products
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) fft.spectrum_mul(X.data() + r * stride, Kf + ((r % s.C) / s.P) * (n + 2), X.data() + r * stride);
    // pass 4: inverse FFTs
#pragma omp parallel
    {
        Buffer<float> work(fft.work_floats() + 16);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) fft.inverse_unordered(X.data() + r * stride, X.data() + r * stride, work.data(), 1.0f, s.L);
    }
    // pass 5: skip term and output gate, back to (B, L, C)
#pragma omp parallel for schedule(static)
    for (int64_t bl = 0; bl < s.B * s.L; bl++) {
        int64_t b = bl / s.L, l = bl % s.L;
        for (int64_t c = 0; c < s.C; c++) {
            int64_t i = bl * s.C + c;
            float w = v ? u[i] * v[i] : u[i];
            float z = X.data()[(b * s.C + c) * stride + l] + D[c / s.P] * w;
            y[i] = q ? q[i] * z : z;
        }
    }
}

void fftconv_backward_unfused(float* du, float* dv, float* dq, float* dK, float* dD, const float* dy,
                              const float* u, const float* v, const float* q, const float* Kf, const float* D,
                              const FftConvShape& s, const RealFFT& fft) {
    check_shape(s);
    const int64_t n = fft.size(), rows = s.B * s.C, stride = pad16(n + 2);
    Buffer<float> W(size_t(rows * stride)), G(size_t(rows * stride)), Z(size_t(rows * stride));
    auto for_rows_fft = [&](float* buf, bool inverse, float scale) {
#pragma omp parallel
        {
            Buffer<float> work(fft.work_floats() + 16);
#pragma omp for schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                float* x = buf + r * stride;
                if (inverse) fft.inverse_unordered(x, x, work.data(), scale, s.L);
                else fft.forward_unordered(x, x, work.data(), s.L);
            }
        }
    };
    // pass: gather w and dz
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t b = r / s.C, c = r % s.C;
        float* w = W.data() + r * stride;
        float* g = G.data() + r * stride;
        for (int64_t l = 0; l < s.L; l++) {
            int64_t i = (b * s.L + l) * s.C + c;
            w[l] = v ? u[i] * v[i] : u[i];
            g[l] = q ? dy[i] * q[i] : dy[i];
        }
    }
    Buffer<double> dd(static_cast<size_t>(rows));
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        double t = 0;
        for (int64_t l = 0; l < s.L; l++) t += double(W.data()[r * stride + l]) * double(G.data()[r * stride + l]);
        dd[size_t(r)] = t;
    }
    for_rows_fft(W.data(), false, 1.0f);
    for_rows_fft(G.data(), false, 1.0f);
    // z = irfft(Wf Kf) for dq
    if (q) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) fft.spectrum_mul(W.data() + r * stride, Kf + ((r % s.C) / s.P) * (n + 2), Z.data() + r * stride);
        for_rows_fft(Z.data(), true, 1.0f);
    }
    // G conj(Wf) summed over the batch and the channels of a kernel (into W of batch 0's rows)
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) fft.spectrum_mul_conj(G.data() + r * stride, W.data() + r * stride, W.data() + r * stride);
    const int64_t Hk = s.kernels();
    Buffer<float> acc(size_t(Hk * stride), 0.0f);
    for (int64_t r = 0; r < rows; r++) {
        float* a = acc.data() + ((r % s.C) / s.P) * stride;
        const float* x = W.data() + r * stride;
        for (int64_t i = 0; i < n + 2; i++) a[i] += x[i];
    }
    {
        Buffer<float> work(fft.work_floats() + 16);
        for (int64_t h = 0; h < Hk; h++) {
            float* a = acc.data() + h * stride;
            fft.inverse_unordered(a, a, work.data(), 1.0f / float(n), s.L);
            std::memcpy(dK + h * s.L, a, size_t(s.L) * sizeof(float));
        }
    }
    // dw = irfft(G conj(Kf))
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) fft.spectrum_mul_conj(G.data() + r * stride, Kf + ((r % s.C) / s.P) * (n + 2), G.data() + r * stride);
    for_rows_fft(G.data(), true, 1.0f);
#pragma omp parallel for schedule(static)
    for (int64_t bl = 0; bl < s.B * s.L; bl++) {
        int64_t b = bl / s.L, l = bl % s.L;
        for (int64_t c = 0; c < s.C; c++) {
            int64_t i = bl * s.C + c, r = b * s.C + c;
            float uu = u[i], vv = v ? v[i] : 1.0f, w = uu * vv;
            float dz = q ? dy[i] * q[i] : dy[i];
            if (q) dq[i] = dy[i] * (Z.data()[r * stride + l] + D[c / s.P] * w);
            float dw = G.data()[r * stride + l] + D[c / s.P] * dz;
            du[i] = dw * vv;
            if (v) dv[i] = dw * uu;
        }
    }
    for (int64_t h = 0; h < Hk; h++) {
        double t = 0;
        for (int64_t b = 0; b < s.B; b++)
            for (int64_t p = 0; p < s.P; p++) t += dd[size_t(b * s.C + h * s.P + p)];
        dD[h] = float(t);
    }
}

// ---------------------------------------------------------------------------------------------
// References

void fftconv_forward_ref(float* y, const float* u, const float* v, const float* q, const float* K, const float* D,
                         const FftConvShape& s) {
    auto W = [&](int64_t i) { return v ? double(u[i]) * double(v[i]) : double(u[i]); };
    for (int64_t b = 0; b < s.B; b++)
        for (int64_t c = 0; c < s.C; c++) {
            const float* k = K + (c / s.P) * s.L;
            for (int64_t l = 0; l < s.L; l++) {
                double z = double(D[c / s.P]) * W((b * s.L + l) * s.C + c);
                for (int64_t j = 0; j <= l; j++) z += double(k[j]) * W((b * s.L + l - j) * s.C + c);
                int64_t i = (b * s.L + l) * s.C + c;
                y[i] = float(q ? double(q[i]) * z : z);
            }
        }
}

void fftconv_backward_ref(float* du, float* dv, float* dq, float* dK, float* dD, const float* dy, const float* u,
                          const float* v, const float* q, const float* K, const float* D, const FftConvShape& s) {
    const int64_t Hk = s.kernels();
    Buffer<double> gK(size_t(Hk * s.L), 0.0), gD(size_t(Hk), 0.0);
    auto idx = [&](int64_t b, int64_t l, int64_t c) { return (b * s.L + l) * s.C + c; };
    for (int64_t b = 0; b < s.B; b++)
        for (int64_t c = 0; c < s.C; c++) {
            int64_t h = c / s.P;
            const float* k = K + h * s.L;
            Buffer<double> w(size_t(s.L)), dz(size_t(s.L));
            for (int64_t l = 0; l < s.L; l++) {
                int64_t i = idx(b, l, c);
                w[size_t(l)] = v ? double(u[i]) * double(v[i]) : double(u[i]);
                dz[size_t(l)] = q ? double(dy[i]) * double(q[i]) : double(dy[i]);
            }
            for (int64_t l = 0; l < s.L; l++) {
                int64_t i = idx(b, l, c);
                if (q) {
                    double z = double(D[h]) * w[size_t(l)];
                    for (int64_t j = 0; j <= l; j++) z += double(k[j]) * w[size_t(l - j)];
                    dq[i] = float(double(dy[i]) * z);
                }
                double dw = double(D[h]) * dz[size_t(l)];
                for (int64_t lp = l; lp < s.L; lp++) dw += double(k[lp - l]) * dz[size_t(lp)];
                du[i] = float(v ? dw * double(v[i]) : dw);
                if (v) dv[i] = float(dw * double(u[i]));
                gD[size_t(h)] += dz[size_t(l)] * w[size_t(l)];
                for (int64_t j = 0; j <= l; j++) gK[size_t(h * s.L + j)] += dz[size_t(l)] * w[size_t(l - j)];
            }
        }
    for (size_t i = 0; i < gK.size(); i++) dK[i] = float(gK[i]);
    for (size_t i = 0; i < gD.size(); i++) dD[i] = float(gD[i]);
}

}  // namespace hippo
