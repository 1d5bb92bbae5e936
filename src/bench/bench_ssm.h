// Benchmarks of the sequence kernels: `hippo bench fftconv` and `hippo bench h3`.
#pragma once
#include <vector>

#include "common/bench.h"

namespace hippo {

// B = 1, C channels (768), for each L: the H3-gated causal convolution y = q * (K * (u v) + D u v)
//   fftconv.fused      L <= max(chunk, 16K): the fused FlashConv kernel given K (the kernel's FFT
//                      included; field ms_kf_cached has the time with the spectrum precomputed).
//   fftconv.unfused    same L: whole-tensor passes through the same FFT (the 2x comparison).
//   fftconv.direct     L <= 4096: O(L^2) time-domain convolution.
//   fftconv.fftw       with FFTW, L <= max(chunk, 16K): the fused algorithm with FFTW's r2c/c2r (same
//                      work as fftconv.fused, FFTW_MEASURE plans).
//   ssm_conv.state_passing  L > chunk: the whole SSM convolution from S4D parameters (kernel
//                      generation included) in chunks with exact state passing.
//   ssm_conv.single_fft     L > chunk (up to 64K): the same with one FFT of size 2L (its baseline).
// Records carry pass (fwd, fwd+bwd), gated (false for the ungated S4D-style runs used at 1M
// tokens, where the gated tensors would not fit in 24 GB), path, and peak_mb (extra memory of
// the call from the caching allocator).
std::vector<BenchRecord> bench_fftconv(const std::vector<long long>& lengths, long long channels, long long chunk);

// The whole H3 mixer (projections included) at B = 1, D = 768, for each L: "h3.mixer" fwd and
// fwd+bwd, with tokens_per_s and peak_mb.
std::vector<BenchRecord> bench_h3(const std::vector<long long>& lengths, long long d_model);

}  // namespace hippo
