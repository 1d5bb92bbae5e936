// Data-parallel benchmarks, run under mpirun (`mpirun -np K hippo bench allreduce|dp-step`); in a
// single process they measure K = 1. Only rank 0 returns records.
#pragma once
#include <string>
#include <vector>

#include "common/bench.h"

namespace hippo {

// "dist.allreduce" (in-place float sum) and "dist.reduce_scatter+allgather" (the ZeRO-1 pair) for
// n floats from 1 Ki to 16 Mi (quick: to 256 Ki): ms, algbw_gbps = bytes / time and busbw_gbps =
// algbw * 2 (K - 1) / K (the bytes each rank must move in a ring: comparable across K). Every
// result is checked against the exact sum; a wrong sum is a hippo::Error.
std::vector<BenchRecord> bench_allreduce(bool quick);

// "dp.step": one data-parallel training step of an LM (bench_lm_config(kind, ...)) with AdamW and
// GradSync, global batch B x L split over the ranks; medians of step_ms and of its parts
// (compute_ms = forward + backward, comm_ms = blocking gradient collectives, update_ms = clip +
// AdamW + ZeRO-1 all-gather), grad_mb, tokens_per_s. Then "dp.model" records: the expected weak-
// scaling efficiency at K = 8 and 64 machines like this one (one rank each, this rank's compute
// time and gradient size as measured) over two assumed networks (10 GbE, 100 Gb/s InfiniBand),
// with a ring all-reduce costing 2 (K - 1) / K * bytes / bandwidth + 2 (K - 1) * latency, without
// and with perfect overlap with backward.
std::vector<BenchRecord> bench_dp_step(const std::string& kind, long long batch, long long L, long long d_model,
                                       long long n_layer, long long vocab, bool zero1, bool overlap, int steps,
                                       double bucket_mb);

}  // namespace hippo
