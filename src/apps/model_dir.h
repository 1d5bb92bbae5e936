// Loading a model for inference from a directory: a training run (RUN_DIR with checkpoint/), a
// checkpoint directory, or the output of `hippo import` (config.json + model.safetensors).
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "models/model.h"

namespace hippo {

struct LoadedModel {
    std::string dir;                 // the directory that held config.json
    nlohmann::json config;           // the whole config.json
    std::unique_ptr<Model> model;  // weights loaded, eval mode
};

LoadedModel load_model_dir(const std::string& path);

// The tokenizer to use with a model: "gpt2", "bytes" or "ids" (synthetic tasks: ids only), from
// `requested` when not empty, else the config's "tokenizer" key, else the vocabulary size.
std::string tokenizer_kind(const LoadedModel& m, const std::string& requested);

}  // namespace hippo
