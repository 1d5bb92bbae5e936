// Single-precision GEMM, row-major:  C(M,N) = alpha * op(A) * op(B) + beta * C
//   op(A) is (M,K): A is (M,K) with row stride lda, or (K,M) when trans_a
//   op(B) is (K,N): B is (K,N) with row stride ldb, or (N,K) when trans_b
// sgemm goes to the BLAS chosen at build time (HIPPO_BLAS=openblas) or the built-in blocked
// kernel; sgemm_ref is the plain triple loop (double accumulation) that tests compare against.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hippo {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Built-in cache-blocked GEMM with OpenMP over row blocks (used when no BLAS is linked, and
// benchmarked beside it).
void sgemm_builtin(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Accounting of the time spent inside sgemm (for "fraction of step time outside GEMMs" figures).
// Off by default; when on, every sgemm call adds its wall time and 2 M N K flops. Only calls made
// from outside parallel regions are timed (the ops call sgemm from the main thread).
struct GemmStats {
    double seconds = 0;
    double flops = 0;
    int64_t calls = 0;
};
void gemm_stats_enable(bool on);
GemmStats gemm_stats();
void gemm_stats_reset();

// bf16 weight storage for decoding: the upper half of an fp32 (sign, 8-bit exponent, 7-bit
// mantissa), so widening back is a 16-bit shift. Rounding is to nearest, ties to even; NaN stays
// NaN and infinities stay infinite.
uint16_t bf16_from_float(float x);
float bf16_to_float(uint16_t h);
void bf16_from_float_n(const float* x, uint16_t* y, int64_t n);

// Packed bf16 layout of a weight B (N, K) for sgemm_nt_bf16: rows in panels of 2, K zero padded to
// Kp = bf16_packed_k(K) (a multiple of 32), and within a panel each block of 32 k holds the first
// row's 32 values, then the second row's (128 bytes). A panel is one contiguous run of memory, so a
// decode GEMM reads its share of the weights as one sequential stream. An odd N gets a zero row.
int64_t bf16_packed_k(int64_t K);
size_t bf16_packed_size(int64_t N, int64_t K);  // in uint16 elements
inline size_t bf16_packed_index(int64_t n, int64_t k, int64_t Kp) {
    return size_t((n / 2) * 2 * Kp + (k / 32) * 64 + (n % 2) * 32 + k % 32);
}
// B (N, K) fp32, row stride ldb -> packed bf16 (rounded to nearest even), bf16_packed_size(N, K) elements.
void bf16_pack_nt(int64_t N, int64_t K, const float* B, int64_t ldb, uint16_t* packed);

// C (M, N) = alpha * A (M, K) * B (N, K)^T + beta * C in bf16 arithmetic: B is packed bf16 (above),
// A is rounded to bf16 on the way in, products are exact and sums fp32 (AVX512-BF16 vdpbf16ps
// where the CPU has it). A linear layer during decoding, where reading the weights is the cost and
// bf16 halves it (the usual bf16 inference arithmetic, as llama.cpp's). Built for the few rows of
// token-by-token decoding; larger M runs in blocks of 8 rows, each streaming all of B again.
void sgemm_nt_bf16(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const uint16_t* Bp,
                   float beta, float* C, int64_t ldc);
// The plain reference on a row-major bf16 B (N, K) with row stride ldb, double accumulation.
void sgemm_nt_bf16_ref(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const uint16_t* B,
                       int64_t ldb, float beta, float* C, int64_t ldc);

// int8 decode weights: each row n of B (N, K) is quantized symmetrically, B[n, k] ~ scale[n] * q[n, k]
// with q in [-127, 127], into the bf16 panel layout with 64-k blocks (Kp = s8_packed_k(K), a
// multiple of 64; padding is zero). rowsum[n] = sum_k q[n, k]. gemm_nt_s8 quantizes each row of A
// the same way on the way in and forms the dot products in exact int32 (AVX512-VNNI vpdpbusd
// where the CPU has it): C = alpha * sa_i * scale_n * (qa_i . q_n) + beta * C. Per-row weight
// scales with per-token activation scales, as PyTorch's dynamic int8 quantization of Linear.
// A quarter of fp32's weight bytes; the error is that of 8-bit rounding on both sides.
int64_t s8_packed_k(int64_t K);
size_t s8_packed_size(int64_t N, int64_t K);  // in bytes
inline size_t s8_packed_index(int64_t n, int64_t k, int64_t Kp) {
    return size_t((n / 2) * 2 * Kp + (k / 64) * 128 + (n % 2) * 64 + k % 64);
}
// scale and rowsum have N entries.
void s8_pack_nt(int64_t N, int64_t K, const float* B, int64_t ldb, int8_t* packed, float* scale, int32_t* rowsum);
void gemm_nt_s8(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const int8_t* Bp,
                const float* scale, const int32_t* rowsum, float beta, float* C, int64_t ldc);
// The plain reference: B row-major int8 (row stride ldb) with its row scales; A quantized per row
// as gemm_nt_s8 does; int64 dot products.
void gemm_nt_s8_ref(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const int8_t* B,
                    int64_t ldb, const float* scale, float beta, float* C, int64_t ldc);

void sgemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace hippo
