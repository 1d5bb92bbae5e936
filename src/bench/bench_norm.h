// Normalisation / softmax kernel benchmarks ("hippo bench norm").
//
// Records (src/common/bench.h conventions), the raw kernels of kernels/norm.h on preallocated
// buffers: names "layer_norm", "rms_norm", "softmax", "cross_entropy"; shape {"L": rows, "D": width
// (the vocabulary for cross_entropy)}; pass "fwd" or "fwd+bwd" (forward then backward, with the
// weight gradients for the norms); ms = time_median; derived "gbps" = (bytes read + bytes written)
// / time, each row buffer counted once per kernel that streams it:
//   layer_norm / rms_norm  fwd 2 L D floats (x in, y out); fwd+bwd 5 L D (+ dy, x in, dx out)
//   softmax                fwd 2 L D; fwd+bwd 5 L D (+ dy, y in, dx out)
//   cross_entropy          fwd 1 L D (logits in); fwd+bwd 3 L D (+ logits in, dlogits out)
// Shapes: L=8192, D=768 (GPT-2 small activations) for all four, and L=2048, D=50304 (GPT-2 vocab
// logits) for softmax and cross_entropy; both are far bigger than L2, the second bigger than L3.
#pragma once
#include <vector>

#include "common/bench.h"

namespace hippo {

std::vector<BenchRecord> bench_norm();

}  // namespace hippo
