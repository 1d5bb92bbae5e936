// Training loop and evaluation for LMModel (models/lm.h) on a DataSource (data/source.h).
//
// train(): AdamW with three groups (matrices: weight decay; vectors: none; the SSM parameters of
// is_ssm_parameter(): lr = ssm_lr = min(1e-3, lr) by default and no weight decay, as H3's configs),
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
#include "models/lm.h"

namespace hippo {

struct TrainOptions {
    std::string data;     // SOURCE (data/source.h)
    std::string tokenizer = "bytes";  // text sources: bytes or gpt2
    std::string out_dir;  // RUN_DIR
    int64_t steps = 1000;
    int64_t batch = 32;
    int64_t seq_len = 256;  // ignored by synthetic sources (fixed length)
    double lr = 5e-4;
    double min_lr = -1;  // < 0: 0.1 lr
    int64_t warmup = -1; // < 0: 10 % of steps
    std::string schedule = "cosine";
    double weight_decay = 0.1;
    double ssm_lr = -1;  // < 0: min(1e-3, lr)
    double beta1 = 0.9, beta2 = 0.999;
    double clip = 1.0;   // <= 0: no clipping
    int64_t eval_every = 0;    // 0: at the end only
    int64_t eval_batches = 20; // 0: the whole split
    int64_t save_every = 0;    // 0: at the end only
    int64_t log_every = 0;     // plain progress lines; 0: about 20 per run
    uint64_t seed = 0;
    int threads = 0;           // 0: keep the default
    bool resume = false;
    double dropout = -1;       // >= 0: overrides the model's embed_dropout and resid_dropout
    int64_t stop_after = 0;    // > 0: stop (with a checkpoint) after this many steps of this run
    int64_t inject_nan_step = -1;  // test hook: make the loss NaN at this step
    // Test hook for the data-parallel fault tests: "RANK:STEP:KIND", KIND exit (the rank exits with
    // code 3 at the start of STEP, as a crash would), kill (SIGKILL) or hang (sleeps for ever).
    std::string inject_fault;
    bool quiet = false;        // no progress output (tests)
    // Data parallel (under mpirun; dist/comm.h, train/grad_sync.h).
    bool zero1 = false;        // shard the optimizer state across ranks
    bool overlap = true;       // bucketed all-reduce overlapped with backward
    double bucket_mb = 8;      // bucket size (MiB)
    double dist_timeout = 0;   // > 0: seconds a collective may wait before the job is ended

    nlohmann::json to_json() const;
};

// Overrides `o` with the keys of a config file's "train" object (unknown keys are errors).
void apply_train_json(TrainOptions& o, const nlohmann::json& train, const std::string& where);

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
EvalResult evaluate(const LMModel& model, const DataSource& data, const std::string& split, int64_t batch,
                    int64_t seq_len, int64_t max_batches, Comm* comm = nullptr);

// The checkpoint's config.json: read by rank 0 and broadcast (the other ranks need no access to
// the run directory).
nlohmann::json load_config_on_root(const std::string& ckpt_dir);

// RUN_DIR/checkpoint, or RUN_DIR itself when it holds model.safetensors.
std::string checkpoint_dir_of(const std::string& run_dir);

}  // namespace hippo
