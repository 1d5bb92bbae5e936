// Import of an H3 / SSMLMHeadModel state dict (shared/reference/h3.md section 6) from a torch.save
// checkpoint (io/torch_import.h reads the file) into a hippo model directory: safetensors + config.
//
// Importing (import_torch_checkpoint): legacy key names are remapped (remap_h3_keys), a tied
// lm_head.weight (same storage view as the embedding) is dropped, and config.json is inferred from
// the tensor shapes (infer_h3_config) using the keys of models/config.h:
//   d_model, n_layer, vocab_size (= embedding rows, e.g. 50264), d_inner, mixer "h3",
//   attn_layer_idx (layers with mixer.Wqkv.weight), ssm_cfg {d_state (shift kernel B columns),
//   head_dim (d_model / len(kernel.kernel.log_dt))}, attn_cfg {num_heads (from --heads: not in
//   the tensors), rotary_emb_dim (2 x len(rotary_emb.inv_freq))}.
// A user JSON (--config) is merged over it (RFC 7386 merge patch); the result is validated with
// parse_model_config and against the tensors (every parameter of the model it describes present
// with its shape, no tensor left over) before anything is written, so the directory always loads.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/torch_import.h"

namespace hippo {

// The loader's legacy remapping (h3.md 6.2): prefixes s4seq.encoder. -> backbone., embedding. ->
// backbone.embeddings.word_embeddings., backbone.norm -> backbone.ln_0; then, if backbone.ln_0.*
// exists, the post-add norm order: last layer's norm2 -> ln_f, norm2[l] = old norm1[l],
// norm1[l] = old norm2[l-1], norm1[0] = ln_0. Returns the new names in the same order;
// *legacy is set when anything changed. Duplicate results are a hippo::Error.
std::vector<std::string> remap_h3_keys(const std::vector<std::string>& names, bool* legacy = nullptr);

// Model config from tensor names + float32 shapes (see the header comment). heads <= 0: unknown;
// then attn_cfg.num_heads is left out (the caller must supply it when attention layers exist).
nlohmann::json infer_h3_config(const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes, int64_t heads);

struct ImportOptions {
    std::string out_dir;
    int64_t heads = 0;            // --heads
    nlohmann::json config_patch;  // --config (object or null)
};
struct ImportReport {
    size_t tensors = 0;
    uint64_t bytes = 0;
    bool lightning = false, legacy = false, tied_lm_head = false;
    std::vector<std::string> skipped;
    nlohmann::json config;
};
// Writes <out_dir>/model.safetensors and <out_dir>/config.json (atomically; out_dir is created).
ImportReport import_torch_checkpoint(const std::string& path, const ImportOptions& opt);

}  // namespace hippo
