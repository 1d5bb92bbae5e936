// Model configuration from JSON (the "model" object of configs/*.json).
//
// Example (the 2-layer H3 model of the synthetic tasks, h3.md section 4.3):
//   {
//     "d_model": 32, "n_layer": 2, "vocab_size": 20,   // or "data": the training data's vocabulary
//     "mixer": "h3",                    // h3 | attention | s4d | gss | linear_attention
//     "attn_layer_idx": [1],            // optional: these 0-based layers use "attn_mixer"
//     "attn_mixer": "attention",        // attention | linear_attention (default attention)
//     "d_inner": 128,                   // MLP width, default 4 d_model
//     "max_position_embeddings": 0,     // > 0: learned absolute positions
//     "embed_dropout": 0.1, "resid_dropout": 0.0,
//     "pad_vocab_size_multiple": 8, "initializer_range": 0.02, "layer_norm_epsilon": 1e-5,
//     "ssm_cfg":  {"d_state": 64, "head_dim": 1, "init": "lin", "disc": "bilinear", "dt_min": 0.001, "dt_max": 0.1},
//     "attn_cfg": {"num_heads": 1, "rotary_emb_dim": 0, "dropout": 0.0},
//     "gss_cfg":  {"d_state": 64, "expand": 4, "bottleneck": 4}
//   }
// Every key is checked: an unknown key (here or in a nested *_cfg object), a bad value, an unknown
// mixer or an attention index outside [0, n_layer) is a one-line hippo::Error.
// A file may hold the model config alone, or {"model": {...}, "train": {...}} (train defaults, see
// train/trainer.h); parse_model_config accepts either.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hippo {

enum class MixerKind { h3, attention, s4d, gss, linear_attention };
MixerKind parse_mixer_kind(const std::string& s);  // hippo::Error listing the choices
const char* mixer_kind_name(MixerKind k);

struct SsmCfg {
    int64_t d_state = 64;
    int64_t head_dim = 1;
    std::string init = "lin";
    std::string disc;  // empty: the layer's default (H3 bilinear, S4D zoh)
    double dt_min = 1e-3, dt_max = 1e-1;
    std::string postact = "glu";  // S4D only: "glu" (the S4D paper's block) or "none" (safari's synthetics)
};

struct AttnCfg {
    int64_t num_heads = 1;
    int64_t rotary_emb_dim = 0;
    double dropout = 0.0;
};

struct GssCfg {
    int64_t d_state = 64;
    int64_t expand = 4;
    int64_t bottleneck = 4;
};

struct ModelConfig {
    std::string name;
    int64_t d_model = 0;
    int64_t n_layer = 0;
    int64_t vocab_size = 0;
    bool vocab_from_data = false;  // "vocab_size": "data": the trainer sets vocab_size from the data source
    int64_t d_inner = 0;  // 0: 4 d_model
    MixerKind mixer = MixerKind::h3;
    MixerKind attn_mixer = MixerKind::attention;
    std::vector<int64_t> attn_layer_idx;
    int64_t max_position_embeddings = 0;
    double embed_dropout = 0.1;
    double resid_dropout = 0.0;
    int64_t pad_vocab_size_multiple = 8;
    double initializer_range = 0.02;
    double layer_norm_epsilon = 1e-5;
    bool mlp = true;  // false: blocks without MLP (default false for gss, true otherwise)
    SsmCfg ssm;
    AttnCfg attn;
    GssCfg gss;

    int64_t padded_vocab() const;
    int64_t inner() const { return d_inner > 0 ? d_inner : 4 * d_model; }
    MixerKind layer_mixer(int64_t i) const;  // the mixer of layer i
    bool layer_has_mlp(int64_t i) const;
    nlohmann::json to_json() const;
};

// From the model object, or a file's top level holding {"model": ...}. `where` names the source in
// error messages (a file path).
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& where = "model config");
// Reads a JSON file (hippo::Error naming the file when missing or malformed).
nlohmann::json read_json_file(const std::string& path);

}  // namespace hippo
