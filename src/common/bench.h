// Benchmark records. Every `hippo bench NAME --json` prints a JSON array of these:
//   name   what ran, e.g. "fft.hippo", "fft.fftw", "gemm.openblas"
//   shape  the fields that apply: B, L, D, H, N, n, M, K
//   pass   "fwd", "fwd+bwd", "step" where it applies
//   ms     median of `runs` timed repetitions
//   derived figures: gflops, gbps, tokens_per_s, peak_mb
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hippo {

struct BenchRecord {
    std::string name;
    std::map<std::string, long long> shape;  // only the fields that apply
    std::string pass;                        // empty when it does not apply
    double ms = 0;
    int runs = 0;
    std::map<std::string, double> derived;   // gflops, gbps, tokens_per_s, peak_mb, ...
    nlohmann::ordered_json extra;            // free-form notes (env, backend, ...)
};

nlohmann::ordered_json to_json(const BenchRecord& r);

struct Timing {
    double median_ms;
    int runs;
};
// Runs fn once to warm up, then repeats it until min_runs runs and min_seconds of work have
// passed (capped at max_runs); returns the median time.
Timing time_median(const std::function<void()>& fn, int min_runs = 5, double min_seconds = 0.2,
                   int max_runs = 1000);

// Prints records as a JSON array (json=true) or as an aligned table.
void print_records(const std::vector<BenchRecord>& recs, bool json);

}  // namespace hippo
