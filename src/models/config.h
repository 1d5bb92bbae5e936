// Model configuration from JSON (the "model" object of configs/*.json).
//
// Example (the 2-layer H3 model of the synthetic tasks, h3.md section 4.3):
//   {
//     "arch": "lm",                     // the model family (models/model.h registry); default lm
//     "d_model": 32, "n_layer": 2, "vocab_size": 20,   // or "data": the training data's vocabulary
//     "mixer": "h3",                    // any registered mixer (models/mixer.h: h3, s4d, gss,
//                                       // attention, linear_attention, bigbird)
//     "attn_layer_idx": [1],            // optional: these 0-based layers use "attn_mixer"
//     "attn_mixer": "attention",        // any registered mixer (default attention)
//     "ff": "mlp",                      // the feed-forward slot of each block: mlp | none
//                                       // (default: the mixer's; "mlp": true/false is the same)
//     "d_inner": 128,                   // MLP width, default 4 d_model
//     "max_position_embeddings": 0,     // > 0: learned absolute positions
//     "embed_dropout": 0.1, "resid_dropout": 0.0,
//     "pad_vocab_size_multiple": 8, "initializer_range": 0.02, "layer_norm_epsilon": 1e-5,
//     "ssm_cfg": {...}, "attn_cfg": {...}, "gss_cfg": {...}, "bigbird_cfg": {...}
//   }
// The *_cfg blocks are owned by the mixers that read them (each mixer file declares its block's
// schema: keys, defaults, ranges); every block of the registry is kept, with its defaults filled
// in, so a saved config is complete. Every key is checked: an unknown key (here or in a block), a
// value of the wrong type, out of range or non-finite, an unknown mixer, an attention index outside
// [0, n_layer): one-line hippo::Error naming the source.
// A file may hold the model config alone, or {"model": {...}, "train": {...}} (train defaults, see
// train/run_options.h); parse_model_config accepts either.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hippo {

struct ModelConfig {
    std::string arch = "lm";
    std::string name;
    int64_t d_model = 0;
    int64_t n_layer = 0;
    int64_t vocab_size = 0;
    bool vocab_from_data = false;  // "vocab_size": "data": the trainer sets vocab_size from the data source
    int64_t d_inner = 0;           // 0: 4 d_model
    std::string mixer = "h3";
    std::string attn_mixer = "attention";
    std::vector<int64_t> attn_layer_idx;
    std::string ff = "mlp";        // feed-forward slot: mlp | none
    int64_t max_position_embeddings = 0;
    double embed_dropout = 0.1;
    double resid_dropout = 0.0;
    int64_t pad_vocab_size_multiple = 8;
    double initializer_range = 0.02;
    double layer_norm_epsilon = 1e-5;
    // Every registered config block ("ssm_cfg", "attn_cfg", ...), defaults filled in.
    nlohmann::json blocks = nlohmann::json::object();

    int64_t padded_vocab() const;
    int64_t inner() const { return d_inner > 0 ? d_inner : 4 * d_model; }
    const std::string& layer_mixer(int64_t i) const;  // the mixer of layer i
    bool layer_has_mlp(int64_t i) const;
    // A block's values (HIPPO_ASSERT that the block is registered).
    const nlohmann::json& block(const std::string& key) const;
    nlohmann::json to_json() const;
};

// From the model object, or a file's top level holding {"model": ...}. `where` names the source in
// error messages (a file path).
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& where = "model config");
// Reads a JSON file (hippo::Error naming the file when missing, not a regular file, malformed, or
// with a key given twice).
nlohmann::json read_json_file(const std::string& path);

}  // namespace hippo
