// hippo train: train a model from a JSON config on a data source (train/trainer.h).
#include <cstdio>
#include <filesystem>

#include "apps/args.h"
#include "apps/commands.h"
#include "common/check.h"
#include "models/config.h"
#include "nn/checkpoint.h"
#include "train/trainer.h"

namespace hippo {

int cmd_train(int argc, char** argv) {
    Args args(argc, argv, {"help", "resume", "quiet", "describe", "zero1", "no-overlap"},
              {"model", "data", "out", "steps", "batch", "seq-len", "lr", "min-lr", "warmup", "schedule", "weight-decay",
               "ssm-lr", "beta1", "beta2", "clip", "eval-every", "eval-batches", "save-every", "log-every", "seed", "tokenizer",
               "threads", "dropout", "stop-after", "bucket-mb", "dist-timeout", "inject-fault"});
    const char* usage =
        "usage: hippo train --model CONFIG.json --data SOURCE --out RUN_DIR [options]\n"
        "       hippo train --out RUN_DIR --resume [--steps N]\n"
        "       hippo train --model CONFIG.json --describe\n"
        "  SOURCE: induction_head | assoc_recall | mqar (options as assoc_recall:vocab=20,seq_len=40,\n"
        "          mqar:pairs=16,vocab=64) | sotu | moby_dick | brown | gcide (scripts/fetch_data.sh) | text:PATH\n"
        "  --steps N (1000)        --batch B (32)          --seq-len L (256; synthetic tasks fix their own)\n"
        "  --lr X (5e-4)           --min-lr X (0.1 lr)     --warmup N (10% of steps)\n"
        "  --schedule cosine|linear|constant (cosine)      --weight-decay X (0.1)\n"
        "  --ssm-lr X (min(1e-3, lr); SSM log_dt/A/B, no weight decay)   --beta1/--beta2 (0.9/0.999)\n"
        "  --clip X (1.0; 0 = off) --dropout P (overrides embed and residual dropout)\n"
        "  --tokenizer bytes|gpt2 (text data; gpt2 = GPT-2 BPE, files from scripts/fetch_tokenizer.sh)\n"
        "  --eval-every N (0 = at the end)  --eval-batches K (20; 0 = whole split)\n"
        "  --save-every N (0 = at the end)  --log-every N   --seed S (0)  --threads N\n"
        "  --resume: continue RUN_DIR's checkpoint exactly (same data, seed, optimizer and RNG state)\n"
        "  --stop-after N: stop (and save) after N steps of this run   --quiet: no progress output\n"
        "Data parallel: mpirun -np K hippo train ... (same global batch and loss curve for any K; rank 0 writes)\n"
        "  --zero1: shard the AdamW state across ranks   --no-overlap: one all-reduce after backward\n"
        "  --bucket-mb X (8): all-reduce bucket size     --dist-timeout S (300): end the job when a collective\n"
        "               waits longer (a rank died or hangs)   --inject-fault RANK:STEP:exit|kill|hang (tests)\n"
        "A config file may carry defaults as {\"model\": {...}, \"train\": {...}}; options given here win.\n"
        "Writes RUN_DIR/metrics.jsonl and RUN_DIR/checkpoint/{model.safetensors,train_state.safetensors,config.json}.\n";
    if (args.has("help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    HIPPO_CHECK(args.positional().empty(), "unexpected argument '%s' (see 'hippo train --help')", args.positional()[0].c_str());
    TrainOptions o;
    ModelConfig cfg;
    const bool resume = args.has("resume");
    if (args.has("model")) {
        const std::string path = args.get("model");
        nlohmann::json j = read_json_file(path);
        cfg = parse_model_config(j, path);
        if (j.contains("train")) apply_train_json(o, j.at("train"), path);
    } else {
        HIPPO_CHECK(resume, "train: --model CONFIG.json is required (see 'hippo train --help')");
    }
    if (args.has("describe")) {
        HIPPO_CHECK(args.has("model"), "train --describe needs --model");
        LMModel m(cfg, 0);
        std::fputs(m.summary().c_str(), stdout);
        return 0;
    }
    if (args.has("data")) o.data = args.get("data");
    HIPPO_CHECK(args.has("out"), "train: --out RUN_DIR is required");
    o.out_dir = args.get("out");
    o.steps = args.get_int("steps", o.steps);
    o.batch = args.get_int("batch", o.batch);
    o.seq_len = args.get_int("seq-len", o.seq_len);
    o.lr = args.get_double("lr", o.lr);
    o.min_lr = args.get_double("min-lr", o.min_lr);
    o.warmup = args.get_int("warmup", o.warmup);
    o.schedule = args.get("schedule", o.schedule);
    o.weight_decay = args.get_double("weight-decay", o.weight_decay);
    o.ssm_lr = args.get_double("ssm-lr", o.ssm_lr);
    o.beta1 = args.get_double("beta1", o.beta1);
    o.beta2 = args.get_double("beta2", o.beta2);
    o.clip = args.get_double("clip", o.clip);
    o.eval_every = args.get_int("eval-every", o.eval_every);
    o.eval_batches = args.get_int("eval-batches", o.eval_batches);
    o.save_every = args.get_int("save-every", o.save_every);
    o.log_every = args.get_int("log-every", o.log_every);
    o.seed = uint64_t(args.get_int("seed", int64_t(o.seed)));
    o.threads = int(args.get_int("threads", 0));
    o.dropout = args.get_double("dropout", o.dropout);
    o.tokenizer = args.get("tokenizer", o.tokenizer);
    o.stop_after = args.get_int("stop-after", 0);
    o.quiet = args.has("quiet");
    o.resume = resume;
    if (args.has("zero1")) o.zero1 = true;
    if (args.has("no-overlap")) o.overlap = false;
    o.bucket_mb = args.get_double("bucket-mb", o.bucket_mb);
    o.dist_timeout = args.get_double("dist-timeout", 0);
    o.inject_fault = args.get("inject-fault", "");
    if (resume) {
        // Train options of the checkpoint, overridden by the options given here.
        nlohmann::json saved = load_config_on_root((std::filesystem::path(o.out_dir) / "checkpoint").string());
        TrainOptions base;
        apply_train_json(base, saved.at("train"), o.out_dir + " checkpoint config");
        TrainOptions given = o;
        o = base;
        o.out_dir = given.out_dir;
        o.data = given.data;
        o.threads = given.threads;
        o.quiet = given.quiet;
        o.resume = true;
        o.stop_after = given.stop_after;
        o.inject_fault = given.inject_fault;
        o.dist_timeout = given.dist_timeout;
        auto over = [&](const char* name, auto& dst, const auto& src) {
            if (args.has(name)) dst = src;
        };
        over("steps", o.steps, given.steps);
        over("batch", o.batch, given.batch);
        over("seq-len", o.seq_len, given.seq_len);
        over("lr", o.lr, given.lr);
        over("min-lr", o.min_lr, given.min_lr);
        over("warmup", o.warmup, given.warmup);
        over("schedule", o.schedule, given.schedule);
        over("weight-decay", o.weight_decay, given.weight_decay);
        over("ssm-lr", o.ssm_lr, given.ssm_lr);
        over("clip", o.clip, given.clip);
        over("eval-every", o.eval_every, given.eval_every);
        over("eval-batches", o.eval_batches, given.eval_batches);
        over("save-every", o.save_every, given.save_every);
        over("log-every", o.log_every, given.log_every);
        over("dropout", o.dropout, given.dropout);
        over("zero1", o.zero1, given.zero1);
        over("no-overlap", o.overlap, given.overlap);
        over("bucket-mb", o.bucket_mb, given.bucket_mb);
    }
    TrainResult r = train(cfg, o);
    return r.step > 0 ? 0 : 1;
}

}  // namespace hippo
