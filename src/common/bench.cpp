#include "common/bench.h"

#include <algorithm>
#include <cstdio>

#include "common/check.h"
#include "common/runtime.h"

namespace hippo {

nlohmann::ordered_json to_json(const BenchRecord& r) {
    nlohmann::ordered_json j;
    j["name"] = r.name;
    for (const char* k : {"B", "L", "D", "H", "N", "n", "M", "K"}) {
        auto it = r.shape.find(k);
        if (it != r.shape.end()) j[k] = it->second;
    }
    for (auto& [k, v] : r.shape)
        if (!j.contains(k)) j[k] = v;
    if (!r.pass.empty()) j["pass"] = r.pass;
    j["ms"] = r.ms;
    j["runs"] = r.runs;
    for (auto& [k, v] : r.derived) j[k] = v;
    if (!r.extra.is_null())
        for (auto& [k, v] : r.extra.items()) j[k] = v;
    return j;
}

Timing time_median(const std::function<void()>& fn, int min_runs, double min_seconds, int max_runs) {
    fn();  // warm-up: page faults, caches, lazily built plans
    std::vector<double> t;
    double start = now_seconds();
    while (int(t.size()) < max_runs && (int(t.size()) < min_runs || now_seconds() - start < min_seconds)) {
        double t0 = now_seconds();
        fn();
        t.push_back((now_seconds() - t0) * 1e3);
    }
    std::sort(t.begin(), t.end());
    return {t[t.size() / 2], int(t.size())};
}

void print_records(const std::vector<BenchRecord>& recs, bool json) {
    if (json) {
        nlohmann::ordered_json arr = nlohmann::ordered_json::array();
        for (auto& r : recs) arr.push_back(to_json(r));
        std::printf("%s\n", arr.dump(1).c_str());
        return;
    }
    for (auto& r : recs) {
        std::string shape;
        for (auto& [k, v] : r.shape) shape += strf("%s=%lld ", k.c_str(), v);
        std::string derived;
        for (auto& [k, v] : r.derived) derived += strf("%s=%.2f ", k.c_str(), v);
        std::printf("%-22s %-34s %-8s %10.4f ms  %s\n", r.name.c_str(), shape.c_str(), r.pass.c_str(),
                    r.ms, derived.c_str());
    }
}

}  // namespace hippo
