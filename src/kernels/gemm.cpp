#include "kernels/gemm.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#ifdef HIPPO_USE_OPENBLAS
#include <cblas.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#include "common/simd.h"

namespace hippo {

static inline bool omp_in_parallel_safe() {
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return false;
#endif
}

void sgemm_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++) {
                double a = ta ? A[k * lda + i] : A[i * lda + k];
                double b = tb ? B[j * ldb + k] : B[k * ldb + j];
                acc += a * b;
            }
            float c = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
            C[i * ldc + j] = c + float(alpha * acc);
        }
}

// Blocks: a (MB x KB) panel of A and a (KB x NB) panel of B are packed contiguous so the inner loop
// streams unit-stride rows; each thread owns whole rows of C, so results do not depend on timing.
void sgemm_builtin(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    constexpr int64_t MB = 64, NB = 256, KB = 256;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    if (K == 0) return;
    int64_t mblocks = (M + MB - 1) / MB;
#pragma omp parallel
    {
        std::vector<float> bp(size_t(KB * NB)), ap(size_t(MB * KB));
#pragma omp for schedule(static)
        for (int64_t mb = 0; mb < mblocks; mb++) {
            int64_t i0 = mb * MB, i1 = std::min(M, i0 + MB);
            for (int64_t k0 = 0; k0 < K; k0 += KB) {
                int64_t k1 = std::min(K, k0 + KB), kn = k1 - k0;
                for (int64_t i = i0; i < i1; i++)
                    for (int64_t k = k0; k < k1; k++)
                        ap[(i - i0) * KB + (k - k0)] = alpha * (ta ? A[k * lda + i] : A[i * lda + k]);
                for (int64_t j0 = 0; j0 < N; j0 += NB) {
                    int64_t j1 = std::min(N, j0 + NB), jn = j1 - j0;
                    for (int64_t k = 0; k < kn; k++)
                        for (int64_t j = 0; j < jn; j++)
                            bp[k * NB + j] = tb ? B[(j0 + j) * ldb + k0 + k] : B[(k0 + k) * ldb + j0 + j];
                    for (int64_t i = i0; i < i1; i++) {
                        float* c = C + i * ldc + j0;
                        const float* a = &ap[(i - i0) * KB];
                        for (int64_t k = 0; k < kn; k++) {
                            float av = a[k];
                            const float* b = &bp[k * NB];
#pragma omp simd
                            for (int64_t j = 0; j < jn; j++) c[j] += av * b[j];
                        }
                    }
                }
            }
        }
    }
}

namespace {
std::atomic<bool> g_stats_on{false};
GemmStats g_stats;  // updated only from the thread that calls sgemm outside parallel regions
}  // namespace

void gemm_stats_enable(bool on) { g_stats_on = on; }
GemmStats gemm_stats() { return g_stats; }
void gemm_stats_reset() { g_stats = GemmStats{}; }

static void sgemm_dispatch(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    if (!g_stats_on.load(std::memory_order_relaxed) || omp_in_parallel_safe()) {
        sgemm_dispatch(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    auto t0 = std::chrono::steady_clock::now();
    sgemm_dispatch(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    g_stats.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    g_stats.flops += 2.0 * double(M) * double(N) * double(K);
    g_stats.calls++;
}

// A few rows times a transposed matrix, C (M, N) = A (M, K) B (N, K)^T with M <= 8: the shape of a
// linear layer during token-by-token decoding. BLAS packs all of B on every call, which triples
// the memory traffic of what is a matrix-vector product; here each row of B is read once from
// memory. Register tiles of MR rows of A by NR rows of B (MR * NR <= 16 accumulators, 16 floats of K
// each) make every loaded B vector serve MR rows and every A vector NR rows, so the FMA units,
// not the load ports or one accumulator's latency, set the pace once the B rows come from cache
// (batch 8 decoding), and memory does otherwise (batch 1). Threads split the rows of B.
#ifdef __AVX512F__
template <int MR, int NR, int PF = (MR <= 2 ? 1 : 2)>
static inline void few_rows_tile(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                                 float out[MR][NR]) {
    __m512 acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 b[NR];
        for (int j = 0; j < NR; j++) b[j] = _mm512_loadu_ps(B + j * ldb + k);
        // The next tile's rows stream in from memory while this one computes.
        for (int j = 0; j < NR; j++) _mm_prefetch(reinterpret_cast<const char*>(B + (PF * NR + j) * ldb + k), _MM_HINT_T0);
        // ... and 16 rows further into L2, so that enough misses are in flight to stream at full
        // bandwidth while the FMAs run (M = 8: 78 -> 115 GFLOP/s on the 125M shapes).
        for (int j = 0; j < NR; j++) _mm_prefetch(reinterpret_cast<const char*>(B + (16 + j) * ldb + k), _MM_HINT_T1);
        for (int i = 0; i < MR; i++) {
            __m512 a = _mm512_loadu_ps(A + i * lda + k);
            // One load per A vector: without this GCC folds the load into each of the NR FMAs.
            if constexpr (NR > 1) asm("" : "+v"(a));
            for (int j = 0; j < NR; j++) acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);
        }
    }
    if (k < K) {
        const __mmask16 m = __mmask16((1u << (K - k)) - 1);
        __m512 b[NR];
        for (int j = 0; j < NR; j++) b[j] = _mm512_maskz_loadu_ps(m, B + j * ldb + k);
        for (int i = 0; i < MR; i++) {
            const __m512 a = _mm512_maskz_loadu_ps(m, A + i * lda + k);
            for (int j = 0; j < NR; j++) acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) out[i][j] = _mm512_reduce_add_ps(acc[i][j]);
}

// The packed decode GEMMs (bf16 and int8) share their walk over B: tiles of MR rows of A by NR rows
// of B (whole 2-row panels of Kp each), threads splitting the tiles, the last partial tile done one
// panel at a time. Tile::run<MR, NR>(Kp, A, panel, out) computes a tile's dot products;
// store(n, i, dot) turns one into C[i, n]. Threaded once B is 128 KiB or more.
template <class Tile, int MR, class Store>
static void packed_tiles(int64_t N, int64_t Kp, const typename Tile::AType* A, const typename Tile::BType* Bp,
                         const Store& store) {
    using Out = typename Tile::Out;
    constexpr int NR = MR <= 2 ? 8 : (MR <= 4 ? 4 : 2);
    const int64_t tiles = (N + NR - 1) / NR;
#pragma omp parallel for schedule(static) if (N * Kp * int64_t(sizeof(typename Tile::BType)) >= (1 << 17))
    for (int64_t t = 0; t < tiles; t++) {
        const int64_t n0 = t * NR;
        if (n0 + NR <= N) {
            Out out[MR][NR];
            Tile::template run<MR, NR>(Kp, A, Bp + n0 * Kp, out);
            for (int i = 0; i < MR; i++)
                for (int j = 0; j < NR; j++) store(n0 + j, i, out[i][j]);
        } else {
            for (int64_t n = n0; n < N; n += 2) {
                Out out[MR][2];
                Tile::template run<MR, 2>(Kp, A, Bp + n * Kp, out);
                for (int i = 0; i < MR; i++)
                    for (int j = 0; j < 2 && n + j < N; j++) store(n + j, i, out[i][j]);
            }
        }
    }
}

// packed_tiles for M = 1..8 rows of A (false for more).
template <class Tile, class Store>
static bool packed_tiles_rows(int64_t M, int64_t N, int64_t Kp, const typename Tile::AType* A,
                              const typename Tile::BType* Bp, const Store& store) {
    switch (M) {
        case 1: packed_tiles<Tile, 1>(N, Kp, A, Bp, store); return true;
        case 2: packed_tiles<Tile, 2>(N, Kp, A, Bp, store); return true;
        case 3: packed_tiles<Tile, 3>(N, Kp, A, Bp, store); return true;
        case 4: packed_tiles<Tile, 4>(N, Kp, A, Bp, store); return true;
        case 5: packed_tiles<Tile, 5>(N, Kp, A, Bp, store); return true;
        case 6: packed_tiles<Tile, 6>(N, Kp, A, Bp, store); return true;
        case 7: packed_tiles<Tile, 7>(N, Kp, A, Bp, store); return true;
        case 8: packed_tiles<Tile, 8>(N, Kp, A, Bp, store); return true;
        default: return false;
    }
}

#ifdef __AVX512BF16__
// The bf16 tile reads B from the packed layout (gemm.h): a panel of 2 rows is one contiguous run of
// 128-byte k-blocks, so a thread's share of B is a single sequential stream. Streaming two rows
// side by side from their row-major places (1.5 KB apart at K = 768) reached 23 GB/s here against
// 35 GB/s for one prefetched stream. vdpbf16ps multiplies 32 bf16 pairs exactly and adds each
// adjacent pair of products into one of 16 fp32 lanes: one instruction does the work of two FMAs.
// A holds MR rows of Kp bf16 (zero padded like B, so no tail masking is needed).
struct PackedBf16Tile {
    using AType = uint16_t;
    using BType = uint16_t;
    using Out = float;
    template <int MR, int NR>
    static void run(int64_t Kp, const uint16_t* A, const uint16_t* P, float out[MR][NR]) {
        static_assert(NR % 2 == 0, "whole panels of 2 rows");
        constexpr int NP = NR / 2;
        // Prefetch distances along each panel, in bf16 elements: 2 KB ahead into L1 and 16 KB ahead into
        // L2, so that enough misses are in flight to stream at full bandwidth. Measured at M = 8 on the
        // 125M shapes: 180-210 GFLOP/s with the L1 prefetch alone, 210-270 with both.
        constexpr int64_t kAheadL1 = 1024, kAheadL2 = 8192;
        const int64_t pstride = 2 * Kp;
        __m512 acc[MR][NR];
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
        for (int64_t k = 0; k < Kp; k += 32) {
            __m512bh b[NR];
            for (int q = 0; q < NP; q++) {
                const uint16_t* blk = P + q * pstride + 2 * k;
                b[2 * q] = (__m512bh)_mm512_loadu_si512(blk);
                b[2 * q + 1] = (__m512bh)_mm512_loadu_si512(blk + 32);
                _mm_prefetch(reinterpret_cast<const char*>(blk + kAheadL1), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(blk + kAheadL1 + 32), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(blk + kAheadL2), _MM_HINT_T1);
                _mm_prefetch(reinterpret_cast<const char*>(blk + kAheadL2 + 32), _MM_HINT_T1);
            }
            for (int i = 0; i < MR; i++) {
                __m512i a = _mm512_loadu_si512(A + i * Kp + k);
                asm("" : "+v"(a));  // one load per A vector, not one folded into each of the NR products
                for (int j = 0; j < NR; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)a, b[j]);
            }
        }
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) out[i][j] = _mm512_reduce_add_ps(acc[i][j]);
    }
};
#endif

#ifdef __AVX512VNNI__
// The int8 tile: vpdpbusd multiplies 64 unsigned bytes of A by 64 signed bytes of B and adds each
// group of 4 products into one of 16 int32 lanes, so the whole dot product of a row pair is exact
// integer arithmetic (|sum| <= 255 * 127 * K, no overflow below K = 66,000). A is the activations
// shifted by +128 into [1, 255]; the caller takes 128 * rowsum(B) back off. Panels as in the bf16
// layout, with 64-k blocks (128 bytes per panel).
struct PackedS8Tile {
    using AType = uint8_t;
    using BType = int8_t;
    using Out = int32_t;
    template <int MR, int NR>
    static void run(int64_t Kp, const uint8_t* A, const int8_t* P, int32_t out[MR][NR]) {
        static_assert(NR % 2 == 0, "whole panels of 2 rows");
        constexpr int NP = NR / 2;
        constexpr int64_t kAheadL1 = 2048, kAheadL2 = 16384;  // bytes, as the bf16 tile's
        const int64_t pstride = 2 * Kp;
        __m512i acc[MR][NR];
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_si512();
        for (int64_t k = 0; k < Kp; k += 64) {
            __m512i b[NR];
            for (int q = 0; q < NP; q++) {
                const int8_t* blk = P + q * pstride + 2 * k;
                b[2 * q] = _mm512_loadu_si512(blk);
                b[2 * q + 1] = _mm512_loadu_si512(blk + 64);
                _mm_prefetch(reinterpret_cast<const char*>(blk + kAheadL1), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(blk + kAheadL1 + 64), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(blk + kAheadL2), _MM_HINT_T1);
                _mm_prefetch(reinterpret_cast<const char*>(blk + kAheadL2 + 64), _MM_HINT_T1);
            }
            for (int i = 0; i < MR; i++) {
                __m512i a = _mm512_loadu_si512(A + i * Kp + k);
                asm("" : "+v"(a));
                for (int j = 0; j < NR; j++) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], a, b[j]);
            }
        }
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) out[i][j] = _mm512_reduce_add_epi32(acc[i][j]);
    }
};
#endif

template <int MR>
static void sgemm_few_rows_nt_avx512(int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                                     int64_t ldb, float beta, float* C, int64_t ldc) {
    constexpr int NR = MR <= 2 ? 8 : (MR <= 4 ? 4 : 2);
    const int64_t tiles = (N + NR - 1) / NR;
    auto store = [&](int64_t n, int i, float v) {
        float& c = C[i * ldc + n];
        c = alpha * v + (beta == 0.0f ? 0.0f : beta * c);
    };
#pragma omp parallel for schedule(static) if (N * K >= (1 << 16))
    for (int64_t t = 0; t < tiles; t++) {
        const int64_t n0 = t * NR;
        if (n0 + NR <= N) {
            float out[MR][NR];
            few_rows_tile<MR, NR>(K, A, lda, B + n0 * ldb, ldb, out);
            for (int i = 0; i < MR; i++)
                for (int j = 0; j < NR; j++) store(n0 + j, i, out[i][j]);
        } else {
            for (int64_t n = n0; n < N; n++) {  // the last, partial tile: one row of B at a time
                float out[MR][1];
                few_rows_tile<MR, 1>(K, A, lda, B + n * ldb, ldb, out);
                for (int i = 0; i < MR; i++) store(n, i, out[i][0]);
            }
        }
    }
}

static bool few_rows_nt_avx512(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                               int64_t ldb, float beta, float* C, int64_t ldc) {
    switch (M) {
        case 1: sgemm_few_rows_nt_avx512<1>(N, K, alpha, A, lda, B, ldb, beta, C, ldc); return true;
        case 2: sgemm_few_rows_nt_avx512<2>(N, K, alpha, A, lda, B, ldb, beta, C, ldc); return true;
        case 3: sgemm_few_rows_nt_avx512<3>(N, K, alpha, A, lda, B, ldb, beta, C, ldc); return true;
        case 4: sgemm_few_rows_nt_avx512<4>(N, K, alpha, A, lda, B, ldb, beta, C, ldc); return true;
        case 5: sgemm_few_rows_nt_avx512<5>(N, K, alpha, A, lda, B, ldb, beta, C, ldc); return true;
        case 6: sgemm_few_rows_nt_avx512<6>(N, K, alpha, A, lda, B, ldb, beta, C, ldc); return true;
        case 7: sgemm_few_rows_nt_avx512<7>(N, K, alpha, A, lda, B, ldb, beta, C, ldc); return true;
        case 8: sgemm_few_rows_nt_avx512<8>(N, K, alpha, A, lda, B, ldb, beta, C, ldc); return true;
        default: return false;
    }
}
#endif

static void sgemm_few_rows_nt(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
#ifdef __AVX512F__
    if (few_rows_nt_avx512(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
#endif
#pragma omp parallel for schedule(static) if (N * K >= (1 << 16))
    for (int64_t n = 0; n < N; n++) {
        const float* b = B + n * ldb;
        for (int64_t m = 0; m < M; m++) {
            const float* a = A + m * lda;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t k = 0; k < K; k++) acc += a[k] * b[k];
            float& c = C[m * ldc + n];
            c = alpha * acc + (beta == 0.0f ? 0.0f : beta * c);
        }
    }
}

uint16_t bf16_from_float(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);  // NaN: keep it a (quiet) NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even (overflow rounds to infinity)
    return uint16_t(u >> 16);
}

float bf16_to_float(uint16_t h) {
    const uint32_t u = uint32_t(h) << 16;
    float x;
    std::memcpy(&x, &u, 4);
    return x;
}

void bf16_from_float_n(const float* x, uint16_t* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= (1 << 20))
    for (int64_t i = 0; i < n; i++) y[i] = bf16_from_float(x[i]);
}

void sgemm_nt_bf16_ref(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const uint16_t* B,
                       int64_t ldb, float beta, float* C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++)
                acc += double(bf16_to_float(bf16_from_float(A[i * lda + k]))) * double(bf16_to_float(B[j * ldb + k]));
            float c = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
            C[i * ldc + j] = c + float(alpha * acc);
        }
}

int64_t bf16_packed_k(int64_t K) { return (K + 31) / 32 * 32; }

size_t bf16_packed_size(int64_t N, int64_t K) { return size_t((N + 1) / 2 * 2) * size_t(bf16_packed_k(K)); }

void bf16_pack_nt(int64_t N, int64_t K, const float* B, int64_t ldb, uint16_t* packed) {
    const int64_t Kp = bf16_packed_k(K), panels = (N + 1) / 2;
#pragma omp parallel for schedule(static) if (N * K >= (1 << 20))
    for (int64_t p = 0; p < panels; p++)
        for (int64_t r = 0; r < 2; r++) {
            const int64_t n = 2 * p + r;
            for (int64_t k = 0; k < Kp; k++)
                packed[bf16_packed_index(n, k, Kp)] = n < N && k < K ? bf16_from_float(B[n * ldb + k]) : uint16_t(0);
        }
}

void sgemm_nt_bf16(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const uint16_t* Bp,
                   float beta, float* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    const int64_t Kp = bf16_packed_k(K);
    if (K == 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    // Up to 8 rows of A rounded to bf16 and zero padded to Kp (kept between calls: decoding makes
    // thousands of them).
    thread_local std::vector<uint16_t> a16;
    for (int64_t m0 = 0; m0 < M; m0 += 8) {
        const int64_t mb = std::min<int64_t>(8, M - m0);
        if (a16.size() < size_t(mb * Kp)) a16.resize(size_t(mb * Kp));
        for (int64_t i = 0; i < mb; i++) {
            bf16_from_float_n(A + (m0 + i) * lda, a16.data() + i * Kp, K);
            std::fill(a16.data() + i * Kp + K, a16.data() + (i + 1) * Kp, uint16_t(0));
        }
        float* Cm = C + m0 * ldc;
        auto store = [&](int64_t n, int64_t i, float dot) {
            float& c = Cm[i * ldc + n];
            c = alpha * dot + (beta == 0.0f ? 0.0f : beta * c);
        };
#if defined(__AVX512F__) && defined(__AVX512BF16__)
        if (packed_tiles_rows<PackedBf16Tile>(mb, N, Kp, a16.data(), Bp, store)) continue;
#endif
#pragma omp parallel for schedule(static) if (N * K >= (1 << 16))
        for (int64_t n = 0; n < N; n++)
            for (int64_t m = 0; m < mb; m++) {
                const uint16_t* a = a16.data() + m * Kp;
                float acc = 0;
                for (int64_t k = 0; k < K; k++) acc += bf16_to_float(a[k]) * bf16_to_float(Bp[bf16_packed_index(n, k, Kp)]);
                store(n, m, acc);
            }
    }
}

int64_t s8_packed_k(int64_t K) { return (K + 63) / 64 * 64; }

size_t s8_packed_size(int64_t N, int64_t K) { return size_t((N + 1) / 2 * 2) * size_t(s8_packed_k(K)); }

// Symmetric int8 of one row: q = round(x * 127 / max|x|) + bias, so that x ~ scale * (q - bias)
// with scale = max|x| / 127 (bias 0 for weights; 128 for activations, which vpdpbusd takes
// unsigned). A row that holds NaN or infinity gets scale NaN, so that every output it touches is
// NaN, as in fp32; an all-zero row gets scale 0. Rounding is to nearest even in both paths.
template <class Q>
static float s8_quantize_row(const float* x, int64_t n, Q* q, int bias) {
    float amax = 0;
    bool finite = true;
    int64_t k = 0;
#ifdef __AVX512F__
    __m512 vmax = _mm512_setzero_ps();
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    __mmask16 bad = 0;
    for (; k + 16 <= n; k += 16) {
        const __m512 a = _mm512_and_ps(_mm512_loadu_ps(x + k), abs_mask);
        bad |= _mm512_cmp_ps_mask(a, _mm512_set1_ps(std::numeric_limits<float>::max()), _CMP_NLE_UQ);
        vmax = _mm512_max_ps(vmax, a);
    }
    __m256 m8 = _mm256_max_ps(_mm512_castps512_ps256(vmax), _mm512_extractf32x8_ps(vmax, 1));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    finite = bad == 0;
#endif
    for (; k < n; k++) {
        finite = finite && std::isfinite(x[k]);
        amax = std::max(amax, std::fabs(x[k]));
    }
    if (!finite) {
        std::fill(q, q + n, Q(bias));
        return std::numeric_limits<float>::quiet_NaN();
    }
    const float inv = amax > 0 ? 127.0f / amax : 0.0f;
    k = 0;
#ifdef __AVX512F__
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i vbias = _mm512_set1_epi32(bias);
    for (; k + 16 <= n; k += 16) {
        const __m512i r = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + k), vinv)), vbias);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k), _mm512_cvtepi32_epi8(r));
    }
#endif
    for (; k < n; k++) q[k] = Q(int32_t(std::nearbyint(x[k] * inv)) + bias);
    return amax / 127.0f;
}

void s8_pack_nt(int64_t N, int64_t K, const float* B, int64_t ldb, int8_t* packed, float* scale, int32_t* rowsum) {
    const int64_t Kp = s8_packed_k(K), rows = (N + 1) / 2 * 2;
#pragma omp parallel for schedule(static) if (N * K >= (1 << 20))
    for (int64_t n = 0; n < rows; n++) {
        std::vector<int8_t> q(size_t(Kp), 0);
        if (n < N) scale[n] = s8_quantize_row(B + n * ldb, K, q.data(), 0);
        int32_t sum = 0;
        for (int64_t k = 0; k < Kp; k++) {
            packed[s8_packed_index(n, k, Kp)] = q[size_t(k)];
            sum += q[size_t(k)];
        }
        if (n < N) rowsum[n] = sum;
    }
}

void gemm_nt_s8(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const int8_t* Bp,
                const float* scale, const int32_t* rowsum, float beta, float* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    const int64_t Kp = s8_packed_k(K);
    // Up to 8 rows of A quantized per row and shifted into [1, 255] (zero padding: 128), kept
    // between calls.
    thread_local std::vector<uint8_t> a8;
    float sa[8];
    for (int64_t m0 = 0; m0 < M; m0 += 8) {
        const int64_t mb = std::min<int64_t>(8, M - m0);
        if (a8.size() < size_t(mb * Kp)) a8.resize(size_t(mb * Kp));
        for (int64_t i = 0; i < mb; i++) {
            uint8_t* row = a8.data() + i * Kp;
            sa[i] = s8_quantize_row(A + (m0 + i) * lda, K, row, 128);
            std::fill(row + K, row + Kp, uint8_t(128));
        }
        float* Cm = C + m0 * ldc;
        auto store = [&](int64_t n, int64_t i, int32_t dot) {  // C = alpha sa_i sb_n (dot - 128 rowsum_n) + beta C
            float& c = Cm[i * ldc + n];
            c = alpha * (float(dot - 128 * rowsum[n]) * (sa[i] * scale[n])) + (beta == 0.0f ? 0.0f : beta * c);
        };
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
        if (packed_tiles_rows<PackedS8Tile>(mb, N, Kp, a8.data(), Bp, store)) continue;
#endif
#pragma omp parallel for schedule(static) if (N * K >= (1 << 16))
        for (int64_t n = 0; n < N; n++)
            for (int64_t m = 0; m < mb; m++) {
                const uint8_t* a = a8.data() + m * Kp;
                int32_t dot = 0;
                for (int64_t k = 0; k < Kp; k++) dot += int32_t(a[k]) * int32_t(Bp[s8_packed_index(n, k, Kp)]);
                store(n, m, dot);
            }
    }
}

void gemm_nt_s8_ref(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const int8_t* B,
                    int64_t ldb, const float* scale, float beta, float* C, int64_t ldc) {
    std::vector<int8_t> qa(size_t(std::max<int64_t>(K, 1)));
    for (int64_t i = 0; i < M; i++) {
        const float sa = s8_quantize_row(A + i * lda, K, qa.data(), 0);
        for (int64_t j = 0; j < N; j++) {
            int64_t dot = 0;
            for (int64_t k = 0; k < K; k++) dot += int64_t(qa[size_t(k)]) * int64_t(B[j * ldb + k]);
            const float c = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
            C[i * ldc + j] = c + float(double(alpha) * double(sa) * double(scale[j]) * double(dot));
        }
    }
}

static void sgemm_dispatch(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    if (!ta && tb && M <= 8 && K > 0) return sgemm_few_rows_nt(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#ifdef HIPPO_USE_OPENBLAS
    if (K == 0) {  // some BLAS builds mishandle K = 0
        sgemm_builtin(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N),
                int(K), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
#else
    sgemm_builtin(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

}  // namespace hippo
