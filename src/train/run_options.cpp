#include "train/run_options.h"

#include <cmath>
#include <type_traits>

#include "common/check.h"

namespace hippo {

using json = nlohmann::json;

namespace {

template <class T>
RunOption row(const std::string& flag, Field f, OnResume r, T TrainOptions::*m) {
    RunOption o;
    o.flag = flag;
    o.field = std::move(f);
    o.on_resume = r;
    o.get = [m](const TrainOptions& t) { return json(t.*m); };
    o.set = [m](TrainOptions& t, const json& v) {
        if constexpr (std::is_same_v<T, int>) t.*m = int(v.get<int64_t>());
        else if constexpr (std::is_same_v<T, uint64_t>) t.*m = uint64_t(v.get<int64_t>());
        else t.*m = v.get<T>();
    };
    return o;
}

Field fi(const std::string& key, json def, double lo, double hi, const std::string& help, json also = nullptr) {
    return Field{key, FieldKind::integer, std::move(def), lo, hi, {}, help, std::move(also)};
}
Field fn(const std::string& key, json def, double lo, double hi, const std::string& help, json also = nullptr) {
    return Field{key, FieldKind::number, std::move(def), lo, hi, {}, help, std::move(also)};
}
Field fs(const std::string& key, json def, std::vector<std::string> choices, const std::string& help) {
    return Field{key, FieldKind::string, std::move(def), 0, 0, std::move(choices), help, nullptr};
}
Field fb(const std::string& key, bool def, const std::string& help) {
    return Field{key, FieldKind::boolean, def, 0, 0, {}, help, nullptr};
}

constexpr double kBig = 1e12;  // steps and intervals: far beyond any run, well inside int64

std::vector<RunOption> make_table() {
    using R = OnResume;
    std::vector<RunOption> t;
    t.push_back(row("data", fs("data", nullptr, {}, "SOURCE: the training data"), R::must_match, &TrainOptions::data));
    t.push_back(row("tokenizer", fs("tokenizer", "bytes", {"bytes", "gpt2"}, "tokenizer of text data (gpt2 = GPT-2 BPE)"),
                    R::must_match, &TrainOptions::tokenizer));
    t.push_back(row("steps", fi("steps", 1000, 1, kBig, "total optimizer steps"), R::may_change, &TrainOptions::steps));
    t.push_back(row("batch", fi("batch", 32, 1, 1 << 24, "global batch (sequences)"), R::may_change, &TrainOptions::batch));
    t.push_back(row("seq-len", fi("seq_len", 256, 1, 1 << 26, "tokens per sequence (synthetic tasks fix their own)"),
                    R::may_change, &TrainOptions::seq_len));
    t.push_back(row("lr", fn("lr", 5e-4, 0, 10, "peak learning rate"), R::may_change, &TrainOptions::lr));
    t.push_back(row("min-lr", fn("min_lr", -1, 0, 10, "final learning rate (default 0.1 lr)", -1), R::may_change,
                    &TrainOptions::min_lr));
    t.push_back(row("warmup", fi("warmup", -1, 0, kBig, "warmup steps (default 10% of steps)", -1), R::may_change,
                    &TrainOptions::warmup));
    t.push_back(row("schedule", fs("schedule", "cosine", {"cosine", "linear", "constant"}, "learning-rate schedule"),
                    R::may_change, &TrainOptions::schedule));
    t.push_back(row("weight-decay", fn("weight_decay", 0.1, 0, 10, "AdamW weight decay of matrices"), R::may_change,
                    &TrainOptions::weight_decay));
    t.push_back(row("ssm-lr", fn("ssm_lr", -1, 0, 10, "lr of the SSM parameters, no weight decay (default min(1e-3, lr))", -1),
                    R::may_change, &TrainOptions::ssm_lr));
    t.push_back(row("beta1", fn("beta1", 0.9, 0, 0.999999, "AdamW beta1"), R::may_change, &TrainOptions::beta1));
    t.push_back(row("beta2", fn("beta2", 0.999, 0, 0.999999999, "AdamW beta2"), R::may_change, &TrainOptions::beta2));
    t.push_back(row("clip", fn("clip", 1.0, 0, 1e9, "gradient-norm clipping (0 = off)"), R::may_change, &TrainOptions::clip));
    t.push_back(row("dropout", fn("dropout", -1, 0, 0.999, "overrides the model's embedding and residual dropout", -1),
                    R::may_change, &TrainOptions::dropout));
    t.push_back(row("eval-every", fi("eval_every", 0, 0, kBig, "evaluate every N steps (0 = at the end)"), R::may_change,
                    &TrainOptions::eval_every));
    t.push_back(row("eval-batches", fi("eval_batches", 20, 0, 1 << 30, "evaluation batches (0 = the whole split)"),
                    R::may_change, &TrainOptions::eval_batches));
    t.push_back(row("save-every", fi("save_every", 0, 0, kBig, "checkpoint every N steps (0 = at the end)"), R::may_change,
                    &TrainOptions::save_every));
    t.push_back(row("log-every", fi("log_every", 0, 0, kBig, "progress line every N steps (0 = about 20 per run)"),
                    R::may_change, &TrainOptions::log_every));
    t.push_back(row("seed", fi("seed", 0, 0, 9.2e18, "seed of the initialisation, data order and dropout"), R::must_match,
                    &TrainOptions::seed));
    t.push_back(row("zero1", fb("zero1", false, "data parallel: shard the AdamW state across ranks"), R::may_change,
                    &TrainOptions::zero1));
    RunOption ov = row("no-overlap", fb("overlap", true, "data parallel: one all-reduce after backward (no overlap)"),
                       R::may_change, &TrainOptions::overlap);
    ov.negated = true;
    t.push_back(ov);
    t.push_back(row("bucket-mb", fn("bucket_mb", 8, 1e-3, 65536, "data parallel: all-reduce bucket size (MiB)"),
                    R::may_change, &TrainOptions::bucket_mb));
    // This invocation only (not saved).
    t.push_back(row("threads", fi("", 0, 0, 4096, "threads (0 = the physical cores)"), R::this_run, &TrainOptions::threads));
    t.push_back(row("stop-after", fi("", 0, 0, kBig, "stop (and save) after N steps of this run"), R::this_run,
                    &TrainOptions::stop_after));
    t.push_back(row("quiet", fb("", false, "no progress output"), R::this_run, &TrainOptions::quiet));
    t.push_back(row("overwrite", fb("", false, "replace an existing run directory (default: refuse it)"), R::this_run,
                    &TrainOptions::overwrite));
    t.push_back(row("dist-timeout", fn("", 0, 0, 1e7, "data parallel: seconds a collective may wait (0 = 300)"), R::this_run,
                    &TrainOptions::dist_timeout));
    t.push_back(row("inject-fault", fs("", nullptr, {}, "test hook RANK:STEP:exit|kill|hang"), R::this_run,
                    &TrainOptions::inject_fault));
    return t;
}

}  // namespace

const std::vector<RunOption>& run_options() {
    static const std::vector<RunOption> t = make_table();
    return t;
}

const RunOption* find_run_option_by_flag(const std::string& flag) {
    for (const RunOption& o : run_options())
        if (o.flag == flag) return &o;
    return nullptr;
}

json TrainOptions::to_json() const {
    json j = json::object();
    for (const RunOption& o : run_options())
        if (o.on_resume != OnResume::this_run && o.field.key != "data" && o.field.key != "seed")
            j[o.field.key] = o.get(*this);
    return j;
}

void apply_train_json(TrainOptions& o, const json& t, const std::string& where) {
    HIPPO_CHECK(t.is_object(), "%s: 'train' must be an object", where.c_str());
    Schema check;
    for (auto it = t.begin(); it != t.end(); ++it) {
        const std::string& k = it.key();
        if (k == "comment") continue;
        const RunOption* opt = nullptr;
        for (const RunOption& r : run_options())
            if (!r.field.key.empty() && r.field.key == k) opt = &r;
        HIPPO_CHECK(opt, "%s: unknown key 'train.%s'", where.c_str(), k.c_str());
        opt->set(o, check.check_value(opt->field, it.value(), strf("%s: train.%s", where.c_str(), k.c_str())));
    }
}

void apply_run_flag(TrainOptions& o, const RunOption& opt, const std::string& text) {
    const std::string what = "option --" + opt.flag;
    if (opt.field.kind == FieldKind::boolean) {
        opt.set(o, json(!opt.negated));
        return;
    }
    Field f = opt.field;
    f.also = nullptr;  // the JSON-only "default" sentinels are not command-line values
    opt.set(o, Schema().value_from_text(f, text, what));
}

std::string run_options_usage() {
    std::string s;
    for (const RunOption& o : run_options()) {
        if (o.flag.empty() || o.flag == "inject-fault") continue;
        std::string name = "--" + o.flag + (o.field.kind == FieldKind::boolean ? "" : " X");
        std::string def;
        if (o.field.kind != FieldKind::boolean && !o.field.def.is_null() && o.field.also.is_null())
            def = " (default " + (o.field.def.is_string() ? o.field.def.get<std::string>() : o.field.def.dump()) + ")";
        std::string range;
        if (o.field.kind == FieldKind::string && !o.field.choices.empty()) range = "; " + o.field.range_text();
        s += strf("  %-18s %s%s%s%s\n", name.c_str(), o.field.help.c_str(), def.c_str(), range.c_str(),
                  o.on_resume == OnResume::must_match ? "; fixed on --resume" : "");
    }
    return s;
}

}  // namespace hippo
