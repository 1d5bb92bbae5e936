#include "apps/model_dir.h"

#include <filesystem>

#include "common/check.h"
#include "models/config.h"
#include "nn/checkpoint.h"

namespace hippo {

namespace fs = std::filesystem;

LoadedModel load_model_dir(const std::string& path) {
    LoadedModel m;
    fs::path p(path);
    HIPPO_CHECK(fs::is_directory(p), "'%s' is not a directory (expected a run directory or a checkpoint)", path.c_str());
    if (!fs::exists(p / "config.json") && fs::exists(p / "checkpoint" / "config.json")) p = p / "checkpoint";
    HIPPO_CHECK(fs::exists(p / "config.json"), "'%s' has no config.json (nor checkpoint/config.json)", path.c_str());
    m.dir = p.string();
    m.config = load_config(m.dir);
    // Training runs write {"model": {...}, "train": ...}; hippo import writes the model object itself.
    const nlohmann::json& mj = m.config.contains("model") ? m.config.at("model") : m.config;
    HIPPO_CHECK(mj.is_object() && mj.contains("d_model"), "%s/config.json has no model configuration", m.dir.c_str());
    ModelConfig cfg = parse_model_config(mj, m.dir + "/config.json model");
    m.model = make_model(cfg, 0);
    load_checkpoint(m.dir, *m.model);
    m.model->eval();
    return m;
}

std::string tokenizer_kind(const LoadedModel& m, const std::string& requested) {
    std::string k = requested;
    if (k.empty() && m.config.contains("tokenizer") && m.config["tokenizer"].is_string())
        k = m.config["tokenizer"].get<std::string>();
    const int64_t V = m.model->config().vocab_size;
    if (k.empty()) k = V == 50257 ? "gpt2" : V <= 256 ? "bytes" : "ids";
    HIPPO_CHECK(k == "gpt2" || k == "bytes" || k == "ids", "unknown tokenizer '%s' (gpt2, bytes, ids)", k.c_str());
    HIPPO_CHECK(k != "gpt2" || V >= 50257, "tokenizer gpt2 needs a vocabulary of 50257, the model has %lld", (long long)V);
    HIPPO_CHECK(k != "bytes" || V >= 256, "tokenizer bytes needs a vocabulary of 256, the model has %lld", (long long)V);
    return k;
}

}  // namespace hippo
