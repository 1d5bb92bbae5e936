// Training loop and evaluation for any Model (models/model.h) on a DataSource (data/source.h).
//
// train(): AdamW with three groups (matrices: weight decay; vectors: none; the parameters the layers
// tag ParamTag::ssm: lr = ssm_lr = min(1e-3, lr) by default and no weight decay, as H3's configs),
// an LR schedule (nn/schedule.h), gradient clipping, periodic evaluation and checkpoints.
//
// Run directory:
//   RUN_DIR/metrics.jsonl       one JSON object per line: train rows {"step","loss","lr","gnorm","tok_s",
//                               "elapsed_s"} and eval rows {"step","val_loss","val_acc","val_ppl"}
//   RUN_DIR/checkpoint/         model.safetensors, train_state.safetensors, config.json
//                               ({"model": ..., "train": ..., "data": SOURCE, "seed": S}); written
//                               atomically every save_every steps and at the end
// Exact resume: the checkpoint holds the step, the AdamW moments and step count, the dropout RNG and
// the data position, so resume + continue equals the uninterrupted run bit for bit (same binary and
// thread count). metrics.jsonl rows after the checkpoint's step are dropped on resume.
// A NaN/inf loss or gradient norm (or non-finite parameters at a save) stops the run with a
// hippo::Error before anything is written, so the last good checkpoint stays.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/source.h"
#include "models/model.h"
#include "train/run_options.h"

namespace hippo {

struct EvalResult {
    double loss = 0, accuracy = 0, perplexity = 0;
    int64_t tokens = 0;  // counted target positions
    int64_t batches = 0;
};

struct TrainResult {
    int64_t step = 0;                 // steps completed in total
    std::vector<double> losses;       // training loss of each step of this run
    EvalResult last_eval;
    bool evaluated = false;
    double tokens_per_s = 0, steps_per_s = 0;  // this run, excluding evaluation and saving
    int ranks = 1;
    double comm_s = 0;               // data parallel: time spent waiting on gradient collectives
    int64_t optimizer_state_bytes = 0;  // this rank's optimizer state (smaller under ZeRO-1)
};

// model_config: the parsed model (ignored on resume, where the checkpoint's config is used).
//
// Data parallel: under `mpirun -np K`, every rank runs train() with the same arguments. Rank r
// takes rows [B r / K, B (r + 1) / K) of every global batch of B rows (the loader draws the whole
// batch, so the data and, to fp32 reduction order, the loss curve do not depend on K); gradients
// are summed over ranks (train/grad_sync.h); only rank 0 prints, writes metrics and checkpoints.
// On resume rank 0 reads the checkpoint and broadcasts it, so a checkpoint written with any K
// resumes with any K. The run configuration is compared across ranks at the start and the
// parameters at every save; a difference stops every rank with a CollectiveError.
TrainResult train(const ModelConfig& model_config, const TrainOptions& opt);

class Comm;
// comm: evaluation batches are dealt round-robin to the ranks and the sums reduced (nullptr: this
// process evaluates everything).
EvalResult evaluate(const Model& model, const DataSource& data, const std::string& split, int64_t batch,
                    int64_t seq_len, int64_t max_batches, Comm* comm = nullptr);

// The checkpoint's config.json: read by rank 0 and broadcast (the other ranks need no access to
// the run directory).
nlohmann::json load_config_on_root(const std::string& ckpt_dir);

// RUN_DIR/checkpoint, or RUN_DIR itself when it holds model.safetensors.
std::string checkpoint_dir_of(const std::string& run_dir);

}  // namespace hippo
