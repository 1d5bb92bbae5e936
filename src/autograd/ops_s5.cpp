#include "autograd/ops_s5.h"

#include <cmath>
#include <complex>
#include <memory>

#include "common/check.h"
#include "kernels/gemm.h"
#include "kernels/s5_scan.h"

namespace hippo {

namespace {

using cd = std::complex<double>;

// The official clip_eigs bound on Re Lambda.
constexpr double kClipRe = -1e-4;

// e^z - 1 without cancellation for small |z|.
cd expm1c(cd z) {
    const double s = std::sin(0.5 * z.imag());
    return {std::expm1(z.real()) * std::cos(z.imag()) - 2.0 * s * s, std::exp(z.real()) * std::sin(z.imag())};
}

// phi(z) = (e^z - 1) / z and phi'(z) = (e^z (z - 1) + 1) / z^2, by their power series near 0
// (|z| < 1/2: 24 terms are exact to double rounding) where the closed forms cancel.
cd phi1(cd z) {
    if (std::abs(z) >= 0.5) return expm1c(z) / z;
    cd term(1.0), sum(0.0);  // term_k = z^k / (k + 1)!
    for (int k = 0; k < 24; k++) {
        sum += term;
        term *= z / double(k + 2);
    }
    return sum;
}

cd dphi1(cd z) {
    if (std::abs(z) >= 0.5) return (std::exp(z) * (z - 1.0) + 1.0) / (z * z);
    cd term(0.5), sum(0.0);  // term_k = z^(k-1) / (k + 1)!, k >= 1
    for (int k = 1; k < 25; k++) {
        sum += double(k) * term;
        term *= z / double(k + 2);
    }
    return sum;
}

void check_numel(const Tensor& t, int64_t n, const char* what) {
    HIPPO_CHECK(t.defined(), "s5_ssm: %s is missing", what);
    HIPPO_CHECK(t.numel() == n, "s5_ssm: %s has shape %s (%lld elements), expected %lld elements", what,
                t.shape().str().c_str(), (long long)t.numel(), (long long)n);
}

// The parameters (contiguous) and their discretisation in double.
struct Disc {
    int64_t H = 0, P2 = 0, ndir = 1, Cw = 0;  // Cw: the width of C's middle dim (P2, or 2 P2)
    Tensor Lr, Li, B, C, C2, log_step;
    std::vector<cd> lam, abar, f;  // (P2): Lambda, Lambda_bar, (Lambda_bar - 1) / Lambda
    std::vector<double> dt;        // (P2)
    std::vector<char> clipped;     // (P2): Re Lambda held at the clip bound (no gradient)

    // C_tilde[d][h, p] as (re, im) floats.
    const float* c_at(int d, int64_t h, int64_t p) const {
        if (d == 0) return C.data() + (h * Cw + p) * 2;
        if (C2.defined()) return C2.data() + (h * P2 + p) * 2;
        return C.data() + (h * Cw + P2 + p) * 2;
    }
    cd b_tilde(int64_t p, int64_t h) const {
        const float* b = B.data() + (p * H + h) * 2;
        return {double(b[0]), double(b[1])};
    }
};

Disc discretize(const Tensor& Lr, const Tensor& Li, const Tensor& B, const Tensor& C, const Tensor& C2,
                const Tensor& log_step, const S5SsmOptions& opt) {
    Disc d;
    HIPPO_CHECK(Lr.defined() && Lr.numel() >= 1, "s5_ssm: Lambda_re is missing");
    d.P2 = Lr.numel();
    check_numel(Li, d.P2, "Lambda_im");
    check_numel(log_step, d.P2, "log_step");
    HIPPO_CHECK(B.defined() && B.numel() % (2 * d.P2) == 0 && B.numel() > 0,
                "s5_ssm: B has shape %s, expected (%lld, H, 2)", B.defined() ? B.shape().str().c_str() : "()",
                (long long)d.P2);
    d.H = B.numel() / (2 * d.P2);
    d.ndir = opt.bidirectional ? 2 : 1;
    HIPPO_CHECK(opt.bidirectional || !C2.defined(), "s5_ssm: a second C is only used when bidirectional");
    d.Cw = opt.bidirectional && !C2.defined() ? 2 * d.P2 : d.P2;
    check_numel(C, d.H * d.Cw * 2, "C");
    if (C2.defined()) check_numel(C2, d.H * d.P2 * 2, "C2");
    HIPPO_CHECK(opt.step_rescale > 0 && std::isfinite(opt.step_rescale), "s5_ssm: step_rescale must be positive");
    d.Lr = Lr.contiguous();
    d.Li = Li.contiguous();
    d.B = B.contiguous();
    d.C = C.contiguous();
    d.C2 = C2.defined() ? C2.contiguous() : Tensor();
    d.log_step = log_step.contiguous();
    const size_t n = size_t(d.P2);
    d.lam.resize(n);
    d.abar.resize(n);
    d.f.resize(n);
    d.dt.resize(n);
    d.clipped.resize(n);
    for (int64_t p = 0; p < d.P2; p++) {
        double re = d.Lr.data()[p];
        const bool clip = opt.clip_eigs && re > kClipRe;
        if (clip) re = kClipRe;
        const cd lam(re, double(d.Li.data()[p]));
        const double dt = opt.step_rescale * std::exp(double(d.log_step.data()[p]));
        d.lam[size_t(p)] = lam;
        d.abar[size_t(p)] = std::exp(lam * dt);
        d.f[size_t(p)] = dt * phi1(lam * dt);
        d.dt[size_t(p)] = dt;
        d.clipped[size_t(p)] = clip;
    }
    return d;
}

S5Tables tables(const Disc& d) {
    S5Tables t;
    t.H = d.H;
    t.P2 = d.P2;
    t.ndir = d.ndir;
    const int64_t H = d.H, P2 = d.P2, W = 2 * P2;
    t.a.resize(size_t(W));
    t.WB.resize(size_t(W * H));
    t.WC.resize(size_t(d.ndir * H * W));
    for (int64_t p = 0; p < P2; p++) {
        t.a[size_t(p)] = float(d.abar[size_t(p)].real());
        t.a[size_t(P2 + p)] = float(d.abar[size_t(p)].imag());
        for (int64_t h = 0; h < H; h++) {
            const cd bb = d.f[size_t(p)] * d.b_tilde(p, h);
            t.WB[size_t(p * H + h)] = float(bb.real());
            t.WB[size_t((P2 + p) * H + h)] = float(bb.imag());
        }
    }
    for (int dir = 0; dir < d.ndir; dir++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t p = 0; p < P2; p++) {
                const float* c = d.c_at(dir, h, p);
                float* row = t.WC.data() + (dir * H + h) * W;
                row[p] = 2.0f * c[0];
                row[P2 + p] = -2.0f * c[1];
            }
    return t;
}

}  // namespace

S5Tables s5_discretize(const Tensor& Lambda_re, const Tensor& Lambda_im, const Tensor& B, const Tensor& C,
                       const Tensor& C2, const Tensor& log_step, const S5SsmOptions& opt) {
    return tables(discretize(Lambda_re, Lambda_im, B, C, C2, log_step, opt));
}

Tensor s5_ssm(const Tensor& u_in, const Tensor& Lambda_re, const Tensor& Lambda_im, const Tensor& B_in,
              const Tensor& C_in, const Tensor& C2_in, const Tensor& D_in, const Tensor& log_step,
              const S5SsmOptions& opt, const Tensor& x0_in, Tensor* x_last) {
    HIPPO_CHECK(u_in.defined() && u_in.ndim() == 3, "s5_ssm: u must be (B, L, H), got %s",
                u_in.defined() ? u_in.shape().str().c_str() : "nothing");
    auto d = std::make_shared<Disc>(discretize(Lambda_re, Lambda_im, B_in, C_in, C2_in, log_step, opt));
    const int64_t Bn = u_in.size(0), L = u_in.size(1), H = d->H, P2 = d->P2, W = 2 * P2, BL = Bn * L;
    HIPPO_CHECK(u_in.size(2) == H, "s5_ssm: u has %lld features, B has %lld", (long long)u_in.size(2), (long long)H);
    HIPPO_CHECK(Bn >= 1 && L >= 1, "s5_ssm: empty input %s", u_in.shape().str().c_str());
    check_numel(D_in, H, "D");
    if (x0_in.defined()) {
        HIPPO_CHECK(!opt.bidirectional, "s5_ssm: an initial state needs the causal (not bidirectional) SSM");
        check_numel(x0_in, Bn * W, "the initial state");
    }
    auto t = std::make_shared<S5Tables>(tables(*d));
    Tensor u = u_in.contiguous(), D = D_in.contiguous(), x0 = x0_in.defined() ? x0_in.contiguous() : Tensor();

    // B_bar u (B L, 2 P2), then the scans: X[0] forward in time (from x0), X[1] backward.
    Tensor BU = Tensor::empty({Bn, L, W});
    sgemm(false, true, BL, W, H, 1.0f, u.data(), H, t->WB.data(), H, 0.0f, BU.data(), W);
    const S5ScanShape shape{Bn, L, P2};
    std::vector<Tensor> X;
    for (int dir = 0; dir < d->ndir; dir++) {
        X.push_back(Tensor::empty({Bn, L, W}));
        S5ScanOptions so;
        so.reverse = dir == 1;
        so.min_chunk = opt.min_chunk;
        s5_scan_forward(X.back().data(), t->a.data(), BU.data(), dir == 0 && x0.defined() ? x0.data() : nullptr, shape,
                        so);
    }
    BU = Tensor();
    // y = sum_dir X[dir] WC[dir]^T + D u.
    Tensor y = Tensor::empty({Bn, L, H});
    for (int dir = 0; dir < d->ndir; dir++)
        sgemm(false, true, BL, H, W, 1.0f, X[size_t(dir)].data(), W, t->WC.data() + dir * H * W, W,
              dir == 0 ? 0.0f : 1.0f, y.data(), H);
    {
        float* yp = y.data();
        const float *up = u.data(), *Dp = D.data();
        for (int64_t r = 0; r < BL; r++)
            for (int64_t h = 0; h < H; h++) yp[r * H + h] += Dp[h] * up[r * H + h];
    }
    if (x_last) {
        *x_last = Tensor::empty({Bn, 2, P2});
        for (int64_t b = 0; b < Bn; b++) {
            const float* src = X[0].data() + (b * L + L - 1) * W;
            std::copy(src, src + W, x_last->data() + b * W);
        }
    }

    record(y, "s5_ssm", {u, d->Lr, d->Li, d->B, d->C, d->C2, D, d->log_step, x0},
           [u, D, x0, d, t, X, Bn, L, opt](const Tensor& g_in) {
               const int64_t H = d->H, P2 = d->P2, W = 2 * P2, BL = Bn * L;
               Tensor gy = g_in.contiguous();
               const float *g = gy.data(), *up = u.data(), *Dp = D.data();
               // The skip term.
               Tensor gu = Tensor::empty(u.shape()), gD = Tensor::empty(D.shape());
               std::vector<double> gDs(size_t(H), 0.0);
               for (int64_t r = 0; r < BL; r++)
                   for (int64_t h = 0; h < H; h++) {
                       gDs[size_t(h)] += double(g[r * H + h]) * double(up[r * H + h]);
                       gu.data()[r * H + h] = g[r * H + h] * Dp[h];
                   }
               for (int64_t h = 0; h < H; h++) gD.data()[h] = float(gDs[size_t(h)]);

               // Through C_tilde x and the scans: GBU = dLoss/d(B_bar u), ga = dLoss/dLambda_bar.
               const S5ScanShape shape{Bn, L, P2};
               Tensor GX = Tensor::empty({Bn, L, W}), GBU = Tensor::empty({Bn, L, W});
               Tensor gx0 = x0.defined() ? Tensor::empty(x0.shape()) : Tensor();
               Tensor G2 = d->ndir > 1 ? Tensor::empty({Bn, L, W}) : Tensor();
               std::vector<float> gWC(size_t(d->ndir * H * W)), ga(static_cast<size_t>(W));
               std::vector<cd> g_abar(size_t(P2), cd(0.0));
               for (int dir = 0; dir < d->ndir; dir++) {
                   const float* WC = t->WC.data() + dir * H * W;
                   sgemm(false, false, BL, W, H, 1.0f, g, H, WC, W, 0.0f, GX.data(), W);
                   sgemm(true, false, H, W, BL, 1.0f, g, H, X[size_t(dir)].data(), W, 0.0f, gWC.data() + dir * H * W, W);
                   S5ScanOptions so;
                   so.reverse = dir == 1;
                   so.min_chunk = opt.min_chunk;
                   s5_scan_backward(dir == 0 ? GBU.data() : G2.data(), ga.data(),
                                    dir == 0 && gx0.defined() ? gx0.data() : nullptr, GX.data(), nullptr,
                                    X[size_t(dir)].data(), t->a.data(), dir == 0 && x0.defined() ? x0.data() : nullptr,
                                    shape, so);
                   for (int64_t p = 0; p < P2; p++) g_abar[size_t(p)] += cd(ga[size_t(p)], ga[size_t(P2 + p)]);
               }
               if (G2.defined()) {
                   float* a = GBU.data();
                   const float* b = G2.data();
                   for (int64_t i = 0; i < BL * W; i++) a[i] += b[i];
               }
               // Through B_bar u: dLoss/dWB (2 P2, H) and the input.
               std::vector<float> gWB(size_t(W * H));
               sgemm(true, false, W, H, BL, 1.0f, GBU.data(), W, up, H, 0.0f, gWB.data(), H);
               sgemm(false, false, BL, H, W, 1.0f, GBU.data(), W, t->WB.data(), H, 1.0f, gu.data(), H);

               // The discretisation, in double. B_bar = f ∘ B_tilde, f = (Lambda_bar - 1) / Lambda.
               Tensor gLr = Tensor::empty(d->Lr.shape()), gLi = Tensor::empty(d->Li.shape()),
                      gB = Tensor::empty(d->B.shape()), gls = Tensor::empty(d->log_step.shape());
               for (int64_t p = 0; p < P2; p++) {
                   const size_t ps = size_t(p);
                   cd gf(0.0);
                   for (int64_t h = 0; h < H; h++) {
                       const cd gbb(gWB[size_t(p * H + h)], gWB[size_t((P2 + p) * H + h)]);
                       const cd gbt = std::conj(d->f[ps]) * gbb;
                       gB.data()[(p * H + h) * 2] = float(gbt.real());
                       gB.data()[(p * H + h) * 2 + 1] = float(gbt.imag());
                       gf += std::conj(d->b_tilde(p, h)) * gbb;
                   }
                   const cd lam = d->lam[ps], ab = d->abar[ps];
                   const double dt = d->dt[ps];
                   // Lambda_bar = exp(Lambda dt); f = dt phi(Lambda dt), df/dLambda = dt^2 phi'(Lambda dt),
                   // df/ddt = Lambda_bar.
                   const cd g_lam = std::conj(dt * ab) * g_abar[ps] + std::conj(dt * dt * dphi1(lam * dt)) * gf;
                   const double g_dt = (std::conj(lam * ab) * g_abar[ps]).real() + (std::conj(ab) * gf).real();
                   gLr.data()[p] = d->clipped[ps] ? 0.0f : float(g_lam.real());
                   gLi.data()[p] = float(g_lam.imag());
                   gls.data()[p] = float(g_dt * dt);  // dt = step_rescale exp(log_step)
               }
               // C: WC = [2 Re C_tilde, -2 Im C_tilde].
               Tensor gC = Tensor::empty(d->C.shape()), gC2 = d->C2.defined() ? Tensor::empty(d->C2.shape()) : Tensor();
               for (int dir = 0; dir < d->ndir; dir++)
                   for (int64_t h = 0; h < H; h++)
                       for (int64_t p = 0; p < P2; p++) {
                           const float* row = gWC.data() + (dir * H + h) * W;
                           float* o = dir == 0 ? gC.data() + (h * d->Cw + p) * 2
                                      : gC2.defined() ? gC2.data() + (h * P2 + p) * 2
                                                      : gC.data() + (h * d->Cw + P2 + p) * 2;
                           o[0] = 2.0f * row[p];
                           o[1] = -2.0f * row[P2 + p];
                       }
               return std::vector<Tensor>{gu, gLr, gLi, gB, gC, gC2, gD, gls, gx0};
           });
    return y;
}

}  // namespace hippo
