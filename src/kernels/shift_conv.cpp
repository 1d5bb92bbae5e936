#include "kernels/shift_conv.h"

#include <algorithm>
#include <vector>

namespace hippo {

namespace {
std::vector<float> transpose_taps(const float* h, int64_t C, int64_t N) {
    std::vector<float> t(size_t(N * C));
    for (int64_t c = 0; c < C; c++)
        for (int64_t j = 0; j < N; j++) t[size_t(j * C + c)] = h[c * N + j];
    return t;
}
}  // namespace

void shift_conv_forward(float* y, const float* x, const float* h, const float* Dk, int64_t B, int64_t L, int64_t C,
                        int64_t N) {
    std::vector<float> ht = transpose_taps(h, C, N);
#pragma omp parallel for schedule(static)
    for (int64_t bl = 0; bl < B * L; bl++) {
        int64_t b = bl / L, l = bl % L;
        float* out = y + bl * C;
        const float* xl = x + bl * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) out[c] = Dk[c] * xl[c];
        int64_t taps = std::min(N, l + 1);
        for (int64_t j = 0; j < taps; j++) {
            const float* xs = x + (b * L + l - j) * C;
            const float* hj = ht.data() + j * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) out[c] += hj[c] * xs[c];
        }
    }
}

void shift_conv_backward(float* dx, float* dh, float* dDk, const float* dy, const float* x, const float* h,
                         const float* Dk, int64_t B, int64_t L, int64_t C, int64_t N) {
    std::vector<float> ht = transpose_taps(h, C, N);
    // dx[l] = Dk dy[l] + sum_j h[j] dy[l + j]
#pragma omp parallel for schedule(static)
    for (int64_t bl = 0; bl < B * L; bl++) {
        int64_t b = bl / L, l = bl % L;
        float* out = dx + bl * C;
        const float* g = dy + bl * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) out[c] = Dk[c] * g[c];
        int64_t taps = std::min(N, L - l);
        for (int64_t j = 0; j < taps; j++) {
            const float* gs = dy + (b * L + l + j) * C;
            const float* hj = ht.data() + j * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) out[c] += hj[c] * gs[c];
        }
    }
    // dh[c, j] = sum_{b,l} dy[l] x[l - j];  j = N means dDk (lag 0 with the skip weight).
    // Threads split the taps, so every output is written by one thread in a fixed order.
    std::vector<double> dht(size_t((N + 1) * C), 0.0);
#pragma omp parallel
    {
        std::vector<double> acc(static_cast<size_t>(C));
#pragma omp for schedule(static)
        for (int64_t j = 0; j <= N; j++) {
            int64_t lag = j == N ? 0 : j;
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int64_t b = 0; b < B; b++)
                for (int64_t l = lag; l < L; l++) {
                    const float* g = dy + (b * L + l) * C;
                    const float* xs = x + (b * L + l - lag) * C;
                    // float products summed in double: deterministic and accurate for long L.
#pragma omp simd
                    for (int64_t c = 0; c < C; c++) acc[size_t(c)] += double(g[c] * xs[c]);
                }
            std::copy(acc.begin(), acc.end(), dht.begin() + j * C);
        }
    }
    for (int64_t c = 0; c < C; c++) {
        for (int64_t j = 0; j < N; j++) dh[c * N + j] = float(dht[size_t(j * C + c)]);
        dDk[c] = float(dht[size_t(N * C + c)]);
    }
}

void shift_conv_forward_ref(float* y, const float* x, const float* h, const float* Dk, int64_t B, int64_t L,
                            int64_t C, int64_t N) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t l = 0; l < L; l++)
            for (int64_t c = 0; c < C; c++) {
                double acc = double(Dk[c]) * x[(b * L + l) * C + c];
                for (int64_t j = 0; j < N && j <= l; j++) acc += double(h[c * N + j]) * x[(b * L + l - j) * C + c];
                y[(b * L + l) * C + c] = float(acc);
            }
}

void shift_conv_backward_ref(float* dx, float* dh, float* dDk, const float* dy, const float* x, const float* h,
                             const float* Dk, int64_t B, int64_t L, int64_t C, int64_t N) {
    for (int64_t c = 0; c < C; c++) {
        double dd = 0;
        std::vector<double> g(size_t(N), 0.0);
        for (int64_t b = 0; b < B; b++)
            for (int64_t l = 0; l < L; l++) {
                double gy = dy[(b * L + l) * C + c];
                dd += gy * x[(b * L + l) * C + c];
                for (int64_t j = 0; j < N && j <= l; j++) g[size_t(j)] += gy * x[(b * L + l - j) * C + c];
                double acc = double(Dk[c]) * gy;
                for (int64_t j = 0; j < N && l + j < L; j++) acc += double(h[c * N + j]) * dy[(b * L + l + j) * C + c];
                dx[(b * L + l) * C + c] = float(acc);
            }
        dDk[c] = float(dd);
        for (int64_t j = 0; j < N; j++) dh[c * N + j] = float(g[size_t(j)]);
    }
}

}  // namespace hippo
