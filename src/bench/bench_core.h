// Machine roofline and core-kernel benchmarks behind `hippo bench core|gemm|peak`.
#pragma once
#include <string>
#include <vector>

#include "common/bench.h"

namespace hippo {

// AVX-512 (or AVX2) FMA throughput on all threads, GFLOP/s: record "peak.fma".
BenchRecord bench_peak_fma();
// STREAM-style triad a = b + s*c on arrays far larger than the caches, GB/s (12 bytes per element,
// write-allocate not counted, as STREAM): record "peak.bandwidth"; also "peak.bandwidth_nt" with
// non-temporal stores.
std::vector<BenchRecord> bench_peak_bandwidth();

// GEMM on the shapes of one 125M-parameter layer at T = 2048 tokens: (T x 768) . (768 x 2304),
// (768 x 3072) and (3072 x 768). "gemm.<backend>" records with M, N, K, gflops.
// Backends: the linked one (gemm.openblas or gemm.builtin), gemm.builtin, and when the shared
// libraries can be loaded at run time, gemm.blis (cblas_sgemm of libblis) and gemm.onednn
// (dnnl_sgemm). Loading them by dlopen lets one binary compare them without linking them.
std::vector<BenchRecord> bench_gemm(bool all_backends);

}  // namespace hippo
