#include "data/source.h"

#include "io/file.h"

#include "text/gpt2_tokenizer.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <sys/stat.h>

#include "common/check.h"
#include "common/rng.h"
#include "data/synthetic.h"

namespace hippo {

namespace {

std::vector<int64_t> rng_words(const Rng& r) {
    auto s = r.state();
    return {std::bit_cast<int64_t>(s.s[0]), std::bit_cast<int64_t>(s.s[1]), std::bit_cast<int64_t>(s.s[2]),
            std::bit_cast<int64_t>(s.s[3])};
}
void set_rng_words(Rng& r, const int64_t* w) {
    Rng::State s{};
    for (int i = 0; i < 4; i++) s.s[size_t(i)] = std::bit_cast<uint64_t>(w[i]);
    s.spare = 0;
    s.has_spare = false;
    r.set_state(s);
}

// ---------------------------------------------------------------------------------------------

class SyntheticSource : public DataSource {
public:
    SyntheticSource(const SyntheticTask& t, uint64_t seed) : task_(t), data_(make_synthetic(t, seed)) {
        rng_.reseed(splitmix64(seed ^ 0xDA7A5EEDull));
        new_epoch();
    }
    std::string describe() const override {
        return strf("%s (vocab %lld, %lld input tokens, %lld train / %lld test sequences)", task_.kind.c_str(),
                    (long long)task_.vocab_size, (long long)task_.input_len(), (long long)data_.train.n,
                    (long long)data_.test.n);
    }
    int64_t vocab_size() const override { return task_.vocab_size; }
    bool synthetic() const override { return true; }
    int64_t fixed_seq_len() const override { return task_.input_len(); }

    Batch next_train_rows(int64_t B, int64_t, int64_t row_begin, int64_t row_end) override {
        HIPPO_CHECK(data_.train.n > 0, "%s: no training sequences", task_.kind.c_str());
        HIPPO_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= B, "batch rows [%lld, %lld) outside 0..%lld",
                    (long long)row_begin, (long long)row_end, (long long)B);
        const int64_t L = data_.train.len;
        Batch b;
        b.B = row_end - row_begin;
        b.L = L;
        b.ids.reserve(size_t(b.B * L));
        b.targets.reserve(size_t(b.B * L));
        for (int64_t i = 0; i < B; i++) {
            if (cursor_ >= data_.train.n) {
                epoch_++;
                new_epoch();
            }
            int64_t r = perm_[size_t(cursor_++)];
            if (i < row_begin || i >= row_end) continue;
            b.ids.insert(b.ids.end(), data_.train.inputs.begin() + r * L, data_.train.inputs.begin() + (r + 1) * L);
            b.targets.insert(b.targets.end(), data_.train.targets.begin() + r * L, data_.train.targets.begin() + (r + 1) * L);
        }
        return b;
    }

    std::vector<Batch> eval_batches(const std::string& split, int64_t B, int64_t, int64_t max_batches) const override {
        HIPPO_CHECK(split == "val" || split == "test", "unknown split '%s' (expected val or test)", split.c_str());
        const SeqDataset& d = data_.test;
        std::vector<Batch> out;
        for (int64_t s = 0; s < d.n; s += B) {
            if (max_batches > 0 && int64_t(out.size()) >= max_batches) break;
            Batch b;
            b.B = std::min(B, d.n - s);
            b.L = d.len;
            b.ids.assign(d.inputs.begin() + s * d.len, d.inputs.begin() + (s + b.B) * d.len);
            b.targets.assign(d.targets.begin() + s * d.len, d.targets.begin() + (s + b.B) * d.len);
            out.push_back(std::move(b));
        }
        return out;
    }

    // {epoch, cursor, rng words at the start of the epoch (4)}
    std::vector<int64_t> state() const override {
        std::vector<int64_t> s{epoch_, cursor_};
        s.insert(s.end(), epoch_rng_.begin(), epoch_rng_.end());
        return s;
    }
    void set_state(const std::vector<int64_t>& s) override {
        HIPPO_CHECK(s.size() == 6, "synthetic data state: expected 6 words, got %zu", s.size());
        epoch_ = s[0];
        set_rng_words(rng_, s.data() + 2);
        new_epoch();
        cursor_ = s[1];
    }

private:
    void new_epoch() {
        epoch_rng_ = rng_words(rng_);
        perm_.resize(size_t(data_.train.n));
        for (int64_t i = 0; i < data_.train.n; i++) perm_[size_t(i)] = i;
        for (int64_t i = data_.train.n - 1; i > 0; i--) std::swap(perm_[size_t(i)], perm_[size_t(rng_.below(uint64_t(i + 1)))]);
        cursor_ = 0;
    }

    SyntheticTask task_;
    SyntheticData data_;
    Rng rng_;
    std::vector<int64_t> perm_, epoch_rng_;
    int64_t epoch_ = 0, cursor_ = 0;
};

// ---------------------------------------------------------------------------------------------

class TextSource : public DataSource {
public:
    TextSource(const std::string& spec, const std::string& path, uint64_t seed, const std::string& tokenizer)
        : spec_(spec), path_(path), tokenizer_(tokenizer) {
        std::ifstream f(path, std::ios::binary);
        HIPPO_CHECK(f.good(), "cannot open data file '%s'", path.c_str());
        std::stringstream ss;
        ss << f.rdbuf();
        const std::string s = ss.str();
        if (tokenizer == "gpt2") {
            Gpt2Tokenizer tok = Gpt2Tokenizer::load();
            tokens_ = tok.encode(s);
            vocab_ = tok.vocab_size();
        } else {
            HIPPO_CHECK(tokenizer == "bytes", "unknown tokenizer '%s' (bytes or gpt2)", tokenizer.c_str());
            tokens_.assign(s.begin(), s.end());
            for (auto& t : tokens_) t &= 0xFF;  // bytes, not signed chars
            vocab_ = 256;
        }
        const int64_t n = int64_t(tokens_.size());
        HIPPO_CHECK(n >= 1000, "data file '%s' is too small (%lld tokens)", path.c_str(), (long long)n);
        split_[0] = 0;
        split_[1] = n * 90 / 100;
        split_[2] = n * 95 / 100;
        split_[3] = n;
        rng_.reseed(splitmix64(seed ^ 0x7E47DA7Aull));
    }
    std::string describe() const override {
        return strf("%s (%s, %lld %s tokens; train/val/test %lld/%lld/%lld)", spec_.c_str(), path_.c_str(),
                    (long long)tokens_.size(), tokenizer_ == "bytes" ? "byte" : tokenizer_.c_str(), (long long)(split_[1] - split_[0]), (long long)(split_[2] - split_[1]),
                    (long long)(split_[3] - split_[2]));
    }
    int64_t vocab_size() const override { return vocab_; }
    bool synthetic() const override { return false; }
    int64_t fixed_seq_len() const override { return 0; }

    Batch next_train_rows(int64_t B, int64_t L, int64_t row_begin, int64_t row_end) override {
        const int64_t lo = split_[0], hi = split_[1];
        HIPPO_CHECK(hi - lo > L + 1, "train split of '%s' (%lld bytes) is shorter than seq_len + 1 = %lld", path_.c_str(),
                    (long long)(hi - lo), (long long)(L + 1));
        HIPPO_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= B, "batch rows [%lld, %lld) outside 0..%lld",
                    (long long)row_begin, (long long)row_end, (long long)B);
        Batch b;
        b.B = row_end - row_begin;
        b.L = L;
        b.ids.resize(size_t(b.B * L));
        b.targets.resize(size_t(b.B * L));
        for (int64_t i = 0; i < B; i++) {
            int64_t o = lo + int64_t(rng_.below(uint64_t(hi - lo - L)));  // drawn for every row: same stream on all ranks
            if (i >= row_begin && i < row_end) window(b, i - row_begin, o);
        }
        return b;
    }

    std::vector<Batch> eval_batches(const std::string& split, int64_t B, int64_t L, int64_t max_batches) const override {
        HIPPO_CHECK(split == "val" || split == "test", "unknown split '%s' (expected val or test)", split.c_str());
        const int64_t lo = split == "val" ? split_[1] : split_[2], hi = split == "val" ? split_[2] : split_[3];
        const int64_t nwin = (hi - lo - 1) / L;
        HIPPO_CHECK(nwin >= 1, "%s split of '%s' is shorter than seq_len + 1 = %lld", split.c_str(), path_.c_str(),
                    (long long)(L + 1));
        std::vector<Batch> out;
        for (int64_t w = 0; w < nwin; w += B) {
            if (max_batches > 0 && int64_t(out.size()) >= max_batches) break;
            Batch b;
            b.B = std::min(B, nwin - w);
            b.L = L;
            b.ids.resize(size_t(b.B * L));
            b.targets.resize(size_t(b.B * L));
            for (int64_t i = 0; i < b.B; i++) window(b, i, lo + (w + i) * L);
            out.push_back(std::move(b));
        }
        return out;
    }

    std::vector<int64_t> state() const override { return rng_words(rng_); }
    void set_state(const std::vector<int64_t>& s) override {
        HIPPO_CHECK(s.size() == 4, "text data state: expected 4 words, got %zu", s.size());
        set_rng_words(rng_, s.data());
    }

private:
    void window(Batch& b, int64_t row, int64_t o) const {
        for (int64_t t = 0; t < b.L; t++) {
            b.ids[size_t(row * b.L + t)] = tokens_[size_t(o + t)];
            b.targets[size_t(row * b.L + t)] = tokens_[size_t(o + t + 1)];
        }
    }
    std::string spec_, path_, tokenizer_;
    std::vector<int32_t> tokens_;
    int64_t vocab_ = 256;
    int64_t split_[4];
    Rng rng_;
};

// "name:key=v,key=v" -> task
SyntheticTask parse_task(const std::string& spec) {
    std::string kind = spec, opts;
    if (auto c = spec.find(':'); c != std::string::npos) {
        kind = spec.substr(0, c);
        opts = spec.substr(c + 1);
    }
    SyntheticTask t = SyntheticTask::defaults(kind);
    std::stringstream ss(opts);
    std::string kv;
    while (std::getline(ss, kv, ',')) {
        if (kv.empty()) continue;
        auto eq = kv.find('=');
        HIPPO_CHECK(eq != std::string::npos, "data '%s': option '%s' is not key=value", spec.c_str(), kv.c_str());
        std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
        char* end = nullptr;
        long long x = std::strtoll(v.c_str(), &end, 10);
        HIPPO_CHECK(!v.empty() && *end == '\0', "data '%s': option %s expects an integer, got '%s'", spec.c_str(), k.c_str(),
                    v.c_str());
        if (k == "vocab") t.vocab_size = x;
        else if (k == "seq_len" && kind != "mqar") t.seq_len = x;
        else if (k == "pairs" && kind == "mqar") t.num_pairs = x;
        else if (k == "num_train") t.num_train = x;
        else if (k == "num_test") t.num_test = x;
        else throw Error(strf("data '%s': unknown option '%s' (expected vocab, %s, num_train, num_test)", spec.c_str(),
                              k.c_str(), kind == "mqar" ? "pairs" : "seq_len"));
    }
    return t;
}

const std::map<std::string, std::string>& corpora() {
    static const std::map<std::string, std::string> m{
        {"sotu", "sotu.txt"}, {"moby_dick", "moby_dick.txt"}, {"brown", "brown.txt"}, {"gcide", "gcide.txt"}};
    return m;
}

}  // namespace

std::string data_cache_dir() {
    if (const char* d = std::getenv("HIPPO_DATA"); d && *d) return d;
    const char* home = std::getenv("HOME");
    return std::string(home && *home ? home : ".") + "/.cache/hippo";
}

std::vector<std::string> corpus_names() {
    std::vector<std::string> v;
    for (auto& [k, _] : corpora()) v.push_back(k);
    return v;
}

std::string corpus_path(const std::string& spec) {
    if (spec.rfind("text:", 0) == 0) {
        std::string p = spec.substr(5);
        HIPPO_CHECK(!p.empty(), "data 'text:' needs a file path (text:PATH)");
        const std::string problem = regular_file_problem(p);
        HIPPO_CHECK(problem.empty(), "data file '%s' %s", p.c_str(), problem.c_str());
        return p;
    }
    auto it = corpora().find(spec);
    HIPPO_CHECK(it != corpora().end(), "unknown data source '%s' (expected induction_head, assoc_recall, mqar, sotu, "
                                       "moby_dick, brown, gcide or text:PATH)", spec.c_str());
    std::string p = data_cache_dir() + "/text/" + it->second;
    const std::string problem = regular_file_problem(p);
    HIPPO_CHECK(problem.empty(), "data file '%s' %s; fetch it with: scripts/fetch_data.sh %s", p.c_str(), problem.c_str(),
                spec.c_str());
    return p;
}

std::unique_ptr<DataSource> make_data_source(const std::string& spec, uint64_t seed, const std::string& tokenizer) {
    std::string kind = spec.substr(0, spec.find(':'));
    if (kind == "induction_head" || kind == "assoc_recall" || kind == "mqar") {
        HIPPO_CHECK(tokenizer == "bytes" || tokenizer.empty(), "--tokenizer applies to text data only");
        return std::make_unique<SyntheticSource>(parse_task(spec), seed);
    }
    return std::make_unique<TextSource>(spec, corpus_path(spec), seed, tokenizer.empty() ? "bytes" : tokenizer);
}

}  // namespace hippo
