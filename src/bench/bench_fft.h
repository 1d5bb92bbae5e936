// Benchmark of hippo's real FFT against FFTW (when built in), single thread, one FFT at a time.
#pragma once
#include <vector>

#include "common/bench.h"

namespace hippo {

// For each n = 2^lg in log2_sizes (1 <= lg <= 22): records
//   "fft.hippo" (pass fwd / inv), "fft.fftw" (only with HIPPO_HAVE_FFTW; FFTW_MEASURE plans,
//   out of place r2c / c2r) and "fft.hippo_unordered" (forward_unordered / inverse_unordered).
// shape {"n"}, ms = median time of one transform, derived gflops = 2.5 n log2(n) / time and, on the
// hippo records, ratio_to_fftw = hippo time / fftw time. The variants are timed alternately in
// rounds (batches of many calls for small n) so that machine noise hits all of them alike.
std::vector<BenchRecord> bench_fft(const std::vector<int>& log2_sizes);

}  // namespace hippo
