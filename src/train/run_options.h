// The options of a training run, in one table: each row gives the command-line flag, the key in the
// run config ("train" object of a config file and of the checkpoint's config.json), the type,
// default, range and help line, where the value lives in TrainOptions, and what --resume does with
// it. The CLI (hippo train), the usage text, the saved run config, config files' "train" defaults
// and resume all read this table, so an option is spelled once.
//
// Values: integers and numbers are strict decimal text on the command line (no hex, no inf or nan,
// no overflow) and must lie in their range; a value out of range is a one-line error naming the
// option. The "default" sentinels (-1 for min_lr, warmup, ssm_lr, dropout) are accepted in JSON only
// (configs written by earlier versions hold them); on the command line these options take only
// real values.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/schema.h"

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
    double clip = 1.0;   // 0: no clipping
    int64_t eval_every = 0;    // 0: at the end only
    int64_t eval_batches = 20; // 0: the whole split
    int64_t save_every = 0;    // 0: at the end only
    int64_t log_every = 0;     // plain progress lines; 0: about 20 per run
    uint64_t seed = 0;
    int threads = 0;           // 0: keep the default
    bool resume = false;
    bool overwrite = false;    // train into an existing run directory, replacing it
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

    // The saved run config (the options whose OnResume is not this_run, except data and seed,
    // which the checkpoint's config.json holds at its top level).
    nlohmann::json to_json() const;
};

// What `hippo train --resume` does with an option given on its command line.
enum class OnResume {
    may_change,  // the given value replaces the checkpoint's (lr, steps, clip, ...)
    must_match,  // the run is defined by it (seed, data, tokenizer): a different value is an error
    this_run,    // not saved; applies to this invocation only (threads, quiet, stop-after, ...)
};

struct RunOption {
    std::string flag;  // command-line flag without "--" ("" = not a flag)
    Field field;       // JSON key, kind, default, range, help; key "" = not in the saved config
    OnResume on_resume = OnResume::may_change;
    bool negated = false;  // a boolean flag that sets the value to false ("no-overlap" -> overlap)
    std::function<nlohmann::json(const TrainOptions&)> get;
    std::function<void(TrainOptions&, const nlohmann::json&)> set;
};

const std::vector<RunOption>& run_options();
const RunOption* find_run_option_by_flag(const std::string& flag);

// Overrides `o` with the keys of a "train" object (a config file's defaults or a checkpoint's
// saved options); unknown keys, wrong types and out-of-range values are errors naming `where`.
void apply_train_json(TrainOptions& o, const nlohmann::json& train, const std::string& where);

// Sets the option of `flag` from command-line text (a flag without value: text "1").
void apply_run_flag(TrainOptions& o, const RunOption& opt, const std::string& text);

// The options part of `hippo train --help`, generated from the table.
std::string run_options_usage();

}  // namespace hippo
