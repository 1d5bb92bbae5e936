#include "bench/bench_attention.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "bench/bench_core.h"
#include "common/alloc.h"
#include "common/rng.h"
#include "common/runtime.h"
#include "kernels/attention.h"
#include "kernels/gemm.h"

namespace hippo {

namespace {

constexpr int64_t kH = 12, kD = 64;

struct Measured {
    double ms;
    int runs;
    double peak_mb;
};

// Expensive calls (> ~40 GFLOP) run once without warm-up (the kernels' workspaces are tiny and
// reused); cheaper ones take the median of repeated runs after a warm-up.
Measured measure(const std::function<void()>& fn, double est_flops) {
    size_t live = alloc_stats().live_bytes;
    alloc_reset_peak();
    Measured m{};
    if (est_flops > 4e10) {
        double t0 = now_seconds();
        fn();
        m.ms = (now_seconds() - t0) * 1e3;
        m.runs = 1;
    } else {
        Timing t = time_median(fn, 3, 0.3, 50);
        m.ms = t.median_ms;
        m.runs = t.runs;
    }
    m.peak_mb = double(alloc_stats().peak_live_bytes - live) / (1 << 20);
    return m;
}

BenchRecord make(const std::string& name, int64_t L, bool causal, const char* pass, const Measured& m, double flops,
                 double peak) {
    BenchRecord r;
    r.name = name;
    r.shape = {{"B", 1}, {"H", kH}, {"D", kD}, {"L", L}};
    r.pass = pass;
    r.ms = m.ms;
    r.runs = m.runs;
    r.derived["peak_mb"] = m.peak_mb;
    if (flops > 0) {
        r.derived["gflops"] = flops / (m.ms * 1e-3) * 1e-9;
        if (peak > 0) r.derived["frac_of_peak"] = r.derived["gflops"] / peak;
    }
    r.extra["causal"] = causal;
    return r;
}

// Materialised attention with sgemm per head: forward keeps P (L x L) for the backward.
struct Naive {
    int64_t L;
    bool causal;
    Buffer<float> P, dP;
    Naive(int64_t L_, bool c) : L(L_), causal(c) {}
    void forward(float* o, const float* q, const float* k, const float* v, int64_t h, bool keep) {
        const float scale = 1.0f / std::sqrt(float(kD));
        if (P.size() != size_t(L * L)) P = Buffer<float>(size_t(L * L));
        const float* qh = q + h * L * kD;
        const float* kh = k + h * L * kD;
        const float* vh = v + h * L * kD;
        sgemm(false, true, L, L, kD, scale, qh, kD, kh, kD, 0.0f, P.data(), L);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < L; i++) {
            float* row = P.data() + i * L;
            const int64_t n = causal ? i + 1 : L;
            float mx = -INFINITY;
            for (int64_t j = 0; j < n; j++) mx = std::max(mx, row[j]);
            float s = 0;
            for (int64_t j = 0; j < n; j++) s += (row[j] = std::exp(row[j] - mx));
            const float inv = 1.0f / s;
            for (int64_t j = 0; j < n; j++) row[j] *= inv;
            for (int64_t j = n; j < L; j++) row[j] = 0.0f;
        }
        sgemm(false, false, L, kD, L, 1.0f, P.data(), L, vh, kD, 0.0f, o + h * L * kD, kD);
        (void)keep;
    }
    // needs P of head h from forward
    void backward(float* dq, float* dk, float* dv, const float* g, const float* q, const float* k, const float* v,
                  int64_t h) {
        const float scale = 1.0f / std::sqrt(float(kD));
        if (dP.size() != size_t(L * L)) dP = Buffer<float>(size_t(L * L));
        const float* gh = g + h * L * kD;
        sgemm(true, false, L, kD, L, 1.0f, P.data(), L, gh, kD, 0.0f, dv + h * L * kD, kD);
        sgemm(false, true, L, L, kD, 1.0f, gh, kD, v + h * L * kD, kD, 0.0f, dP.data(), L);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < L; i++) {
            float* pr = P.data() + i * L;
            float* dr = dP.data() + i * L;
            float rs = 0;
            for (int64_t j = 0; j < L; j++) rs += pr[j] * dr[j];
            for (int64_t j = 0; j < L; j++) dr[j] = pr[j] * (dr[j] - rs) * scale;
        }
        sgemm(false, false, L, kD, L, 1.0f, dP.data(), L, k + h * L * kD, kD, 0.0f, dq + h * L * kD, kD);
        sgemm(true, false, L, kD, L, 1.0f, dP.data(), L, q + h * L * kD, kD, 0.0f, dk + h * L * kD, kD);
    }
};

}  // namespace

std::vector<BenchRecord> bench_attention(const std::vector<long long>& lengths) {
    std::vector<BenchRecord> recs;
    BenchRecord pk = bench_peak_fma();
    const double peak = pk.derived.count("gflops") ? pk.derived["gflops"] : 0.0;
    recs.push_back(pk);
    Rng rng(42);
    for (long long L : lengths) {
        const size_t n = size_t(kH * L * kD);
        std::vector<float> q(n), k(n), v(n), o(n), g(n), dq(n), dk(n), dv(n), lse(size_t(kH * L));
        for (size_t i = 0; i < n; i++) {
            q[i] = float(rng.normal());
            k[i] = float(rng.normal());
            v[i] = float(rng.normal());
            g[i] = float(rng.normal());
        }
        AttnShape s{1, kH, L, L, kD};
        for (bool causal : {false, true}) {
            const double f_fwd = 4.0 * double(L) * double(L) * kD * kH * (causal ? 0.5 : 1.0);
            AttnParams p;
            p.causal = causal;
            const bool dense_ok = L <= 16384 || causal;
            Measured mf{}, mb{};
            if (dense_ok) {
                mf = measure([&] { attention_forward_tiled(o.data(), lse.data(), q.data(), k.data(), v.data(), s, p); },
                             f_fwd);
                recs.push_back(make("attention.tiled", L, causal, "fwd", mf, f_fwd, peak));
            }
            if (L <= 16384) {
                mb = measure(
                    [&] {
                        attention_forward_tiled(o.data(), lse.data(), q.data(), k.data(), v.data(), s, p);
                        attention_backward_tiled(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(),
                                                 v.data(), o.data(), lse.data(), s, p);
                    },
                    3.5 * f_fwd);
                recs.push_back(make("attention.tiled", L, causal, "fwd+bwd", mb, 3.5 * f_fwd, peak));
            }
            if (L <= 4096) {
                Naive nv(L, causal);
                Measured nf = measure(
                    [&] {
                        for (int64_t h = 0; h < kH; h++) nv.forward(o.data(), q.data(), k.data(), v.data(), h, false);
                    },
                    f_fwd);
                recs.push_back(make("attention.naive", L, causal, "fwd", nf, f_fwd, peak));
                recs.back().extra["note"] = "sgemm per head, materialised L x L scores";
                Measured nb = measure(
                    [&] {
                        for (int64_t h = 0; h < kH; h++) {
                            nv.forward(o.data(), q.data(), k.data(), v.data(), h, true);
                            nv.backward(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(), v.data(), h);
                        }
                    },
                    3.5 * f_fwd);
                recs.push_back(make("attention.naive", L, causal, "fwd+bwd", nb, 3.5 * f_fwd, peak));
            }
            // BigBird block-sparse
            if (L >= 512) {
                auto bm = std::make_shared<BlockMask>(bigbird_block_mask(L, 64, 3, 2, 3, 7, causal, kH));
                AttnParams pb = p;
                pb.block_mask = bm.get();
                // causal diagonal blocks are half full; counted as full here
                const double f_bs = 4.0 * double(bm->count_active()) / double(kH) * 64.0 * 64.0 * kD * kH;
                Measured bf = measure(
                    [&] { attention_forward_tiled(o.data(), lse.data(), q.data(), k.data(), v.data(), s, pb); }, f_bs);
                recs.push_back(make("attention.block_sparse", L, causal, "fwd", bf, f_bs, peak));
                recs.back().extra["density"] = bm->density();
                if (mf.ms > 0) recs.back().extra["speedup_vs_dense"] = mf.ms / bf.ms;
                Measured bb = measure(
                    [&] {
                        attention_forward_tiled(o.data(), lse.data(), q.data(), k.data(), v.data(), s, pb);
                        attention_backward_tiled(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(),
                                                 v.data(), o.data(), lse.data(), s, pb);
                    },
                    3.5 * f_bs);
                recs.push_back(make("attention.block_sparse", L, causal, "fwd+bwd", bb, 3.5 * f_bs, peak));
                recs.back().extra["density"] = bm->density();
                if (mb.ms > 0) recs.back().extra["speedup_vs_dense"] = mb.ms / bb.ms;
            }
            // linear attention
            {
                LinAttnShape ls{1, kH, L, kD, kD};
                const double f_lin = 4.0 * double(L) * kD * kD * kH;
                Measured lf = measure([&] { linear_attention_forward(o.data(), q.data(), k.data(), v.data(), ls, causal); },
                                      f_lin);
                recs.push_back(make("attention.linear", L, causal, "fwd", lf, f_lin, peak));
                if (mf.ms > 0) recs.back().extra["speedup_vs_dense"] = mf.ms / lf.ms;
                Measured lb = measure(
                    [&] {
                        linear_attention_forward(o.data(), q.data(), k.data(), v.data(), ls, causal);
                        linear_attention_backward(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(),
                                                  v.data(), o.data(), ls, causal);
                    },
                    3.0 * f_lin);
                recs.push_back(make("attention.linear", L, causal, "fwd+bwd", lb, 3.0 * f_lin, peak));
                if (mb.ms > 0) recs.back().extra["speedup_vs_dense"] = mb.ms / lb.ms;
            }
        }
    }
    // Mega's element-wise attention at the first length (at most 4096): laplace weights scaled by
    // 1 / n_keys, a relative position bias (and its gradient), a value head twice the query head.
    if (!lengths.empty()) {
        const int64_t L = std::min<long long>(lengths.front(), 4096), Dv = 2 * kD;
        const size_t nq = size_t(kH * L * kD), nv = size_t(kH * L * Dv);
        std::vector<float> q(nq), k(nq), v(nv), g(nv), o(nv), dq(nq), dk(nq), dv(nv), bias(size_t(2 * L - 1)),
            dbias(bias.size());
        for (auto* x : {&q, &k, &v, &g, &bias})
            for (float& e : *x) e = float(rng.normal());
        AttnShape s{1, kH, L, L, kD, Dv};
        AttnParams p;
        p.fn = AttnFn::laplace;
        p.scale_by_key_count = true;
        p.rel_bias = bias.data();
        p.rel_bias_center = L - 1;
        p.rel_bias_len = 2 * L - 1;
        const double f_fwd = 2.0 * double(L) * double(L) * double(kD + Dv) * kH;
        Measured mf = measure([&] { attention_forward_tiled(o.data(), nullptr, q.data(), k.data(), v.data(), s, p); },
                              f_fwd);
        Measured mb = measure(
            [&] {
                attention_forward_tiled(o.data(), nullptr, q.data(), k.data(), v.data(), s, p);
                attention_backward_tiled(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(), v.data(),
                                         nullptr, nullptr, s, p, dbias.data());
            },
            3.5 * f_fwd);
        auto add = [&](const char* pass, const Measured& m, double flops) {
            recs.push_back(make("attention.mega_laplace", L, false, pass, m, flops, peak));
            recs.back().shape["Dv"] = Dv;
            recs.back().extra["note"] = "laplace, 1/n_keys scale, relative position bias";
        };
        add("fwd", mf, f_fwd);
        add("fwd+bwd", mb, 3.5 * f_fwd);
    }
    // decoding
    for (long long ctx : {1024LL, 4096LL, 16384LL}) {
        const size_t n = size_t(kH * ctx * kD);
        std::vector<float> kc(n), vc(n), qd(size_t(kH * kD)), od(qd.size());
        for (size_t i = 0; i < n; i++) {
            kc[i] = float(rng.normal());
            vc[i] = float(rng.normal());
        }
        for (auto& x : qd) x = float(rng.normal());
        // All threads (keys split across them) and one thread, to show the split's effect.
        const int nt = num_threads();
        for (int threads : {nt, 1}) {
            if (threads == 1 && nt == 1) break;
            set_num_threads(threads);
            Measured m = measure(
                [&] { attention_decode(od.data(), qd.data(), kc.data(), vc.data(), 1, kH, ctx, ctx, kD, 0.0f); }, 0);
            set_num_threads(nt);
            BenchRecord r = make("attention.decode", ctx, true, "step", m, 4.0 * double(ctx) * kD * kH, 0);
            r.derived["tokens_per_s"] = 1e3 / m.ms;
            r.derived["gbps"] = 2.0 * double(n) * 4.0 / (m.ms * 1e-3) * 1e-9;
            r.extra["threads"] = threads;
            recs.push_back(r);
        }
    }
    return recs;
}

}  // namespace hippo
