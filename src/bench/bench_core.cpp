#include "bench/bench_core.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "common/alloc.h"
#include "common/simd.h"
#include "common/check.h"
#include "common/rng.h"
#include "common/runtime.h"
#include "kernels/gemm.h"

#ifdef HIPPO_USE_OPENBLAS
#include <cblas.h>
#endif

namespace hippo {

// ---------------------------------------------------------------------------------------------
// FMA peak: 12 independent accumulator registers per thread hide the 4-cycle FMA latency.

#if defined(__AVX512F__)
using fvec = __m512;
constexpr int kLanes = 16;
static inline fvec vset(float x) { return _mm512_set1_ps(x); }
static inline fvec vfma(fvec a, fvec b, fvec c) { return _mm512_fmadd_ps(a, b, c); }
static inline float vsum(fvec a) { return _mm512_reduce_add_ps(a); }
#elif defined(__AVX2__) && defined(__FMA__)
using fvec = __m256;
constexpr int kLanes = 8;
static inline fvec vset(float x) { return _mm256_set1_ps(x); }
static inline fvec vfma(fvec a, fvec b, fvec c) { return _mm256_fmadd_ps(a, b, c); }
static inline float vsum(fvec a) {
    float t[8];
    _mm256_storeu_ps(t, a);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#endif

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
__attribute__((noinline)) static float fma_loop(long iters) {
    fvec acc[12];
    fvec mul = vset(0.9999999f), add = vset(1e-7f);
    for (int i = 0; i < 12; i++) acc[i] = vset(float(i));
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) acc[i] = vfma(acc[i], mul, add);
    }
    float s = 0;
    for (int i = 0; i < 12; i++) s += vsum(acc[i]);
    return s;
}
#endif

BenchRecord bench_peak_fma() {
    BenchRecord r;
    r.name = "peak.fma";
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
    const long iters = 4000000;
    volatile float sink = 0;
    int nt = num_threads();
    Timing t = time_median([&] {
        float s = 0;
#pragma omp parallel num_threads(nt) reduction(+ : s)
        s += fma_loop(iters);
        sink = sink + s;
    }, 5, 0.3);
    double flops = double(nt) * iters * 12 * kLanes * 2;
    r.ms = t.median_ms;
    r.runs = t.runs;
    r.derived["gflops"] = flops / (t.median_ms * 1e-3) * 1e-9;
    r.extra["isa"] = kLanes == 16 ? "avx512" : "avx2";
    r.extra["threads"] = nt;
#else
    r.extra["isa"] = "none";
#endif
    return r;
}

// ---------------------------------------------------------------------------------------------
// Bandwidth: triad over 3 x 256 MiB, each thread on a static slice.

std::vector<BenchRecord> bench_peak_bandwidth() {
    const int64_t n = int64_t(64) << 20;  // floats per array (256 MiB)
    float* a = static_cast<float*>(aligned_alloc_bytes(size_t(n) * 4));
    float* b = static_cast<float*>(aligned_alloc_bytes(size_t(n) * 4));
    float* c = static_cast<float*>(aligned_alloc_bytes(size_t(n) * 4));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        a[i] = 0;
        b[i] = 1;
        c[i] = 2;
    }
    std::vector<BenchRecord> out;
    for (int nt_stores = 0; nt_stores < 2; nt_stores++) {
        Timing t = time_median([&] {
            const float s = 0.5f;
            if (!nt_stores) {
#pragma omp parallel for simd schedule(static)
                for (int64_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
            } else {
#if defined(__AVX512F__)
#pragma omp parallel for schedule(static)
                for (int64_t blk = 0; blk < n / 16; blk++) {
                    int64_t i = blk * 16;
                    _mm512_stream_ps(a + i, _mm512_fmadd_ps(_mm512_set1_ps(s), _mm512_load_ps(c + i), _mm512_load_ps(b + i)));
                }
                _mm_sfence();
#else
#pragma omp parallel for simd schedule(static)
                for (int64_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
#endif
            }
        }, 5, 0.5, 20);
        BenchRecord r;
        r.name = nt_stores ? "peak.bandwidth_nt" : "peak.bandwidth";
        r.shape["n"] = n;
        r.ms = t.median_ms;
        r.runs = t.runs;
        r.derived["gbps"] = double(n) * 12 / (t.median_ms * 1e-3) * 1e-9;
        r.extra["kernel"] = "triad";
        out.push_back(r);
    }
    aligned_free(a);
    aligned_free(b);
    aligned_free(c);
    return out;
}

// ---------------------------------------------------------------------------------------------
// GEMM backends

namespace {

using GemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                        int64_t, float, float*, int64_t);

// cblas_sgemm / dnnl_sgemm loaded at run time (same row-major semantics as our sgemm).
using cblas_sgemm_t = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float,
                               float*, int);
using dnnl_sgemm_t = int (*)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                             int64_t, float, float*, int64_t);
cblas_sgemm_t g_blis = nullptr;
dnnl_sgemm_t g_dnnl = nullptr;

void* open_first(std::initializer_list<const char*> paths) {
    for (const char* p : paths)
        if (void* h = dlopen(p, RTLD_NOW | RTLD_LOCAL)) return h;
    return nullptr;
}

void blis_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    // CBLAS enums: RowMajor = 101, NoTrans = 111, Trans = 112.
    g_blis(101, ta ? 112 : 111, tb ? 112 : 111, int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C,
           int(ldc));
}
void dnnl_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    g_dnnl(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace

std::vector<BenchRecord> bench_gemm(bool all_backends) {
    struct Backend {
        std::string name;
        GemmFn fn;
    };
    std::vector<Backend> backends;
#ifdef HIPPO_USE_OPENBLAS
    backends.push_back({"gemm.openblas", sgemm});
#endif
    if (all_backends || backends.empty()) backends.push_back({"gemm.builtin", sgemm_builtin});
    if (all_backends) {
        if (void* h = open_first({"/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4", "libblis.so.4"}))
            if ((g_blis = reinterpret_cast<cblas_sgemm_t>(dlsym(h, "cblas_sgemm")))) backends.push_back({"gemm.blis", blis_gemm});
        if (void* h = open_first({"libdnnl.so.2", "libdnnl.so.3"}))
            if ((g_dnnl = reinterpret_cast<dnnl_sgemm_t>(dlsym(h, "dnnl_sgemm")))) backends.push_back({"gemm.onednn", dnnl_gemm});
    }

    // (M, N, K): T x in -> T x out, i.e. x (M, K) times W^T with W (N, K) as nn.Linear stores it.
    const int64_t shapes[][3] = {{2048, 2304, 768}, {2048, 3072, 768}, {2048, 768, 3072}};
    std::vector<BenchRecord> out;
    Rng rng(1);
    for (auto& s : shapes) {
        int64_t M = s[0], N = s[1], K = s[2];
        std::vector<float> A(size_t(M * K)), W(size_t(N * K)), C(size_t(M * N));
        for (auto& v : A) v = rng.uniform() - 0.5f;
        for (auto& v : W) v = rng.uniform() - 0.5f;
        for (auto& be : backends) {
            Timing t = time_median([&] { be.fn(false, true, M, N, K, 1.0f, A.data(), K, W.data(), K, 0.0f, C.data(), N); },
                                   5, 0.3, 50);
            BenchRecord r;
            r.name = be.name;
            r.shape = {{"M", M}, {"N", N}, {"K", K}};
            r.pass = "fwd";
            r.ms = t.median_ms;
            r.runs = t.runs;
            r.derived["gflops"] = 2.0 * M * N * K / (t.median_ms * 1e-3) * 1e-9;
            const char* ct = std::getenv("OPENBLAS_CORETYPE");
            r.extra["OPENBLAS_CORETYPE"] = ct ? ct : "";
            if (be.name == "gemm.blis") {
                const char* arch = std::getenv("BLIS_ARCH_TYPE");
                r.extra["BLIS_ARCH_TYPE"] = arch ? arch : "";
            }
            out.push_back(r);
        }
    }

    // Decoding shapes: M = 1 or 8 token rows against a weight matrix streamed from memory (copies
    // cycled so that no run finds the weights in cache). gemm.decode is hippo's few-rows path
    // (sgemm with M <= 8); gemm.decode_blas calls the BLAS directly, which packs the weights;
    // gemm.decode_bf16 and gemm.decode_int8 read packed bf16 / int8 weights (a half / a quarter of
    // the bytes).
    const int64_t dshapes[][2] = {{2304, 768}, {3072, 768}, {768, 3072}, {50304, 768}};
    for (int64_t M : {1, 8})
        for (auto& s : dshapes) {
            const int64_t N = s[0], K = s[1];
            const int64_t copies = std::max<int64_t>(1, (int64_t(256) << 20) / (N * K * 4));
            std::vector<float> A(size_t(M * K)), W(size_t(copies * N * K)), C(size_t(M * N));
            Rng rng(3);
            for (auto& x : A) x = float(rng.normal());
            for (auto& x : W) x = float(rng.normal()) * 0.02f;
            // The same weights in bf16, twice as many copies so that they span the same 256 MiB.
            const int64_t copies16 = 2 * copies;
            const size_t packed = bf16_packed_size(N, K);
            std::vector<uint16_t> W16(size_t(copies16) * packed);
            for (int64_t c = 0; c < copies16; c++) bf16_pack_nt(N, K, W.data() + (c % copies) * N * K, K, W16.data() + size_t(c) * packed);
            // ... and in int8, four times as many copies.
            const int64_t copies8 = 4 * copies;
            const size_t packed8 = s8_packed_size(N, K);
            std::vector<int8_t> W8(size_t(copies8) * packed8);
            std::vector<float> scale8(size_t(copies8 * N));
            std::vector<int32_t> rowsum8(size_t(copies8 * N));
            for (int64_t c = 0; c < copies8; c++)
                s8_pack_nt(N, K, W.data() + (c % copies) * N * K, K, W8.data() + size_t(c) * packed8, scale8.data() + c * N,
                           rowsum8.data() + c * N);
            for (int variant = 0; variant < 4; variant++) {  // hippo fp32, BLAS fp32, hippo bf16, hippo int8
                const bool blas = variant == 1, bf16 = variant == 2, int8 = variant == 3;
#ifndef HIPPO_USE_OPENBLAS
                if (blas) continue;
#endif
                int64_t next = 0;
                Timing t = time_median(
                    [&] {
                        if (int8) {
                            const int64_t c = next++ % copies8;
                            gemm_nt_s8(M, N, K, 1.0f, A.data(), K, W8.data() + size_t(c) * packed8, scale8.data() + c * N,
                                       rowsum8.data() + c * N, 0.0f, C.data(), N);
                            return;
                        }
                        if (bf16) {
                            const uint16_t* w = W16.data() + size_t(next++ % copies16) * packed;
                            sgemm_nt_bf16(M, N, K, 1.0f, A.data(), K, w, 0.0f, C.data(), N);
                            return;
                        }
                        const float* w = W.data() + (next++ % copies) * N * K;
#ifdef HIPPO_USE_OPENBLAS
                        if (blas) {
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0f, A.data(),
                                        int(K), w, int(K), 0.0f, C.data(), int(N));
                            return;
                        }
#endif
                        sgemm(false, true, M, N, K, 1.0f, A.data(), K, w, K, 0.0f, C.data(), N);
                    },
                    5, 0.3, 200);
                BenchRecord r;
                r.name = blas ? "gemm.decode_blas" : bf16 ? "gemm.decode_bf16" : int8 ? "gemm.decode_int8" : "gemm.decode";
                r.shape = {{"M", M}, {"N", N}, {"K", K}};
                r.ms = t.median_ms;
                r.runs = t.runs;
                r.derived["gflops"] = 2.0 * M * N * K / (t.median_ms * 1e-3) * 1e-9;
                r.derived["weight_gbps"] = double(N * K * (int8 ? 1 : bf16 ? 2 : 4)) / (t.median_ms * 1e-3) * 1e-9;
                out.push_back(r);
            }
        }
    return out;
}

}  // namespace hippo
