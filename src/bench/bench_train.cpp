#include "bench/bench_train.h"

#include <algorithm>

#include "autograd/ops.h"
#include "common/check.h"
#include "common/rng.h"
#include "common/runtime.h"
#include "kernels/gemm.h"
#include "models/model.h"
#include "nn/optim.h"

namespace hippo {

ModelConfig bench_lm_config(const std::string& kind, long long d_model, long long n_layer, long long vocab) {
    nlohmann::json j{{"name", kind},           {"d_model", d_model},   {"n_layer", n_layer},
                     {"vocab_size", vocab},    {"embed_dropout", 0.0}, {"resid_dropout", 0.0},
                     {"attn_cfg", {{"num_heads", std::max<long long>(1, d_model / 64)}}}};
    if (kind == "h3") {
        j["mixer"] = "h3";
    } else if (kind == "hybrid") {
        j["mixer"] = "h3";
        j["attn_layer_idx"] = {n_layer / 2};
    } else if (kind == "transformer") {
        j["mixer"] = "attention";
    } else {
        throw Error(strf("bench: unknown model '%s' (h3, hybrid, transformer)", kind.c_str()));
    }
    return parse_model_config(j, "bench model");
}

std::vector<BenchRecord> bench_train(const std::vector<std::string>& models, long long L, long long d_model,
                                     long long n_layer, long long vocab) {
    std::vector<BenchRecord> out;
    for (const std::string& kind : models) {
        ModelConfig cfg = bench_lm_config(kind, d_model, n_layer, vocab);
        std::unique_ptr<Model> model_ptr = make_model(cfg, 1, 16);
        Model& model = *model_ptr;
        model.train(true);
        AdamWOptions ao;
        ao.lr = 1e-4;
        AdamW opt(decay_groups(model.named_parameters(), 0.1f), ao);
        Rng rng(2);
        std::vector<int32_t> ids(size_t(L + 1));
        for (auto& t : ids) t = int32_t(rng.below(uint64_t(vocab)));
        Batch batch;
        batch.B = 1;
        batch.L = L;
        batch.ids.assign(ids.begin(), ids.end() - 1);
        batch.targets.assign(ids.begin() + 1, ids.end());
        auto step = [&] {
            opt.zero_grad();
            Tensor loss = model.run_batch(batch, 0, 0, false).loss;
            loss.backward();
            opt.step();
        };
        step();  // warm-up: workspaces, caches, optimizer state
        gemm_stats_reset();
        gemm_stats_enable(true);
        Timing t = time_median(step, 3, 2.0, 10);
        GemmStats gs = gemm_stats();
        gemm_stats_enable(false);
        const int total_runs = t.runs + 1;  // time_median runs fn once more as its own warm-up
        double gemm_ms = gs.seconds * 1e3 / total_runs;
        BenchRecord r;
        r.name = "train.step";
        r.shape = {{"B", 1}, {"L", L}, {"D", d_model}};
        r.pass = "step";
        r.ms = t.median_ms;
        r.runs = t.runs;
        r.derived["tokens_per_s"] = double(L) / (t.median_ms * 1e-3);
        r.derived["gemm_ms"] = gemm_ms;
        r.derived["gemm_gflops"] = gs.seconds > 0 ? gs.flops / gs.seconds * 1e-9 : 0;
        r.derived["frac_outside_gemm"] = 1.0 - gemm_ms / t.median_ms;
        r.derived["gemm_bound_tokens_per_s"] = double(L) / (gemm_ms * 1e-3);
        r.extra["model"] = kind;
        r.extra["layers"] = n_layer;
        r.extra["params"] = model.num_parameters();
        out.push_back(r);
    }
    return out;
}

}  // namespace hippo
