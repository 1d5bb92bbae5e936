// sgemm (BLAS or built-in) and sgemm_builtin against the plain triple loop sgemm_ref: all four
// transpose combinations, odd sizes, padded leading dims, alpha / beta, K = 0.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <vector>

#include "common/rng.h"
#include "kernels/gemm.h"

using namespace hippo;

namespace {

using GemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                        float, float*, int64_t);

struct Case {
    int64_t M, N, K;
};

void fill(std::vector<float>& v, Rng& rng) {
    for (auto& x : v) x = float(rng.normal());
}

// Runs fn and sgemm_ref on the same inputs (padded leading dims) and compares C, including the
// padding columns of C, which must stay untouched.
void check(GemmFn fn, const char* name, bool ta, bool tb, Case c, float alpha, float beta, int64_t pad) {
    Rng rng(uint64_t(c.M * 1000003 + c.N * 1009 + c.K * 7 + ta * 2 + tb));
    const int64_t arows = ta ? c.K : c.M, acols = ta ? c.M : c.K;
    const int64_t brows = tb ? c.N : c.K, bcols = tb ? c.K : c.N;
    const int64_t lda = acols + pad, ldb = bcols + pad, ldc = c.N + pad;
    std::vector<float> A(size_t(std::max<int64_t>(arows * lda, 1))), B(size_t(std::max<int64_t>(brows * ldb, 1)));
    std::vector<float> C(size_t(std::max<int64_t>(c.M * ldc, 1)));
    fill(A, rng);
    fill(B, rng);
    fill(C, rng);
    if (beta == 0.0f)  // beta = 0 must ignore C entirely, NaN included (BLAS semantics)
        for (int64_t i = 0; i < c.M; i++)
            for (int64_t j = 0; j < c.N; j++) C[size_t(i * ldc + j)] = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> Cref = C;
    fn(ta, tb, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
    sgemm_ref(ta, tb, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta, Cref.data(), ldc);
    double tol = 1e-5 * (1 + std::sqrt(double(c.K))) * 4;
    for (int64_t i = 0; i < c.M; i++)
        for (int64_t j = 0; j < ldc; j++) {
            size_t k = size_t(i * ldc + j);
            if (j >= c.N) {
                ASSERT_EQ(C[k], Cref[k]) << name << ": padding of C modified at (" << i << "," << j << ")";
                continue;
            }
            ASSERT_NEAR(C[k], Cref[k], tol * (1 + std::fabs(Cref[k])))
                << name << " ta=" << ta << " tb=" << tb << " M=" << c.M << " N=" << c.N << " K=" << c.K
                << " alpha=" << alpha << " beta=" << beta << " pad=" << pad << " at (" << i << "," << j << ")";
        }
}

const std::vector<Case> kCases = {{1, 1, 1},    {1, 2, 3},    {2, 1, 3},     {3, 17, 2},   {17, 3, 65},
                                  {65, 17, 3},  {17, 65, 129}, {129, 65, 17}, {2, 129, 1},  {33, 1, 129},
                                  {1, 129, 65}, {64, 64, 64},  {130, 257, 300}};

void run_all(GemmFn fn, const char* name) {
    for (bool ta : {false, true})
        for (bool tb : {false, true})
            for (const Case& c : kCases)
                for (int64_t pad : {0, 3}) {
                    check(fn, name, ta, tb, c, 1.0f, 0.0f, pad);
                    check(fn, name, ta, tb, c, 0.7f, 0.5f, pad);
                    if (::testing::Test::HasFatalFailure()) return;
                }
}

}  // namespace

TEST(Gemm, SgemmMatchesRef) { run_all(&sgemm, "sgemm"); }

TEST(Gemm, BuiltinMatchesRef) { run_all(&sgemm_builtin, "sgemm_builtin"); }

TEST(Gemm, KZeroScalesC) {
    for (GemmFn fn : {GemmFn(&sgemm), GemmFn(&sgemm_builtin)})
        for (bool ta : {false, true})
            for (bool tb : {false, true}) {
                check(fn, "K=0", ta, tb, {5, 7, 0}, 1.0f, 0.5f, 2);
                check(fn, "K=0", ta, tb, {5, 7, 0}, 1.0f, 0.0f, 2);
            }
}

TEST(Gemm, EmptyMOrNIsANoop) {
    std::vector<float> A(16, 1.0f), B(16, 1.0f), C(16, 3.0f);
    sgemm(false, false, 0, 4, 4, 1.0f, A.data(), 4, B.data(), 4, 0.0f, C.data(), 4);
    sgemm(false, false, 4, 0, 4, 1.0f, A.data(), 4, B.data(), 4, 0.0f, C.data(), 4);
    for (float v : C) EXPECT_EQ(v, 3.0f);
}

TEST(Gemm, AlphaZeroBetaOne) {
    check(&sgemm, "alpha=0", false, true, {9, 11, 13}, 0.0f, 1.0f, 1);
    check(&sgemm_builtin, "alpha=0", true, false, {9, 11, 13}, 0.0f, 1.0f, 1);
}

// The decode path: M <= 8 rows against a transposed B (register tiles of MR x NR, a masked K tail,
// a partial last tile of B rows).
TEST(Gemm, FewRowsTransposedBMatchesRef) {
    for (int64_t M = 1; M <= 8; M++)
        for (int64_t N : {1, 2, 3, 5, 8, 9, 17, 33})
            for (int64_t K : {1, 2, 15, 16, 17, 33, 100})
                for (int64_t pad : {0, 3}) {
                    check(&sgemm, "sgemm few rows", false, true, {M, N, K}, 1.0f, 0.0f, pad);
                    check(&sgemm, "sgemm few rows", false, true, {M, N, K}, 0.7f, 0.5f, pad);
                    if (::testing::Test::HasFatalFailure()) return;
                }
}

TEST(Bf16, RoundingToNearestEven) {
    EXPECT_EQ(bf16_from_float(1.0f), 0x3F80);
    EXPECT_EQ(bf16_from_float(-2.0f), 0xC000);
    EXPECT_EQ(bf16_from_float(0.0f), 0x0000);
    EXPECT_EQ(bf16_from_float(-0.0f), 0x8000);
    // 1 + 2^-8 is halfway between bf16 1.0 (even mantissa) and 1 + 2^-7: ties go to even.
    EXPECT_EQ(bf16_from_float(1.0f + 1.0f / 256), 0x3F80);
    // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
    EXPECT_EQ(bf16_from_float(1.0f + 3.0f / 256), 0x3F82);
    EXPECT_EQ(bf16_from_float(1.0f + 1.0f / 256 + 1.0f / 65536), 0x3F81);  // just above halfway
    EXPECT_EQ(bf16_from_float(std::numeric_limits<float>::infinity()), 0x7F80);
    EXPECT_EQ(bf16_from_float(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to infinity
    EXPECT_TRUE(std::isnan(bf16_to_float(bf16_from_float(std::numeric_limits<float>::quiet_NaN()))));
    // A NaN whose payload sits only in the low 16 bits must not become infinity.
    EXPECT_TRUE(std::isnan(bf16_to_float(bf16_from_float(std::bit_cast<float>(0x7F800001u)))));
    Rng rng(9);
    for (int i = 0; i < 10000; i++) {  // round trip of values already in bf16 is exact; error <= 2^-9
        float x = float(rng.normal()) * 100.0f;
        uint16_t h = bf16_from_float(x);
        EXPECT_EQ(bf16_from_float(bf16_to_float(h)), h);
        EXPECT_LE(std::fabs(bf16_to_float(h) - x), std::fabs(x) * (1.0f / 256)) << x;
    }
}

// The packed layout: panels of 2 rows, 32-k blocks, zero rows and columns as padding.
TEST(Bf16, PackedLayout) {
    const int64_t N = 3, K = 40, Kp = bf16_packed_k(K);
    ASSERT_EQ(Kp, 64);
    ASSERT_EQ(bf16_packed_size(N, K), size_t(4 * 64));
    std::vector<float> B(size_t(N * (K + 1)));
    for (size_t i = 0; i < B.size(); i++) B[i] = float(i) + 1;  // no zeros among the real entries
    std::vector<uint16_t> P(bf16_packed_size(N, K), 0xffff);
    bf16_pack_nt(N, K, B.data(), K + 1, P.data());
    for (int64_t n = 0; n < 4; n++)
        for (int64_t k = 0; k < Kp; k++) {
            const uint16_t want = n < N && k < K ? bf16_from_float(B[size_t(n * (K + 1) + k)]) : uint16_t(0);
            ASSERT_EQ(P[bf16_packed_index(n, k, Kp)], want) << n << " " << k;
        }
    EXPECT_EQ(bf16_packed_index(1, 0, Kp), size_t(32));   // the second row's first block follows the first's
    EXPECT_EQ(bf16_packed_index(0, 32, Kp), size_t(64));  // then the next block of k
    EXPECT_EQ(bf16_packed_index(2, 0, Kp), size_t(128));  // a panel is 2 Kp long
}

// bf16 decode GEMM (A rounded to bf16, exact products, fp32 sums): every M (blocks of 8 above 8),
// partial tiles, the masked K tail of the 32-wide steps.
TEST(Bf16, GemmMatchesRef) {
    for (int64_t M : {1, 2, 3, 4, 5, 7, 8, 9, 17})
        for (int64_t N : {1, 2, 3, 8, 9, 17, 33})
            for (int64_t K : {1, 2, 15, 16, 17, 31, 32, 33, 100})
                for (int64_t pad : {0, 3})
                    for (float beta : {0.0f, 0.5f}) {
                        Rng rng(uint64_t(M * 7919 + N * 131 + K * 3 + pad));
                        const int64_t lda = K + pad, ldb = K + pad, ldc = N + pad;
                        std::vector<float> A(size_t(M * lda)), Bf(size_t(N * ldb)), C(size_t(M * ldc));
                        fill(A, rng);
                        fill(Bf, rng);
                        fill(C, rng);
                        std::vector<uint16_t> B(Bf.size()), Bp(bf16_packed_size(N, K));
                        bf16_from_float_n(Bf.data(), B.data(), int64_t(Bf.size()));
                        bf16_pack_nt(N, K, Bf.data(), ldb, Bp.data());
                        if (beta == 0.0f)
                            for (auto& c : C) c = std::numeric_limits<float>::quiet_NaN();
                        std::vector<float> Cref = C;
                        sgemm_nt_bf16(M, N, K, 0.7f, A.data(), lda, Bp.data(), beta, C.data(), ldc);
                        sgemm_nt_bf16_ref(M, N, K, 0.7f, A.data(), lda, B.data(), ldb, beta, Cref.data(), ldc);
                        const double tol = 1e-5 * (1 + std::sqrt(double(K))) * 4;
                        for (int64_t i = 0; i < M; i++)
                            for (int64_t j = 0; j < ldc; j++) {
                                const size_t k = size_t(i * ldc + j);
                                if (j >= N) {  // padding untouched (NaN stays NaN when beta = 0)
                                    ASSERT_TRUE(std::isnan(Cref[k]) ? std::isnan(C[k]) : C[k] == Cref[k]);
                                    continue;
                                }
                                ASSERT_NEAR(C[k], Cref[k], tol * (1 + std::fabs(Cref[k])))
                                    << "M=" << M << " N=" << N << " K=" << K << " pad=" << pad << " beta=" << beta;
                            }
                    }
}

// int8 decode GEMM: the kernel's integer dot products equal the reference's exactly, so the two
// agree to float rounding for every M (blocks of 8 above 8), partial tiles and K tails of the
// 64-wide blocks.
TEST(Int8, GemmMatchesRef) {
    for (int64_t M : {1, 2, 3, 5, 8, 9, 17})
        for (int64_t N : {1, 2, 3, 8, 9, 17, 33})
            for (int64_t K : {1, 2, 31, 63, 64, 65, 100, 200})
                for (float beta : {0.0f, 0.5f}) {
                    Rng rng(uint64_t(M * 7919 + N * 131 + K * 3));
                    const int64_t lda = K + 3, ldb = K + 1, ldc = N + 2;
                    std::vector<float> A(size_t(M * lda)), Bf(size_t(N * ldb)), C(size_t(M * ldc));
                    fill(A, rng);
                    fill(Bf, rng);
                    fill(C, rng);
                    std::vector<int8_t> Bp(s8_packed_size(N, K));
                    std::vector<float> scale(static_cast<size_t>(N));
                    std::vector<int32_t> rowsum(static_cast<size_t>(N));
                    s8_pack_nt(N, K, Bf.data(), ldb, Bp.data(), scale.data(), rowsum.data());
                    // The same quantized weights row-major for the reference.
                    const int64_t Kp = s8_packed_k(K);
                    std::vector<int8_t> Bq(size_t(N * K));
                    for (int64_t n = 0; n < N; n++)
                        for (int64_t k = 0; k < K; k++) Bq[size_t(n * K + k)] = Bp[s8_packed_index(n, k, Kp)];
                    if (beta == 0.0f)
                        for (auto& c : C) c = std::numeric_limits<float>::quiet_NaN();
                    std::vector<float> Cref = C;
                    gemm_nt_s8(M, N, K, 0.7f, A.data(), lda, Bp.data(), scale.data(), rowsum.data(), beta, C.data(), ldc);
                    gemm_nt_s8_ref(M, N, K, 0.7f, A.data(), lda, Bq.data(), K, scale.data(), beta, Cref.data(), ldc);
                    for (int64_t i = 0; i < M; i++)
                        for (int64_t j = 0; j < ldc; j++) {
                            const size_t k = size_t(i * ldc + j);
                            if (j >= N) {
                                ASSERT_TRUE(std::isnan(Cref[k]) ? std::isnan(C[k]) : C[k] == Cref[k]);
                                continue;
                            }
                            ASSERT_NEAR(C[k], Cref[k], 1e-5 * (1 + std::fabs(Cref[k])))
                                << "M=" << M << " N=" << N << " K=" << K << " beta=" << beta;
                        }
                }
}

// Against fp32: 8-bit rounding on both sides. Each product's error is at most half a step of either
// factor's scale, so |C - C32| <= sum_k (|a_k| sb / 2 + |b_k| sa / 2 + sa sb / 4).
TEST(Int8, ErrorWithinQuantizationBound) {
    const int64_t M = 4, N = 37, K = 300;
    Rng rng(77);
    std::vector<float> A(size_t(M * K)), B(size_t(N * K)), C(size_t(M * N)), C32(size_t(M * N));
    fill(A, rng);
    fill(B, rng);
    A[5] = 40.0f;  // an outlier widens its row's step
    std::vector<int8_t> Bp(s8_packed_size(N, K));
    std::vector<float> scale(static_cast<size_t>(N));
    std::vector<int32_t> rowsum(static_cast<size_t>(N));
    s8_pack_nt(N, K, B.data(), K, Bp.data(), scale.data(), rowsum.data());
    gemm_nt_s8(M, N, K, 1.0f, A.data(), K, Bp.data(), scale.data(), rowsum.data(), 0.0f, C.data(), N);
    sgemm_ref(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C32.data(), N);
    for (int64_t i = 0; i < M; i++) {
        float amax = 0;
        for (int64_t k = 0; k < K; k++) amax = std::max(amax, std::fabs(A[size_t(i * K + k)]));
        const double sa = amax / 127.0;
        for (int64_t j = 0; j < N; j++) {
            double bound = 0;
            for (int64_t k = 0; k < K; k++)
                bound += std::fabs(A[size_t(i * K + k)]) * scale[size_t(j)] / 2 + std::fabs(B[size_t(j * K + k)]) * sa / 2 +
                         sa * scale[size_t(j)] / 4;
            EXPECT_LE(std::fabs(C[size_t(i * N + j)] - C32[size_t(i * N + j)]), bound * 1.001 + 1e-5);
            EXPECT_GT(std::fabs(C[size_t(i * N + j)] - C32[size_t(i * N + j)]), 0.0) << "suspiciously exact";
        }
    }
}

// A non-finite activation makes its row's outputs NaN (as fp32 would), and only that row's; an
// all-zero row gives zeros. Weights round to nearest: the row maximum maps to +-127.
TEST(Int8, NonFiniteAndZeroRows) {
    const int64_t M = 3, N = 5, K = 70;
    Rng rng(3);
    std::vector<float> A(size_t(M * K)), B(size_t(N * K)), C(size_t(M * N));
    fill(A, rng);
    fill(B, rng);
    A[size_t(1 * K + 66)] = std::numeric_limits<float>::infinity();
    for (int64_t k = 0; k < K; k++) A[size_t(2 * K + k)] = 0.0f;
    std::vector<int8_t> Bp(s8_packed_size(N, K));
    std::vector<float> scale(static_cast<size_t>(N));
    std::vector<int32_t> rowsum(static_cast<size_t>(N));
    s8_pack_nt(N, K, B.data(), K, Bp.data(), scale.data(), rowsum.data());
    for (int64_t n = 0; n < N; n++) {
        int qmax = 0, sum = 0;
        for (int64_t k = 0; k < s8_packed_k(K); k++) {
            const int q = Bp[s8_packed_index(n, k, s8_packed_k(K))];
            qmax = std::max(qmax, std::abs(q));
            sum += q;
        }
        EXPECT_EQ(qmax, 127);
        EXPECT_EQ(sum, rowsum[size_t(n)]);
    }
    gemm_nt_s8(M, N, K, 1.0f, A.data(), K, Bp.data(), scale.data(), rowsum.data(), 0.0f, C.data(), N);
    for (int64_t j = 0; j < N; j++) {
        EXPECT_TRUE(std::isfinite(C[size_t(j)]));
        EXPECT_TRUE(std::isnan(C[size_t(N + j)]));
        EXPECT_EQ(C[size_t(2 * N + j)], 0.0f);
    }
}
