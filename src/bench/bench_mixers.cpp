#include "bench/bench_mixers.h"

#include <chrono>
#include <cstring>

#include "autograd/ops.h"
#include "autograd/ops_ssm.h"
#include "common/alloc.h"
#include "common/check.h"
#include "common/rng.h"
#include "common/runtime.h"
#include "models/config.h"
#include "models/mixer.h"
#include "nn/s4.h"

namespace hippo {

namespace {

// How a mixer's work grows with L, and why (the record says it when it is skipped).
struct Scaling {
    bool quadratic;
    const char* why;
};
Scaling scaling_of(const std::string& mixer) {
    if (mixer == "attention" || mixer == "mega")
        return {true, "full attention: O(L^2) time (the tiled kernel keeps memory O(L)); mega-chunk is the linear form"};
    return {false, ""};
}

// The config a one-layer LM of this mixer would have at length L. "mega-chunk" is Mega with
// chunks of 128 tokens (the Mega paper's LRA chunk); S4's kernel is attuned to L; Mega's bias
// table covers L.
ModelConfig mixer_config(const std::string& bench_name, long long d_model, long long L) {
    const std::string mixer = bench_name == "mega-chunk" ? "mega" : bench_name;
    nlohmann::json j = {{"d_model", d_model}, {"n_layer", 1}, {"vocab_size", 16}, {"mixer", mixer}};
    if (mixer == "s4") j["s4_cfg"] = {{"l_max", L}};
    if (bench_name == "mega-chunk") j["mega_cfg"] = {{"chunk", 128}};
    else if (mixer == "mega") j["mega_cfg"] = {{"max_positions", L}};
    return parse_model_config(j, "bench ssm");
}

}  // namespace

std::vector<BenchRecord> bench_mixers(const std::vector<std::string>& mixers, const std::vector<long long>& lengths,
                                      long long d_model) {
    std::vector<BenchRecord> out;
    for (const std::string& name : mixers) {
        for (long long L : lengths) {
            BenchRecord base;
            base.name = "mixer." + name;
            base.shape = {{"B", 1}, {"H", d_model}, {"L", L}};
            Scaling sc = scaling_of(name);
            base.extra["scaling"] = sc.quadratic ? "quadratic" : "linear";
            if (sc.quadratic && L > kQuadraticMaxL) {
                BenchRecord r = base;
                r.pass = "skipped";
                r.extra["why"] = sc.why;
                out.push_back(r);
                continue;
            }
            Rng rng(5);
            std::unique_ptr<SequenceMixer> m = make_mixer(name == "mega-chunk" ? "mega" : name,
                                                          mixer_config(name, d_model, L), 0, rng);
            Tensor u = Tensor::empty({1, L, d_model}), g = Tensor::empty({1, L, d_model});
            for (int64_t i = 0; i < u.numel(); i++) {
                u.data()[i] = float(rng.normal());
                g.data()[i] = float(rng.normal());
            }
            auto run = [&](bool backward, const char* pass) {
                auto fn = [&] {
                    if (!backward) {
                        NoGradGuard ng;
                        Tensor y = m->forward_block(u, u, 0, false);
                        return;
                    }
                    m->module()->zero_grad();
                    u.zero_grad();
                    Tensor y = m->forward_block(u, u, 0, false);
                    y.backward(g);
                };
                // Warm-up (plans, caches, first touch); a run of over a second is timed once more.
                const auto t0 = std::chrono::steady_clock::now();
                fn();
                const bool slow = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > 1.0;
                const size_t live = alloc_stats().live_bytes;
                alloc_reset_peak();
                Timing t = time_median(fn, slow ? 1 : 3, slow ? 0.0 : 0.3, slow ? 1 : 50);
                BenchRecord r = base;
                r.pass = pass;
                r.ms = t.median_ms;
                r.runs = t.runs;
                r.derived["tokens_per_s"] = double(L) / (t.median_ms * 1e-3);
                r.derived["peak_mb"] = double(alloc_stats().peak_live_bytes - live) / (1 << 20);
                r.extra["threads"] = num_threads();
                out.push_back(r);
            };
            run(false, "fwd");
            u.set_requires_grad();
            run(true, "fwd+bwd");
            u.set_requires_grad(false);
        }
    }
    return out;
}

std::vector<BenchRecord> bench_s4_kernel(long long H, long long N, long long L) {
    S4Config c;
    c.d_model = H;
    c.d_state = N;
    c.l_max = L;
    Rng rng(7);
    S4 m(c, rng);  // HiPPO-LegS init, C attuned to L (not timed)
    std::vector<BenchRecord> out;
    for (bool backward : {false, true}) {
        auto fn = [&] {
            if (!backward) {
                NoGradGuard ng;
                Tensor K = s4_dplr_kernel(m.inv_dt, m.A_real, m.A_imag, m.B, m.P, m.C, L, L);
                return;
            }
            m.zero_grad();
            Tensor K = s4_dplr_kernel(m.inv_dt, m.A_real, m.A_imag, m.B, m.P, m.C, L, L);
            sum(K).backward();
        };
        for (auto& [name, p] : m.named_parameters()) p.set_requires_grad(backward);
        Timing t = time_median(fn, 3, 0.5, 20);
        BenchRecord r;
        r.name = "s4.kernel";
        r.shape = {{"H", H}, {"N", N}, {"L", L}};
        r.pass = backward ? "fwd+bwd" : "fwd";
        r.ms = t.median_ms;
        r.runs = t.runs;
        r.extra["threads"] = num_threads();
        out.push_back(r);
    }
    return out;
}

}  // namespace hippo
