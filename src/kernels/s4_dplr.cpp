#include "kernels/s4_dplr.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "common/check.h"

namespace hippo {

using cd = std::complex<double>;
using cf = std::complex<float>;

namespace {

// ---- small helpers ------------------------------------------------------------------------------

inline size_t sz(int64_t n) { return size_t(n); }

// Complex products spelled out: std::complex's operator* goes through a NaN/inf check (C99 Annex
// G) that costs a branch and blocks vectorisation in the hot loops.
inline cd cmul(cd a, cd b) {
    return {a.real() * b.real() - a.imag() * b.imag(), a.real() * b.imag() + a.imag() * b.real()};
}
inline cd cmulc(cd a, cd b) {  // a * conj(b)
    return {a.real() * b.real() + a.imag() * b.imag(), a.imag() * b.real() - a.real() * b.imag()};
}
inline cd cinv(cd a) {  // 1 / a (no library call: |a| is far from over- and underflow here)
    const double d = 1.0 / (a.real() * a.real() + a.imag() * a.imag());
    return {a.real() * d, -a.imag() * d};
}

// Below this much work (multiply-adds) a parallel region costs more than it saves, and on a loaded
// machine a descheduled worker stalls the barrier for a scheduler tick.
constexpr int64_t kParallelWork = int64_t(1) << 18;

// One feature's continuous parameters in double: dt, lambda, B, P (N2 each), from either
// precision of the official layout.
struct HeadParams {
    double dt = 0;
    std::vector<cd> lam, B, P;
};

template <class T>
void read_head(HeadParams& hp, const T* inv_dt, const T* A_real, const T* A_imag, const T* B, const T* P, int64_t S,
               int64_t N2, int64_t h) {
    const int64_t s = h % S;  // the official repeat '(v t)': copy s serves features s, s + S, ...
    hp.dt = std::exp(double(inv_dt[h]));
    hp.lam.resize(size_t(N2));
    hp.B.resize(size_t(N2));
    hp.P.resize(size_t(N2));
    for (int64_t n = 0; n < N2; n++) {
        const int64_t i = s * N2 + n;
        hp.lam[size_t(n)] = {-std::exp(double(A_real[i])), -double(A_imag[i])};
        hp.B[size_t(n)] = {double(B[2 * i]), double(B[2 * i + 1])};
        hp.P[size_t(n)] = {double(P[2 * i]), double(P[2 * i + 1])};
    }
}

// ---- dense complex linear algebra (oracle, C~ set-up, C recovery) ---------------------------------

// Solves A X = Bm in place (A: n x n row-major, destroyed; Bm: n x nrhs row-major, overwritten by
// X) by Gaussian elimination with partial pivoting.
void lu_solve(std::vector<cd>& A, cd* Bm, int64_t n, int64_t nrhs) {
    for (int64_t k = 0; k < n; k++) {
        int64_t piv = k;
        double best = std::abs(A[size_t(k * n + k)]);
        for (int64_t i = k + 1; i < n; i++) {
            const double v = std::abs(A[size_t(i * n + k)]);
            if (v > best) best = v, piv = i;
        }
        HIPPO_ASSERT(best > 0, "singular matrix in the S4 dense solve");
        if (piv != k) {
            for (int64_t j = 0; j < n; j++) std::swap(A[size_t(k * n + j)], A[size_t(piv * n + j)]);
            for (int64_t j = 0; j < nrhs; j++) std::swap(Bm[k * nrhs + j], Bm[piv * nrhs + j]);
        }
        const cd inv = 1.0 / A[size_t(k * n + k)];
        for (int64_t i = k + 1; i < n; i++) {
            const cd f = cmul(A[size_t(i * n + k)], inv);
            if (f == 0.0) continue;
            for (int64_t j = k; j < n; j++) A[size_t(i * n + j)] -= cmul(f, A[size_t(k * n + j)]);
            for (int64_t j = 0; j < nrhs; j++) Bm[i * nrhs + j] -= cmul(f, Bm[k * nrhs + j]);
        }
    }
    for (int64_t k = n - 1; k >= 0; k--) {
        const cd inv = 1.0 / A[size_t(k * n + k)];
        for (int64_t j = 0; j < nrhs; j++) {
            cd acc = Bm[k * nrhs + j];
            for (int64_t i = k + 1; i < n; i++) acc -= cmul(A[size_t(k * n + i)], Bm[i * nrhs + j]);
            Bm[k * nrhs + j] = cmul(acc, inv);
        }
    }
}

// Cm = Am Bm, all n x n row-major; Cm must not alias. Bm's rows and the output row are split into
// re / im arrays so the j loop vectorises, and four rows of Bm go in per pass over the output row
// (one load and store of it per four complex multiply-adds).
void matmul(cd* Cm, const cd* Am, const cd* Bm, int64_t n) {
    std::vector<double> br(sz(n * n)), bi(sz(n * n)), cr(sz(n)),
        ci(sz(n));
    for (int64_t i = 0; i < n * n; i++) br[size_t(i)] = Bm[i].real(), bi[size_t(i)] = Bm[i].imag();
    for (int64_t i = 0; i < n; i++) {
        std::fill(cr.begin(), cr.end(), 0.0);
        std::fill(ci.begin(), ci.end(), 0.0);
        double* o_r = cr.data();
        double* o_i = ci.data();
        int64_t k = 0;
        for (; k + 4 <= n; k += 4) {
            const cd* a = Am + i * n + k;
            const double a0r = a[0].real(), a0i = a[0].imag(), a1r = a[1].real(), a1i = a[1].imag();
            const double a2r = a[2].real(), a2i = a[2].imag(), a3r = a[3].real(), a3i = a[3].imag();
            const double *r0 = br.data() + k * n, *r1 = r0 + n, *r2 = r1 + n, *r3 = r2 + n;
            const double *i0 = bi.data() + k * n, *i1 = i0 + n, *i2 = i1 + n, *i3 = i2 + n;
#pragma omp simd
            for (int64_t j = 0; j < n; j++) {
                o_r[j] += a0r * r0[j] - a0i * i0[j] + a1r * r1[j] - a1i * i1[j] + a2r * r2[j] - a2i * i2[j] +
                          a3r * r3[j] - a3i * i3[j];
                o_i[j] += a0r * i0[j] + a0i * r0[j] + a1r * i1[j] + a1i * r1[j] + a2r * i2[j] + a2i * r2[j] +
                          a3r * i3[j] + a3i * r3[j];
            }
        }
        for (; k < n; k++) {
            const double ar = Am[i * n + k].real(), ai = Am[i * n + k].imag();
            const double* rr = br.data() + k * n;
            const double* ri = bi.data() + k * n;
#pragma omp simd
            for (int64_t j = 0; j < n; j++) {
                o_r[j] += ar * rr[j] - ai * ri[j];
                o_i[j] += ar * ri[j] + ai * rr[j];
            }
        }
        for (int64_t j = 0; j < n; j++) Cm[i * n + j] = {cr[size_t(j)], ci[size_t(j)]};
    }
}

// Mp = M^e (e >= 0) by repeated squaring. n x n.
void matpow(std::vector<cd>& Mp, const std::vector<cd>& M, int64_t n, int64_t e) {
    std::vector<cd> base = M, tmp(sz(n * n));
    Mp.assign(size_t(n * n), cd(0.0));
    for (int64_t i = 0; i < n; i++) Mp[size_t(i * n + i)] = 1.0;
    bool first = true;
    while (e > 0) {
        if (e & 1) {
            if (first) {
                Mp = base;
                first = false;
            } else {
                matmul(tmp.data(), Mp.data(), base.data(), n);
                Mp.swap(tmp);
            }
        }
        e >>= 1;
        if (e > 0) {
            matmul(tmp.data(), base.data(), base.data(), n);
            base.swap(tmp);
        }
    }
}

// The bilinear discretisation of one feature's full system (N = 2 N2, see the header):
// dA = (I - dt A/2)^{-1} (I + dt A/2), dB = (I - dt A/2)^{-1} dt B_f, A = diag(lambda_f) - p p^*.
void dense_system(std::vector<cd>& dA, std::vector<cd>& dB, const HeadParams& hp, int64_t N2) {
    const int64_t N = 2 * N2;
    std::vector<cd> lf(sz(N)), pf(sz(N));
    dB.assign(size_t(N), cd(0.0));
    for (int64_t n = 0; n < N2; n++) {
        lf[size_t(n)] = hp.lam[size_t(n)];
        lf[size_t(n + N2)] = std::conj(hp.lam[size_t(n)]);
        pf[size_t(n)] = hp.P[size_t(n)];
        pf[size_t(n + N2)] = std::conj(hp.P[size_t(n)]);
        dB[size_t(n)] = hp.dt * hp.B[size_t(n)];
        dB[size_t(n + N2)] = hp.dt * std::conj(hp.B[size_t(n)]);
    }
    std::vector<cd> M1(sz(N * N));
    dA.assign(size_t(N * N), cd(0.0));
    const double h2 = 0.5 * hp.dt;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < N; j++) {
            cd a = -cmulc(pf[size_t(i)], pf[size_t(j)]);
            if (i == j) a += lf[size_t(i)];
            M1[size_t(i * N + j)] = (i == j ? 1.0 : 0.0) - h2 * a;
            dA[size_t(i * N + j)] = (i == j ? 1.0 : 0.0) + h2 * a;
        }
    std::vector<cd> M1b = M1;
    lu_solve(M1, dA.data(), N, N);
    lu_solve(M1b, dB.data(), N, 1);
}

// Full C_f (C rows of N) from C~ (first halves given) for length L: solves (I - dA^L)^T C_f^T =
// C~_f^T. L == 0: C_f = C~_f (nothing attuned yet).
void recover_C(std::vector<cd>& Cf, const std::vector<cd>& dA, const cd* Ct_half, int64_t C, int64_t N2, int64_t L) {
    const int64_t N = 2 * N2;
    // RHS as (N, C): column c is C~_f of channel c.
    std::vector<cd> rhs(sz(N * C));
    for (int64_t c = 0; c < C; c++)
        for (int64_t n = 0; n < N2; n++) {
            rhs[size_t(n * C + c)] = Ct_half[c * N2 + n];
            rhs[size_t((n + N2) * C + c)] = std::conj(Ct_half[c * N2 + n]);
        }
    if (L > 0) {
        std::vector<cd> AL;
        matpow(AL, dA, N, L);
        std::vector<cd> M(sz(N * N));
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < N; j++) M[size_t(i * N + j)] = (i == j ? 1.0 : 0.0) - AL[size_t(j * N + i)];
        lu_solve(M, rhs.data(), N, C);
    }
    Cf.assign(size_t(C * N), cd(0.0));
    for (int64_t c = 0; c < C; c++)
        for (int64_t n = 0; n < N; n++) Cf[size_t(c * N + n)] = rhs[size_t(n * C + c)];
}

// ---- double-precision DFT of any length -----------------------------------------------------------
// Radix-2 Stockham passes (self-sorting, each pass's twiddles contiguous, vectorised along the
// butterflies) for powers of two; Bluestein's chirp transform (a power-of-two circular convolution
// of length >= 2n - 1) otherwise. Split re / im arrays. Twiddles and chirps come from exact angles
// (the chirp's j^2 reduced mod 2n in integers), so the error stays at a few ulps times log n.
class Dft {
public:
    explicit Dft(int64_t n) : n_(n) {
        HIPPO_ASSERT(n >= 1 && n <= (int64_t(1) << 26));
        if ((n & (n - 1)) == 0) {
            m_ = n;
        } else {
            m_ = 1;
            while (m_ < 2 * n - 1) m_ <<= 1;
        }
        // pass with half-length h (h = 1, 2, 4, ...): exp(-i pi j / h) at [h + j], j < h
        twr_.assign(size_t(std::max<int64_t>(m_, 2)), 1.0);
        twi_.assign(twr_.size(), 0.0);
        for (int64_t h = 1; h < m_; h <<= 1)
            for (int64_t j = 0; j < h; j++) {
                const double a = -M_PI * double(j) / double(h);
                twr_[size_t(h + j)] = std::cos(a);
                twi_[size_t(h + j)] = std::sin(a);
            }
        if (m_ != n_) {
            cr_.resize(size_t(n_));
            ci_.resize(size_t(n_));
            for (int64_t j = 0; j < n_; j++) {
                const int64_t q = (j * j) % (2 * n_);
                const double a = -M_PI * double(q) / double(n_);
                cr_[size_t(j)] = std::cos(a);
                ci_[size_t(j)] = std::sin(a);
            }
            fr_.assign(size_t(m_), 0.0);
            fi_.assign(size_t(m_), 0.0);
            for (int64_t j = 0; j < n_; j++) {  // conj chirp at j and -j
                fr_[size_t(j)] = cr_[size_t(j)];
                fi_[size_t(j)] = -ci_[size_t(j)];
                if (j > 0) fr_[size_t(m_ - j)] = cr_[size_t(j)], fi_[size_t(m_ - j)] = -ci_[size_t(j)];
            }
            std::vector<double> scratch(sz(2 * m_));
            fft_pow2(fr_.data(), fi_.data(), scratch.data(), scratch.data() + m_);
            for (int64_t j = 0; j < m_; j++) fr_[size_t(j)] /= double(m_), fi_[size_t(j)] /= double(m_);
        }
    }
    int64_t size() const { return n_; }
    // Doubles of scratch per call.
    int64_t work_size() const { return m_ == n_ ? 2 * m_ : 4 * m_; }

    // In place: X[k] = sum_j x[j] exp(-2 pi i j k / n).
    void forward(double* re, double* im, double* work) const {
        if (m_ == n_) {
            fft_pow2(re, im, work, work + m_);
            return;
        }
        double* wr = work;
        double* wi = work + m_;
        double* sc = work + 2 * m_;
        for (int64_t j = 0; j < n_; j++) {
            wr[j] = re[j] * cr_[size_t(j)] - im[j] * ci_[size_t(j)];
            wi[j] = re[j] * ci_[size_t(j)] + im[j] * cr_[size_t(j)];
        }
        std::fill(wr + n_, wr + m_, 0.0);
        std::fill(wi + n_, wi + m_, 0.0);
        fft_pow2(wr, wi, sc, sc + m_);
        // times the filter, then the inverse transform as the forward one with re and im swapped
        for (int64_t j = 0; j < m_; j++) {
            const double r = wr[j] * fr_[size_t(j)] - wi[j] * fi_[size_t(j)];
            wi[j] = wr[j] * fi_[size_t(j)] + wi[j] * fr_[size_t(j)];
            wr[j] = r;
        }
        fft_pow2(wi, wr, sc + m_, sc);
        for (int64_t k = 0; k < n_; k++) {
            re[k] = wr[k] * cr_[size_t(k)] - wi[k] * ci_[size_t(k)];
            im[k] = wr[k] * ci_[size_t(k)] + wi[k] * cr_[size_t(k)];
        }
    }
    // In place, unnormalised: x[j] = sum_k X[k] exp(+2 pi i j k / n) (the forward transform with
    // re and im exchanged).
    void inverse(double* re, double* im, double* work) const { forward(im, re, work); }

private:
    // Stockham autosort (no bit reversal): pass (n, s) maps x to y with
    //   y[s 2p + q] = a + b,  y[s (2p + 1) + q] = (a - b) exp(-2 pi i p / n),
    //   a = x[s p + q],  b = x[s (p + n/2) + q],   p < n/2, q < s,
    // for n = m, m/2, ..., 2 and s = m / n, ping-ponging with the scratch (sr, si).
    void fft_pow2(double* re, double* im, double* sr, double* si) const {
        double *xr = re, *xi = im, *yr = sr, *yi = si;
        for (int64_t n = m_, s = 1; n > 1; n >>= 1, s <<= 1) {
            const int64_t h = n / 2;
            const double* tr = twr_.data() + h;  // exp(-i pi p / h)
            const double* ti = twi_.data() + h;
            if (s == 1) {
#pragma omp simd
                for (int64_t p = 0; p < h; p++) {
                    const double ar = xr[p], ai = xi[p], br = xr[p + h], bi = xi[p + h];
                    const double dr = ar - br, di = ai - bi;
                    yr[2 * p] = ar + br;
                    yi[2 * p] = ai + bi;
                    yr[2 * p + 1] = dr * tr[p] - di * ti[p];
                    yi[2 * p + 1] = dr * ti[p] + di * tr[p];
                }
            } else {
                for (int64_t p = 0; p < h; p++) {
                    const double wr = tr[p], wi = ti[p];
                    const double *axr = xr + s * p, *axi = xi + s * p, *bxr = xr + s * (p + h), *bxi = xi + s * (p + h);
                    double *y0r = yr + s * 2 * p, *y0i = yi + s * 2 * p, *y1r = y0r + s, *y1i = y0i + s;
#pragma omp simd
                    for (int64_t q = 0; q < s; q++) {
                        const double ar = axr[q], ai = axi[q], br = bxr[q], bi = bxi[q];
                        const double dr = ar - br, di = ai - bi;
                        y0r[q] = ar + br;
                        y0i[q] = ai + bi;
                        y1r[q] = dr * wr - di * wi;
                        y1i[q] = dr * wi + di * wr;
                    }
                }
            }
            std::swap(xr, yr);
            std::swap(xi, yi);
        }
        if (xr != re) {
            std::copy(xr, xr + m_, re);
            std::copy(xi, xi + m_, im);
        }
    }

    int64_t n_ = 0, m_ = 0;
    std::vector<double> twr_, twi_;                  // per-pass twiddles, see the constructor
    std::vector<double> cr_, ci_;                    // Bluestein: exp(-i pi j^2 / n), j < n
    std::vector<double> fr_, fi_;                    // Bluestein: DFT_m of the conjugate chirp, / m
};

}  // namespace

// ---- HiPPO-LegS NPLR ----------------------------------------------------------------------------

namespace {

// Eigendecomposition of the Hermitian -i S for a real skew-symmetric S (n x n row-major, destroyed):
// -i S = U diag(mu) U^*, mu ascending, U (n x n row-major, column j for mu[j]).
//  1. Householder reflections H = I - tau v v^T keep skew symmetry: H S H = S + v p^T - p v^T with
//     p = tau S v (v^T S v = 0), so S reduces to a skew tridiagonal T = Q^T S Q, T[k+1, k] = e_k.
//  2. With D = diag(i^k), D^* (-i T) D is the real symmetric tridiagonal J with zero diagonal and
//     off-diagonal -e_k; J = Z diag(mu) Z^T by implicit QL (the tql2 scheme of EISPACK).
//  3. U = Q D Z.
// All in real arithmetic, backward stable: O(n^3), about 0.1 s at n = 512.
void skew_hermitian_eig(std::vector<double>& S, std::vector<double>& mu, std::vector<cd>& U, int64_t n) {
    std::vector<double> Q(sz(n * n), 0.0), e(sz(n), 0.0);
    for (int64_t i = 0; i < n; i++) Q[size_t(i * n + i)] = 1.0;
    std::vector<double> v(sz(n)), p(sz(n));
    for (int64_t k = 0; k + 2 < n; k++) {
        const int64_t o = k + 1, m = n - o;  // the reflection acts on indices [o, n)
        double xn = 0;
        for (int64_t i = 0; i < m; i++) xn += S[size_t((o + i) * n + k)] * S[size_t((o + i) * n + k)];
        xn = std::sqrt(xn);
        const double x0 = S[size_t(o * n + k)];
        const double alpha = x0 > 0 ? -xn : xn;
        for (int64_t i = 0; i < m; i++) v[size_t(i)] = S[size_t((o + i) * n + k)];
        v[0] -= alpha;
        double vv = 0;
        for (int64_t i = 0; i < m; i++) vv += v[size_t(i)] * v[size_t(i)];
        e[size_t(k)] = vv > 0 ? alpha : x0;
        for (int64_t i = 0; i < m; i++) {
            S[size_t((o + i) * n + k)] = 0.0;
            S[size_t(k * n + o + i)] = 0.0;
        }
        if (vv == 0) continue;
        const double tau = 2.0 / vv;
        for (int64_t i = 0; i < m; i++) {
            const double* row = S.data() + (o + i) * n + o;
            double acc = 0;
            for (int64_t j = 0; j < m; j++) acc += row[j] * v[size_t(j)];
            p[size_t(i)] = tau * acc;
        }
        for (int64_t i = 0; i < m; i++) {
            double* row = S.data() + (o + i) * n + o;
            const double vi = v[size_t(i)], pi = p[size_t(i)];
            for (int64_t j = 0; j < m; j++) row[j] += vi * p[size_t(j)] - pi * v[size_t(j)];
        }
        for (int64_t r = 0; r < n; r++) {
            double* row = Q.data() + r * n + o;
            double acc = 0;
            for (int64_t j = 0; j < m; j++) acc += row[j] * v[size_t(j)];
            acc *= tau;
            for (int64_t j = 0; j < m; j++) row[j] -= acc * v[size_t(j)];
        }
    }
    if (n >= 2) e[size_t(n - 2)] = S[size_t((n - 1) * n + n - 2)];

    // Implicit QL on J: d the diagonal, f[i] the off-diagonal (i, i+1). Z column-major: Zc[j * n + k] = Z[k, j].
    std::vector<double> d(sz(n), 0.0), f(sz(n), 0.0), Zc(sz(n * n), 0.0);
    for (int64_t i = 0; i + 1 < n; i++) f[size_t(i)] = -e[size_t(i)];
    for (int64_t i = 0; i < n; i++) Zc[size_t(i * n + i)] = 1.0;
    const double eps = std::ldexp(1.0, -52);
    double shift_sum = 0, tst = 0;
    for (int64_t l = 0; l < n; l++) {
        tst = std::max(tst, std::fabs(d[size_t(l)]) + std::fabs(f[size_t(l)]));
        int64_t m = l;
        while (m < n && std::fabs(f[size_t(m)]) > eps * tst) m++;
        if (m == n) m = n - 1;
        if (m > l) {
            int iter = 0;
            do {
                HIPPO_ASSERT(++iter < 100, "implicit QL did not converge");
                double g = d[size_t(l)];
                double pp = (d[size_t(l + 1)] - g) / (2.0 * f[size_t(l)]);
                double r = std::hypot(pp, 1.0);
                if (pp < 0) r = -r;
                d[size_t(l)] = f[size_t(l)] / (pp + r);
                d[size_t(l + 1)] = f[size_t(l)] * (pp + r);
                const double dl1 = d[size_t(l + 1)];
                double h = g - d[size_t(l)];
                for (int64_t i = l + 2; i < n; i++) d[size_t(i)] -= h;
                shift_sum += h;
                pp = d[size_t(m)];
                double c = 1.0, c2 = 1.0, c3 = 1.0, s = 0.0, s2 = 0.0;
                const double el1 = f[size_t(l + 1)];
                for (int64_t i = m - 1; i >= l; i--) {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * f[size_t(i)];
                    h = c * pp;
                    r = std::hypot(pp, f[size_t(i)]);
                    f[size_t(i + 1)] = s * r;
                    s = f[size_t(i)] / r;
                    c = pp / r;
                    pp = c * d[size_t(i)] - s * g;
                    d[size_t(i + 1)] = h + s * (c * g + s * d[size_t(i)]);
                    double* z0 = Zc.data() + i * n;
                    double* z1 = Zc.data() + (i + 1) * n;
                    for (int64_t k = 0; k < n; k++) {
                        const double t1 = z1[k];
                        z1[k] = s * z0[k] + c * t1;
                        z0[k] = c * z0[k] - s * t1;
                    }
                }
                pp = -s * s2 * c3 * el1 * f[size_t(l)] / dl1;
                f[size_t(l)] = s * pp;
                d[size_t(l)] = c * pp;
            } while (std::fabs(f[size_t(l)]) > eps * tst);
        }
        d[size_t(l)] += shift_sum;
        f[size_t(l)] = 0.0;
    }

    std::vector<int64_t> order(sz(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return d[size_t(a)] < d[size_t(b)]; });
    mu.resize(size_t(n));
    U.assign(size_t(n * n), cd(0.0));
    for (int64_t j = 0; j < n; j++) {
        const int64_t col = order[size_t(j)];
        mu[size_t(j)] = d[size_t(col)];
        const double* z = Zc.data() + col * n;
        for (int64_t r = 0; r < n; r++) {
            const double* q = Q.data() + r * n;
            double re = 0, im = 0;  // sum_k Q[r, k] i^k Z[k, col]
            for (int64_t k = 0; k < n; k += 4) {
                re += q[k] * z[k];
                if (k + 1 < n) im += q[k + 1] * z[k + 1];
                if (k + 2 < n) re -= q[k + 2] * z[k + 2];
                if (k + 3 < n) im -= q[k + 3] * z[k + 3];
            }
            U[size_t(r * n + j)] = {re, im};
        }
    }
}

}  // namespace

void s4_legs_nplr(int64_t N, cd* Lambda, cd* P, cd* B, cd* V, double B_clip) {
    HIPPO_ASSERT(N >= 2 && N <= 512 && N % 2 == 0, "s4_legs_nplr: N = %lld", (long long)N);
    std::vector<double> A(sz(N * N), 0.0), Pv(sz(N)), Bv(sz(N));
    for (int64_t i = 0; i < N; i++) {
        Bv[size_t(i)] = std::sqrt(2.0 * double(i) + 1.0);
        Pv[size_t(i)] = std::sqrt(double(i) + 0.5);
        for (int64_t k = 0; k <= i; k++)
            A[size_t(i * N + k)] =
                i == k ? -(double(i) + 1.0) : -std::sqrt((2.0 * double(i) + 1.0) * (2.0 * double(k) + 1.0));
    }
    // AP = A + P P^T = -I/2 + skew. Like the official code, the real part of the eigenvalues is the
    // mean of AP's diagonal and the imaginary parts come from the Hermitian -i AP, of which only
    // the strict lower triangle is read (its diagonal would be imaginary: a Hermitian solver sees 0).
    std::vector<double> AP(sz(N * N));
    double re_mean = 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < N; k++) AP[size_t(i * N + k)] = A[size_t(i * N + k)] + Pv[size_t(i)] * Pv[size_t(k)];
    for (int64_t i = 0; i < N; i++) re_mean += AP[size_t(i * N + i)];
    re_mean /= double(N);
    std::vector<double> Sk(sz(N * N), 0.0), mu;
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < i; k++) {
            Sk[size_t(i * N + k)] = AP[size_t(i * N + k)];
            Sk[size_t(k * N + i)] = -AP[size_t(i * N + k)];
        }
    std::vector<cd> U;
    skew_hermitian_eig(Sk, mu, U, N);

    // Ascending mu: the first N/2 are the negative ones.
    const int64_t N2 = N / 2;
    for (int64_t j = 0; j < N2; j++) {
        const int64_t col = j;
        // Phase: V[0, j] real positive (the largest entry if the first one vanishes).
        int64_t ref = 0;
        double big = 0;
        for (int64_t i = 0; i < N; i++) big = std::max(big, std::abs(U[size_t(i * N + col)]));
        if (std::abs(U[size_t(col)]) < 1e-8 * big)
            for (int64_t i = 0; i < N; i++)
                if (std::abs(U[size_t(i * N + col)]) == big) {
                    ref = i;
                    break;
                }
        const cd r = U[size_t(ref * N + col)];
        const cd rot = std::conj(r) / std::abs(r);
        cd pt = 0.0, bt = 0.0;
        for (int64_t i = 0; i < N; i++) {
            const cd v = i == ref ? cd(std::abs(r)) : cmul(U[size_t(i * N + col)], rot);
            V[i * N2 + j] = v;
            pt += std::conj(v) * Pv[size_t(i)];
            bt += std::conj(v) * Bv[size_t(i)];
        }
        if (B_clip >= 0) bt.imag(std::clamp(bt.imag(), -B_clip, B_clip));
        Lambda[j] = {re_mean, mu[size_t(col)]};
        P[j] = pt;
        B[j] = bt;
    }
}

void s4_dplr_legs_init(float* A_real, float* A_imag, float* B, float* P, int64_t S, int64_t N2) {
    const int64_t N = 2 * N2;
    std::vector<cd> lam(sz(N2)), p(sz(N2)), b(sz(N2)), V(sz(N * N2));
    s4_legs_nplr(N, lam.data(), p.data(), b.data(), V.data(), 2.0);
    for (int64_t s = 0; s < S; s++)
        for (int64_t n = 0; n < N2; n++) {
            const int64_t i = s * N2 + n;
            // The official inv_transform clamps -Re and -Im at 1e-4 before the transform.
            A_real[i] = float(std::log(std::max(-lam[size_t(n)].real(), 1e-4)));
            A_imag[i] = float(std::max(-lam[size_t(n)].imag(), 1e-4));
            B[2 * i] = float(b[size_t(n)].real());
            B[2 * i + 1] = float(b[size_t(n)].imag());
            P[2 * i] = float(p[size_t(n)].real());
            P[2 * i + 1] = float(p[size_t(n)].imag());
        }
}

// ---- C~ set-up and the dense oracle ---------------------------------------------------------------

void s4_dplr_setup_C(float* Ct, const float* Cin, const float* inv_dt, const float* A_real, const float* A_imag,
                     const float* B, const float* P, int64_t C, int64_t H, int64_t S, int64_t N2, int64_t L,
                     bool double_length) {
    HIPPO_ASSERT(C >= 1 && H >= 1 && S >= 1 && H % S == 0 && N2 >= 1 && L >= 1);
    const int64_t N = 2 * N2;
#pragma omp parallel if (H > 1 && H * N * N * N >= kParallelWork)
    {
        HeadParams hp;
        std::vector<cd> dA, dB, AL, cf(sz(N));
#pragma omp for schedule(dynamic, 1)
        for (int64_t h = 0; h < H; h++) {
            read_head(hp, inv_dt, A_real, A_imag, B, P, S, N2, h);
            dense_system(dA, dB, hp, N2);
            matpow(AL, dA, N, L);
            for (int64_t c = 0; c < C; c++) {
                const float* ci = Cin + (c * H + h) * N2 * 2;
                for (int64_t n = 0; n < N2; n++) {
                    cf[size_t(n)] = {ci[2 * n], ci[2 * n + 1]};
                    cf[size_t(n + N2)] = std::conj(cf[size_t(n)]);
                }
                float* co = Ct + (c * H + h) * N2 * 2;
                // Only the first half is kept: the second is its conjugate.
                for (int64_t j = 0; j < N2; j++) {
                    cd prod = 0.0;
                    for (int64_t i = 0; i < N; i++) prod += cmul(cf[size_t(i)], AL[size_t(i * N + j)]);
                    const cd r = double_length ? cf[size_t(j)] + prod : cf[size_t(j)] - prod;
                    co[2 * j] = float(r.real());
                    co[2 * j + 1] = float(r.imag());
                }
            }
        }
    }
}

void s4_dplr_kernel_ref(double* K, const double* inv_dt, const double* A_real, const double* A_imag, const double* B,
                        const double* P, const double* Ct, int64_t C, int64_t H, int64_t S, int64_t N2, int64_t L) {
    HIPPO_ASSERT(C >= 1 && H >= 1 && S >= 1 && H % S == 0 && N2 >= 1 && L >= 1);
    const int64_t N = 2 * N2;
    for (int64_t h = 0; h < H; h++) {
        HeadParams hp;
        read_head(hp, inv_dt, A_real, A_imag, B, P, S, N2, h);
        std::vector<cd> dA, dB, Cf, cth(sz(C * N2));
        dense_system(dA, dB, hp, N2);
        for (int64_t c = 0; c < C; c++)
            for (int64_t n = 0; n < N2; n++) {
                const double* ci = Ct + ((c * H + h) * N2 + n) * 2;
                cth[size_t(c * N2 + n)] = {ci[0], ci[1]};
            }
        recover_C(Cf, dA, cth.data(), C, N2, L);
        std::vector<cd> x = dB, y(sz(N));
        for (int64_t l = 0; l < L; l++) {
            for (int64_t c = 0; c < C; c++) {
                cd acc = 0.0;
                for (int64_t i = 0; i < N; i++) acc += cmul(Cf[size_t(c * N + i)], x[size_t(i)]);
                K[(c * H + h) * L + l] = acc.real();
            }
            for (int64_t i = 0; i < N; i++) {
                cd acc = 0.0;
                for (int64_t j = 0; j < N; j++) acc += cmul(dA[size_t(i * N + j)], x[size_t(j)]);
                y[size_t(i)] = acc;
            }
            x.swap(y);
        }
    }
}

// ---- fast kernel: Cauchy sums at the roots of unity -------------------------------------------

namespace {

// Four doubles of nodes per vector (GCC/Clang vector extension: AVX2 registers with -march=native,
// pairs of SSE registers otherwise).
typedef double v4d __attribute__((vector_size(32)));
inline v4d ld4(const double* p) {
    v4d v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline void st4(double* p, v4d v) { std::memcpy(p, &v, sizeof v); }
inline v4d bc4(double a) { return v4d{a, a, a, a}; }
inline double hsum(v4d v) { return (v[0] + v[1]) + (v[2] + v[3]); }

// Note [Cauchy sums]. Work in units scaled by dt: poles w_n = dt lambda_n, nodes z_k = i s_k with
// s_k = 2 tan(pi k / L), weights v_n = dt a_n b_n. A conjugate pair of poles is summed as one
// fraction,
//   v/(z - w) + conj(v)/(z - conj w) = (alpha + i s beta) / D,
//   alpha = -2 Re(v conj w),  beta = 2 Re v,  D = (z - w)(z - conj w) = (|w|^2 - s^2) - 2 i Re(w) s,
// so one real division per (node, mode) serves every sum, and each sum costs four FMAs. D != 0:
// Re w < 0 makes Im D vanish only at s = 0, where Re D = |w|^2 > 0.
// The sums of one feature are indexed X = 0: P*B, 1: P*P, 2 + 2c: C~_c B, 3 + 2c: C~_c P.
constexpr int kGroup = 4;  // sums per pass over the modes (8 accumulators in registers)

struct Nodes {
    int64_t L = 0, Kc = 0, Kp = 0;  // Kc Cauchy nodes k < Kc (k = L/2 excluded), Kp = Kc rounded to 4
    bool nyquist = false;           // even L: node k = L/2 (w = -1) taken in closed form
    std::vector<double> s, t;       // (Kp): s = 2 tan(pi k / L), t = tan(pi k / L); 0 past Kc
    explicit Nodes(int64_t len) : L(len) {
        nyquist = L % 2 == 0;
        Kc = (L + 1) / 2;
        Kp = (Kc + 3) / 4 * 4;
        s.assign(size_t(Kp), 0.0);
        t.assign(size_t(Kp), 0.0);
        for (int64_t k = 0; k < Kc; k++) {
            // past pi/4 as 1 / tan(pi (L - 2k) / 2L): the small argument keeps full relative accuracy
            // where tan is steep (t ~ 2L / pi next to k = L/2)
            t[size_t(k)] = 4 * k <= L ? std::tan(M_PI * double(k) / double(L))
                                      : 1.0 / std::tan(M_PI * double(L - 2 * k) / (2.0 * double(L)));
            s[size_t(k)] = 2.0 * t[size_t(k)];
        }
    }
};

// Per-feature tables in the scaled units of Note [Cauchy sums].
struct FeatureTables {
    int64_t N2 = 0, NX = 0, NXp = 0;
    HeadParams hp;
    std::vector<cd> w;               // (N2) dt lambda
    std::vector<cd> v;               // (NX, N2) dt a b per sum
    std::vector<double> abs2, re2;   // (N2) |w|^2, 2 Re w
    std::vector<double> alpha, beta; // (NXp, N2), zero for padding sums
    std::vector<cd> ct;              // (C, N2) C~ of this feature

    void build(const float* inv_dt, const float* A_real, const float* A_imag, const float* B, const float* P,
               const float* Ct, int64_t C, int64_t H, int64_t S, int64_t n2, int64_t h) {
        N2 = n2;
        NX = 2 * C + 2;
        NXp = (NX + kGroup - 1) / kGroup * kGroup;
        read_head(hp, inv_dt, A_real, A_imag, B, P, S, N2, h);
        const double dt = hp.dt;
        w.resize(size_t(N2));
        abs2.resize(size_t(N2));
        re2.resize(size_t(N2));
        v.resize(size_t(NX * N2));
        alpha.assign(size_t(NXp * N2), 0.0);
        beta.assign(size_t(NXp * N2), 0.0);
        ct.resize(size_t(C * N2));
        for (int64_t c = 0; c < C; c++)
            for (int64_t n = 0; n < N2; n++) {
                const float* ci = Ct + ((c * H + h) * N2 + n) * 2;
                ct[size_t(c * N2 + n)] = {ci[0], ci[1]};
            }
        for (int64_t n = 0; n < N2; n++) {
            const cd wn = dt * hp.lam[size_t(n)];
            w[size_t(n)] = wn;
            abs2[size_t(n)] = std::norm(wn);
            re2[size_t(n)] = 2.0 * wn.real();
            const cd b = hp.B[size_t(n)], p = hp.P[size_t(n)];
            v[size_t(0 * N2 + n)] = dt * cmulc(b, p);          // conj(P) B
            v[size_t(1 * N2 + n)] = dt * std::norm(p);        // |P|^2
            for (int64_t c = 0; c < C; c++) {
                v[size_t((2 + 2 * c) * N2 + n)] = dt * cmul(ct[size_t(c * N2 + n)], b);
                v[size_t((3 + 2 * c) * N2 + n)] = dt * cmul(ct[size_t(c * N2 + n)], p);
            }
            for (int64_t x = 0; x < NX; x++) {
                const cd vx = v[size_t(x * N2 + n)];
                alpha[size_t(x * N2 + n)] = -2.0 * (vx.real() * wn.real() + vx.imag() * wn.imag());
                beta[size_t(x * N2 + n)] = 2.0 * vx.real();
            }
        }
    }
};

// r[X][k] for every sum X and node k < Kp: rre, rim (NXp, Kp).
// Modes go in pairs sharing one division (1/d0 = d1/(d0 d1), 1/d1 = d0/(d0 d1); d = |D|^2 lies in
// [|w|^4, (s + |w|)^4], so with |w| and s within 1e-10 .. 1e9 the product stays inside 1e-80 ..
// 1e72). Each sum is four FMAs per (node, mode), the basis about five operations.
void cauchy_sums(double* rre, double* rim, const FeatureTables& ft, const Nodes& nd) {
    const int64_t N2 = ft.N2, Kp = nd.Kp;
    const double* abs2 = ft.abs2.data();
    const double* re2 = ft.re2.data();
    for (int64_t g = 0; g < ft.NXp; g += kGroup) {
        const double* al = ft.alpha.data() + g * N2;
        const double* be = ft.beta.data() + g * N2;
        for (int64_t k0 = 0; k0 < Kp; k0 += 4) {
            const v4d s = ld4(nd.s.data() + k0), s2 = s * s;
            v4d ar[kGroup], ai[kGroup];
            for (int x = 0; x < kGroup; x++) ar[x] = ai[x] = bc4(0.0);
            auto accumulate = [&](int64_t n, v4d dr, v4d di, v4d inv) {
                const v4d xr = dr * inv, xi = di * inv;
                const v4d sxr = s * xr, sxi = s * xi;
                for (int x = 0; x < kGroup; x++) {
                    const v4d a = bc4(al[x * N2 + n]), b = bc4(be[x * N2 + n]);
                    ar[x] += a * xr;
                    ar[x] -= b * sxi;
                    ai[x] += a * xi;
                    ai[x] += b * sxr;
                }
            };
            int64_t n = 0;
            for (; n + 1 < N2; n += 2) {
                const v4d dr0 = bc4(abs2[n]) - s2, di0 = bc4(re2[n]) * s;
                const v4d dr1 = bc4(abs2[n + 1]) - s2, di1 = bc4(re2[n + 1]) * s;
                const v4d d0 = dr0 * dr0 + di0 * di0, d1 = dr1 * dr1 + di1 * di1;
                const v4d inv = bc4(1.0) / (d0 * d1);
                accumulate(n, dr0, di0, d1 * inv);
                accumulate(n + 1, dr1, di1, d0 * inv);
            }
            if (n < N2) {
                const v4d dr = bc4(abs2[n]) - s2, di = bc4(re2[n]) * s;
                accumulate(n, dr, di, bc4(1.0) / (dr * dr + di * di));
            }
            for (int x = 0; x < kGroup; x++) {
                st4(rre + (g + x) * Kp + k0, ar[x]);
                st4(rim + (g + x) * Kp + k0, ai[x]);
            }
        }
    }
}

// The spectrum of channel c at the Cauchy nodes: (1 + i t) [r_CB - r_CP r_QB / (1 + r_QP)], plus the
// node w = -1. spec: (L/2 + 1).
void channel_spectrum(cd* spec, const double* rre, const double* rim, const FeatureTables& ft, const Nodes& nd,
                      int64_t c) {
    const int64_t Kp = nd.Kp;
    const double *qbr = rre, *qbi = rim, *qpr = rre + Kp, *qpi = rim + Kp;
    const double *cbr = rre + (2 + 2 * c) * Kp, *cbi = rim + (2 + 2 * c) * Kp;
    const double *cpr = rre + (3 + 2 * c) * Kp, *cpi = rim + (3 + 2 * c) * Kp;
    for (int64_t k = 0; k < nd.Kc; k++) {
        const cd qb(qbr[k], qbi[k]), den(1.0 + qpr[k], qpi[k]), cb(cbr[k], cbi[k]), cp(cpr[k], cpi[k]);
        const cd kf = cb - cmul(cmul(cp, qb), cinv(den));
        spec[k] = cmul(cd(1.0, nd.t[size_t(k)]), kf);
    }
    spec[0].imag(0.0);  // exactly real in exact arithmetic (z = 0 pairs conjugate terms)
    if (nd.nyquist) {
        double acc = 0;
        for (int64_t n = 0; n < ft.N2; n++) acc += cmul(ft.ct[size_t(c * ft.N2 + n)], ft.hp.B[size_t(n)]).real();
        spec[nd.L / 2] = ft.hp.dt * acc;
    }
}

// Two real sequences from their half spectra (L/2 + 1 each; the imaginary parts of bins 0 and L/2
// are ignored, as irfft does) in one complex inverse DFT of y1 + i y2. x1, x2: the first len
// outputs, divided by L. X2 / x2 may be null. br, bi: L doubles each; work: dft.work_size().
void irfft_pair(double* x1, double* x2, const cd* X1, const cd* X2, int64_t len, const Dft& dft, double* br,
                double* bi, double* work) {
    const int64_t L = dft.size(), half = L / 2;
    for (int64_t k = 0; k <= half; k++) {
        cd y1 = X1[k], y2 = X2 ? X2[k] : cd(0.0);
        if (k == 0 || 2 * k == L) y1.imag(0.0), y2.imag(0.0);
        br[k] = y1.real() - y2.imag();
        bi[k] = y1.imag() + y2.real();
        if (k > 0 && 2 * k != L) {  // bin L - k: conj y1 + i conj y2
            br[L - k] = y1.real() + y2.imag();
            bi[L - k] = -y1.imag() + y2.real();
        }
    }
    dft.inverse(br, bi, work);
    const double inv = 1.0 / double(L);
    for (int64_t j = 0; j < len; j++) {
        x1[j] = br[j] * inv;
        if (x2) x2[j] = bi[j] * inv;
    }
}

// Half spectra (L/2 + 1) of two real sequences g1, g2 of len <= L samples (zero beyond) in one
// complex DFT. g2 / X2 may be null.
void rfft_pair(cd* X1, cd* X2, const float* g1, const float* g2, int64_t len, const Dft& dft, double* br, double* bi,
               double* work) {
    const int64_t L = dft.size(), half = L / 2;
    for (int64_t j = 0; j < len; j++) br[j] = double(g1[j]), bi[j] = g2 ? double(g2[j]) : 0.0;
    std::fill(br + len, br + L, 0.0);
    std::fill(bi + len, bi + L, 0.0);
    dft.forward(br, bi, work);
    for (int64_t k = 0; k <= half; k++) {
        const int64_t q = (L - k) % L;
        const cd z(br[k], bi[k]), zc(br[q], -bi[q]);
        X1[k] = 0.5 * (z + zc);
        if (X2) X2[k] = cd(0.0, -0.5) * (z - zc);
    }
}

}  // namespace

void s4_dplr_kernel_forward(float* K, const float* inv_dt, const float* A_real, const float* A_imag, const float* B,
                            const float* P, const float* Ct, int64_t C, int64_t H, int64_t S, int64_t N2, int64_t L,
                            int64_t L_out) {
    if (L_out < 0) L_out = L;
    HIPPO_ASSERT(C >= 1 && H >= 1 && S >= 1 && H % S == 0 && N2 >= 1 && L >= 1 && L_out <= L);
    const Nodes nd(L);
    const Dft dft(L);
    const int64_t half = L / 2, NXp = (2 * C + 2 + kGroup - 1) / kGroup * kGroup;
    // Features go in pairs so that two real kernels share one complex inverse DFT.
    const int64_t pairs = (H + 1) / 2;
#pragma omp parallel if (pairs > 1 && H * N2 * L * (C + 1) >= kParallelWork)
    {
        FeatureTables ft[2];
        std::vector<double> rre(sz(NXp * nd.Kp)), rim(sz(NXp * nd.Kp)), out(sz(2 * L_out));
        std::vector<cd> spec(sz(2 * C * (half + 1)));
        std::vector<double> br(sz(L)), bi(sz(L)), work(sz(dft.work_size()));
#pragma omp for schedule(static)
        for (int64_t pr = 0; pr < pairs; pr++) {
            const int64_t h0 = 2 * pr, nh = std::min<int64_t>(2, H - h0);
            for (int64_t j = 0; j < nh; j++) {
                FeatureTables& f = ft[j];
                f.build(inv_dt, A_real, A_imag, B, P, Ct, C, H, S, N2, h0 + j);
                cauchy_sums(rre.data(), rim.data(), f, nd);
                for (int64_t c = 0; c < C; c++)
                    channel_spectrum(spec.data() + (j * C + c) * (half + 1), rre.data(), rim.data(), f, nd, c);
            }
            // spectra (j, c) in order; rows of K: (c, h0 + j)
            const int64_t ns = nh * C;
            for (int64_t a = 0; a < ns; a += 2) {
                const bool two = a + 1 < ns;
                irfft_pair(out.data(), two ? out.data() + L_out : nullptr, spec.data() + a * (half + 1),
                           two ? spec.data() + (a + 1) * (half + 1) : nullptr, L_out, dft, br.data(), bi.data(),
                           work.data());
                for (int64_t q = 0; q < (two ? 2 : 1); q++) {
                    const int64_t j = (a + q) / C, c = (a + q) % C;
                    float* row = K + (c * H + h0 + j) * L_out;
                    for (int64_t l = 0; l < L_out; l++) row[l] = float(out[size_t(q * L_out + l)]);
                }
            }
        }
    }
}

// ---- backward -------------------------------------------------------------------------------------

namespace {

// Note [Cauchy adjoints]. The loss is sum_l dK_l K_l = (1/L) sum_k m_k Re(K^_k conj G_k) with G the
// DFT of dK and m_k = 1 at k = 0 and k = L/2, 2 elsewhere (bins k and L - k). Adjoints of complex
// quantities are dl/dRe + i dl/dIm; through a holomorphic u = f(z) the adjoint of z is
// conj(f'(z)) times that of u. For one sum r(k) = sum_n v/(z_k - w) + conj(v)/(z_k - conj w) with
// node adjoint rho_k = a_k + i b_k, and E_k = 1/(z_k^2 - w^2) (z_k = i s_k):
//   adj v = 2 conj(w U1 + U2),   adj w = conj(v (4 w^2 U3 + 2 U1 + 4 w U4)),
//   U1 = sum_k a_k E_k,  U2 = sum_k b_k s_k E_k,  U3 = sum_k a_k E_k^2,  U4 = sum_k b_k s_k E_k^2,
// from 1/(z - w) - 1/(z + w) = 2 w E and 1/(z - w) + 1/(z + w) = 2 z E. E is one complex
// division per (node, mode), shared by every sum.
constexpr int64_t kNodeBlock = 256;  // nodes per block: the basis and weights stay in L1

// U[(n * NX + X) * 4 + j], j = U1..U4, for every mode n and sum X. wa, wb: (NX, Kp) node weights
// a_k and b_k s_k (zero past Kc).
void cauchy_adjoint_sums(cd* U, const double* wa, const double* wb, const FeatureTables& ft, const Nodes& nd,
                         int64_t NX, double* basis /* 4 * kNodeBlock */, v4d* acc /* N2 * NX * 8 */) {
    const int64_t N2 = ft.N2, Kp = nd.Kp;
    for (int64_t i = 0; i < N2 * NX * 8; i++) acc[i] = bc4(0.0);
    double* er = basis;
    double* ei = basis + kNodeBlock;
    double* fr = basis + 2 * kNodeBlock;
    double* fi = basis + 3 * kNodeBlock;
    for (int64_t k0 = 0; k0 < Kp; k0 += kNodeBlock) {
        const int64_t nb = std::min(kNodeBlock, Kp - k0);
        for (int64_t n = 0; n < N2; n++) {
            const cd wn = ft.w[size_t(n)];
            const double c0 = wn.real() * wn.real() - wn.imag() * wn.imag(), ci = 2.0 * wn.real() * wn.imag();
            // E = -1/(s^2 + w^2) = -1/(cr + i ci), cr = s^2 + Re w^2 (never 0 together with ci, see
            // Note [Cauchy sums]).
            for (int64_t j = 0; j < nb; j += 4) {
                const v4d s = ld4(nd.s.data() + k0 + j);
                const v4d cr = s * s + bc4(c0);
                const v4d inv = bc4(1.0) / (cr * cr + bc4(ci * ci));
                const v4d r = -cr * inv, im = bc4(ci) * inv;
                st4(er + j, r);
                st4(ei + j, im);
                st4(fr + j, r * r - im * im);
                st4(fi + j, 2.0 * r * im);
            }
            for (int64_t x = 0; x < NX; x++) {
                v4d* A = acc + (n * NX + x) * 8;
                v4d u1r = A[0], u1i = A[1], u2r = A[2], u2i = A[3], u3r = A[4], u3i = A[5], u4r = A[6], u4i = A[7];
                const double* a = wa + x * Kp + k0;
                const double* b = wb + x * Kp + k0;
                for (int64_t j = 0; j < nb; j += 4) {
                    const v4d av = ld4(a + j), bv = ld4(b + j);
                    const v4d e_r = ld4(er + j), e_i = ld4(ei + j), f_r = ld4(fr + j), f_i = ld4(fi + j);
                    u1r += av * e_r;
                    u1i += av * e_i;
                    u2r += bv * e_r;
                    u2i += bv * e_i;
                    u3r += av * f_r;
                    u3i += av * f_i;
                    u4r += bv * f_r;
                    u4i += bv * f_i;
                }
                A[0] = u1r, A[1] = u1i, A[2] = u2r, A[3] = u2i, A[4] = u3r, A[5] = u3i, A[6] = u4r, A[7] = u4i;
            }
        }
    }
    for (int64_t i = 0; i < N2 * NX * 4; i++) U[i] = {hsum(acc[2 * i]), hsum(acc[2 * i + 1])};
}

}  // namespace

void s4_dplr_kernel_backward(float* d_inv_dt, float* d_A_real, float* d_A_imag, float* dB, float* dP, float* dCt,
                             const float* dK, const float* inv_dt, const float* A_real, const float* A_imag,
                             const float* B, const float* P, const float* Ct, int64_t C, int64_t H, int64_t S,
                             int64_t N2, int64_t L, int64_t L_out) {
    if (L_out < 0) L_out = L;
    HIPPO_ASSERT(C >= 1 && H >= 1 && S >= 1 && H % S == 0 && N2 >= 1 && L >= 1 && L_out <= L);
    const Nodes nd(L);
    const Dft dft(L);
    const int64_t half = L / 2, NX = 2 * C + 2, NXp = (NX + kGroup - 1) / kGroup * kGroup, Kp = nd.Kp;
    // Per-feature gradients of the shared (S, N2) parameters, summed over features afterwards.
    std::vector<cd> g_lam(sz(H * N2)), g_B(sz(H * N2)), g_P(sz(H * N2));
    const int64_t pairs = (H + 1) / 2;
#pragma omp parallel if (pairs > 1 && H * N2 * L * (C + 1) >= kParallelWork)
    {
        FeatureTables ft;
        std::vector<double> rre(sz(NXp * Kp)), rim(sz(NXp * Kp)), wa(sz(NX * Kp)), wb(sz(NX * Kp));
        std::vector<double> basis(sz(4 * kNodeBlock));
        std::vector<v4d> acc(sz(N2 * NX * 8));
        std::vector<cd> G(sz(2 * C * (half + 1)));
        std::vector<double> br(sz(L)), bi(sz(L)), work(sz(dft.work_size()));
        std::vector<cd> U(sz(N2 * NX * 4)), gv(sz(NX));
#pragma omp for schedule(static)
        for (int64_t pr = 0; pr < pairs; pr++) {
            const int64_t h0 = 2 * pr, nh = std::min<int64_t>(2, H - h0), ns = nh * C;
            // G for the rows (c, h0 + j), spectrum index j * C + c
            for (int64_t a = 0; a < ns; a += 2) {
                const bool two = a + 1 < ns;
                const int64_t j0 = a / C, c0 = a % C, j1 = (a + 1) / C, c1 = (a + 1) % C;
                rfft_pair(G.data() + a * (half + 1), two ? G.data() + (a + 1) * (half + 1) : nullptr,
                          dK + (c0 * H + h0 + j0) * L_out, two ? dK + (c1 * H + h0 + j1) * L_out : nullptr, L_out,
                          dft, br.data(), bi.data(), work.data());
            }
            for (int64_t j = 0; j < nh; j++) {
                const int64_t h = h0 + j;
                ft.build(inv_dt, A_real, A_imag, B, P, Ct, C, H, S, N2, h);
                const double dt = ft.hp.dt;
                cauchy_sums(rre.data(), rim.data(), ft, nd);
                // Node weights: adjoints of the sums, Note [Cauchy adjoints].
                std::fill(wa.begin(), wa.end(), 0.0);
                std::fill(wb.begin(), wb.end(), 0.0);
                for (int64_t k = 0; k < nd.Kc; k++) {
                    const double mk = (k == 0 ? 1.0 : 2.0) / double(L);
                    const cd qb(rre[size_t(k)], rim[size_t(k)]);
                    const cd den = cd(1.0 + rre[size_t(Kp + k)], rim[size_t(Kp + k)]);
                    const cd iden = cinv(den);
                    cd rqb = 0.0, rqp = 0.0;
                    for (int64_t c = 0; c < C; c++) {
                        const cd g = G[size_t((j * C + c) * (half + 1) + k)];
                        // adjoint of kf = (1 - i t) * adjoint of K^ = (1 - i t) m_k G_k
                        cd kp = cmul(cd(1.0, -nd.t[size_t(k)]), mk * g);
                        if (k == 0) kp.imag(0.0);  // bin 0 is read as real
                        const cd cp(rre[size_t((3 + 2 * c) * Kp + k)], rim[size_t((3 + 2 * c) * Kp + k)]);
                        const cd rcp = cmulc(kp, -cmul(qb, iden));  // adj r_CP = conj(-r_QB / den) kp
                        rqb += cmulc(kp, -cmul(cp, iden));
                        rqp += cmulc(kp, cmul(cmul(cp, qb), cmul(iden, iden)));
                        wa[size_t((2 + 2 * c) * Kp + k)] = kp.real();
                        wb[size_t((2 + 2 * c) * Kp + k)] = kp.imag() * nd.s[size_t(k)];
                        wa[size_t((3 + 2 * c) * Kp + k)] = rcp.real();
                        wb[size_t((3 + 2 * c) * Kp + k)] = rcp.imag() * nd.s[size_t(k)];
                    }
                    wa[size_t(k)] = rqb.real();
                    wb[size_t(k)] = rqb.imag() * nd.s[size_t(k)];
                    wa[size_t(Kp + k)] = rqp.real();
                    wb[size_t(Kp + k)] = rqp.imag() * nd.s[size_t(k)];
                }
                cauchy_adjoint_sums(U.data(), wa.data(), wb.data(), ft, nd, NX, basis.data(), acc.data());

                // Chain to the parameters. dt enters through w = dt lambda and v = dt a b.
                double g_dt = 0;
                for (int64_t n = 0; n < N2; n++) {
                    const cd wn = ft.w[size_t(n)];
                    const cd w2 = cmul(wn, wn);
                    cd gw = 0.0;
                    for (int64_t x = 0; x < NX; x++) {
                        const cd* u = U.data() + (n * NX + x) * 4;
                        gv[size_t(x)] = 2.0 * std::conj(cmul(wn, u[0]) + u[1]);
                        const cd vx = ft.v[size_t(x * N2 + n)];
                        gw += std::conj(cmul(vx, 4.0 * cmul(w2, u[2]) + 2.0 * u[0] + 4.0 * cmul(wn, u[3])));
                    }
                    const cd lam = ft.hp.lam[size_t(n)], b = ft.hp.B[size_t(n)], p = ft.hp.P[size_t(n)];
                    g_dt += cmulc(gw, lam).real();
                    cd gb = 0.0, gp = 0.0;
                    // products a b of each sum: adj(a b) = dt adj v; dt's share is
                    // Re(adj v conj(a b)) = Re(adj v conj v) / dt
                    for (int64_t x = 0; x < NX; x++) g_dt += cmulc(gv[size_t(x)], ft.v[size_t(x * N2 + n)]).real() / dt;
                    const cd gqb = dt * gv[0], gqp = dt * gv[1];
                    gb += cmul(p, gqb);                   // conj(P) B: adj B = P adj
                    gp += cmulc(b, gqb);                  //            adj P = B conj(adj)
                    gp += 2.0 * gqp.real() * p;           // |P|^2
                    for (int64_t c = 0; c < C; c++) {
                        const cd ctn = ft.ct[size_t(c * N2 + n)];
                        const cd gcb = dt * gv[size_t(2 + 2 * c)], gcp = dt * gv[size_t(3 + 2 * c)];
                        cd gct = cmulc(gcb, b) + cmulc(gcp, p);  // adj C~ = conj(B) adj + conj(P) adj
                        gb += cmulc(gcb, ctn);
                        gp += cmulc(gcp, ctn);
                        if (nd.nyquist) {
                            // K^(-1) = dt Re(sum C~ B), read with weight G_{L/2} / L (real)
                            const double gn = G[size_t((j * C + c) * (half + 1) + half)].real() / double(L);
                            gct += dt * gn * std::conj(b);
                            gb += dt * gn * std::conj(ctn);
                            g_dt += gn * cmul(ctn, b).real();
                        }
                        float* o = dCt + ((c * H + h) * N2 + n) * 2;
                        o[0] = float(gct.real());
                        o[1] = float(gct.imag());
                    }
                    g_lam[size_t(h * N2 + n)] = dt * gw;
                    g_B[size_t(h * N2 + n)] = gb;
                    g_P[size_t(h * N2 + n)] = gp;
                }
                d_inv_dt[h] = float(g_dt * dt);
            }
        }
    }
    for (int64_t s = 0; s < S; s++)
        for (int64_t n = 0; n < N2; n++) {
            cd gl = 0.0, gb = 0.0, gp = 0.0;
            for (int64_t h = s; h < H; h += S) {
                gl += g_lam[size_t(h * N2 + n)];
                gb += g_B[size_t(h * N2 + n)];
                gp += g_P[size_t(h * N2 + n)];
            }
            const int64_t i = s * N2 + n;
            d_A_real[i] = float(-std::exp(double(A_real[i])) * gl.real());
            d_A_imag[i] = float(-gl.imag());
            dB[2 * i] = float(gb.real());
            dB[2 * i + 1] = float(gb.imag());
            dP[2 * i] = float(gp.real());
            dP[2 * i + 1] = float(gp.imag());
        }
}

// ---- recurrent step -------------------------------------------------------------------------------

void s4_dplr_step_setup(S4DplrStep& st, const float* inv_dt, const float* A_real, const float* A_imag,
                        const float* B, const float* P, const float* Ct, int64_t C, int64_t H, int64_t S, int64_t N2,
                        int64_t L) {
    HIPPO_ASSERT(C >= 1 && H >= 1 && S >= 1 && H % S == 0 && N2 >= 1 && L >= 0);
    st.C = C, st.H = H, st.N2 = N2;
    const size_t hn = size_t(H * N2);
    st.E.resize(hn), st.D.resize(hn), st.P.resize(hn), st.Qd.resize(hn), st.R2.resize(hn), st.Bd.resize(hn);
    st.Cout.resize(size_t(C) * hn);
#pragma omp parallel if (H > 1 && H * 8 * N2 * N2 * N2 >= kParallelWork)
    {
        HeadParams hp;
        std::vector<cd> dA, dB, Cf, cth(sz(C * N2));
#pragma omp for schedule(dynamic, 1)
        for (int64_t h = 0; h < H; h++) {
            read_head(hp, inv_dt, A_real, A_imag, B, P, S, N2, h);
            const double dt = hp.dt;
            double pdp = 0;  // sum |P|^2 Re D
            std::vector<cd> Dn(sz(N2));
            for (int64_t n = 0; n < N2; n++) {
                Dn[size_t(n)] = 1.0 / (1.0 - 0.5 * dt * hp.lam[size_t(n)]);
                pdp += std::norm(hp.P[size_t(n)]) * Dn[size_t(n)].real();
            }
            const double den = 1.0 + dt * pdp;
            for (int64_t n = 0; n < N2; n++) {
                const size_t i = size_t(h * N2 + n);
                const cd p = hp.P[size_t(n)];
                st.E[i] = cf(1.0 + 0.5 * dt * hp.lam[size_t(n)]);
                st.D[i] = cf(Dn[size_t(n)]);
                st.P[i] = cf(p);
                st.Qd[i] = cf(dt * std::conj(p));
                st.R2[i] = cf(dt * cmul(std::conj(p), Dn[size_t(n)]) / den);
                st.Bd[i] = cf(dt * hp.B[size_t(n)]);
            }
            for (int64_t c = 0; c < C; c++)
                for (int64_t n = 0; n < N2; n++) {
                    const float* ci = Ct + ((c * H + h) * N2 + n) * 2;
                    cth[size_t(c * N2 + n)] = {ci[0], ci[1]};
                }
            if (L > 0) dense_system(dA, dB, hp, N2);
            recover_C(Cf, dA, cth.data(), C, N2, L);
            for (int64_t c = 0; c < C; c++)
                for (int64_t n = 0; n < N2; n++)
                    st.Cout[size_t((c * H + h) * N2 + n)] = cf(2.0 * Cf[size_t(c * 2 * N2 + n)]);
        }
    }
}

void s4_dplr_step(float* y, cf* x, const float* u, const S4DplrStep& st, int64_t n_channels) {
    const int64_t H = st.H, N2 = st.N2, C = st.C;
    HIPPO_ASSERT(H >= 1 && n_channels % H == 0);
#pragma omp parallel for schedule(static) if (n_channels * N2 * (C + 4) >= 65536)
    for (int64_t i = 0; i < n_channels; i++) {
        const int64_t h = i % H, b = i / H;
        float* xs = reinterpret_cast<float*>(x + i * N2);
        const float* E = reinterpret_cast<const float*>(st.E.data() + h * N2);
        const float* D = reinterpret_cast<const float*>(st.D.data() + h * N2);
        const float* Pp = reinterpret_cast<const float*>(st.P.data() + h * N2);
        const float* Q = reinterpret_cast<const float*>(st.Qd.data() + h * N2);
        const float* R = reinterpret_cast<const float*>(st.R2.data() + h * N2);
        const float* Bd = reinterpret_cast<const float*>(st.Bd.data() + h * N2);
        const float ui = u[i];
        float s1 = 0;
#pragma omp simd reduction(+ : s1)
        for (int64_t m = 0; m < N2; m++) s1 += Q[2 * m] * xs[2 * m] - Q[2 * m + 1] * xs[2 * m + 1];
        float s2 = 0;
#pragma omp simd reduction(+ : s2)
        for (int64_t m = 0; m < N2; m++) {
            const float xr = xs[2 * m], xi = xs[2 * m + 1];
            const float tr = E[2 * m] * xr - E[2 * m + 1] * xi - Pp[2 * m] * s1 + Bd[2 * m] * ui;
            const float ti = E[2 * m] * xi + E[2 * m + 1] * xr - Pp[2 * m + 1] * s1 + Bd[2 * m + 1] * ui;
            xs[2 * m] = tr;
            xs[2 * m + 1] = ti;
            s2 += R[2 * m] * tr - R[2 * m + 1] * ti;
        }
#pragma omp simd
        for (int64_t m = 0; m < N2; m++) {
            const float ar = xs[2 * m] - Pp[2 * m] * s2, ai = xs[2 * m + 1] - Pp[2 * m + 1] * s2;
            xs[2 * m] = D[2 * m] * ar - D[2 * m + 1] * ai;
            xs[2 * m + 1] = D[2 * m] * ai + D[2 * m + 1] * ar;
        }
        for (int64_t c = 0; c < C; c++) {
            const float* Co = reinterpret_cast<const float*>(st.Cout.data() + (c * H + h) * N2);
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t m = 0; m < N2; m++) acc += Co[2 * m] * xs[2 * m] - Co[2 * m + 1] * xs[2 * m + 1];
            y[(b * C + c) * H + h] = acc;
        }
    }
}

void s4_dplr_step_setup_ref(S4DplrStepRef& st, const double* inv_dt, const double* A_real, const double* A_imag,
                            const double* B, const double* P, const double* Ct, int64_t C, int64_t H, int64_t S,
                            int64_t N2, int64_t L) {
    HIPPO_ASSERT(C >= 1 && H >= 1 && S >= 1 && H % S == 0 && N2 >= 1 && L >= 0);
    const int64_t N = 2 * N2;
    st.C = C, st.H = H, st.N = N;
    st.dA.resize(size_t(H * N * N));
    st.dB.resize(size_t(H * N));
    st.Cf.resize(size_t(C * H * N));
    for (int64_t h = 0; h < H; h++) {
        HeadParams hp;
        read_head(hp, inv_dt, A_real, A_imag, B, P, S, N2, h);
        std::vector<cd> dA, dB, Cf, cth(sz(C * N2));
        dense_system(dA, dB, hp, N2);
        for (int64_t c = 0; c < C; c++)
            for (int64_t n = 0; n < N2; n++) {
                const double* ci = Ct + ((c * H + h) * N2 + n) * 2;
                cth[size_t(c * N2 + n)] = {ci[0], ci[1]};
            }
        recover_C(Cf, dA, cth.data(), C, N2, L);
        std::copy(dA.begin(), dA.end(), st.dA.begin() + h * N * N);
        std::copy(dB.begin(), dB.end(), st.dB.begin() + h * N);
        for (int64_t c = 0; c < C; c++)
            std::copy(Cf.begin() + c * N, Cf.begin() + (c + 1) * N, st.Cf.begin() + (c * H + h) * N);
    }
}

void s4_dplr_step_ref(double* y, cd* x, const double* u, const S4DplrStepRef& st, int64_t n_channels) {
    const int64_t H = st.H, N = st.N, C = st.C;
    HIPPO_ASSERT(H >= 1 && n_channels % H == 0);
    std::vector<cd> nx(sz(N));
    for (int64_t i = 0; i < n_channels; i++) {
        const int64_t h = i % H, b = i / H;
        cd* xs = x + i * N;
        for (int64_t r = 0; r < N; r++) {
            cd acc = st.dB[size_t(h * N + r)] * u[i];
            for (int64_t k = 0; k < N; k++) acc += st.dA[size_t((h * N + r) * N + k)] * xs[k];
            nx[size_t(r)] = acc;
        }
        std::copy(nx.begin(), nx.end(), xs);
        for (int64_t c = 0; c < C; c++) {
            cd acc = 0.0;
            for (int64_t k = 0; k < N; k++) acc += st.Cf[size_t((c * H + h) * N + k)] * xs[k];
            y[(b * C + c) * H + h] = acc.real();
        }
    }
}

}  // namespace hippo
