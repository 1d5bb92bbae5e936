#include "kernels/s5_scan.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/check.h"

namespace hippo {

namespace {

using cd = std::complex<double>;

// Scan order: step k of batch row b is time t = k (forward) or L-1-k (reverse). W = 2 P2 floats a row.
struct Walk {
    int64_t L, W;
    bool rev;
    int64_t row(int64_t b, int64_t k) const { return (b * L + (rev ? L - 1 - k : k)) * W; }
};

// One scan step on planar rows of P2 complex numbers: out = a ∘ prev + in. Written in real
// arithmetic so that it vectorises over P2 (std::complex's operator* calls out for inf/NaN).
inline void step_row(float* __restrict out, const float* __restrict prev, const float* __restrict in,
                     const float* __restrict ar, const float* __restrict ai, int64_t P2) {
    const float *pr = prev, *pi = prev + P2, *br = in, *bi = in + P2;
    float* xr = out;
    float* xi = out + P2;
    for (int64_t p = 0; p < P2; p++) {
        const float r = ar[p] * pr[p] - ai[p] * pi[p] + br[p];
        const float i = ar[p] * pi[p] + ai[p] * pr[p] + bi[p];
        xr[p] = r;
        xi[p] = i;
    }
}

// h = a ∘ h + in, in place.
inline void step_inplace(float* __restrict h, const float* __restrict in, const float* __restrict ar,
                         const float* __restrict ai, int64_t P2) {
    float* hr = h;
    float* hi = h + P2;
    for (int64_t p = 0; p < P2; p++) {
        const float r = ar[p] * hr[p] - ai[p] * hi[p] + in[p];
        const float i = ar[p] * hi[p] + ai[p] * hr[p] + in[P2 + p];
        hr[p] = r;
        hi[p] = i;
    }
}

// step_row and acc_row in one pass (the backward's scan, rows final at once).
inline void step_acc_row(float* __restrict out, const float* __restrict prev, const float* __restrict in,
                         const float* __restrict ar, const float* __restrict ai, const float* __restrict xp,
                         float* __restrict acc, int64_t P2) {
    const float *pr = prev, *pi = prev + P2, *br = in, *bi = in + P2, *xr = xp, *xi = xp + P2;
    float* gr = out;
    float* gi = out + P2;
    float* sr = acc;
    float* si = acc + P2;
    for (int64_t p = 0; p < P2; p++) {
        const float r = ar[p] * pr[p] - ai[p] * pi[p] + br[p];
        const float i = ar[p] * pi[p] + ai[p] * pr[p] + bi[p];
        gr[p] = r;
        gi[p] = i;
        sr[p] += r * xr[p] + i * xi[p];
        si[p] += i * xr[p] - r * xi[p];
    }
}

// acc (2, P2) += g ∘ conj(xp): the gradient of a from one step.
inline void acc_row(float* __restrict acc, const float* __restrict g, const float* __restrict xp, int64_t P2) {
    float* sr = acc;
    float* si = acc + P2;
    const float *gr = g, *gi = g + P2, *xr = xp, *xi = xp + P2;
    for (int64_t p = 0; p < P2; p++) {
        sr[p] += gr[p] * xr[p] + gi[p] * xi[p];
        si[p] += gi[p] * xr[p] - gr[p] * xi[p];
    }
}

// One thread's sum for ga: float partial sums over at most kAccRows steps (a quarter of the cost
// of summing every product in double), added into double.
struct GaSum {
    static constexpr int kAccRows = 16;
    double* d = nullptr;  // (2, P2)
    std::vector<float> f;  // (2, P2)
    int n = 0;
    GaSum(double* total, int64_t W) : d(total), f(size_t(total ? W : 0), 0.0f) {}
    void flush() {
        for (size_t i = 0; i < f.size(); i++) {
            d[i] += double(f[i]);
            f[i] = 0.0f;
        }
        n = 0;
    }
};

// a^n = exp(n log a) in double (n >= 1), planar: pw (2, P2).
void power(double* pw, const cd* log_a, int64_t n, int64_t P2) {
    for (int64_t p = 0; p < P2; p++) {
        const cd z = std::exp(double(n) * log_a[p]);
        pw[p] = z.real();
        pw[P2 + p] = z.imag();
    }
}

// Walking rows from the end: Zen's prefetchers follow descending streams late, so the reverse
// walk asks for its rows a few steps ahead.
constexpr int64_t kPrefetch = 6;
inline void prefetch_row(const float* r, int64_t W) {
    for (int64_t i = 0; i < W; i += 16) __builtin_prefetch(r + i);
}

struct Job {
    float* out;                 // (B, L, 2, P2)
    const float* in;            // (B, L, 2, P2)
    const float* ar;            // (P2) transition, real and imaginary parts
    const float* ai;
    const cd* log_a;            // (P2) log of (ar, ai) in double, for the chunk carries
    const float* init;          // (B, 2, P2) state before step 0, or null
    const float* add0;          // (B, 2, P2) added to step 0's input, or null (backward: g_last)
    Walk w;
    int64_t B, P2;
    // Backward only: ga accumulation over the final rows, G[k] ∘ conj(x at scan step k+1) with
    // x0 at the last step. x null: no accumulation.
    const float* x = nullptr;
    const float* x0 = nullptr;
    double* acc = nullptr;      // (threads, 2, P2) per-thread sums

    const float* xprev(int64_t b, int64_t k) const {
        if (k + 1 < w.L) return x + w.row(b, k + 1);
        return x0 ? x0 + b * w.W : nullptr;
    }
    void accumulate(GaSum& sum, int64_t b, int64_t k) const {
        if (!x) return;
        const float* xp = xprev(b, k);
        if (!xp) return;
        acc_row(sum.f.data(), out + w.row(b, k), xp, P2);
        if (++sum.n == GaSum::kAccRows) sum.flush();
    }

    // Steps [k0, k1) of row b from the state `start` before k0 (null: zero). Rows are walked by
    // pointer (stride +-W): for a few complex numbers a row, the per-step bookkeeping is the cost.
    void scan(int64_t b, int64_t k0, int64_t k1, const float* start, bool first, GaSum& sum) const {
        if (k0 >= k1) return;
        const int64_t W = w.W, st = w.rev ? -W : W;
        const bool acc = x && first;
        float* o = out + w.row(b, k0);
        const float* u = in + w.row(b, k0);
        if (first && k0 == 0 && add0) {
            // Only the backward adds g_last, and it starts from zero.
            HIPPO_ASSERT(!start, "s5_scan: an added first input and an initial state together");
            const float* g = add0 + b * W;
            for (int64_t i = 0; i < W; i++) o[i] = u[i] + g[i];
        } else if (start) {
            step_row(o, start, u, ar, ai, P2);
        } else {
            std::copy(u, u + W, o);
        }
        if (acc) accumulate(sum, b, k0);
        if (!acc) {
            for (int64_t k = k0 + 1; k < k1; k++) {
                o += st;
                u += st;
                if (w.rev && k + kPrefetch < k1) prefetch_row(u + kPrefetch * st, W);
                step_row(o, o - st, u, ar, ai, P2);
            }
            return;
        }
        for (int64_t k = k0 + 1; k < k1; k++) {
            o += st;
            u += st;
            if (w.rev && k + kPrefetch < k1) {
                prefetch_row(u + kPrefetch * st, W);
                if (k + kPrefetch + 1 < w.L) prefetch_row(x + w.row(b, k + kPrefetch + 1), W);
            }
            const float* xp = xprev(b, k);
            if (xp) {
                step_acc_row(o, o - st, u, ar, ai, xp, sum.f.data(), P2);
                if (++sum.n == GaSum::kAccRows) sum.flush();
            } else {
                step_row(o, o - st, u, ar, ai, P2);
            }
        }
        sum.flush();
    }

    // The state after steps [k0, k1) of row b from zero, into h (2, P2) double, without writing
    // out's rows (pass 1 of note [blocked scan]). tmp: (2, P2) floats of scratch.
    void reduce(int64_t b, int64_t k0, int64_t k1, double* h, float* tmp) const {
        const int64_t W = w.W, st = w.rev ? -W : W;
        const float* u = in + w.row(b, k0);
        std::copy(u, u + W, tmp);
        for (int64_t k = k0 + 1; k < k1; k++) {
            u += st;
            if (w.rev && k + kPrefetch < k1) prefetch_row(u + kPrefetch * st, W);
            step_inplace(tmp, u, ar, ai, P2);
        }
        for (int64_t i = 0; i < W; i++) h[i] = tmp[i];
    }
};

int thread_count_for(const S5ScanOptions& o) {
    if (o.threads > 0) return o.threads;
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

// Enough complex updates per chunk or row to pay for a parallel region (a few microseconds).
constexpr int64_t kMinWorkPerThread = 1 << 16;

// Runs the job with up to nt threads; returns the number of per-thread accumulators used.
int run(const Job& job, const S5ScanOptions& o, int nt) {
    const int64_t B = job.B, L = job.w.L, P2 = job.P2, W = job.w.W;
    const bool auto_chunk = o.min_chunk <= 0;
    const int64_t min_chunk =
        auto_chunk ? std::max<int64_t>(16, kMinWorkPerThread / std::max<int64_t>(1, B * P2)) : o.min_chunk;
    const bool worth_threads = !auto_chunk || B * L * P2 >= 2 * kMinWorkPerThread;
    auto init_of = [&](int64_t b) { return job.init ? job.init + b * W : nullptr; };

    if (nt <= 1 || !worth_threads) {
        GaSum sum(job.acc, W);
        for (int64_t b = 0; b < B; b++) job.scan(b, 0, L, init_of(b), true, sum);
        return 1;
    }
    // Chunked over time: one chunk a thread plus one (note [blocked scan]), each >= min_chunk.
    const int64_t nchunks = std::min<int64_t>(nt, L / min_chunk - 1) + 1;
    const bool by_rows = B >= nt && (B % nt == 0 || B >= 4 * nt);
    if (by_rows || nchunks < 3) {
        if (B < 2) {
            GaSum sum(job.acc, W);
            job.scan(0, 0, L, init_of(0), true, sum);
            return 1;
        }
        const int nr = int(std::min<int64_t>(nt, B));
        int used = 1;
#ifdef _OPENMP
#pragma omp parallel num_threads(nr)
#endif
        {
#ifdef _OPENMP
            const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
            const int tid = 0, nth = 1;
#endif
            if (tid == 0) used = nth;
            GaSum sum(job.acc ? job.acc + tid * W : nullptr, W);
            // Contiguous blocks of rows per thread (static, so a run repeats itself exactly).
            const int64_t b0 = B * tid / nth, b1 = B * (tid + 1) / nth;
            for (int64_t b = b0; b < b1; b++) job.scan(b, 0, L, init_of(b), true, sum);
        }
        return used;
    }

    // Note [blocked scan]: nc = threads + 1 chunks, chunk c = steps [s[c], s[c+1]).
    const int64_t nc = nchunks;
    std::vector<int64_t> s(size_t(nc + 1));
    for (int64_t c = 0; c <= nc; c++) s[size_t(c)] = c * L / nc;
    std::vector<double> red(size_t(nc * B * W));     // chunk c's final state from zero, (B, 2, P2) per chunk
    std::vector<float> carry(size_t(nc * B * W));    // the state before chunk c, (B, 2, P2) per chunk
    int used = 1;
#ifdef _OPENMP
#pragma omp parallel num_threads(int(nc - 1))
#endif
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        const int tid = 0, nth = 1;
#endif
        if (tid == 0) used = nth;
        GaSum sum(job.acc ? job.acc + tid * W : nullptr, W);
        std::vector<float> tmp(static_cast<size_t>(W));
        // Pass 1: chunk 0 is scanned from the initial state (final at once); chunks 1 .. nc-2 are
        // only reduced to their final state from zero; the last chunk waits.
        for (int64_t c = tid; c < nc - 1; c += nth)
            for (int64_t b = 0; b < B; b++) {
                if (c == 0) job.scan(b, s[0], s[1], init_of(b), true, sum);
                else job.reduce(b, s[size_t(c)], s[size_t(c + 1)], red.data() + (c * B + b) * W, tmp.data());
            }
#ifdef _OPENMP
#pragma omp barrier
#pragma omp single
#endif
        {
            // Pass 2: the carries, h_1 = chunk 0's last state, h_{c+1} = a^len_c h_c + red_c, in double.
            std::vector<double> h(static_cast<size_t>(W)), pw(static_cast<size_t>(W));
            for (int64_t b = 0; b < B; b++) {
                const float* last = job.out + job.w.row(b, s[1] - 1);
                for (int64_t i = 0; i < W; i++) h[size_t(i)] = last[i];
                for (int64_t c = 1; c < nc; c++) {
                    float* cv = carry.data() + (c * B + b) * W;
                    for (int64_t i = 0; i < W; i++) cv[i] = float(h[size_t(i)]);
                    if (c + 1 == nc) break;
                    power(pw.data(), job.log_a, s[size_t(c + 1)] - s[size_t(c)], P2);
                    const double* r = red.data() + (c * B + b) * W;
                    for (int64_t p = 0; p < P2; p++) {
                        const double hr = h[size_t(p)], hi = h[size_t(P2 + p)];
                        h[size_t(p)] = pw[size_t(p)] * hr - pw[size_t(P2 + p)] * hi + r[p];
                        h[size_t(P2 + p)] = pw[size_t(p)] * hi + pw[size_t(P2 + p)] * hr + r[P2 + p];
                    }
                }
            }
        }
        // Pass 3: chunks 1 .. nc-1 scanned from their carries, one a thread.
        for (int64_t c = tid + 1; c < nc; c += nth)
            for (int64_t b = 0; b < B; b++)
                job.scan(b, s[size_t(c)], s[size_t(c + 1)], carry.data() + (c * B + b) * W, true, sum);
    }
    return used;
}

void check_shape(const S5ScanShape& s, const char* op) {
    HIPPO_CHECK(s.B >= 1 && s.L >= 1 && s.P2 >= 1, "%s: bad shape B=%lld L=%lld P2=%lld", op, (long long)s.B,
                (long long)s.L, (long long)s.P2);
}

std::vector<cd> log_of(const float* ar, const float* ai, int64_t P2) {
    std::vector<cd> la(static_cast<size_t>(P2));
    for (int64_t p = 0; p < P2; p++) la[size_t(p)] = std::log(cd(double(ar[p]), double(ai[p])));
    return la;
}

}  // namespace

void s5_scan_forward(float* x, const float* a, const float* u, const float* x0, const S5ScanShape& s,
                     const S5ScanOptions& o) {
    check_shape(s, "s5_scan_forward");
    const int64_t P2 = s.P2;
    std::vector<cd> la = log_of(a, a + P2, P2);
    Job job{x, u, a, a + P2, la.data(), x0, nullptr, Walk{s.L, 2 * P2, o.reverse}, s.B, P2};
    run(job, o, thread_count_for(o));
}

void s5_scan_backward(float* gu, float* ga, float* gx0, const float* gx, const float* g_last, const float* x,
                      const float* a, const float* x0, const S5ScanShape& s, const S5ScanOptions& o) {
    check_shape(s, "s5_scan_backward");
    const int64_t P2 = s.P2, W = 2 * P2, L = s.L;
    // The gradient runs the same recurrence with conj(a), in the opposite time direction.
    std::vector<float> ac(static_cast<size_t>(W));
    for (int64_t p = 0; p < P2; p++) {
        ac[size_t(p)] = a[p];
        ac[size_t(P2 + p)] = -a[P2 + p];
    }
    std::vector<cd> la = log_of(ac.data(), ac.data() + P2, P2);
    const int nt = thread_count_for(o);
    std::vector<double> acc(size_t(std::max(nt, 1) * W), 0.0);
    Job job{gu, gx, ac.data(), ac.data() + P2, la.data(), nullptr, g_last, Walk{L, W, !o.reverse}, s.B, P2};
    job.x = x;
    job.x0 = x0;
    job.acc = acc.data();
    const int used = run(job, o, nt);
    // Per-thread sums added in thread order: deterministic for a given thread count.
    for (int64_t i = 0; i < W; i++) {
        double v = 0;
        for (int t = 0; t < used; t++) v += acc[size_t(t * W + i)];
        ga[i] = float(v);
    }
    if (gx0)
        for (int64_t b = 0; b < s.B; b++) {
            const float* g = gu + job.w.row(b, L - 1);  // the gradient of the state at the first step
            float* o0 = gx0 + b * W;
            for (int64_t p = 0; p < P2; p++) {
                o0[p] = ac[size_t(p)] * g[p] - ac[size_t(P2 + p)] * g[P2 + p];
                o0[P2 + p] = ac[size_t(p)] * g[P2 + p] + ac[size_t(P2 + p)] * g[p];
            }
        }
}

void s5_scan_ref(double* x, const double* a, const double* u, const double* x0, const S5ScanShape& s, bool reverse) {
    const int64_t P2 = s.P2, W = 2 * P2;
    const Walk w{s.L, W, reverse};
    for (int64_t b = 0; b < s.B; b++)
        for (int64_t k = 0; k < s.L; k++) {
            const double* prev = k > 0 ? x + w.row(b, k - 1) : x0 ? x0 + b * W : nullptr;
            double* o = x + w.row(b, k);
            const double* in = u + w.row(b, k);
            for (int64_t p = 0; p < P2; p++) {
                cd v(in[p], in[P2 + p]);
                if (prev) v += cd(a[p], a[P2 + p]) * cd(prev[p], prev[P2 + p]);
                o[p] = v.real();
                o[P2 + p] = v.imag();
            }
        }
}

void s5_scan_backward_ref(double* gu, double* ga, double* gx0, const double* gx, const double* g_last,
                          const double* x, const double* a, const double* x0, const S5ScanShape& s, bool reverse) {
    const int64_t P2 = s.P2, W = 2 * P2, L = s.L;
    const Walk w{L, W, reverse};  // forward order; the gradient walks it from the end
    std::vector<cd> sum(size_t(P2), cd(0.0));
    for (int64_t b = 0; b < s.B; b++)
        for (int64_t k = L - 1; k >= 0; k--) {
            double* g = gu + w.row(b, k);
            const double* in = gx + w.row(b, k);
            const double* next = k + 1 < L ? gu + w.row(b, k + 1) : nullptr;
            const double* xp = k > 0 ? x + w.row(b, k - 1) : x0 ? x0 + b * W : nullptr;
            for (int64_t p = 0; p < P2; p++) {
                const cd ap(a[p], a[P2 + p]);
                cd G(in[p], in[P2 + p]);
                if (next) G += std::conj(ap) * cd(next[p], next[P2 + p]);
                else if (g_last) G += cd(g_last[b * W + p], g_last[b * W + P2 + p]);
                g[p] = G.real();
                g[P2 + p] = G.imag();
                if (xp) sum[size_t(p)] += G * std::conj(cd(xp[p], xp[P2 + p]));
                if (k == 0 && gx0) {
                    const cd g0 = std::conj(ap) * G;
                    gx0[b * W + p] = g0.real();
                    gx0[b * W + P2 + p] = g0.imag();
                }
            }
        }
    for (int64_t p = 0; p < P2; p++) {
        ga[p] = sum[size_t(p)].real();
        ga[P2 + p] = sum[size_t(p)].imag();
    }
}

}  // namespace hippo
