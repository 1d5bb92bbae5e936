#include "bench/bench_ssm.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "autograd/ops.h"
#include "common/alloc.h"
#include "common/rng.h"
#include "kernels/fftconv.h"
#include "kernels/ssm_conv.h"
#include "nn/ssm_layers.h"

#ifdef HIPPO_HAVE_FFTW
#include <fftw3.h>
#endif

namespace hippo {

namespace {

void fill_normal(float* p, size_t n, Rng& rng, float scale = 1.0f) {
    for (size_t i = 0; i < n; i++) p[i] = float(rng.normal()) * scale;
}

// Times fn (median) and reports the caching allocator's peak above what was live before.
struct Measured {
    Timing t;
    double peak_mb;
};
Measured measure(const std::function<void()>& fn, int min_runs, double min_seconds, int max_runs) {
    fn();  // warm-up: plans, caches, first touch of workspaces
    size_t live = alloc_stats().live_bytes;
    alloc_reset_peak();
    Timing t = time_median(fn, min_runs, min_seconds, max_runs);
    return {t, double(alloc_stats().peak_live_bytes - live) / (1 << 20)};
}

BenchRecord record(const std::string& name, int64_t C, int64_t L, const char* pass, const Measured& m, bool gated,
                   const char* path) {
    BenchRecord r;
    r.name = name;
    r.shape = {{"B", 1}, {"H", C}, {"L", L}};
    r.pass = pass;
    r.ms = m.t.median_ms;
    r.runs = m.t.runs;
    r.derived["peak_mb"] = m.peak_mb;
    r.derived["tokens_per_s"] = double(L) / (m.t.median_ms * 1e-3);
    r.extra["gated"] = gated;
    r.extra["path"] = path;
    return r;
}

struct SsmParamStore {
    std::vector<float> log_dt, iar, aim, B, C, D;
    int64_t M;
    SsmParamStore(int64_t H, int64_t M_, Rng& rng) : M(M_) {
        for (int64_t h = 0; h < H; h++) log_dt.push_back(float(std::log(1e-3) + rng.uniform_double() * std::log(100.0)));
        for (int64_t i = 0; i < H * M; i++) {
            iar.push_back(float(std::log(0.5)));
            aim.push_back(float(M_PI * double(i % M)));
            B.push_back(1.0f);
            B.push_back(0.0f);
            C.push_back(float(rng.normal() * std::sqrt(0.5)));
            C.push_back(float(rng.normal() * std::sqrt(0.5)));
        }
        D.resize(size_t(H));
        fill_normal(D.data(), D.size(), rng);
    }
    SsmParams params() const {
        return {log_dt.data(), iar.data(), aim.data(), B.data(), C.data(), D.data(), M, Discretization::bilinear};
    }
};

#ifdef HIPPO_HAVE_FFTW
// The fused algorithm of fftconv_forward with FFTW's transforms: per row gather (gated), r2c,
// multiply by the kernel's spectrum (computed in the timed call, like the fused hippo record),
// c2r, skip and output gate.
struct FftwConv {
    int64_t n;
    fftwf_plan r2c, c2r;
    float* rbuf;
    fftwf_complex* cbuf;
    // Spectra rows are padded to 8 complex numbers so every row keeps the plan's alignment (FFTW's
    // new-array execute functions require it).
    int64_t nc_stride() const { return (n / 2 + 1 + 7) / 8 * 8; }
    explicit FftwConv(int64_t L) : n(fftconv_fft_size(L)) {
        rbuf = fftwf_alloc_real(size_t(n));
        cbuf = fftwf_alloc_complex(size_t(n / 2 + 1));
        r2c = fftwf_plan_dft_r2c_1d(int(n), rbuf, cbuf, FFTW_MEASURE);
        c2r = fftwf_plan_dft_c2r_1d(int(n), cbuf, rbuf, FFTW_MEASURE);
    }
    ~FftwConv() {
        fftwf_destroy_plan(r2c);
        fftwf_destroy_plan(c2r);
        fftwf_free(rbuf);
        fftwf_free(cbuf);
    }
    // Kf: (C, nc_stride()) complex spectra / n
    void kernel_spectrum(fftwf_complex* Kf, const float* K, int64_t C, int64_t L) const {
#pragma omp parallel
        {
            float* r = fftwf_alloc_real(size_t(n));
#pragma omp for schedule(static)
            for (int64_t c = 0; c < C; c++) {
                for (int64_t l = 0; l < L; l++) r[l] = K[c * L + l] / float(n);
                std::memset(r + L, 0, size_t(n - L) * sizeof(float));
                fftwf_execute_dft_r2c(r2c, r, Kf + c * nc_stride());
            }
            fftwf_free(r);
        }
    }
    void forward(float* y, const float* u, const float* v, const float* q, const fftwf_complex* Kf, const float* D,
                 int64_t C, int64_t L) const {
        const int64_t nb = (C + 15) / 16, nc = n / 2 + 1;
#pragma omp parallel
        {
            float* rows = fftwf_alloc_real(size_t(16 * n));
            fftwf_complex* spec = fftwf_alloc_complex(size_t(nc));
#pragma omp for schedule(static)
            for (int64_t blk = 0; blk < nb; blk++) {
                int64_t c0 = blk * 16, cb = std::min<int64_t>(16, C - c0);
                for (int64_t l = 0; l < L; l++)
                    for (int64_t c = 0; c < cb; c++) rows[c * n + l] = u[l * C + c0 + c] * v[l * C + c0 + c];
                for (int64_t c = 0; c < cb; c++) {
                    float* r = rows + c * n;
                    std::memset(r + L, 0, size_t(n - L) * sizeof(float));
                    fftwf_execute_dft_r2c(r2c, r, spec);
                    const fftwf_complex* k = Kf + (c0 + c) * nc_stride();
                    for (int64_t i = 0; i < nc; i++) {
                        float re = spec[i][0] * k[i][0] - spec[i][1] * k[i][1];
                        float im = spec[i][0] * k[i][1] + spec[i][1] * k[i][0];
                        spec[i][0] = re;
                        spec[i][1] = im;
                    }
                    fftwf_execute_dft_c2r(c2r, spec, r);
                }
                for (int64_t l = 0; l < L; l++)
                    for (int64_t c = 0; c < cb; c++) {
                        int64_t i = l * C + c0 + c;
                        y[i] = q[i] * (rows[c * n + l] + D[c0 + c] * u[i] * v[i]);
                    }
            }
            fftwf_free(rows);
            fftwf_free(spec);
        }
    }
};
#endif

}  // namespace

std::vector<BenchRecord> bench_fftconv(const std::vector<long long>& lengths, long long channels, long long chunk) {
    std::vector<BenchRecord> out;
    const int64_t C = channels, M = 32;
    Rng rng(7);
    SsmParamStore ps(C, M, rng);
    const SsmParams p = ps.params();
    for (long long Lll : lengths) {
        const int64_t L = Lll;
        const size_t total = size_t(L * C);
        // At 1M tokens only the ungated buffers fit in memory; the ungated run at 64K gives the
        // same-work figure for the time(1M) / time(64K) ratio.
        for (bool gated : {true, false}) {
            if (gated && L > 65536) continue;
            if (!gated && L < 65536) continue;
            Buffer<float> u(total), v(gated ? total : 0), q(gated ? total : 0), y(total), du(total),
                dv(gated ? total : 0), dq(gated ? total : 0);
            fill_normal(u.data(), total, rng);
            if (gated) {
                fill_normal(v.data(), total, rng);
                fill_normal(q.data(), total, rng);
            }
            float* pv = gated ? v.data() : nullptr;
            float* pq = gated ? q.data() : nullptr;
            float* pdv = gated ? dv.data() : nullptr;
            float* pdq = gated ? dq.data() : nullptr;
            const FftConvShape s{1, L, C, 1};
            const int min_runs = L >= 65536 ? 2 : 5;
            const double min_s = L >= 65536 ? 0.0 : 0.3;
            const int max_runs = L >= 65536 ? 3 : 200;
            if (L <= std::max<long long>(chunk, 16384) && gated) {
                Buffer<float> K(size_t(C * L)), dK(size_t(C * L)), dD(static_cast<size_t>(C));
                s4d_kernel_forward(K.data(), p.log_dt, p.inv_A_real, p.A_imag, p.B, p.C, C, M, L, p.disc);
                RealFFT fft(fftconv_fft_size(L));
                Buffer<float> Kf(size_t(C * (fft.size() + 2)));
                fftconv_kernel_spectrum(Kf.data(), K.data(), C, L, fft);
                Measured kfc = measure([&] { fftconv_forward(y.data(), u.data(), pv, pq, Kf.data(), p.D, s, fft); }, min_runs, min_s, max_runs);
                Measured f = measure([&] {
                    fftconv_kernel_spectrum(Kf.data(), K.data(), C, L, fft);
                    fftconv_forward(y.data(), u.data(), pv, pq, Kf.data(), p.D, s, fft);
                }, min_runs, min_s, max_runs);
                BenchRecord r = record("fftconv.fused", C, L, "fwd", f, gated, "fft");
                r.derived["ms_kf_cached"] = kfc.t.median_ms;
                out.push_back(r);
                Measured fb = measure([&] {
                    fftconv_kernel_spectrum(Kf.data(), K.data(), C, L, fft);
                    fftconv_forward(y.data(), u.data(), pv, pq, Kf.data(), p.D, s, fft);
                    fftconv_backward(du.data(), pdv, pdq, dK.data(), dD.data(), y.data(), u.data(), pv, pq, Kf.data(), p.D, s, fft);
                }, min_runs, min_s, max_runs);
                out.push_back(record("fftconv.fused", C, L, "fwd+bwd", fb, gated, "fft"));
                Measured uf = measure([&] {
                    fftconv_kernel_spectrum(Kf.data(), K.data(), C, L, fft);
                    fftconv_forward_unfused(y.data(), u.data(), pv, pq, Kf.data(), p.D, s, fft);
                }, min_runs, min_s, max_runs);
                out.push_back(record("fftconv.unfused", C, L, "fwd", uf, gated, "fft"));
                Measured ufb = measure([&] {
                    fftconv_kernel_spectrum(Kf.data(), K.data(), C, L, fft);
                    fftconv_forward_unfused(y.data(), u.data(), pv, pq, Kf.data(), p.D, s, fft);
                    fftconv_backward_unfused(du.data(), pdv, pdq, dK.data(), dD.data(), y.data(), u.data(), pv, pq, Kf.data(), p.D, s, fft);
                }, min_runs, min_s, max_runs);
                out.push_back(record("fftconv.unfused", C, L, "fwd+bwd", ufb, gated, "fft"));
                if (L <= 4096) {
                    Measured df = measure([&] { fftconv_forward_direct(y.data(), u.data(), pv, pq, K.data(), p.D, s); }, 2, 0.0, 3);
                    out.push_back(record("fftconv.direct", C, L, "fwd", df, gated, "direct"));
                    Measured dfb = measure([&] {
                        fftconv_forward_direct(y.data(), u.data(), pv, pq, K.data(), p.D, s);
                        fftconv_backward_direct(du.data(), pdv, pdq, dK.data(), dD.data(), y.data(), u.data(), pv, pq, K.data(), p.D, s);
                    }, 2, 0.0, 3);
                    out.push_back(record("fftconv.direct", C, L, "fwd+bwd", dfb, gated, "direct"));
                }
    #ifdef HIPPO_HAVE_FFTW
                if (gated) {
                    FftwConv fw(L);
                    fftwf_complex* Kfw = fftwf_alloc_complex(size_t(C * fw.nc_stride()));
                    fw.kernel_spectrum(Kfw, K.data(), C, L);
                    Measured wc = measure([&] { fw.forward(y.data(), u.data(), v.data(), q.data(), Kfw, p.D, C, L); }, min_runs, min_s, max_runs);
                    Measured wf = measure([&] {
                        fw.kernel_spectrum(Kfw, K.data(), C, L);
                        fw.forward(y.data(), u.data(), v.data(), q.data(), Kfw, p.D, C, L);
                    }, min_runs, min_s, max_runs);
                    BenchRecord r2 = record("fftconv.fftw", C, L, "fwd", wf, gated, "fft");
                    r2.derived["ms_kf_cached"] = wc.t.median_ms;
                    r2.derived["hippo_speedup"] = wf.t.median_ms / f.t.median_ms;
                    r2.derived["hippo_speedup_kf_cached"] = wc.t.median_ms / kfc.t.median_ms;
                    out.push_back(r2);
                    fftwf_free(Kfw);
                }
    #endif
            }
            if (L > chunk) {
                SsmParamGrads g{nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
                std::vector<float> g_log_dt(static_cast<size_t>(C)), g_iar(size_t(C * M)), g_aim(size_t(C * M)), gB(size_t(2 * C * M)),
                    gC(size_t(2 * C * M)), gD(static_cast<size_t>(C));
                g = {g_log_dt.data(), g_iar.data(), g_aim.data(), gB.data(), gC.data(), gD.data()};
                for (SsmConvPath path : {SsmConvPath::chunked, SsmConvPath::fft}) {
                    if (path == SsmConvPath::fft && (L > 65536 || !gated)) continue;  // 2M-point spectra: too big
                    const char* name = path == SsmConvPath::chunked ? "ssm_conv.state_passing" : "ssm_conv.single_fft";
                    const char* pname = path == SsmConvPath::chunked ? "chunked" : "fft";
                    Measured f = measure([&] { ssm_conv_forward(y.data(), u.data(), pv, pq, p, s, chunk, nullptr, path); },
                                         min_runs, min_s, max_runs);
                    BenchRecord r = record(name, C, L, "fwd", f, gated, pname);
                    r.extra["chunk"] = chunk;
                    out.push_back(r);
                    Measured fb = measure([&] {
                        ssm_conv_forward(y.data(), u.data(), pv, pq, p, s, chunk, nullptr, path);
                        ssm_conv_backward(du.data(), pdv, pdq, g, y.data(), u.data(), pv, pq, p, s, chunk, path);
                    }, min_runs, min_s, max_runs);
                    BenchRecord rb = record(name, C, L, "fwd+bwd", fb, gated, pname);
                    rb.extra["chunk"] = chunk;
                    out.push_back(rb);
                }
            }
        }
    }
    return out;
}

std::vector<BenchRecord> bench_h3(const std::vector<long long>& lengths, long long d_model) {
    std::vector<BenchRecord> out;
    Rng rng(3);
    H3Config cfg;
    cfg.d_model = d_model;
    H3 layer(cfg, rng);
    for (long long L : lengths) {
        Tensor u = Tensor::empty({1, L, d_model});
        fill_normal(u.data(), size_t(u.numel()), rng);
        Tensor g = Tensor::empty({1, L, d_model});
        fill_normal(g.data(), size_t(g.numel()), rng);
        Measured f = measure([&] {
            NoGradGuard ng;
            Tensor y = layer.forward(u);
        }, 5, 0.5, 100);
        BenchRecord r = record("h3.mixer", d_model, L, "fwd", f, true, "auto");
        r.shape = {{"B", 1}, {"D", d_model}, {"L", L}};
        out.push_back(r);
        u.set_requires_grad();
        Measured fb = measure([&] {
            layer.zero_grad();
            u.zero_grad();
            Tensor y = layer.forward(u);
            y.backward(g);
        }, 5, 0.5, 100);
        u.set_requires_grad(false);
        BenchRecord rb = record("h3.mixer", d_model, L, "fwd+bwd", fb, true, "auto");
        rb.shape = {{"B", 1}, {"D", d_model}, {"L", L}};
        out.push_back(rb);
    }
    return out;
}

}  // namespace hippo
