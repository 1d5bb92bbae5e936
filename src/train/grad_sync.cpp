#include "train/grad_sync.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/check.h"
#include "common/runtime.h"

namespace hippo {

GradSync::GradSync(Comm& comm, Optimizer& optim, const GradSyncOptions& o) : comm_(comm), optim_(optim), opt_(o) {
    HIPPO_CHECK(o.bucket_bytes > 0, "gradient bucket size must be positive");
    const NamedTensors& params = optim_.named_parameters();
    for (size_t i = 0; i < params.size(); i++) {
        slot_of_[params[i].second.impl().get()] = int(i);
        slot_offset_.push_back(optim_.param_offset(i));
        slot_numel_.push_back(params[i].second.numel());
    }
    offsets_ = split_range(optim_.total_size(), comm_.size());
    if (opt_.zero1) optim_.shard_state(offsets_[size_t(comm_.rank())], offsets_[size_t(comm_.rank()) + 1]);
}

int64_t GradSync::state_bytes() const {
    int64_t n = 0;
    for (const Tensor& b : optim_.state_buffers()) n += b.numel();
    return n * int64_t(sizeof(float));
}

Tensor::BackwardHooks GradSync::hooks() {
    Tensor::BackwardHooks h;
    if (!comm_.distributed() || !opt_.overlap || opt_.zero1) return h;
    h.leaf_ready = [this](const TensorImpl* leaf) {
        auto it = slot_of_.find(leaf);
        if (it == slot_of_.end()) return;
        if (!buckets_ready_) {
            ready_order_.push_back(it->second);
            return;
        }
        Bucket& b = buckets_[size_t(bucket_of_slot_[size_t(it->second)])];
        if (--b.pending == 0) launch_ready();
    };
    h.after_node = [this]() {
        // Open MPI progresses shared-memory and TCP transfers only inside MPI calls: poke the oldest
        // bucket in flight so the transfer moves while backward computes.
        for (size_t i = 0; i < next_launch_; i++) {
            Bucket& b = buckets_[i];
            if (b.req.active) {
                comm_.test(b.req);
                break;
            }
        }
    };
    return h;
}

void GradSync::build_buckets(const std::vector<int>& first_order) {
    // Rank 0's order, so every rank packs the same buckets and launches them in the same sequence.
    std::vector<int> root_order = first_order;
    int64_t n = int64_t(root_order.size());
    comm_.broadcast(&n, sizeof n, 0, "gradient bucket layout");
    root_order.resize(size_t(n));
    comm_.broadcast(root_order.data(), n * int64_t(sizeof(int)), 0, "gradient bucket layout");
    std::vector<int> order;
    std::vector<char> seen(slot_numel_.size(), 0);
    for (int s : root_order) {
        if (s >= 0 && size_t(s) < seen.size() && !seen[size_t(s)]) {
            seen[size_t(s)] = 1;
            order.push_back(s);
        }
    }
    for (size_t s = 0; s < seen.size(); s++)  // parameters that got no gradient on the first step
        if (!seen[s]) order.push_back(int(s));

    const int64_t bucket_floats = std::max<int64_t>(1, opt_.bucket_bytes / int64_t(sizeof(float)));
    buckets_.clear();
    bucket_of_slot_.assign(slot_numel_.size(), -1);
    for (int s : order) {
        if (buckets_.empty() || buckets_.back().numel >= bucket_floats) buckets_.emplace_back();
        Bucket& b = buckets_.back();
        b.slots.push_back(s);
        b.numel += slot_numel_[size_t(s)];
        bucket_of_slot_[size_t(s)] = int(buckets_.size()) - 1;
    }
    for (Bucket& b : buckets_) {
        b.packed.resize(size_t(b.numel));
        b.pending = int(b.slots.size());
    }
    buckets_ready_ = true;
    next_launch_ = 0;
}

void GradSync::pack(Bucket& b) {
    const float* g = optim_.grad_arena().data();
    float* dst = b.packed.data();
    for (int s : b.slots) {
        std::memcpy(dst, g + slot_offset_[size_t(s)], size_t(slot_numel_[size_t(s)]) * sizeof(float));
        dst += slot_numel_[size_t(s)];
    }
}

void GradSync::unpack(const Bucket& b) {
    float* g = optim_.grad_arena().data();
    const float* src = b.packed.data();
    for (int s : b.slots) {
        std::memcpy(g + slot_offset_[size_t(s)], src, size_t(slot_numel_[size_t(s)]) * sizeof(float));
        src += slot_numel_[size_t(s)];
    }
}

void GradSync::launch_ready() {
    while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending <= 0) {
        Bucket& b = buckets_[next_launch_++];
        pack(b);
        b.req = comm_.start_allreduce_sum(b.packed.data(), b.numel, "gradient all-reduce");
        stats_.bytes += double(b.numel) * sizeof(float);
        stats_.collectives++;
    }
}

void GradSync::reduce_gradients() {
    if (!comm_.distributed()) return;
    const double t0 = now_seconds();
    float* g = optim_.grad_arena().data();
    const int64_t total = optim_.total_size();
    if (opt_.zero1) {
        comm_.reduce_scatter_sum(g, offsets_, "gradient reduce-scatter");
        stats_.bytes += double(total) * sizeof(float);
        stats_.collectives++;
    } else if (opt_.overlap && buckets_ready_) {
        // Buckets still waiting for a gradient (parameters unused this step) go now, in order.
        for (size_t i = next_launch_; i < buckets_.size(); i++) buckets_[i].pending = 0;
        launch_ready();
        for (Bucket& b : buckets_) {
            comm_.wait(b.req);
            unpack(b);
            b.pending = int(b.slots.size());
        }
        next_launch_ = 0;
    } else {
        comm_.allreduce_sum(g, total, "gradient all-reduce");
        stats_.bytes += double(total) * sizeof(float);
        stats_.collectives++;
        if (opt_.overlap && !buckets_ready_) build_buckets(ready_order_);
    }
    stats_.comm_s += now_seconds() - t0;
}

double GradSync::clip_grad_norm(double max_norm) {
    if (!opt_.zero1 || !comm_.distributed()) return optim_.clip_grad_norm(max_norm > 0 ? max_norm : 1e300);
    // Sum of squares of this rank's range in fixed chunks (the same bits on any thread count), then
    // over ranks.
    const int64_t b = offsets_[size_t(comm_.rank())], e = offsets_[size_t(comm_.rank()) + 1];
    float* g = optim_.grad_arena().data();
    constexpr int64_t kChunk = 1 << 15;
    const int64_t nchunks = (e - b + kChunk - 1) / kChunk;
    std::vector<double> partial(size_t(std::max<int64_t>(nchunks, 0)));
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        double s = 0;
        const int64_t lo = b + c * kChunk, hi = std::min(e, lo + kChunk);
#pragma omp simd reduction(+ : s)
        for (int64_t i = lo; i < hi; i++) s += double(g[i]) * double(g[i]);
        partial[size_t(c)] = s;
    }
    double sumsq = 0;
    for (double s : partial) sumsq += s;
    const double t0 = now_seconds();
    comm_.allreduce_sum(&sumsq, 1, "gradient norm");
    stats_.comm_s += now_seconds() - t0;
    const double norm = std::sqrt(sumsq);
    if (std::isfinite(norm) && max_norm > 0) {
        const float scale = float(std::min(1.0, max_norm / (norm + 1e-6)));
        if (scale < 1.0f)
            for (int64_t i = b; i < e; i++) g[i] *= scale;
    }
    return norm;
}

void GradSync::step() {
    optim_.step();
    if (!opt_.zero1 || !comm_.distributed()) return;
    // The gradient arena is free until the next zero_grad(): stage the parameters in it.
    const double t0 = now_seconds();
    float* flat = optim_.grad_arena().data();
    const int64_t b = offsets_[size_t(comm_.rank())], e = offsets_[size_t(comm_.rank()) + 1];
    optim_.params_to_flat(flat, b, e);
    comm_.allgather(flat, offsets_, "parameter all-gather");
    optim_.params_from_flat(flat, 0, optim_.total_size());
    stats_.bytes += double(optim_.total_size()) * sizeof(float);
    stats_.collectives++;
    stats_.comm_s += now_seconds() - t0;
}

void GradSync::gather_state() {
    if (!opt_.zero1) return;
    const int64_t total = optim_.total_size();
    const int64_t b = optim_.state_begin(), e = optim_.state_end();
    std::vector<Tensor> full;
    for (const Tensor& s : optim_.state_buffers()) {
        Tensor f = Tensor::zeros({total});
        std::memcpy(f.data() + b, s.data(), size_t(e - b) * sizeof(float));
        comm_.allgather(f.data(), offsets_, "optimizer state all-gather");
        full.push_back(f);
    }
    optim_.set_state_range(0, total, std::move(full));
}

void GradSync::reshard() {
    if (!opt_.zero1) return;
    optim_.shard_state(offsets_[size_t(comm_.rank())], offsets_[size_t(comm_.rank()) + 1]);
}

}  // namespace hippo
