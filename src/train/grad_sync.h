// Data-parallel gradient synchronisation of an Optimizer's flat gradient arena over a Comm.
//
// Each rank computes the gradient of (its rows' summed loss) / (the global batch's target count),
// so the sum over ranks is exactly the gradient of the global batch's mean loss; GradSync sums.
//
// Two modes:
//   all-reduce (default): after backward every rank holds the summed gradient and runs the full
//     optimizer step itself (replicated state, identical on every rank).
//     Buckets: parameters are grouped, in the order backward finishes them, into buckets of about
//     bucket_bytes; a bucket's all-reduce starts as soon as its last gradient is final, so
//     communication overlaps the rest of backward (the order is learned on the first step, when
//     everything is reduced after backward, and taken from rank 0 so all ranks issue the same
//     sequence; see Note [same order everywhere] in dist/comm.h). Buckets are packed into their
//     own buffers (parameters of one bucket are not contiguous in the arena, which is ordered by
//     parameter group). overlap = false reduces the whole arena in one call after backward.
//   ZeRO-1 (zero1 = true): the optimizer state is sharded: rank r keeps the state of arena range
//     split_range(total, K)[r..r+1] only (Optimizer::shard_state). After backward a reduce-scatter
//     leaves each rank the summed gradient of its range; the gradient norm is all-reduced; each
//     rank updates its range of the parameters; an all-gather (staged through the gradient arena,
//     which is free at that point) gives every rank the new parameters.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "autograd/tensor.h"
#include "dist/comm.h"
#include "nn/optim.h"

namespace hippo {

struct GradSyncOptions {
    int64_t bucket_bytes = int64_t(8) << 20;
    bool overlap = true;
    bool zero1 = false;
};

struct GradSyncStats {
    double comm_s = 0;       // time in blocking waits and blocking collectives (not hidden by compute)
    double bytes = 0;        // payload bytes handed to collectives
    int64_t collectives = 0;
};

class GradSync {
public:
    GradSync(Comm& comm, Optimizer& opt, const GradSyncOptions& o);

    // Hooks for Tensor::backward (a no-op in a one-rank world or without overlap).
    Tensor::BackwardHooks hooks();
    // After backward: every rank's gradient arena holds the sum (all-reduce mode) or its shard's
    // sum (ZeRO-1).
    void reduce_gradients();
    // Clips by the global norm (as Optimizer::clip_grad_norm; max_norm <= 0: no clipping) and
    // returns the norm. Every rank gets the same value.
    double clip_grad_norm(double max_norm);
    // Optimizer step, then (ZeRO-1) the all-gather of the updated parameters.
    void step();

    // ZeRO-1 checkpoints: gather_state() gives every rank the full optimizer state (for a save),
    // reshard() drops back to this rank's shard.
    void gather_state();
    void reshard();

    bool zero1() const { return opt_.zero1; }
    // This rank's share of the optimizer state, in bytes (the full state when not sharded).
    int64_t state_bytes() const;
    const GradSyncStats& stats() const { return stats_; }

private:
    struct Bucket {
        std::vector<int> slots;  // parameter indices, in the order backward finishes them
        int64_t numel = 0;
        std::vector<float> packed;
        int pending = 0;  // gradients not yet final in this step
        Comm::Request req;
    };
    void build_buckets(const std::vector<int>& order);
    void launch_ready();
    void pack(Bucket& b);
    void unpack(const Bucket& b);

    Comm& comm_;
    Optimizer& optim_;
    GradSyncOptions opt_;
    GradSyncStats stats_;
    std::vector<int64_t> offsets_;          // split_range(total, K): ZeRO-1 shards
    std::vector<int64_t> slot_offset_, slot_numel_;
    std::unordered_map<const TensorImpl*, int> slot_of_;
    std::vector<int> ready_order_;          // first step: the order backward finished parameters in
    std::vector<Bucket> buckets_;
    std::vector<int> bucket_of_slot_;
    size_t next_launch_ = 0;
    bool buckets_ready_ = false;
};

}  // namespace hippo
