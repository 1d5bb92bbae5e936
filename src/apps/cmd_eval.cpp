// hippo eval: evaluate a trained run's checkpoint on a data split.
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "apps/commands.h"
#include "common/check.h"
#include "common/runtime.h"
#include "data/source.h"
#include "models/model.h"
#include "nn/checkpoint.h"
#include "train/trainer.h"

namespace hippo {

int cmd_eval(int argc, char** argv) {
    Args args(argc, argv, {"help", "json"}, {"data", "split", "batch", "seq-len", "batches", "seed", "threads"});
    const char* usage =
        "usage: hippo eval RUN_DIR [--data SOURCE] [--split test|val] [--json]\n"
        "  --data SOURCE   default: the run's training data (same seed, so the same synthetic test set)\n"
        "  --split         test (default) or val\n"
        "  --batch B (32)  --seq-len L (the run's; text only)  --batches K (0 = whole split)\n"
        "  --seed S        data seed (default: the run's)      --threads N\n"
        "Prints loss, accuracy (synthetic: accuracy of the answer positions; text: next-byte accuracy) and\n"
        "perplexity; with --json one JSON object.\n";
    if (args.has("help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    HIPPO_CHECK(args.positional().size() == 1, "eval: expected one RUN_DIR (see 'hippo eval --help')");
    apply_threads_option(args);
    const std::string dir = checkpoint_dir_of(args.positional()[0]);
    nlohmann::json saved = load_config(dir);
    HIPPO_CHECK(saved.contains("model"), "eval: '%s/config.json' has no model config", dir.c_str());
    ModelConfig cfg = parse_model_config(saved.at("model"), dir + "/config.json model");
    std::unique_ptr<Model> model_ptr = make_model(cfg, 0);
    Model& model = *model_ptr;
    load_checkpoint(dir, model);
    model.eval();
    const std::string spec = args.get("data", saved.value("data", std::string()));
    HIPPO_CHECK(!spec.empty(), "eval: no data source (--data)");
    const uint64_t seed = uint64_t(args.get_int("seed", int64_t(saved.value("seed", uint64_t(0))), 0, LLONG_MAX));
    const std::string split = args.get("split", "test");
    int64_t seq_len = 256;
    if (saved.contains("train") && saved["train"].contains("seq_len")) seq_len = saved["train"]["seq_len"].get<int64_t>();
    seq_len = args.get_int("seq-len", seq_len, 1, 1 << 26);
    std::string tokenizer = "bytes";
    if (saved.contains("train") && saved["train"].contains("tokenizer")) tokenizer = saved["train"]["tokenizer"];
    std::unique_ptr<DataSource> data = make_data_source(spec, seed, tokenizer);
    HIPPO_CHECK(cfg.vocab_size >= data->vocab_size(), "eval: model vocab_size %lld is smaller than the data's vocabulary %lld",
                (long long)cfg.vocab_size, (long long)data->vocab_size());
    const double t0 = now_seconds();
    const int64_t batch = args.get_int("batch", 32, 1, 1 << 24), max_batches = args.get_int("batches", 0, 0, 1 << 30);
    HIPPO_CHECK(split == "test" || split == "val", "eval: --split must be test or val, got '%s'", split.c_str());
    EvalResult r = evaluate(model, *data, split, batch, seq_len, max_batches);
    HIPPO_CHECK(r.tokens > 0, "eval: the %s split of %s has no scorable positions at this batch and length", split.c_str(),
                spec.c_str());
    const double dt = now_seconds() - t0;
    if (args.has("json")) {
        nlohmann::json j{{"run", args.positional()[0]}, {"data", spec}, {"split", split}, {"loss", r.loss},
                         {"accuracy", r.accuracy}, {"perplexity", r.perplexity}, {"tokens", r.tokens},
                         {"batches", r.batches}, {"seconds", dt}};
        if (!data->synthetic()) j[tokenizer == "bytes" ? "bits_per_byte" : "bits_per_token"] = r.loss / std::log(2.0);
        std::printf("%s\n", j.dump().c_str());
    } else {
        std::printf("%s %s: loss %.4f  accuracy %.4f  perplexity %.4f  (%lld positions, %.1f s)\n", spec.c_str(),
                    split.c_str(), r.loss, r.accuracy, r.perplexity, (long long)r.tokens, dt);
    }
    return 0;
}

}  // namespace hippo
