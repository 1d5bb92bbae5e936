#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstring>
#include <vector>

#include "common/check.h"
#include "common/rng.h"
#include "bench/bench_fft.h"
#include "kernels/fft.h"
#ifdef HIPPO_HAVE_FFTW
#include <fftw3.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

using namespace hippo;
using cd = std::complex<double>;

namespace {

// Double-precision radix-2 complex FFT (iterative, twiddles from an exact table), the oracle for
// large sizes; itself checked against the O(n^2) DFT below.
void ref_cfft(std::vector<cd>& a) {
    const size_t n = a.size();
    for (size_t i = 1, j = 0; i < n; i++) {
        size_t bit = n >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) std::swap(a[i], a[j]);
    }
    std::vector<cd> w(n / 2 + 1);
    for (size_t k = 0; k < n / 2; k++) w[k] = std::polar(1.0, -2.0 * M_PI * double(k) / double(n));
    for (size_t len = 2; len <= n; len <<= 1) {
        size_t step = n / len;
        for (size_t s = 0; s < n; s += len)
            for (size_t j = 0; j < len / 2; j++) {
                cd u = a[s + j], v = a[s + j + len / 2] * w[j * step];
                a[s + j] = u + v;
                a[s + j + len / 2] = u - v;
            }
    }
}

// x: (n) -> (n+2) doubles via the double FFT.
std::vector<double> ref_rfft_fast(const std::vector<float>& x) {
    const size_t n = x.size();
    std::vector<cd> a(n);
    for (size_t i = 0; i < n; i++) a[i] = x[i];
    ref_cfft(a);
    std::vector<double> X(n + 2);
    for (size_t k = 0; k <= n / 2; k++) X[2 * k] = a[k].real(), X[2 * k + 1] = a[k].imag();
    return X;
}

std::vector<float> random_vec(size_t n, uint64_t seed) {
    Rng r(seed);
    std::vector<float> v(n);
    for (auto& e : v) e = float(r.normal());
    return v;
}

template <class A, class B>
double rel_err(const A& got, const B& want, size_t count) {
    double num = 0, den = 0;
    for (size_t i = 0; i < count; i++) {
        double d = double(got[i]) - double(want[i]);
        num += d * d;
        den += double(want[i]) * double(want[i]);
    }
    return std::sqrt(num / (den > 0 ? den : 1));
}

double tol_for(int64_t n) {
    int lg = 0;
    while ((int64_t(1) << lg) < n) lg++;
    return 2e-7 * std::max(lg, 2);
}

std::vector<float> fwd(const RealFFT& f, const std::vector<float>& x) {
    std::vector<float> X(f.size() + 2), w(f.work_floats());
    f.forward(x.data(), X.data(), w.data());
    return X;
}

}  // namespace

TEST(FFT, DoubleOracleMatchesDFT) {
    for (int64_t n : {2, 4, 8, 64, 512}) {
        auto x = random_vec(size_t(n), 1 + n);
        std::vector<double> X(n + 2);
        rfft_ref(x.data(), X.data(), n);
        auto Y = ref_rfft_fast(x);
        EXPECT_LT(rel_err(Y, X, size_t(n + 2)), 1e-13) << n;
    }
}

TEST(FFT, RefInverseInvertsRefForward) {
    for (int64_t n : {1, 2, 3, 8, 15, 64}) {
        auto x = random_vec(size_t(n), 7 + n);
        std::vector<double> X(n + 2), y(n);
        rfft_ref(x.data(), X.data(), n);
        irfft_ref(X.data(), y.data(), n);
        for (int64_t i = 0; i < n; i++) EXPECT_NEAR(y[i] / double(n), x[i], 1e-12) << n;
    }
}

TEST(FFT, ForwardMatchesReferenceAllSizes) {
    for (int lg = 0; lg <= 16; lg++) {
        const int64_t n = int64_t(1) << lg;
        RealFFT f(n);
        EXPECT_EQ(f.size(), n);
        auto x = random_vec(size_t(n), 100 + lg);
        auto X = fwd(f, x);
        if (n <= 4096) {
            std::vector<double> R(n + 2);
            rfft_ref(x.data(), R.data(), n);
            EXPECT_LT(rel_err(X, R, size_t(n + 2)), tol_for(n)) << "n=" << n;
        } else {
            auto R = ref_rfft_fast(x);
            EXPECT_LT(rel_err(X, R, size_t(n + 2)), tol_for(n)) << "n=" << n;
            // plus 64 random bins by direct DFT sums
            Rng r(5 + lg);
            double num = 0, den = 0;
            for (int t = 0; t < 64; t++) {
                int64_t k = int64_t(r.below(uint64_t(n / 2 + 1)));
                double re = 0, im = 0;
                for (int64_t j = 0; j < n; j++) {
                    double a = -2.0 * M_PI * double((j * k) % n) / double(n);
                    re += x[j] * std::cos(a), im += x[j] * std::sin(a);
                }
                num += (X[2 * k] - re) * (X[2 * k] - re) + (X[2 * k + 1] - im) * (X[2 * k + 1] - im);
                den += re * re + im * im;
            }
            EXPECT_LT(std::sqrt(num / den), tol_for(n)) << "n=" << n;
        }
        EXPECT_EQ(X[1], 0.0f);
        EXPECT_EQ(X[n + 1], 0.0f);
    }
}

TEST(FFT, InverseMatchesReferenceAllSizes) {
    for (int lg = 0; lg <= 16; lg++) {
        const int64_t n = int64_t(1) << lg;
        RealFFT f(n);
        auto Xf = random_vec(size_t(n + 2), 200 + lg);
        std::vector<double> Xd(Xf.begin(), Xf.end());
        Xd[1] = 0, Xd[n + 1] = 0;  // ignored by both; give the float side garbage there
        Xf[1] = 1e3f, Xf[n + 1] = -7e2f;
        std::vector<float> y(n), w(f.work_floats());
        f.inverse(Xf.data(), y.data(), w.data());
        std::vector<double> R(n);
        if (n <= 4096) {
            irfft_ref(Xd.data(), R.data(), n);
        } else {
            // full Hermitian spectrum through the double FFT (conjugate trick for the inverse)
            std::vector<cd> a(n);
            for (int64_t k = 0; k <= n / 2; k++) a[k] = cd(Xd[2 * k], -Xd[2 * k + 1]);
            for (int64_t k = n / 2 + 1; k < n; k++) a[k] = cd(Xd[2 * (n - k)], Xd[2 * (n - k) + 1]);
            ref_cfft(a);
            for (int64_t j = 0; j < n; j++) R[j] = a[j].real();
        }
        EXPECT_LT(rel_err(y, R, size_t(n)), tol_for(n)) << "n=" << n;
    }
}

TEST(FFT, RoundTripAndInPlace) {
    for (int lg = 0; lg <= 16; lg++) {
        const int64_t n = int64_t(1) << lg;
        RealFFT f(n);
        auto x = random_vec(size_t(n), 300 + lg);
        std::vector<float> X(n + 2), y(n), w(f.work_floats());
        f.forward(x.data(), X.data(), w.data());
        f.inverse(X.data(), y.data(), w.data(), 1.0f / float(n));
        EXPECT_LT(rel_err(y, x, size_t(n)), tol_for(n)) << "n=" << n;
        // in place: forward and inverse in one buffer of n+2 floats, bit-identical results
        std::vector<float> buf(n + 2);
        std::memcpy(buf.data(), x.data(), sizeof(float) * n);
        f.forward(buf.data(), buf.data(), w.data());
        EXPECT_EQ(0, std::memcmp(buf.data(), X.data(), sizeof(float) * (n + 2))) << "n=" << n;
        f.inverse(buf.data(), buf.data(), w.data(), 1.0f / float(n));
        EXPECT_EQ(0, std::memcmp(buf.data(), y.data(), sizeof(float) * n)) << "n=" << n;
    }
}

TEST(FFT, UnalignedBuffersGiveSameResults) {
    for (int lg : {3, 9, 10, 13}) {
        const int64_t n = int64_t(1) << lg;
        RealFFT f(n);
        auto x = random_vec(size_t(n), 400 + lg);
        auto X = fwd(f, x);
        std::vector<float> xb(n + 3), Xb(n + 3), wb(f.work_floats() + 1);
        std::memcpy(xb.data() + 1, x.data(), sizeof(float) * n);
        f.forward(xb.data() + 1, Xb.data() + 1, wb.data() + 1);
        EXPECT_EQ(0, std::memcmp(Xb.data() + 1, X.data(), sizeof(float) * (n + 2)));
        std::vector<float> y(n), yb(n + 1);
        f.inverse(X.data(), y.data(), wb.data());
        f.inverse(Xb.data() + 1, yb.data() + 1, wb.data() + 1);
        EXPECT_EQ(0, std::memcmp(yb.data() + 1, y.data(), sizeof(float) * n));
    }
}

TEST(FFT, InvalidSizesThrow) {
    for (int64_t n : {int64_t(0), int64_t(-4), int64_t(3), int64_t(6), int64_t(1000), int64_t(1) << 23})
        EXPECT_THROW(RealFFT f(n), hippo::Error) << n;
}

TEST(FFT, LargeSizesAccurate) {
    for (int lg : {20, 22}) {
        const int64_t n = int64_t(1) << lg;
        RealFFT f(n);
        auto x = random_vec(size_t(n), 500 + lg);
        auto X = fwd(f, x);
        auto R = ref_rfft_fast(x);
        double e = rel_err(X, R, size_t(n + 2));
        EXPECT_LT(e, tol_for(n)) << "n=" << n;
        std::vector<float> y(n), w(f.work_floats());
        f.inverse(X.data(), y.data(), w.data(), 1.0f / float(n));
        EXPECT_LT(rel_err(y, x, size_t(n)), tol_for(n)) << "n=" << n;
        std::printf("n=2^%d forward rel err %.3g\n", lg, e);
    }
}

TEST(FFT, UnorderedComposesLikeOrdered) {
    for (int lg = 0; lg <= 16; lg++) {
        const int64_t n = int64_t(1) << lg;
        RealFFT f(n);
        auto a = random_vec(size_t(n), 600 + lg), b = random_vec(size_t(n), 700 + lg);
        std::vector<float> w(f.work_floats());
        auto A = fwd(f, a), B = fwd(f, b);
        // layout conversion
        std::vector<float> Sa(n + 2), Sb(n + 2), T(n + 2);
        f.forward_unordered(a.data(), Sa.data(), w.data());
        f.forward_unordered(b.data(), Sb.data(), w.data());
        f.unordered_to_ordered(Sa.data(), T.data());
        EXPECT_LT(rel_err(T, A, size_t(n + 2)), tol_for(n)) << "n=" << n;
        std::vector<float> S2(n + 2);
        f.ordered_to_unordered(A.data(), S2.data());
        EXPECT_LT(rel_err(S2, Sa, size_t(n + 2)), tol_for(n)) << "n=" << n;
        for (int conj = 0; conj < 2; conj++) {
            // ordered path: forward, complex multiply, inverse
            std::vector<float> P(n + 2), y(n), z(n);
            for (int64_t k = 0; k <= n / 2; k++) {
                float ar = A[2 * k], ai = A[2 * k + 1], br = B[2 * k], bi = conj ? -B[2 * k + 1] : B[2 * k + 1];
                P[2 * k] = ar * br - ai * bi, P[2 * k + 1] = ar * bi + ai * br;
            }
            f.inverse(P.data(), y.data(), w.data(), 1.0f / float(n));
            // unordered path, in place
            std::vector<float> Sc(n + 2);
            if (conj)
                f.spectrum_mul_conj(Sa.data(), Sb.data(), Sc.data());
            else
                f.spectrum_mul(Sa.data(), Sb.data(), Sc.data());
            std::vector<float> Pc(n + 2);
            f.unordered_to_ordered(Sc.data(), Pc.data());
            EXPECT_LT(rel_err(Pc, P, size_t(n + 2)), 2 * tol_for(n)) << "n=" << n << " conj=" << conj;
            f.inverse_unordered(Sc.data(), Sc.data(), w.data(), 1.0f / float(n));
            EXPECT_LT(rel_err(Sc, y, size_t(n)), 2 * tol_for(n)) << "n=" << n << " conj=" << conj;
            // aliasing out == a
            std::vector<float> Sd = Sa;
            if (conj)
                f.spectrum_mul_conj(Sd.data(), Sb.data(), Sd.data());
            else
                f.spectrum_mul(Sd.data(), Sb.data(), Sd.data());
            std::vector<float> Se(n + 2);
            if (conj)
                f.spectrum_mul_conj(Sa.data(), Sb.data(), Se.data());
            else
                f.spectrum_mul(Sa.data(), Sb.data(), Se.data());
            EXPECT_EQ(0, std::memcmp(Sd.data(), Se.data(), sizeof(float) * (n + 2)));
        }
    }
}

TEST(FFT, ZeroPaddedInputAndTruncatedOutput) {
    for (int lg : {0, 1, 3, 8, 9, 10, 12, 15}) {
        const int64_t n = int64_t(1) << lg;
        RealFFT f(n);
        std::vector<float> w(f.work_floats());
        for (int64_t len : {int64_t(0), int64_t(1), int64_t(17), n / 2, n / 2 + 3, n - 1, n}) {
            if (len > n) continue;
            auto x = random_vec(size_t(len), 1100 + lg * 10 + len);
            std::vector<float> xp(n, 0.0f);
            std::copy(x.begin(), x.end(), xp.begin());
            for (int unordered = 0; unordered < 2; unordered++) {
                std::vector<float> A(n + 2), B(n + 2);
                if (unordered) {
                    f.forward_unordered(xp.data(), A.data(), w.data());
                    f.forward_unordered(x.data(), B.data(), w.data(), len);
                } else {
                    f.forward(xp.data(), A.data(), w.data());
                    f.forward(x.data(), B.data(), w.data(), len);
                }
                EXPECT_EQ(0, std::memcmp(A.data(), B.data(), sizeof(float) * (n + 2)))
                    << "n=" << n << " len=" << len << " unordered=" << unordered;
                std::vector<float> full(n), part(len + 1, 12345.0f);
                if (unordered) {
                    f.inverse_unordered(A.data(), full.data(), w.data(), 0.5f);
                    f.inverse_unordered(A.data(), part.data(), w.data(), 0.5f, len);
                } else {
                    f.inverse(A.data(), full.data(), w.data(), 0.5f);
                    f.inverse(A.data(), part.data(), w.data(), 0.5f, len);
                }
                EXPECT_EQ(0, std::memcmp(full.data(), part.data(), sizeof(float) * len))
                    << "n=" << n << " len=" << len << " unordered=" << unordered;
                EXPECT_EQ(part[len], 12345.0f) << "wrote past len: n=" << n << " len=" << len;
            }
        }
    }
}

TEST(FFT, ThreadsShareOnePlanBitIdentical) {
    const int64_t n = 4096, rows = 64;
    RealFFT f(n);
    std::vector<float> x = random_vec(size_t(n * rows), 800);
    std::vector<float> Xs((n + 2) * rows), Xp((n + 2) * rows), ys(n * rows), yp(n * rows);
    {
        std::vector<float> w(f.work_floats());
        for (int64_t r = 0; r < rows; r++) {
            f.forward(&x[r * n], &Xs[r * (n + 2)], w.data());
            f.inverse(&Xs[r * (n + 2)], &ys[r * n], w.data(), 1.0f / n);
        }
    }
#pragma omp parallel
    {
        std::vector<float> w(f.work_floats());
#pragma omp for schedule(dynamic, 1)
        for (int64_t r = 0; r < rows; r++) {
            f.forward(&x[r * n], &Xp[r * (n + 2)], w.data());
            f.inverse(&Xp[r * (n + 2)], &yp[r * n], w.data(), 1.0f / n);
        }
    }
    EXPECT_EQ(0, std::memcmp(Xs.data(), Xp.data(), sizeof(float) * Xs.size()));
    EXPECT_EQ(0, std::memcmp(ys.data(), yp.data(), sizeof(float) * ys.size()));
}

TEST(FFT, MovedPlanStillWorks) {
    RealFFT a(1024);
    auto x = random_vec(1024, 900);
    auto X = fwd(a, x);
    RealFFT b(std::move(a));
    EXPECT_EQ(b.size(), 1024);
    auto Y = fwd(b, x);
    EXPECT_EQ(0, std::memcmp(X.data(), Y.data(), sizeof(float) * X.size()));
}

#ifdef HIPPO_HAVE_FFTW
TEST(FFT, MatchesFFTW) {
    for (int lg = 0; lg <= 16; lg++) {
        const int n = 1 << lg;
        RealFFT f(n);
        float* in = fftwf_alloc_real(n + 2);
        fftwf_complex* out = fftwf_alloc_complex(n / 2 + 1);
        fftwf_plan pf = fftwf_plan_dft_r2c_1d(n, in, out, FFTW_ESTIMATE);
        fftwf_plan pi = fftwf_plan_dft_c2r_1d(n, out, in, FFTW_ESTIMATE);
        auto x = random_vec(size_t(n), 1000 + lg);
        std::memcpy(in, x.data(), sizeof(float) * n);
        fftwf_execute(pf);
        const size_t nc = size_t(2 * (n / 2 + 1));  // n + 2, except 2 for n = 1
        std::vector<float> F(n + 2);
        std::memcpy(F.data(), out, sizeof(float) * nc);
        auto X = fwd(f, x);
        EXPECT_LT(rel_err(X, F, nc), tol_for(n)) << "n=" << n;
        // inverse (c2r destroys its input: feed it a copy)
        std::memcpy(out, X.data(), sizeof(float) * nc);
        fftwf_execute(pi);
        std::vector<float> y(n), w(f.work_floats());
        f.inverse(X.data(), y.data(), w.data());
        std::vector<float> yf(in, in + n);
        EXPECT_LT(rel_err(y, yf, size_t(n)), tol_for(n)) << "n=" << n;
        fftwf_destroy_plan(pf);
        fftwf_destroy_plan(pi);
        fftwf_free(in);
        fftwf_free(out);
    }
}
#endif

TEST(FFT, BenchRecordsWellFormed) {
    auto recs = bench_fft({11});
    int hippo = 0, fftw = 0;
    for (auto& r : recs) {
        EXPECT_EQ(r.shape.at("n"), 2048);
        EXPECT_TRUE(r.pass == "fwd" || r.pass == "inv");
        EXPECT_GT(r.ms, 0.0);
        EXPECT_GT(r.derived.at("gflops"), 0.0);
        if (r.name == "fft.hippo") {
            hippo++;
#ifdef HIPPO_HAVE_FFTW
            EXPECT_GT(r.derived.at("ratio_to_fftw"), 0.0);
#endif
        }
        if (r.name == "fft.fftw") fftw++;
    }
    EXPECT_EQ(hippo, 2);
#ifdef HIPPO_HAVE_FFTW
    EXPECT_EQ(fftw, 2);
#else
    EXPECT_EQ(fftw, 0);
#endif
}
