// Elementwise kernel and op benchmarks ("hippo bench elementwise").
//
// Records (src/common/bench.h conventions): name "elementwise.<kernel>" for the raw kernels on
// preallocated buffers and "elementwise.tensor.<op>" for the Tensor-level op (allocation through
// the caching allocator, contiguous() checks, no autograd recording); shape {"n"}; pass "fwd" or
// "bwd" (the fused backward kernel); derived "gbps" = (bytes read + bytes written) / time, counting
// each operand once. Sizes: n = 2^24 (DRAM) and n = 2^16 (in cache).
#pragma once
#include <vector>

#include "common/bench.h"

namespace hippo {

std::vector<BenchRecord> bench_elementwise();

}  // namespace hippo
