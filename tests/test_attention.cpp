// Attention kernels (kernels/attention.h) and ops (autograd/ops_attention.h): tiled FlashAttention
// forward / backward against the materialised double-precision reference over lengths, head dims,
// causal / key padding / dropout / block masks; decode == last row of causal attention; BigBird
// masks; linear attention (recurrent == parallel, backward vs reference); finite-difference
// gradient checks of the ops; thread-count determinism of the backward. Mega extensions: value
// head dim != query head dim, relative position bias (and its gradient), element-wise laplace /
// relu2 weights with 1 / n_keys scaling, Mega-chunk block-diagonal masks: tiled == reference,
// the reference against Mega's formula written out and against finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/ops_attention.h"
#include "common/rng.h"
#include "common/runtime.h"
#include "gradcheck.h"
#include "kernels/attention.h"

using namespace hippo;
using hippo::test::expect_close;

namespace {

std::vector<float> randv(size_t n, Rng& rng, float scale = 1.0f) {
    std::vector<float> v(n);
    for (auto& x : v) x = float(rng.normal()) * scale;
    return v;
}

struct Case {
    int64_t B, H, Lq, Lk, D;
    bool causal;
    bool key_mask;
    float dropout;
};

std::string name(const Case& c) {
    return "B" + std::to_string(c.B) + " H" + std::to_string(c.H) + " Lq" + std::to_string(c.Lq) + " Lk" +
           std::to_string(c.Lk) + " D" + std::to_string(c.D) + (c.causal ? " causal" : "") +
           (c.key_mask ? " keymask" : "") + (c.dropout > 0 ? " dropout" : "");
}

void run_case(const Case& c, bool backward, const BlockMask* bm = nullptr) {
    SCOPED_TRACE(name(c));
    Rng rng{uint64_t(c.Lq * 131 + c.Lk * 7 + c.D + c.causal * 3 + c.key_mask)};
    AttnShape s{c.B, c.H, c.Lq, c.Lk, c.D};
    const size_t nq = size_t(c.B * c.H * c.Lq * c.D), nk = size_t(c.B * c.H * c.Lk * c.D);
    // Larger logits than N(0,1)/sqrt(D) so that the softmax is peaked (exercises the rescaling).
    std::vector<float> q = randv(nq, rng, 1.5f), k = randv(nk, rng, 1.5f), v = randv(nk, rng), g = randv(nq, rng);
    std::vector<uint8_t> km;
    AttnParams p;
    p.causal = c.causal;
    if (c.key_mask) {
        km.resize(size_t(c.B * c.Lk));
        for (auto& m : km) m = rng.uniform() < 0.8f;
        km[0] = 1;
        if (c.B > 1)  // a batch row whose keys are all padding: fully masked rows give 0
            for (int64_t j = 0; j < c.Lk; j++) km[size_t(c.Lk + j)] = 0;
        p.key_mask = km.data();
    }
    p.dropout_p = c.dropout;
    p.dropout_seed = 77;
    p.block_mask = bm;
    std::vector<float> o(nq), o_ref(nq), lse(size_t(c.B * c.H * c.Lq)), lse_ref(lse.size());
    attention_forward_tiled(o.data(), lse.data(), q.data(), k.data(), v.data(), s, p);
    attention_forward_ref(o_ref.data(), lse_ref.data(), q.data(), k.data(), v.data(), s, p);
    expect_close(o.data(), o_ref.data(), int64_t(nq), 2e-5, 2e-4, "O");
    for (size_t i = 0; i < lse.size(); i++) {
        if (std::isinf(lse_ref[i])) {
            EXPECT_TRUE(std::isinf(lse[i]) && lse[i] > 0) << "lse " << i;
            continue;
        }
        ASSERT_NEAR(lse[i], lse_ref[i], 1e-4 + 1e-5 * std::fabs(lse_ref[i])) << "lse " << i;
    }
    if (!backward) return;
    std::vector<float> dq(nq), dk(nk), dv(nk), dq_r(nq), dk_r(nk), dv_r(nk);
    attention_backward_tiled(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(), v.data(), o.data(),
                             lse.data(), s, p);
    attention_backward_ref(dq_r.data(), dk_r.data(), dv_r.data(), g.data(), q.data(), k.data(), v.data(), s, p);
    expect_close(dq.data(), dq_r.data(), int64_t(nq), 1e-4, 1e-3, "dq");
    expect_close(dk.data(), dk_r.data(), int64_t(nk), 1e-4, 1e-3, "dk");
    expect_close(dv.data(), dv_r.data(), int64_t(nk), 1e-4, 1e-3, "dv");
}

}  // namespace

TEST(AttentionKernel, ForwardBackwardLengths) {
    for (int64_t L : {1, 2, 63, 65, 130})
        for (bool causal : {false, true}) run_case({2, 2, L, L, 64, causal, false, 0}, true);
}

TEST(AttentionKernel, HeadDims) {
    for (int64_t D : {32, 128, 16, 8, 40, 3})
        for (bool causal : {false, true}) run_case({1, 2, 70, 70, D, causal, false, 0}, true);
}

TEST(AttentionKernel, LongForwardAndBackward) {
    run_case({1, 2, 1000, 1000, 64, true, false, 0}, true);
    run_case({1, 1, 1000, 1000, 32, false, false, 0}, false);
}

TEST(AttentionKernel, CrossLengthsBottomRightCausal) {
    run_case({1, 2, 5, 130, 32, true, false, 0}, true);
    run_case({1, 2, 130, 70, 32, true, false, 0}, true);  // first rows see nothing
    run_case({2, 1, 33, 200, 64, false, false, 0}, true);
}

TEST(AttentionKernel, KeyPaddingMask) {
    for (bool causal : {false, true}) {
        run_case({2, 2, 65, 65, 64, causal, true, 0}, true);
        run_case({2, 1, 1, 150, 32, causal, true, 0}, true);
    }
}

TEST(AttentionKernel, DropoutSameMaskAsReference) {
    for (bool causal : {false, true}) run_case({2, 2, 70, 70, 32, causal, false, 0.3f}, true);
    run_case({1, 2, 130, 130, 64, true, true, 0.1f}, true);
}

TEST(AttentionKernel, FullBlockMaskEqualsDense) {
    const int64_t L = 200;
    BlockMask bm = make_block_mask(L, L, 64, 64);
    std::fill(bm.mask.begin(), bm.mask.end(), 1);
    Rng rng(3);
    AttnShape s{1, 2, L, L, 64};
    size_t n = size_t(2 * L * 64);
    auto q = randv(n, rng), k = randv(n, rng), v = randv(n, rng);
    std::vector<float> o1(n), o2(n);
    AttnParams p;
    p.causal = true;
    attention_forward_tiled(o1.data(), nullptr, q.data(), k.data(), v.data(), s, p);
    p.block_mask = &bm;
    attention_forward_tiled(o2.data(), nullptr, q.data(), k.data(), v.data(), s, p);
    for (size_t i = 0; i < n; i++) ASSERT_EQ(o1[i], o2[i]) << i;
}

TEST(AttentionKernel, BigBirdMaskEqualsReference) {
    for (bool causal : {false, true}) {
        BlockMask bm = bigbird_block_mask(512, 64, 3, 2, 2, 9, causal, 2);
        EXPECT_LT(bm.density(), 0.95);
        run_case({1, 2, 512, 512, 64, causal, false, 0}, true, &bm);
        // Blocks that do not align with the 64-wide tiles (partial tiles everywhere).
        BlockMask bm2 = bigbird_block_mask(300, 24, 3, 1, 1, 5, causal, 1);
        run_case({1, 2, 300, 300, 32, causal, false, 0}, true, &bm2);
    }
}

TEST(AttentionKernel, BigBirdPattern) {
    BlockMask bm = bigbird_block_mask(64 * 16, 64, 3, 2, 3, 1, false, 1);
    const int64_t n = bm.nbq;
    for (int64_t bi = 0; bi < n; bi++) {
        int64_t cnt = 0;
        for (int64_t bj = 0; bj < n; bj++) cnt += bm.active(0, bi, bj);
        if (bi == 0 || bi == n - 1) EXPECT_EQ(cnt, n) << "global row " << bi;
        else EXPECT_EQ(cnt, std::min<int64_t>(n, 3 + 2 + 3 - (bi == 1) - (bi == n - 2))) << "row " << bi;
        for (int64_t bj = std::max<int64_t>(0, bi - 1); bj <= std::min(n - 1, bi + 1); bj++)
            EXPECT_TRUE(bm.active(0, bi, bj));
        EXPECT_TRUE(bm.active(0, bi, 0) && bm.active(0, bi, n - 1));
    }
    BlockMask c = bigbird_block_mask(64 * 16, 64, 3, 2, 3, 1, true, 1);
    for (int64_t bi = 0; bi < n; bi++)
        for (int64_t bj = bi + 1; bj < n; bj++) EXPECT_FALSE(c.active(0, bi, bj));
    // Same seed, same pattern; another seed, another one.
    EXPECT_EQ(bigbird_block_mask(64 * 16, 64, 3, 2, 3, 1, false, 1).mask, bm.mask);
    EXPECT_NE(bigbird_block_mask(64 * 16, 64, 3, 2, 3, 2, false, 1).mask, bm.mask);
}

TEST(AttentionKernel, BackwardDeterministicAcrossRunsAndThreads) {
    Rng rng(5);
    AttnShape s{1, 1, 300, 300, 64};  // one head: the backward splits the keys across threads
    size_t n = size_t(300 * 64);
    auto q = randv(n, rng), k = randv(n, rng), v = randv(n, rng), g = randv(n, rng);
    AttnParams p;
    p.causal = true;
    std::vector<float> o(n), lse(300);
    attention_forward_tiled(o.data(), lse.data(), q.data(), k.data(), v.data(), s, p);
    auto run = [&] {
        std::vector<float> dq(n), dk(n), dv(n);
        attention_backward_tiled(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(), v.data(), o.data(),
                                 lse.data(), s, p);
        dq.insert(dq.end(), dk.begin(), dk.end());
        dq.insert(dq.end(), dv.begin(), dv.end());
        return dq;
    };
    const int nt0 = num_threads();
    auto a = run(), b = run();
    EXPECT_EQ(a, b);
    set_num_threads(1);
    auto c1 = run();
    set_num_threads(nt0);
    // dK, dV never depend on the thread count; dQ sums the same chunks when the split is equal.
    for (size_t i = n; i < 3 * n; i++) ASSERT_EQ(a[i], c1[i]) << i;
    expect_close(a.data(), c1.data(), int64_t(n), 1e-6, 1e-5, "dq across thread counts");
}

TEST(AttentionKernel, DecodeEqualsLastRowOfCausal) {
    for (int64_t Lk : {1, 7, 700, 3000}) {
        SCOPED_TRACE(Lk);
        Rng rng{uint64_t(Lk)};
        const int64_t B = 2, H = 3, D = 64, cap = Lk + 5;
        // The last query of a causal sequence of length Lk (Lq = 1 is aligned bottom-right).
        AttnShape s{B, H, 1, Lk, D};
        auto qd = randv(size_t(B * H * D), rng), k = randv(size_t(B * H * Lk * D), rng),
             v = randv(size_t(B * H * Lk * D), rng);
        std::vector<float> want(qd.size());
        AttnParams p;
        p.causal = true;
        attention_forward_ref(want.data(), nullptr, qd.data(), k.data(), v.data(), s, p);
        std::vector<float> kc(size_t(B * H * cap * D), 9.0f), vc(kc.size(), 9.0f), od(qd.size());
        for (int64_t bh = 0; bh < B * H; bh++) {
            std::copy_n(k.begin() + bh * Lk * D, Lk * D, kc.begin() + bh * cap * D);
            std::copy_n(v.begin() + bh * Lk * D, Lk * D, vc.begin() + bh * cap * D);
        }
        attention_decode(od.data(), qd.data(), kc.data(), vc.data(), B, H, cap, Lk, D, 0.0f);
        expect_close(od.data(), want.data(), int64_t(od.size()), 1e-5, 1e-4, "decode");
    }
}

TEST(LinearAttentionKernel, ParallelEqualsReferenceAndRecurrent) {
    for (bool causal : {false, true})
        for (int64_t L : {1, 2, 37}) {
            SCOPED_TRACE(L);
            Rng rng{uint64_t(L + causal)};
            LinAttnShape s{2, 2, L, 16, 8};
            auto q = randv(size_t(2 * 2 * L * 16), rng), k = randv(q.size(), rng), v = randv(size_t(2 * 2 * L * 8), rng),
                 g = randv(size_t(2 * 2 * L * 8), rng);
            std::vector<float> o(v.size()), o_ref(v.size());
            linear_attention_forward(o.data(), q.data(), k.data(), v.data(), s, causal);
            linear_attention_forward_ref(o_ref.data(), q.data(), k.data(), v.data(), s, causal);
            expect_close(o.data(), o_ref.data(), int64_t(o.size()), 1e-5, 1e-4, "out");
            std::vector<float> dq(q.size()), dk(q.size()), dv(v.size()), dq_r(q.size()), dk_r(q.size()), dv_r(v.size());
            linear_attention_backward(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(), v.data(), o.data(),
                                      s, causal);
            linear_attention_backward_ref(dq_r.data(), dk_r.data(), dv_r.data(), g.data(), q.data(), k.data(),
                                          v.data(), s, causal);
            expect_close(dq.data(), dq_r.data(), int64_t(dq.size()), 1e-4, 1e-3, "dq");
            expect_close(dk.data(), dk_r.data(), int64_t(dk.size()), 1e-4, 1e-3, "dk");
            expect_close(dv.data(), dv_r.data(), int64_t(dv.size()), 1e-4, 1e-3, "dv");
            if (!causal) continue;
            // recurrent steps
            std::vector<float> S(size_t(4 * 16 * 8), 0.0f), z(size_t(4 * 16), 0.0f);
            for (int64_t t = 0; t < L; t++) {
                std::vector<float> qt(4 * 16), kt(4 * 16), vt(4 * 8), ot(4 * 8), want(4 * 8);
                for (int64_t bh = 0; bh < 4; bh++) {
                    std::copy_n(q.begin() + (bh * L + t) * 16, 16, qt.begin() + bh * 16);
                    std::copy_n(k.begin() + (bh * L + t) * 16, 16, kt.begin() + bh * 16);
                    std::copy_n(v.begin() + (bh * L + t) * 8, 8, vt.begin() + bh * 8);
                    std::copy_n(o.begin() + (bh * L + t) * 8, 8, want.begin() + bh * 8);
                }
                linear_attention_step(ot.data(), S.data(), z.data(), qt.data(), kt.data(), vt.data(), 2, 2, 16, 8);
                expect_close(ot.data(), want.data(), 32, 1e-5, 1e-4, "step");
            }
        }
}

// ---- Mega extensions: Dv != D, relative position bias, element-wise weights, key counts ----

namespace {

const char* fn_name(AttnFn f) { return f == AttnFn::softmax ? "softmax" : f == AttnFn::laplace ? "laplace" : "relu2"; }

struct ExtCase {
    int64_t B = 1, H = 2, Lq = 70, Lk = 70, D = 24, Dv = 40;
    bool causal = false, key_mask = false;
    AttnFn fn = AttnFn::laplace;
    int64_t maxpos = -1;  // bias table of 2 maxpos - 1 entries centred at maxpos - 1; -1: covers all offsets; 0: none
    bool key_count = false;
    float scale = 0;
    int64_t chunk = 0;  // > 0: block-diagonal chunk x chunk mask (Mega-chunk)
    float dropout = 0;
};

std::string ext_name(const ExtCase& c) {
    return std::string(fn_name(c.fn)) + " B" + std::to_string(c.B) + " H" + std::to_string(c.H) + " Lq" +
           std::to_string(c.Lq) + " Lk" + std::to_string(c.Lk) + " D" + std::to_string(c.D) + " Dv" +
           std::to_string(c.Dv) + (c.causal ? " causal" : "") + (c.key_mask ? " keymask" : "") +
           " maxpos" + std::to_string(c.maxpos) + (c.key_count ? " keycount" : "") + " scale" +
           std::to_string(c.scale) + " chunk" + std::to_string(c.chunk) + (c.dropout > 0 ? " dropout" : "");
}

// Mega-chunk: only the diagonal chunk x chunk blocks are active.
BlockMask chunk_mask(int64_t Lq, int64_t Lk, int64_t c) {
    BlockMask bm = make_block_mask(Lq, Lk, c, c);
    for (int64_t b = 0; b < std::min(bm.nbq, bm.nbk); b++) bm.mask[size_t(b * bm.nbk + b)] = 1;
    return bm;
}

// Inputs of one case; p points into the vectors, so an ExtData is filled in place and never moved.
struct ExtData {
    AttnShape s;
    AttnParams p;
    std::vector<float> q, k, v, g, bias;
    std::vector<uint8_t> km;
    BlockMask bm;
    ExtData(const ExtData&) = delete;
    ExtData() = default;
};

void setup(ExtData& d, const ExtCase& c, uint64_t seed) {
    Rng rng(seed);
    d.s = AttnShape{c.B, c.H, c.Lq, c.Lk, c.D, c.Dv};
    const float qs = c.fn == AttnFn::softmax ? 1.5f : 1.0f;  // laplace / relu2: scores of order 1
    d.q = randv(size_t(c.B * c.H * c.Lq * c.D), rng, qs);
    d.k = randv(size_t(c.B * c.H * c.Lk * c.D), rng, qs);
    d.v = randv(size_t(c.B * c.H * c.Lk * d.s.dv()), rng);
    d.g = randv(size_t(c.B * c.H * c.Lq * d.s.dv()), rng);
    d.p.causal = c.causal;
    d.p.fn = c.fn;
    d.p.scale = c.scale;
    d.p.scale_by_key_count = c.key_count;
    d.p.dropout_p = c.dropout;
    d.p.dropout_seed = 13;
    if (c.key_mask) {
        d.km.resize(size_t(c.B * c.Lk));
        for (auto& m : d.km) m = rng.uniform() < 0.75f;
        d.km[0] = 1;
        if (c.B > 1)  // a batch row whose keys are all padding
            for (int64_t j = 0; j < c.Lk; j++) d.km[size_t(c.Lk + j)] = 0;
        d.p.key_mask = d.km.data();
    }
    if (c.maxpos != 0) {
        const int64_t mp = c.maxpos > 0 ? c.maxpos : std::max(c.Lq, c.Lk);
        d.bias = randv(size_t(2 * mp - 1), rng, 0.5f);
        d.p.rel_bias = d.bias.data();
        d.p.rel_bias_center = mp - 1;
        d.p.rel_bias_len = 2 * mp - 1;
    }
    if (c.chunk > 0) {
        d.bm = chunk_mask(c.Lq, c.Lk, c.chunk);
        d.p.block_mask = &d.bm;
    }
}

double max_abs(const std::vector<float>& x) {
    double m = 0;
    for (float e : x) m = std::max(m, double(std::fabs(e)));
    return m;
}

// atol relative to the largest reference value (relu2 outputs and bias sums are not O(1)).
void expect_close_scaled(const std::vector<float>& got, const std::vector<float>& ref, double atol, double rtol,
                         const char* what) {
    ASSERT_EQ(got.size(), ref.size()) << what;
    expect_close(got.data(), ref.data(), int64_t(got.size()), atol * std::max(1.0, max_abs(ref)), rtol, what);
}

void run_ext(const ExtCase& c) {
    SCOPED_TRACE(ext_name(c));
    ExtData d;
    setup(d, c, uint64_t(c.Lq * 131 + c.Lk * 7 + c.D * 3 + c.Dv + int(c.fn) * 17 + c.causal));
    const AttnShape& s = d.s;
    const size_t no = size_t(s.B * s.H * s.Lq * s.dv()), nl = size_t(s.B * s.H * s.Lq);
    std::vector<float> o(no), o_ref(no), lse(nl, -1.0f), lse_ref(nl, -1.0f);
    attention_forward_tiled(o.data(), lse.data(), d.q.data(), d.k.data(), d.v.data(), s, d.p);
    attention_forward_ref(o_ref.data(), lse_ref.data(), d.q.data(), d.k.data(), d.v.data(), s, d.p);
    expect_close_scaled(o, o_ref, 2e-5, 2e-4, "O");
    for (size_t i = 0; i < nl; i++) {
        if (c.fn != AttnFn::softmax) {
            ASSERT_EQ(lse[i], 0.0f) << "lse " << i;
            ASSERT_EQ(lse_ref[i], 0.0f) << "lse_ref " << i;
        } else if (std::isinf(lse_ref[i])) {
            ASSERT_TRUE(std::isinf(lse[i]) && lse[i] > 0) << "lse " << i;
        } else {
            ASSERT_NEAR(lse[i], lse_ref[i], 1e-4 + 1e-5 * std::fabs(lse_ref[i])) << "lse " << i;
        }
    }
    const size_t nq = d.q.size(), nk = d.k.size(), nv = d.v.size();
    std::vector<float> dq(nq), dk(nk), dv(nv), dq_r(nq), dk_r(nk), dv_r(nv);
    std::vector<float> db(d.bias.size(), 0.25f), db_r(d.bias.size(), 0.25f);  // accumulated into
    float* dbp = d.p.rel_bias ? db.data() : nullptr;
    float* dbp_r = d.p.rel_bias ? db_r.data() : nullptr;
    // laplace / relu2 read neither O nor lse
    const bool sm = c.fn == AttnFn::softmax;
    attention_backward_tiled(dq.data(), dk.data(), dv.data(), d.g.data(), d.q.data(), d.k.data(), d.v.data(),
                             sm ? o.data() : nullptr, sm ? lse.data() : nullptr, s, d.p, dbp);
    attention_backward_ref(dq_r.data(), dk_r.data(), dv_r.data(), d.g.data(), d.q.data(), d.k.data(), d.v.data(), s,
                           d.p, dbp_r);
    expect_close_scaled(dq, dq_r, 1e-4, 1e-3, "dq");
    expect_close_scaled(dk, dk_r, 1e-4, 1e-3, "dk");
    expect_close_scaled(dv, dv_r, 1e-4, 1e-3, "dv");
    if (dbp) expect_close_scaled(db, db_r, 1e-4, 1e-3, "d_rel_bias");
}

}  // namespace

TEST(AttentionMega, ValueHeadDimSoftmax) {
    // both padded, only v padded, only q / k padded, Dv < D, odd
    const int64_t dims[][2] = {{24, 40}, {16, 40}, {24, 32}, {64, 16}, {3, 5}};
    for (auto [D, Dv] : dims)
        for (bool causal : {false, true}) {
            ExtCase c;
            c.fn = AttnFn::softmax;
            c.D = D, c.Dv = Dv, c.causal = causal, c.maxpos = 0;
            run_ext(c);
        }
}

TEST(AttentionMega, ElementwiseLengths) {
    for (AttnFn fn : {AttnFn::laplace, AttnFn::relu2})
        for (bool causal : {false, true})
            for (int64_t L : {1, 2, 63, 130}) {
                ExtCase c;
                c.fn = fn, c.causal = causal, c.Lq = c.Lk = L, c.key_count = true, c.scale = 6.0f;
                run_ext(c);
            }
}

TEST(AttentionMega, ElementwiseUniformScaleAndHeadDims) {
    const int64_t dims[][2] = {{24, 24}, {64, 64}, {16, 40}, {3, 5}, {32, 8}};
    for (AttnFn fn : {AttnFn::laplace, AttnFn::relu2})
        for (auto [D, Dv] : dims) {
            ExtCase c;  // default scale 1 / sqrt(D), with and without bias
            c.fn = fn, c.D = D, c.Dv = Dv, c.causal = D != 64, c.maxpos = Dv == 40 ? 0 : -1;
            run_ext(c);
        }
}

TEST(AttentionMega, SoftmaxWithBiasAndKeyCount) {
    for (bool causal : {false, true})
        for (int64_t L : {1, 65, 130}) {
            ExtCase c;
            c.fn = AttnFn::softmax, c.causal = causal, c.Lq = c.Lk = L;
            run_ext(c);
            c.maxpos = 20;  // offsets beyond +-19 saturate at the table's ends
            run_ext(c);
            c.key_count = true, c.scale = 4.0f;
            run_ext(c);
        }
}

TEST(AttentionMega, CrossLengthsBottomRight) {
    const int64_t lens[][2] = {{5, 130}, {130, 70}, {33, 200}};
    for (AttnFn fn : {AttnFn::softmax, AttnFn::laplace, AttnFn::relu2})
        for (auto [Lq, Lk] : lens)
            for (bool causal : {false, true}) {
                ExtCase c;
                c.fn = fn, c.Lq = Lq, c.Lk = Lk, c.causal = causal, c.key_count = fn != AttnFn::softmax, c.scale = 6.0f;
                run_ext(c);
            }
}

TEST(AttentionMega, KeyMaskAndDropout) {
    for (AttnFn fn : {AttnFn::softmax, AttnFn::laplace, AttnFn::relu2})
        for (bool causal : {false, true}) {
            ExtCase c;
            c.B = 2, c.Lq = c.Lk = 97, c.fn = fn, c.causal = causal, c.key_mask = true;
            c.key_count = fn != AttnFn::softmax, c.scale = 6.0f;
            run_ext(c);
            c.dropout = 0.2f;
            run_ext(c);
        }
}

TEST(AttentionMega, ChunkBlockDiagonal) {
    // chunk sizes below, at and across the 64-wide tiles; the bias table sized by the chunk
    for (int64_t chunk : {48, 64, 100})
        for (AttnFn fn : {AttnFn::laplace, AttnFn::softmax})
            for (bool causal : {false, true}) {
                ExtCase c;
                c.B = 2, c.Lq = c.Lk = chunk == 48 ? 144 : 200, c.chunk = chunk, c.maxpos = chunk;
                c.fn = fn, c.causal = causal, c.key_mask = !causal || chunk == 64;
                c.key_count = fn != AttnFn::softmax, c.scale = 6.0f;
                run_ext(c);
            }
}

// The reference against Mega's element-wise attention written out per chunk (the official
// code's formula): n = causal ? i + 1 : non-pad keys of the chunk (at least 1),
// w_ij = f(q_i . k_j / n + p[maxpos - 1 + j - i]) * valid_j, o_i = sum_j w_ij v_j.
TEST(AttentionMega, ReferenceMatchesMegaFormula) {
    const double mu = std::sqrt(0.5), sigma = std::sqrt(1.0 / (4.0 * M_PI));
    auto f = [&](AttnFn fn, double x) {
        return fn == AttnFn::laplace ? 0.5 * (1.0 + std::erf((x - mu) / (sigma * std::sqrt(2.0))))
                                     : std::pow(std::max(x, 0.0), 2.0);
    };
    for (AttnFn fn : {AttnFn::laplace, AttnFn::relu2})
        for (bool causal : {false, true}) {
            SCOPED_TRACE(std::string(fn_name(fn)) + (causal ? " causal" : ""));
            ExtCase c;
            const int64_t C = 16;
            c.B = 2, c.H = 1, c.Lq = c.Lk = 48, c.D = 8, c.Dv = 6, c.chunk = C, c.maxpos = C, c.fn = fn;
            c.causal = causal, c.key_mask = true, c.key_count = true;
            ExtData d;
            setup(d, c, 99);
            d.km[5] = d.km[17] = d.km[18] = 0;  // a few pads in batch row 0
            std::vector<float> o(size_t(c.B * c.Lq * c.Dv)), o_t(o.size());
            attention_forward_ref(o.data(), nullptr, d.q.data(), d.k.data(), d.v.data(), d.s, d.p);
            attention_forward_tiled(o_t.data(), nullptr, d.q.data(), d.k.data(), d.v.data(), d.s, d.p);
            std::vector<float> want(o.size(), 0.0f);
            for (int64_t b = 0; b < c.B; b++)
                for (int64_t i = 0; i < c.Lq; i++) {
                    const int64_t c0 = i / C * C, ii = i - c0;
                    int64_t n = 0;
                    for (int64_t j = c0; j < c0 + C; j++) n += d.km[size_t(b * c.Lk + j)] != 0;
                    const double nk = causal ? double(ii + 1) : double(std::max<int64_t>(n, 1));
                    for (int64_t j = c0; j < c0 + (causal ? ii + 1 : C); j++) {
                        if (!d.km[size_t(b * c.Lk + j)]) continue;
                        const float* qi = d.q.data() + (b * c.Lq + i) * c.D;
                        const float* kj = d.k.data() + (b * c.Lk + j) * c.D;
                        const float* vj = d.v.data() + (b * c.Lk + j) * c.Dv;
                        double dot = 0;
                        for (int64_t e = 0; e < c.D; e++) dot += double(qi[e]) * kj[e];
                        const double w = f(fn, dot / nk + d.bias[size_t(C - 1 + (j - c0) - ii)]);
                        for (int64_t e = 0; e < c.Dv; e++) want[size_t((b * c.Lq + i) * c.Dv + e)] += float(w * vj[e]);
                    }
                }
            expect_close(o.data(), want.data(), int64_t(o.size()), 1e-5, 1e-5, "ref vs formula");
            expect_close(o_t.data(), want.data(), int64_t(o.size()), 2e-5, 2e-4, "tiled vs formula");
        }
}

// Central differences of L = sum(O * G) through attention_forward_ref against
// attention_backward_ref, for every element of q, k, v and the bias table.
TEST(AttentionMega, ReferenceGradientsMatchFiniteDifferences) {
    struct FdCase {
        AttnFn fn;
        bool causal, key_mask, key_count;
        int64_t maxpos;
    };
    const FdCase cases[] = {{AttnFn::laplace, false, false, false, -1}, {AttnFn::laplace, true, true, true, -1},
                            {AttnFn::laplace, false, true, true, 4},    {AttnFn::softmax, false, false, false, -1},
                            {AttnFn::softmax, true, true, false, 4}};
    // ~2000 tiny reference calls: one thread avoids a fork/join per call on a busy machine
    const int nt0 = num_threads();
    set_num_threads(1);
    for (const FdCase& fc : cases) {
        ExtCase c;
        c.B = 2, c.H = 1, c.Lq = 7, c.Lk = 9, c.D = 5, c.Dv = 3;
        c.fn = fc.fn, c.causal = fc.causal, c.key_mask = fc.key_mask, c.key_count = fc.key_count;
        c.maxpos = fc.maxpos, c.scale = fc.key_count ? 3.0f : 0.0f;
        SCOPED_TRACE(ext_name(c));
        ExtData d;
        setup(d, c, 7);
        if (c.key_mask) std::fill(d.km.begin() + c.Lk, d.km.end(), 1);  // keep row 1 alive here
        std::vector<float> dq(d.q.size()), dk(d.k.size()), dv(d.v.size()), db(d.bias.size(), 0.0f);
        attention_backward_ref(dq.data(), dk.data(), dv.data(), d.g.data(), d.q.data(), d.k.data(), d.v.data(), d.s,
                               d.p, db.data());
        std::vector<float> o(d.g.size());
        auto loss = [&] {
            attention_forward_ref(o.data(), nullptr, d.q.data(), d.k.data(), d.v.data(), d.s, d.p);
            double l = 0;
            for (size_t i = 0; i < o.size(); i++) l += double(o[i]) * d.g[i];
            return l;
        };
        const float eps = 2e-3f;
        auto check = [&](std::vector<float>& x, const std::vector<float>& grad, const char* what) {
            for (size_t i = 0; i < x.size(); i++) {
                const float x0 = x[i];
                x[i] = x0 + eps;
                const double lp = loss();
                x[i] = x0 - eps;
                const double lm = loss();
                x[i] = x0;
                const double fd = (lp - lm) / (2.0 * double(eps));
                ASSERT_NEAR(grad[i], fd, 2e-3 + 1e-2 * std::fabs(fd)) << what << " " << i;
            }
        };
        check(d.q, dq, "dq");
        check(d.k, dk, "dk");
        check(d.v, dv, "dv");
        check(d.bias, db, "d_rel_bias");
    }
    set_num_threads(nt0);
}

TEST(AttentionMega, RelBiasGradientAccumulatesAndRepeats) {
    ExtCase c;
    c.B = 2, c.H = 3, c.Lq = c.Lk = 150, c.D = 32, c.Dv = 64, c.maxpos = 400, c.key_count = true, c.scale = 6.0f;
    ExtData d;
    setup(d, c, 3);
    std::vector<float> dq(d.q.size()), dk(d.k.size()), dv(d.v.size());
    auto run = [&](float init) {
        std::vector<float> db(d.bias.size(), init);
        attention_backward_tiled(dq.data(), dk.data(), dv.data(), d.g.data(), d.q.data(), d.k.data(), d.v.data(),
                                 nullptr, nullptr, d.s, d.p, db.data());
        return db;
    };
    auto a = run(0.0f), b = run(0.0f), acc = run(1.5f);
    EXPECT_EQ(a, b);
    // entries for offsets |j - i| >= 150 are untouched; the others hold 1.5 + the gradient
    for (size_t t = 0; t < a.size(); t++) {
        const int64_t rel = int64_t(t) - (c.maxpos - 1);
        if (std::llabs(rel) >= c.Lq) {
            ASSERT_EQ(acc[t], 1.5f) << t;
            ASSERT_EQ(a[t], 0.0f) << t;
        } else {
            ASSERT_NEAR(acc[t], 1.5f + a[t], 1e-5 * (1.0 + std::fabs(a[t]))) << t;
        }
    }
}

TEST(AttentionMega, DecodeValueHeadDim) {
    for (int64_t Lk : {1, 9, 700}) {
        SCOPED_TRACE(Lk);
        Rng rng{uint64_t(Lk + 1)};
        const int64_t B = 2, H = 2, D = 24, Dv = 40, cap = Lk + 3;
        AttnShape s{B, H, 1, Lk, D, Dv};
        auto qd = randv(size_t(B * H * D), rng), k = randv(size_t(B * H * Lk * D), rng),
             v = randv(size_t(B * H * Lk * Dv), rng);
        std::vector<float> want(size_t(B * H * Dv));
        AttnParams p;
        p.causal = true;
        attention_forward_ref(want.data(), nullptr, qd.data(), k.data(), v.data(), s, p);
        std::vector<float> kc(size_t(B * H * cap * D), 9.0f), vc(size_t(B * H * cap * Dv), 9.0f), od(want.size());
        for (int64_t bh = 0; bh < B * H; bh++) {
            std::copy_n(k.begin() + bh * Lk * D, Lk * D, kc.begin() + bh * cap * D);
            std::copy_n(v.begin() + bh * Lk * Dv, Lk * Dv, vc.begin() + bh * cap * Dv);
        }
        attention_decode(od.data(), qd.data(), kc.data(), vc.data(), B, H, cap, Lk, D, 0.0f, nullptr, Dv);
        expect_close(od.data(), want.data(), int64_t(od.size()), 1e-5, 1e-4, "decode");
    }
}

// ---- ops ----

TEST(AttentionOps, GradCheckAttention) {
    Rng rng(21);
    for (bool causal : {false, true}) {
        AttentionOptions opt;
        opt.causal = causal;
        auto f = [&](const std::vector<Tensor>& in) { return attention(in[0], in[1], in[2], opt); };
        hippo::test::GradCheckOptions go;
        go.eps = 2e-3f;
        hippo::test::expect_gradients_match(
            f, {hippo::test::randn({2, 9, 2, 8}, rng), hippo::test::randn({2, 9, 2, 8}, rng),
                hippo::test::randn({2, 9, 2, 8}, rng)},
            go);
    }
}

TEST(AttentionOps, GradCheckAttentionMaskedDropout) {
    Rng rng(22);
    std::vector<uint8_t> km = {1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1};
    AttentionOptions opt;
    opt.causal = true;
    opt.key_mask = km;
    opt.dropout_p = 0.25f;
    opt.dropout_seed = 4;
    opt.training = true;
    auto f = [&](const std::vector<Tensor>& in) { return attention(in[0], in[1], in[2], opt); };
    hippo::test::expect_gradients_match(f, {hippo::test::randn({2, 7, 2, 16}, rng),
                                            hippo::test::randn({2, 7, 2, 16}, rng),
                                            hippo::test::randn({2, 7, 2, 16}, rng)});
}

TEST(AttentionOps, AttentionOnStridedViewsOfFusedQkv) {
    Rng rng(23);
    Tensor qkv = hippo::test::randn({2, 13, 3, 2, 32}, rng);
    Tensor q = qkv.select(2, 0), k = qkv.select(2, 1), v = qkv.select(2, 2);
    AttentionOptions opt;
    opt.causal = true;
    Tensor o = attention(q, k, v, opt);
    ASSERT_EQ(o.shape(), Shape({2, 13, 2, 32}));
    Tensor o2 = attention(q.contiguous(), k.contiguous(), v.contiguous(), opt);
    auto a = o.to_vector(), b = o2.to_vector();
    EXPECT_EQ(a, b);
}

TEST(AttentionOps, GradCheckLinearAttention) {
    Rng rng(24);
    for (bool causal : {false, true}) {
        auto f = [&](const std::vector<Tensor>& in) { return linear_attention(in[0], in[1], in[2], causal); };
        hippo::test::expect_gradients_match(f, {hippo::test::randn({2, 6, 2, 4}, rng),
                                                hippo::test::randn({2, 6, 2, 4}, rng),
                                                hippo::test::randn({2, 6, 2, 3}, rng)});
    }
}

TEST(AttentionOps, RotaryMatchesFormulaAndGradient) {
    Rng rng(25);
    Tensor x = hippo::test::randn({2, 5, 3, 8}, rng);
    const int64_t rd = 6, off = 4;
    Tensor y = rotary(x, rd, 10000.0f, off);
    auto xv = x.to_vector(), yv = y.to_vector();
    for (int64_t b = 0; b < 2; b++)
        for (int64_t l = 0; l < 5; l++)
            for (int64_t h = 0; h < 3; h++) {
                const float* xr = xv.data() + ((b * 5 + l) * 3 + h) * 8;
                const float* yr = yv.data() + ((b * 5 + l) * 3 + h) * 8;
                for (int64_t i = 0; i < rd / 2; i++) {
                    double inv = 1.0 / std::pow(10000.0, double(2 * i) / double(rd));
                    double ang = double(l + off) * inv;
                    double c = std::cos(ang), s = std::sin(ang);
                    EXPECT_NEAR(yr[i], xr[i] * c - xr[i + rd / 2] * s, 1e-5);
                    EXPECT_NEAR(yr[i + rd / 2], xr[i + rd / 2] * c + xr[i] * s, 1e-5);
                }
                for (int64_t i = rd; i < 8; i++) EXPECT_EQ(yr[i], xr[i]);
            }
    auto f = [&](const std::vector<Tensor>& in) { return rotary(in[0], rd, 10000.0f, off); };
    hippo::test::expect_gradients_match(f, {hippo::test::randn({2, 5, 3, 8}, rng)});
}
