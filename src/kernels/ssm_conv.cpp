#include "kernels/ssm_conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/alloc.h"

#include "common/check.h"

namespace hippo {

using cd = std::complex<double>;

namespace {

constexpr int64_t kBlock = kFftConvBlock;
inline int64_t pad16(int64_t v) { return (v + 15) / 16 * 16; }

// Everything the chunked kernels need about the SSM, computed once per call.
struct ChunkSetup {
    int64_t Hk, M, T, n, stride;
    RealFFT fft;
    Buffer<float> Kf;          // (Hk, n+2) spectra of K[:T], scaled by 1/n
    Buffer<cd> dA;             // (Hk, M): z = exp(log_z)
    const cd* W;               // (Hk, M)
    ModalPowers pw;

    ChunkSetup(const ModalSsm& p, const FftConvShape& s, int64_t chunk)
        : Hk(s.kernels()), M(p.M), T(std::min(chunk, s.L)), n(fftconv_fft_size(T)), stride(pad16(n + 2)), fft(n),
          Kf(size_t(Hk * (n + 2))), dA(size_t(Hk * M)), W(p.W) {
        for (int64_t i = 0; i < Hk * M; i++) dA[size_t(i)] = std::exp(p.log_z[i]);
        pw = ModalPowers(p.log_z, Hk, M);
        Buffer<float> K(size_t(Hk * T));  // the kernel's first chunk, from the same modal powers
        s4d_kernel_eval(K.data(), pw, W, T);
        fftconv_kernel_spectrum(Kf.data(), K.data(), Hk, T, fft);
    }
    const float* kf(int64_t h) const { return Kf.data() + h * (n + 2); }
    // dA^Tc for a chunk of length Tc.
    cd chunk_power(int64_t h, int64_t m, int64_t Tc) const { return pw.power(h, m, Tc); }
};

// In-place FFT convolution of one gathered row with the kernel spectrum kf.
inline void conv_row(float* row, int64_t T, const float* kf, const RealFFT& fft, float* work) {
    fft.forward_unordered(row, row, work, T);
    fft.spectrum_mul(row, kf, row);
    fft.inverse_unordered(row, row, work, 1.0f, T);
}

void chunked_forward(float* y, const float* u, const float* v, const float* q, const ModalSsm& p,
                     const FftConvShape& s, int64_t chunk, cd* final_X) {
    ChunkSetup cs(p, s, chunk);
    const int64_t M = cs.M, T = cs.T, stride = cs.stride, nblocks = (s.C + kBlock - 1) / kBlock;
#pragma omp parallel
    {
        Buffer<float> rows(size_t(kBlock * stride)), work(cs.fft.work_floats() + 16);
        Buffer<cd> X(size_t(kBlock * M)), R0(static_cast<size_t>(M)), Wx(static_cast<size_t>(M));
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblocks; blk++) {
            const int64_t c0 = blk * kBlock, cb = std::min(kBlock, s.C - c0);
            for (int64_t b = 0; b < s.B; b++) {
                std::fill(X.begin(), X.end(), cd(0.0));
                for (int64_t l0 = 0; l0 < s.L; l0 += T) {
                    const int64_t Tc = std::min(T, s.L - l0);
                    fftconv_gather_rows(rows.data(), stride, u, v, b, l0, Tc, c0, cb, s.L, s.C, cs.n);
                    for (int64_t c = 0; c < cb; c++) {
                        const int64_t h = (c0 + c) / s.P;
                        float* row = rows.data() + c * stride;
                        cd* x = X.data() + c * M;
                        // State increment from this chunk's inputs, before the row is transformed.
                        cs.pw.sums(R0.data(), nullptr, row, Tc, h, /*reversed=*/true);
                        conv_row(row, Tc, cs.kf(h), cs.fft, work.data());
                        if (l0 > 0) {
                            for (int64_t m = 0; m < M; m++) Wx[size_t(m)] = cs.W[size_t(h * M + m)] * cs.dA[size_t(h * M + m)] * x[m];
                            cs.pw.eval(row, Tc, Wx.data(), h);
                        }
                        for (int64_t m = 0; m < M; m++) x[m] = cs.chunk_power(h, m, Tc) * x[m] + R0[size_t(m)];
                    }
                    float d[kBlock];
                    for (int64_t c = 0; c < cb; c++) d[c] = p.D[(c0 + c) / s.P];
                    fftconv_scatter_output(y, u, v, q, rows.data(), stride, d, b, l0, Tc, c0, cb, s.L, s.C);
                }
                if (final_X)
                    for (int64_t c = 0; c < cb; c++)
                        for (int64_t m = 0; m < M; m++) final_X[(b * s.C + c0 + c) * M + m] = X[size_t(c * M + m)];
            }
        }
    }
}

void chunked_backward(float* du, float* dv, float* dq, const ModalSums& g, const float* dy, const float* u,
                      const float* v, const float* q, const ModalSsm& p, const FftConvShape& s, int64_t chunk) {
    ChunkSetup cs(p, s, chunk);
    const int64_t M = cs.M, T = cs.T, n = cs.n, stride = cs.stride, Hk = cs.Hk;
    const int64_t nblocks = (s.C + kBlock - 1) / kBlock, nchunks = (s.L + T - 1) / T;
    // Per channel: power sums of the cross-chunk pairs and of the local kernel gradient, and dD.
    Buffer<cd> S0c(size_t(s.C * M)), S1c(size_t(s.C * M));
    Buffer<float> dK_local(size_t(s.C * T));
    Buffer<double> dD_c(size_t(s.C), 0.0);
    const float inv_n = 1.0f / float(n);
#pragma omp parallel
    {
        Buffer<float> wr(size_t(kBlock * stride)), zr(size_t(kBlock * stride)), gr(size_t(kBlock * stride)),
            acc(size_t(kBlock * stride)), tmp(static_cast<size_t>(pad16(T))), work(cs.fft.work_floats() + 16);
        // States at chunk starts: X_k, Y_k for every chunk of the block's rows.
        Buffer<cd> XY(size_t(nchunks * kBlock * M * 2));
        Buffer<cd> X(size_t(kBlock * M)), Y(size_t(kBlock * M)), gX(size_t(kBlock * M));
        Buffer<cd> R0(static_cast<size_t>(M)), R1(static_cast<size_t>(M)), A(static_cast<size_t>(M)), Bs(static_cast<size_t>(M)), Wx(static_cast<size_t>(M));
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblocks; blk++) {
            const int64_t c0 = blk * kBlock, cb = std::min(kBlock, s.C - c0);
            float d[kBlock];
            for (int64_t c = 0; c < cb; c++) d[c] = p.D[(c0 + c) / s.P];
            for (int64_t c = 0; c < cb; c++) std::memset(acc.data() + c * stride, 0, size_t(n + 2) * sizeof(float));
            Buffer<cd> s0(size_t(cb * M), 0.0), s1(size_t(cb * M), 0.0);
            Buffer<double> dd(size_t(cb), 0.0);
            for (int64_t b = 0; b < s.B; b++) {
                // Pass 1: states X_k, Y_k at the start of every chunk.
                std::fill(X.begin(), X.end(), cd(0.0));
                std::fill(Y.begin(), Y.end(), cd(0.0));
                for (int64_t k = 0; k < nchunks; k++) {
                    const int64_t l0 = k * T, Tc = std::min(T, s.L - l0);
                    fftconv_gather_rows(wr.data(), stride, u, v, b, l0, Tc, c0, cb, s.L, s.C, n);
                    for (int64_t c = 0; c < cb; c++) {
                        const int64_t h = (c0 + c) / s.P;
                        cd* xy = XY.data() + ((k * kBlock + c) * M) * 2;
                        for (int64_t m = 0; m < M; m++) {
                            xy[2 * m] = X[size_t(c * M + m)];
                            xy[2 * m + 1] = Y[size_t(c * M + m)];
                        }
                        cs.pw.sums(R0.data(), R1.data(), wr.data() + c * stride, Tc, h, /*reversed=*/true);
                        for (int64_t m = 0; m < M; m++) {
                            cd zt = cs.chunk_power(h, m, Tc);
                            cd& x = X[size_t(c * M + m)];
                            cd& yy = Y[size_t(c * M + m)];
                            yy = zt * (double(Tc) * x + yy) + R1[size_t(m)];
                            x = zt * x + R0[size_t(m)];
                        }
                    }
                }
                // Pass 2: chunks in reverse, carrying gX = dLoss/dX at the chunk's end.
                std::fill(gX.begin(), gX.end(), cd(0.0));
                for (int64_t k = nchunks - 1; k >= 0; k--) {
                    const int64_t l0 = k * T, Tc = std::min(T, s.L - l0);
                    fftconv_gather_rows(wr.data(), stride, u, v, b, l0, Tc, c0, cb, s.L, s.C, n);
                    fftconv_gather_rows(gr.data(), stride, dy, q, b, l0, Tc, c0, cb, s.L, s.C, n);  // dz = dy * q
                    for (int64_t c = 0; c < cb; c++) {
                        const int64_t h = (c0 + c) / s.P;
                        float* Wr = wr.data() + c * stride;
                        float* Zr = zr.data() + c * stride;
                        float* G = gr.data() + c * stride;
                        const cd* xy = XY.data() + ((k * kBlock + c) * M) * 2;
                        cd* gx = gX.data() + c * M;
                        double sdw = 0;
                        for (int64_t l = 0; l < Tc; l++) sdw += double(G[l]) * double(Wr[l]);
                        dd[size_t(c)] += sdw;
                        // Power sums of dz (time domain) for the cross-chunk parameter terms and gX.
                        cs.pw.sums(A.data(), Bs.data(), G, Tc, h);
                        for (int64_t m = 0; m < M; m++) {
                            size_t hm = size_t(h * M + m);
                            cd z = cs.dA[hm], Xk = xy[2 * m], Yk = xy[2 * m + 1];
                            s0[size_t(c * M + m)] += z * A[size_t(m)] * Xk;
                            s1[size_t(c * M + m)] += z * ((A[size_t(m)] + Bs[size_t(m)]) * Xk + A[size_t(m)] * Yk);
                        }
                        cs.fft.forward_unordered(Wr, Wr, work.data(), Tc);
                        if (q) {
                            cs.fft.spectrum_mul(Wr, cs.kf(h), Zr);
                            cs.fft.inverse_unordered(Zr, Zr, work.data(), 1.0f, Tc);
                            if (k > 0) {
                                for (int64_t m = 0; m < M; m++) {
                                    size_t hm = size_t(h * M + m);
                                    Wx[size_t(m)] = cs.W[hm] * cs.dA[hm] * xy[2 * m];
                                }
                                cs.pw.eval(Zr, Tc, Wx.data(), h);
                            }
                        }
                        cs.fft.forward_unordered(G, G, work.data(), Tc);
                        cs.fft.spectrum_mul_conj(G, Wr, Wr);
                        float* Ac = acc.data() + c * stride;
                        for (int64_t i = 0; i < n + 2; i++) Ac[i] += Wr[i];
                        cs.fft.spectrum_mul_conj(G, cs.kf(h), G);
                        cs.fft.inverse_unordered(G, G, work.data(), 1.0f, Tc);
                        // Inputs of this chunk reach later chunks through X_{k+1}.
                        if (k < nchunks - 1) {
                            for (int64_t m = 0; m < M; m++) Wx[size_t(m)] = 0.5 * std::conj(gx[m]);
                            std::memset(tmp.data(), 0, size_t(Tc) * sizeof(float));
                            cs.pw.eval(tmp.data(), Tc, Wx.data(), h);
                            for (int64_t j = 0; j < Tc; j++) G[j] += tmp.data()[Tc - 1 - j];
                        }
                        for (int64_t m = 0; m < M; m++) {
                            size_t hm = size_t(h * M + m);
                            gx[m] = std::conj(cs.chunk_power(h, m, Tc)) * gx[m] +
                                    2.0 * std::conj(cs.W[hm] * cs.dA[hm] * A[size_t(m)]);
                        }
                    }
                    fftconv_scatter_grads(du, dv, dq, dy, u, v, q, zr.data(), gr.data(), stride, d, b, l0, Tc, c0, cb,
                                          s.L, s.C);
                }
            }
            for (int64_t c = 0; c < cb; c++) {
                float* Ac = acc.data() + c * stride;
                cs.fft.inverse_unordered(Ac, Ac, work.data(), inv_n, T);
                std::memcpy(dK_local.data() + (c0 + c) * T, Ac, size_t(T) * sizeof(float));
                for (int64_t m = 0; m < M; m++) {
                    S0c[size_t((c0 + c) * M + m)] = s0[size_t(c * M + m)];
                    S1c[size_t((c0 + c) * M + m)] = s1[size_t(c * M + m)];
                }
                dD_c[size_t(c0 + c)] = dd[size_t(c)];
            }
        }
    }
    // Per kernel: local kernel gradient summed over its channels, its power sums, plus the
    // cross-chunk sums.
    cd* S0 = g.S0;
    cd* S1 = g.S1;
#pragma omp parallel
    {
        Buffer<float> dk(static_cast<size_t>(T));
        Buffer<cd> a(static_cast<size_t>(M)), bsum(static_cast<size_t>(M));
#pragma omp for schedule(static)
        for (int64_t h = 0; h < Hk; h++) {
            std::copy(dK_local.begin() + h * s.P * T, dK_local.begin() + (h * s.P + 1) * T, dk.begin());
            for (int64_t pp = 1; pp < s.P; pp++)
                for (int64_t l = 0; l < T; l++) dk[size_t(l)] += dK_local[size_t((h * s.P + pp) * T + l)];
            cs.pw.sums(a.data(), bsum.data(), dk.data(), T, h);
            for (int64_t m = 0; m < M; m++) {
                cd t0 = a[size_t(m)], t1 = bsum[size_t(m)];
                for (int64_t pp = 0; pp < s.P; pp++) {
                    t0 += S0c[size_t((h * s.P + pp) * M + m)];
                    t1 += S1c[size_t((h * s.P + pp) * M + m)];
                }
                S0[h * M + m] = t0;
                S1[h * M + m] = t1;
            }
            double t = 0;
            for (int64_t pp = 0; pp < s.P; pp++) t += dD_c[size_t(h * s.P + pp)];
            g.D[h] = float(t);
        }
    }
}

// The S4D parameters in modal form: log_z = log dA, W = C dB (and dB for the state).
struct S4dModal {
    Buffer<cd> log_z, W, dB;
    S4dModal(const SsmParams& p, int64_t Hk)
        : log_z(size_t(Hk * p.M)), W(size_t(Hk * p.M)), dB(size_t(Hk * p.M)) {
        s4d_discretize(nullptr, dB.data(), W.data(), p.log_dt, p.inv_A_real, p.A_imag, p.B, p.C, Hk, p.M, p.disc);
        s4d_log_dA(log_z.data(), p.log_dt, p.inv_A_real, p.A_imag, Hk, p.M, p.disc);
    }
    ModalSsm modal(const float* D, int64_t M) const { return {log_z.data(), W.data(), D, M}; }
};

}  // namespace

void modal_grads(cd* gW, cd* glog_z, const cd* S0, const cd* S1, const cd* W, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (gW) gW[i] = 2.0 * std::conj(S0[i]);
        if (glog_z) glog_z[i] = 2.0 * std::conj(W[i] * S1[i]);
    }
}

SsmConvPath ssm_conv_path(int64_t L, int64_t chunk) {
    if (L > chunk) return SsmConvPath::chunked;
    return L <= kSsmDirectMaxL ? SsmConvPath::direct : SsmConvPath::fft;
}

void modal_conv_forward(float* y, const float* u, const float* v, const float* q, const ModalSsm& p,
                        const FftConvShape& s, int64_t chunk, cd* final_X, SsmConvPath path) {
    HIPPO_CHECK(chunk >= 1, "ssm_conv: chunk length must be positive, got %lld", (long long)chunk);
    HIPPO_CHECK(s.L >= 1 && s.C % s.P == 0, "ssm_conv: bad shape L=%lld C=%lld P=%lld", (long long)s.L,
                (long long)s.C, (long long)s.P);
    if (int(path) < 0) path = ssm_conv_path(s.L, chunk);
    // The final state comes out of the chunked kernel (one chunk when L <= chunk).
    if (path == SsmConvPath::chunked || final_X) return chunked_forward(y, u, v, q, p, s, chunk, final_X);
    const int64_t Hk = s.kernels();
    Buffer<float> K(size_t(Hk * s.L));
    s4d_kernel_eval(K.data(), ModalPowers(p.log_z, Hk, p.M), p.W, s.L);
    if (path == SsmConvPath::direct) return fftconv_forward_direct(y, u, v, q, K.data(), p.D, s);
    RealFFT fft(fftconv_fft_size(s.L));
    Buffer<float> Kf(size_t(Hk * (fft.size() + 2)));
    fftconv_kernel_spectrum(Kf.data(), K.data(), Hk, s.L, fft);
    fftconv_forward(y, u, v, q, Kf.data(), p.D, s, fft);
}

void modal_conv_backward(float* du, float* dv, float* dq, const ModalSums& g, const float* dy, const float* u,
                         const float* v, const float* q, const ModalSsm& p, const FftConvShape& s, int64_t chunk,
                         SsmConvPath path) {
    HIPPO_CHECK(chunk >= 1, "ssm_conv: chunk length must be positive, got %lld", (long long)chunk);
    if (int(path) < 0) path = ssm_conv_path(s.L, chunk);
    if (path == SsmConvPath::chunked) return chunked_backward(du, dv, dq, g, dy, u, v, q, p, s, chunk);
    const int64_t Hk = s.kernels(), M = p.M;
    ModalPowers pw(p.log_z, Hk, M);
    Buffer<float> K(size_t(Hk * s.L)), dK(size_t(Hk * s.L));
    s4d_kernel_eval(K.data(), pw, p.W, s.L);
    if (path == SsmConvPath::direct) {
        fftconv_backward_direct(du, dv, dq, dK.data(), g.D, dy, u, v, q, K.data(), p.D, s);
    } else {
        RealFFT fft(fftconv_fft_size(s.L));
        Buffer<float> Kf(size_t(Hk * (fft.size() + 2)));
        fftconv_kernel_spectrum(Kf.data(), K.data(), Hk, s.L, fft);
        fftconv_backward(du, dv, dq, dK.data(), g.D, dy, u, v, q, Kf.data(), p.D, s, fft);
    }
#pragma omp parallel for schedule(static)
    for (int64_t h = 0; h < Hk; h++) pw.sums(g.S0 + h * M, g.S1 + h * M, dK.data() + h * s.L, s.L, h);
}

void ssm_conv_forward(float* y, const float* u, const float* v, const float* q, const SsmParams& p,
                      const FftConvShape& s, int64_t chunk, std::complex<float>* final_state, SsmConvPath path) {
    const int64_t Hk = s.kernels(), M = p.M;
    S4dModal sm(p, Hk);
    if (!final_state) return modal_conv_forward(y, u, v, q, sm.modal(p.D, M), s, chunk, nullptr, path);
    Buffer<cd> X(size_t(s.B * s.C * M));
    modal_conv_forward(y, u, v, q, sm.modal(p.D, M), s, chunk, X.data(), path);
    for (int64_t b = 0; b < s.B; b++)
        for (int64_t c = 0; c < s.C; c++)
            for (int64_t m = 0; m < M; m++) {
                const size_t i = size_t((b * s.C + c) * M + m);
                final_state[i] = std::complex<float>(sm.dB[size_t((c / s.P) * M + m)] * X[i]);
            }
}

void ssm_conv_backward(float* du, float* dv, float* dq, const SsmParamGrads& g, const float* dy, const float* u,
                       const float* v, const float* q, const SsmParams& p, const FftConvShape& s, int64_t chunk,
                       SsmConvPath path) {
    const int64_t Hk = s.kernels(), M = p.M;
    S4dModal sm(p, Hk);
    Buffer<cd> S0(size_t(Hk * M)), S1(size_t(Hk * M));
    modal_conv_backward(du, dv, dq, ModalSums{S0.data(), S1.data(), g.D}, dy, u, v, q, sm.modal(p.D, M), s, chunk,
                        path);
    s4d_param_grads(g.log_dt, g.inv_A_real, g.A_imag, g.B, g.C, S0.data(), S1.data(), p.log_dt, p.inv_A_real,
                    p.A_imag, p.B, p.C, Hk, M, p.disc);
}

}  // namespace hippo
