#include "data/synthetic.h"

#include <algorithm>
#include <string_view>
#include <unordered_set>

#include "common/check.h"
#include "common/rng.h"

namespace hippo {

SyntheticTask SyntheticTask::defaults(const std::string& kind) {
    SyntheticTask t;
    t.kind = kind;
    if (kind == "induction_head") {
        t.vocab_size = 20;
        t.seq_len = 30;
    } else if (kind == "assoc_recall") {
        t.vocab_size = 10;
        t.seq_len = 20;
    } else if (kind == "mqar") {
        t.vocab_size = 40;
        t.num_pairs = 8;
        t.seq_len = 0;
    } else {
        throw Error(strf("unknown synthetic task '%s' (expected induction_head, assoc_recall or mqar)", kind.c_str()));
    }
    return t;
}

int64_t SyntheticTask::input_len() const {
    if (kind == "induction_head") return seq_len + 1;
    if (kind == "assoc_recall") return seq_len + 2;
    return 4 * num_pairs - 1;
}

std::vector<std::string> synthetic_vocab(int64_t V) {
    HIPPO_CHECK(V >= 4, "synthetic vocabulary needs at least 4 tokens, got %lld", (long long)V);
    std::vector<std::string> v{".", "=>"};
    for (int64_t i = 0; i < V - 2; i++) v.push_back(std::to_string(i));
    std::sort(v.begin(), v.end());
    return v;
}

namespace {

// One full token sequence (inputs = seq[:-1], targets = seq[1:]) and the positions (into targets)
// of the answers.
struct Example {
    std::vector<int32_t> seq;
    std::vector<int64_t> answers;
};

Example induction_head(const SyntheticTask& t, Rng& rng) {
    const int32_t V = int32_t(t.vocab_size), prefix = V - 1, nreg = V - 2;
    const int64_t L = t.seq_len;
    Example e;
    e.seq.resize(size_t(L));
    for (auto& x : e.seq) x = 1 + int32_t(rng.below(uint64_t(nreg)));
    e.seq.push_back(prefix);
    int64_t pos = int64_t(rng.below(uint64_t(L - 2)));  // [0, L-3]
    e.seq[size_t(pos)] = prefix;
    e.seq.push_back(e.seq[size_t(pos + 1)]);
    e.answers.push_back(int64_t(e.seq.size()) - 2);
    return e;
}

Example assoc_recall(const SyntheticTask& t, Rng& rng) {
    const int32_t V = int32_t(t.vocab_size), prefix = V - 1, nreg = V - 2;
    const int32_t nkeys = nreg / 2, nvals = nreg - nkeys;  // keys: ids 1..nkeys, values: the rest
    std::vector<int32_t> map(static_cast<size_t>(nkeys));
    for (auto& v : map) v = 1 + nkeys + int32_t(rng.below(uint64_t(nvals)));
    Example e;
    std::vector<bool> present(static_cast<size_t>(nkeys), false);
    for (int64_t i = 0; i < t.seq_len / 2; i++) {
        int32_t k = int32_t(rng.below(uint64_t(nkeys)));
        present[size_t(k)] = true;
        e.seq.push_back(1 + k);
        e.seq.push_back(map[size_t(k)]);
    }
    std::vector<int32_t> keys;
    for (int32_t k = 0; k < nkeys; k++)
        if (present[size_t(k)]) keys.push_back(k);
    int32_t q = keys[size_t(rng.below(keys.size()))];
    e.seq.push_back(prefix);
    e.seq.push_back(1 + q);
    e.seq.push_back(map[size_t(q)]);
    e.answers.push_back(int64_t(e.seq.size()) - 2);
    return e;
}

Example mqar(const SyntheticTask& t, Rng& rng) {
    const int32_t V = int32_t(t.vocab_size), nreg = V - 2;
    const int32_t nkeys = nreg / 2, nvals = nreg - nkeys;
    const int64_t K = t.num_pairs;
    std::vector<int32_t> keys(static_cast<size_t>(nkeys));
    for (int32_t k = 0; k < nkeys; k++) keys[size_t(k)] = k;
    for (int64_t i = 0; i < K; i++) std::swap(keys[size_t(i)], keys[size_t(i + int64_t(rng.below(uint64_t(nkeys - i))))]);
    keys.resize(size_t(K));
    std::vector<int32_t> vals(static_cast<size_t>(K));
    for (auto& v : vals) v = 1 + nkeys + int32_t(rng.below(uint64_t(nvals)));
    Example e;
    for (int64_t i = 0; i < K; i++) {
        e.seq.push_back(1 + keys[size_t(i)]);
        e.seq.push_back(vals[size_t(i)]);
    }
    std::vector<int64_t> order(static_cast<size_t>(K));
    for (int64_t i = 0; i < K; i++) order[size_t(i)] = i;
    for (int64_t i = K - 1; i > 0; i--) std::swap(order[size_t(i)], order[size_t(rng.below(uint64_t(i + 1)))]);
    for (int64_t i : order) {
        e.seq.push_back(1 + keys[size_t(i)]);
        e.answers.push_back(int64_t(e.seq.size()) - 1);  // target index of the value
        e.seq.push_back(vals[size_t(i)]);
    }
    return e;
}

uint64_t task_hash(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (char c : s) h = (h ^ uint8_t(c)) * 1099511628211ull;
    return h;
}

}  // namespace

SyntheticData make_synthetic(const SyntheticTask& t, uint64_t seed) {
    HIPPO_CHECK(t.vocab_size >= 6, "%s: vocab_size must be >= 6, got %lld", t.kind.c_str(), (long long)t.vocab_size);
    HIPPO_CHECK(t.num_train >= 0 && t.num_test >= 0 && t.num_train + t.num_test > 0, "%s: empty data set", t.kind.c_str());
    const int64_t nkeys = (t.vocab_size - 2) / 2;
    if (t.kind == "induction_head") {
        HIPPO_CHECK(t.seq_len >= 3, "induction_head: seq_len must be >= 3, got %lld", (long long)t.seq_len);
    } else if (t.kind == "assoc_recall") {
        HIPPO_CHECK(t.seq_len >= 2, "assoc_recall: seq_len must be >= 2, got %lld", (long long)t.seq_len);
    } else if (t.kind == "mqar") {
        HIPPO_CHECK(t.num_pairs >= 1 && t.num_pairs <= nkeys, "mqar: num_pairs must be in [1, %lld] for vocab_size %lld, got %lld",
                    (long long)nkeys, (long long)t.vocab_size, (long long)t.num_pairs);
    } else {
        SyntheticTask::defaults(t.kind);  // throws
    }
    Rng rng(splitmix64(seed) ^ task_hash(t.kind));
    const int64_t total = t.num_train + t.num_test, len = t.input_len();
    SyntheticData out;
    out.train.n = t.num_train;
    out.test.n = t.num_test;
    out.train.len = out.test.len = len;
    std::unordered_set<std::string> seen;
    int64_t made = 0, tries = 0;
    while (made < total) {
        HIPPO_CHECK(tries++ < 100 * total + 1000,
                    "%s: cannot draw %lld distinct sequences (the task space is too small)", t.kind.c_str(), (long long)total);
        Example e = t.kind == "induction_head" ? induction_head(t, rng)
                    : t.kind == "assoc_recall" ? assoc_recall(t, rng)
                                               : mqar(t, rng);
        HIPPO_ASSERT(int64_t(e.seq.size()) == len + 1);
        std::string key(reinterpret_cast<const char*>(e.seq.data()), e.seq.size() * sizeof(int32_t));
        if (!seen.insert(std::move(key)).second) continue;
        const bool train = made < t.num_train;
        SeqDataset& d = train ? out.train : out.test;
        d.inputs.insert(d.inputs.end(), e.seq.begin(), e.seq.end() - 1);
        if (train) {
            d.targets.insert(d.targets.end(), e.seq.begin() + 1, e.seq.end());
        } else {
            std::vector<int32_t> tg(static_cast<size_t>(len), kIgnoreIndex);
            for (int64_t a : e.answers) tg[size_t(a)] = e.seq[size_t(a + 1)];
            d.targets.insert(d.targets.end(), tg.begin(), tg.end());
        }
        made++;
    }
    return out;
}

}  // namespace hippo
