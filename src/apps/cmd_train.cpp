// hippo train: train a model from a JSON config on a data source (train/trainer.h). The options
// come from one table (train/run_options.h).
#include <cstdio>
#include <filesystem>
#include <set>

#include "apps/args.h"
#include "apps/commands.h"
#include "common/check.h"
#include "models/config.h"
#include "models/model.h"
#include "nn/checkpoint.h"
#include "train/trainer.h"

namespace hippo {

int cmd_train(int argc, char** argv) {
    std::set<std::string> flags{"help", "resume", "describe"}, options{"model", "out"};
    for (const RunOption& o : run_options())
        (o.field.kind == FieldKind::boolean ? flags : options).insert(o.flag);
    Args args(argc, argv, flags, options);
    const std::string usage = std::string(
        "usage: hippo train --model CONFIG.json --data SOURCE --out RUN_DIR [options]\n"
        "       hippo train --out RUN_DIR --resume [options]\n"
        "       hippo train --model CONFIG.json --describe\n"
        "  SOURCE: induction_head | assoc_recall | mqar (options as assoc_recall:vocab=20,seq_len=40,\n"
        "          mqar:pairs=16,vocab=64) | sotu | moby_dick | brown | gcide (scripts/fetch_data.sh) | text:PATH\n"
        "  --resume: continue RUN_DIR's checkpoint exactly (same data, seed, optimizer and RNG state); options\n"
        "            given with it replace the saved ones, except those fixed on --resume\n"
        "Options:\n") + run_options_usage() +
        "Data parallel: mpirun -np K hippo train ... (same global batch and loss curve for any K; rank 0 writes)\n"
        "A config file may carry defaults as {\"model\": {...}, \"train\": {...}}; options given here win.\n"
        "Writes RUN_DIR/metrics.jsonl and RUN_DIR/checkpoint/{model.safetensors,train_state.safetensors,config.json}.\n";
    if (args.has("help")) {
        std::fputs(usage.c_str(), stdout);
        return 0;
    }
    HIPPO_CHECK(args.positional().empty(), "unexpected argument '%s' (see 'hippo train --help')", args.positional()[0].c_str());
    const bool resume = args.has("resume");
    TrainOptions o;
    ModelConfig cfg;
    if (args.has("model")) {
        HIPPO_CHECK(!resume, "train --resume takes the model from the checkpoint; drop --model");
        const std::string path = args.get("model");
        nlohmann::json j = read_json_file(path);
        cfg = parse_model_config(j, path);
        if (j.contains("train")) apply_train_json(o, j.at("train"), path);
    } else {
        HIPPO_CHECK(resume, "train: --model CONFIG.json is required (see 'hippo train --help')");
    }
    if (args.has("describe")) {
        HIPPO_CHECK(args.has("model"), "train --describe needs --model");
        std::unique_ptr<Model> m = make_model(cfg, 0);
        std::fputs(m->summary().c_str(), stdout);
        return 0;
    }
    HIPPO_CHECK(args.has("out"), "train: --out RUN_DIR is required");
    if (resume) {
        // The checkpoint's options, then the ones given here.
        const std::string out = args.get("out");
        nlohmann::json saved = load_config_on_root((std::filesystem::path(out) / "checkpoint").string());
        HIPPO_CHECK(saved.contains("train"), "train --resume: the checkpoint config of '%s' has no train options", out.c_str());
        apply_train_json(o, saved.at("train"), out + " checkpoint config");
        o.data = saved.value("data", std::string());
        o.seed = saved.value("seed", uint64_t(0));
        for (const RunOption& r : run_options()) {
            if (r.on_resume != OnResume::must_match || !args.has(r.flag)) continue;
            TrainOptions given = o;
            apply_run_flag(given, r, args.get(r.flag));
            HIPPO_CHECK(r.get(given) == r.get(o), "train --resume: --%s %s differs from the run's %s (it is fixed for a run)",
                        r.flag.c_str(), r.get(given).dump().c_str(), r.get(o).dump().c_str());
        }
    }
    for (const RunOption& r : run_options())
        if (args.has(r.flag)) apply_run_flag(o, r, args.get(r.flag));
    o.out_dir = args.get("out");
    o.resume = resume;
    TrainResult r = train(cfg, o);
    return r.step > 0 ? 0 : 1;
}

}  // namespace hippo
