// Reading PyTorch checkpoints (torch.save, zip format of PyTorch >= 1.6). The import of an H3 /
// SSMLMHeadModel state dict into a hippo model directory (key mapping, config inference) is in
// models/h3_import.h: this floor only reads the file format.
//
// Reading (TorchCheckpoint): io/zip.h for the archive, io/pickle.h for `<prefix>/data.pkl` (restricted:
// nothing is executed), tensors are views of `<prefix>/data/<key>` storages (mmapped, not copied).
// The state dict is the top-level dict, or its "state_dict" entry (PyTorch Lightning; keys lose a
// leading "model."), or its "model" entry. Other entries (hyper-parameters, optimizer state,
// callbacks, opaque objects) are ignored; non-tensor and non-float state-dict entries are listed in
// skipped(). Float32/16, bfloat16, float64 storages are converted to float32; complex64/128
// tensors become float32 with a trailing dimension 2 (torch.view_as_real). Strided views are
// gathered. Every storage/tensor is bounds-checked: a missing storage file, a view outside its
// storage, a storage file of the wrong size, a truncated archive: one-line hippo::Error.
//
// Importing (import_torch_checkpoint): legacy key names are remapped (remap_h3_keys), a tied
// lm_head.weight (same storage view as the embedding) is dropped, and config.json is inferred from
// the tensor shapes (infer_h3_config) using the keys of models/config.h:
//   d_model, n_layer, vocab_size (= embedding rows, e.g. 50264), d_inner, mixer "h3",
//   attn_layer_idx (layers with mixer.Wqkv.weight), ssm_cfg {d_state (shift kernel B columns),
//   head_dim (d_model / len(kernel.kernel.log_dt))}, attn_cfg {num_heads (from --heads: not in
//   the tensors), rotary_emb_dim (2 x len(rotary_emb.inv_freq))}.
// A user JSON (--config) is merged over it (RFC 7386 merge patch) and the result is validated with
// parse_model_config before anything is written.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/file.h"
#include "io/safetensors.h"

namespace hippo {

struct TorchTensor {
    std::string name;              // state-dict key (after Lightning unwrapping)
    std::string storage_type;      // "Float", "Half", "BFloat16", "Double", "ComplexFloat", "Long", ...
    std::string storage_key;       // archive file <prefix>/data/<key>
    std::vector<int64_t> shape, stride;
    int64_t offset = 0;            // in elements
    bool is_float() const;         // importable (float or complex storage)
    bool is_complex() const;
    std::vector<int64_t> f32_shape() const;  // shape, plus a trailing 2 for complex
    int64_t f32_numel() const;
};

class TorchCheckpoint {
public:
    static TorchCheckpoint open(const std::string& path);  // mmaps the file
    static TorchCheckpoint parse(std::vector<uint8_t> bytes, const std::string& what = "<memory>");

    const std::vector<TorchTensor>& tensors() const { return tensors_; }  // state-dict order
    const std::vector<std::string>& skipped() const { return skipped_; }   // non-tensor / non-float entries
    bool lightning() const { return lightning_; }
    const std::string& source() const { return what_; }

    // float32 values of a float/complex tensor (contiguous, row-major over f32_shape()).
    std::vector<float> read_f32(const TorchTensor& t) const;
    // Pointer to the tensor's float32 data when it needs no conversion (Float storage, contiguous),
    // else nullptr. Valid while this object lives.
    const float* direct_f32(const TorchTensor& t) const;
    // Same storage, offset, shape and stride (an alias such as a tied lm_head.weight).
    static bool same_view(const TorchTensor& a, const TorchTensor& b);

private:
    void init(const uint8_t* data, size_t size);
    const uint8_t* storage_bytes(const TorchTensor& t, size_t* elem_size) const;

    std::string what_;
    std::vector<uint8_t> owned_;
    std::shared_ptr<MappedFile> mapped_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    std::string prefix_;
    struct StorageView {
        const uint8_t* data;
        uint64_t nbytes;
    };
    std::vector<std::pair<std::string, StorageView>> storages_;  // key -> bytes (validated)
    std::vector<TorchTensor> tensors_;
    std::vector<std::string> skipped_;
    bool lightning_ = false;
};

}  // namespace hippo
