#include "bench/bench_dist.h"

#include <algorithm>
#include <cmath>

#include "autograd/ops.h"
#include "bench/bench_train.h"
#include "common/check.h"
#include "common/rng.h"
#include "common/runtime.h"
#include "dist/comm.h"
#include "models/model.h"
#include "nn/optim.h"
#include "train/grad_sync.h"

namespace hippo {

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

// Rank r's value at i: small integers, so every sum is exact in fp32 and checkable.
float pattern(int rank, int64_t i) { return float((rank + 1) * (1 + i % 7)); }

}  // namespace

std::vector<BenchRecord> bench_allreduce(bool quick) {
    Comm& comm = Comm::world();
    const int K = comm.size();
    std::vector<BenchRecord> out;
    const int64_t max_n = quick ? (int64_t(1) << 18) : (int64_t(1) << 24);
    std::vector<float> buf(static_cast<size_t>(max_n));
    const float rank_sum = float(K * (K + 1) / 2);
    for (int64_t n = 1024; n <= max_n; n *= 4) {
        for (int pair = 0; pair < 2; pair++) {
            const std::vector<int64_t> offsets = split_range(n, K);
            auto fill = [&] {
                for (int64_t i = 0; i < n; i++) buf[size_t(i)] = pattern(comm.rank(), i);
            };
            auto run = [&] {
                if (pair == 0) {
                    comm.allreduce_sum(buf.data(), n, "bench all-reduce");
                } else {
                    comm.reduce_scatter_sum(buf.data(), offsets, "bench reduce-scatter");
                    comm.allgather(buf.data(), offsets, "bench all-gather");
                }
            };
            // Check once.
            fill();
            run();
            for (int64_t i = 0; i < n; i++) {
                const float want = K == 1 ? pattern(0, i) : rank_sum * float(1 + i % 7);
                HIPPO_CHECK(buf[size_t(i)] == want, "bench allreduce: element %lld of %lld is %g, expected %g (rank %d)",
                            (long long)i, (long long)n, double(buf[size_t(i)]), double(want), comm.rank());
            }
            // Time: every repetition starts together; the slowest rank's time counts.
            const int reps = n <= (1 << 16) ? 200 : (n <= (1 << 20) ? 30 : 8);
            std::vector<double> times;
            for (int r = 0; r < reps; r++) {
                comm.barrier("bench");
                const double t0 = now_seconds();
                run();
                double dt[1] = {now_seconds() - t0};
                std::vector<double> all(static_cast<size_t>(K), 0.0);
                all[size_t(comm.rank())] = dt[0];
                comm.allreduce_sum(all.data(), K, "bench timing");
                times.push_back(*std::max_element(all.begin(), all.end()));
            }
            const double s = median(times);
            BenchRecord rec;
            rec.name = pair == 0 ? "dist.allreduce" : "dist.reduce_scatter+allgather";
            rec.shape = {{"n", n}, {"K", K}};
            rec.ms = s * 1e3;
            rec.runs = reps;
            const double bytes = double(n) * sizeof(float);
            rec.derived["mb"] = bytes / (1 << 20);
            rec.derived["algbw_gbps"] = bytes / s * 1e-9;
            rec.derived["busbw_gbps"] = bytes / s * 1e-9 * 2.0 * (K - 1) / K;
            out.push_back(rec);
        }
    }
    if (!comm.is_root()) out.clear();
    return out;
}

std::vector<BenchRecord> bench_dp_step(const std::string& kind, long long batch, long long L, long long d_model,
                                       long long n_layer, long long vocab, bool zero1, bool overlap, int steps,
                                       double bucket_mb) {
    Comm& comm = Comm::world();
    const int K = comm.size();
    HIPPO_CHECK(batch >= K, "bench dp-step: batch %lld has fewer rows than ranks (%d)", batch, K);
    ModelConfig cfg = bench_lm_config(kind, d_model, n_layer, vocab);
    std::unique_ptr<Model> model_ptr = make_model(cfg, 1, 16);
    Model& model = *model_ptr;
    model.train(true);
    AdamWOptions ao;
    ao.lr = 1e-4;
    AdamW opt(decay_groups(model.named_parameters(), 0.1f), ao);
    GradSyncOptions so;
    so.zero1 = zero1;
    so.overlap = overlap;
    so.bucket_bytes = int64_t(bucket_mb * double(1 << 20));
    GradSync sync(comm, opt, so);

    // The same random global batch on every rank; rank r takes its rows.
    Rng rng(2);
    std::vector<int32_t> tokens(size_t(batch * (L + 1)));
    for (auto& t : tokens) t = int32_t(rng.below(uint64_t(vocab)));
    const int64_t r0 = batch * comm.rank() / K, r1 = batch * (comm.rank() + 1) / K;
    Batch rows;
    rows.B = r1 - r0;
    rows.L = L;
    for (int64_t b = r0; b < r1; b++) {
        const int32_t* row = tokens.data() + b * (L + 1);
        rows.ids.insert(rows.ids.end(), row, row + L);
        rows.targets.insert(rows.targets.end(), row + 1, row + L + 1);
    }
    const double share = double(r1 - r0) / double(batch);
    std::vector<double> t_step, t_compute, t_comm, t_update;
    for (int s = 0; s < steps + 2; s++) {  // two warm-up steps (workspaces; the bucket order)
        comm.barrier("bench");
        const double t0 = now_seconds();
        opt.zero_grad();
        Tensor loss = mul_scalar(model.run_batch(rows, 0, 0, false).loss, float(share));
        loss.backward(Tensor::ones(loss.shape()), sync.hooks());
        const double t1 = now_seconds();
        sync.reduce_gradients();
        const double t2 = now_seconds();
        sync.clip_grad_norm(1.0);
        sync.step();
        const double t3 = now_seconds();
        if (s < 2) continue;
        // The slowest rank sets the pace.
        std::vector<double> parts(static_cast<size_t>(4 * K), 0.0);
        double* mine = parts.data() + 4 * comm.rank();
        mine[0] = t3 - t0;
        mine[1] = t1 - t0;
        mine[2] = t2 - t1;
        mine[3] = t3 - t2;
        comm.allreduce_sum(parts.data(), int64_t(parts.size()), "bench timing");
        double mx[4] = {0, 0, 0, 0};
        for (int r = 0; r < K; r++)
            for (int j = 0; j < 4; j++) mx[j] = std::max(mx[j], parts[size_t(4 * r + j)]);
        t_step.push_back(mx[0]);
        t_compute.push_back(mx[1]);
        t_comm.push_back(mx[2]);
        t_update.push_back(mx[3]);
    }
    std::vector<BenchRecord> out;
    if (!comm.is_root()) return out;
    const double grad_bytes = double(opt.total_size()) * sizeof(float);
    BenchRecord r;
    r.name = "dp.step";
    r.shape = {{"B", batch}, {"L", L}, {"D", d_model}, {"K", K}};
    r.pass = "step";
    r.ms = median(t_step) * 1e3;
    r.runs = steps;
    r.derived["compute_ms"] = median(t_compute) * 1e3;
    r.derived["comm_ms"] = median(t_comm) * 1e3;
    r.derived["update_ms"] = median(t_update) * 1e3;
    r.derived["grad_mb"] = grad_bytes / (1 << 20);
    r.derived["tokens_per_s"] = double(batch * L) / median(t_step);
    r.derived["state_mb_per_rank"] = double(sync.state_bytes()) / (1 << 20);
    r.extra["model"] = kind;
    r.extra["layers"] = n_layer;
    r.extra["threads_per_rank"] = num_threads();
    r.extra["mode"] = zero1 ? "zero1" : (overlap ? "overlap" : "allreduce");
    out.push_back(r);

    // Expected weak scaling on K machines, one rank each, each with this rank's share of work.
    const double t_c = median(t_compute) + median(t_update);
    struct Net {
        const char* name;
        double bw, latency;
    };
    const Net nets[] = {{"10GbE", 1.17e9, 30e-6}, {"IB-100G", 11.5e9, 3e-6}};
    for (const Net& net : nets)
        for (int machines : {8, 64}) {
            const double t_ar = 2.0 * (machines - 1) / machines * grad_bytes / net.bw + 2.0 * (machines - 1) * net.latency;
            BenchRecord m;
            m.name = "dp.model";
            m.shape = {{"K", machines}, {"B", batch * machines / K}, {"L", L}, {"D", d_model}};
            m.ms = (t_c + t_ar) * 1e3;
            m.derived["compute_ms"] = t_c * 1e3;
            m.derived["allreduce_ms"] = t_ar * 1e3;
            m.derived["efficiency_no_overlap"] = t_c / (t_c + t_ar);
            // Perfect overlap hides the all-reduce behind backward (at most the compute time).
            m.derived["efficiency_overlap"] = t_c / std::max(t_c, t_ar + 0.0);
            m.extra["network"] = net.name;
            m.extra["assumed_bandwidth_gbps"] = net.bw * 1e-9;
            m.extra["assumed_latency_us"] = net.latency * 1e6;
            out.push_back(m);
        }
    return out;
}

}  // namespace hippo
