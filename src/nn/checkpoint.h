// Checkpoints: model weights, run config and training state.
//
// A checkpoint directory holds
//   model.safetensors        one F32 tensor per parameter, named by its dotted name
//                            (Module::named_parameters), metadata {"format": "pt"}
//   train_state.safetensors  (optional) everything else a resumed run needs to continue exactly:
//       "m.<param>", "v.<param>"   optimizer state (Optimizer::state_tensors), F32
//       "optimizer.step"           I64 scalar, the optimizer's step count (bias corrections)
//       "step"                     I64 scalar, the training loop's step
//       "rng.<name>"               U64 [6]: xoshiro words s0..s3, Box-Muller spare (bits), has_spare
//       "data.<name>"              I64 [n]: data-loader position, free-form words
//       __metadata__: "format": "hippo-train-state", "format_version": "1", "optimizer": name,
//                     "optimizer.<key>": hyper-parameters (Optimizer::hyperparameters),
//                     "user.<key>": TrainState::metadata
//   config.json              the model/run config, written last
//
// Writes: every file goes through write_file_atomic (temp + fsync + rename). save_checkpoint
// builds the directory under a temporary name next to it and renames it into place as a unit (an
// existing directory is swapped atomically with renameat2(RENAME_EXCHANGE) and then deleted), so
// a failed or interrupted save leaves the previous checkpoint as it was.
//
// Loads validate everything before touching the model or optimizer: every expected tensor present
// with the expected shape and dtype, and (strict) no unknown tensors. Errors are one-line
// hippo::Errors naming the file and the tensor.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/rng.h"
#include "nn/module.h"
#include "nn/optim.h"

namespace hippo {

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kTrainStateFile = "train_state.safetensors";
constexpr const char* kConfigFile = "config.json";

// ---- model weights (one file) ----
void save_weights(const std::string& path, const Module& model);
// Non-strict: tensors of the file that are not parameters are ignored (missing parameters and wrong
// shapes are errors either way). Float dtypes other than F32 (F16, BF16, F64) are converted.
void load_weights(const std::string& path, Module& model, bool strict = true);

// ---- training state (one file) ----
struct TrainState {
    int64_t step = 0;
    std::map<std::string, Rng::State> rngs;                      // "data", "dropout", ...
    std::map<std::string, std::vector<int64_t>> data_position;   // loader cursors, epoch, ...
    std::map<std::string, std::string> metadata;                 // free-form strings
    // Filled by load: the optimizer hyper-parameters the state was saved with (for the caller to
    // compare or report; the optimizer's own settings are not changed by a load).
    std::map<std::string, std::string> saved_hyperparameters;

    // The named RNG state; hippo::Error naming it if absent.
    const Rng::State& rng(const std::string& name) const;
};

void save_train_state(const std::string& path, const Optimizer& opt, const TrainState& st);
// Restores the optimizer's state tensors and step count; returns the rest. The optimizer must have
// the same kind and parameters (names, shapes) as the one saved.
TrainState load_train_state(const std::string& path, Optimizer& opt, bool strict = true);

// ---- checkpoint directory ----
// Writes model.safetensors, train_state.safetensors (when opt is given; st defaults to empty) and
// config.json into `dir` as a unit (see the note at the top). Missing parent directories are created.
void save_checkpoint(const std::string& dir, const Module& model, const nlohmann::json& config,
                     const Optimizer* opt = nullptr, const TrainState* st = nullptr);
nlohmann::json load_config(const std::string& dir);
// Loads model weights and, when `opt` is given, the training state (into *st when st is given).
// Both files are validated before anything is modified.
void load_checkpoint(const std::string& dir, Module& model, Optimizer* opt = nullptr, TrainState* st = nullptr,
                     bool strict = true);

// Removes `<dir>.tmp.*` directories left by interrupted saves (those of processes no longer running,
// and this process's own). save_checkpoint calls it; training calls it on start and on resume.
void remove_stale_checkpoint_temps(const std::string& dir);

}  // namespace hippo
