// hippo import: PyTorch checkpoint (torch.save) -> hippo safetensors + config.json (io/torch_import.h).
#include <cstdio>
#include <string>

#include "apps/args.h"
#include "apps/commands.h"
#include "common/check.h"
#include "common/schema.h"
#include "io/torch_import.h"
#include "models/h3_import.h"
#include "models/config.h"

namespace hippo {

int cmd_import(int argc, char** argv) {
    Args args(argc, argv, {"help"}, {"out", "heads", "config", "threads"});
    if (args.has("help")) {
        std::printf(
            "usage: hippo import FILE.pt --out DIR [--heads N] [--config JSON|FILE]\n"
            "\n"
            "Converts a torch.save checkpoint (PyTorch >= 1.6 zip format; a plain state_dict or a Lightning\n"
            "checkpoint) of an H3 / SSMLMHeadModel into DIR/model.safetensors (float32, key names after the\n"
            "H3 loader's legacy remapping) and DIR/config.json (inferred from the tensor shapes).\n"
            "The pickle is read by a restricted reader: nothing in the file is executed.\n"
            "  --heads N      attention heads (required when the model has attention layers; H3 releases:\n"
            "                 125M 12, 355M 16, 1.3B 16, 2.7B 20)\n"
            "  --config X     JSON object (inline, starting with '{', or a file) merged over the inferred\n"
            "                 config, e.g. '{\"vocab_size\": 50257}'\n"
            "  --threads N\n");
        return 0;
    }
    apply_threads_option(args);
    const auto& pos = args.positional();
    HIPPO_CHECK(pos.size() == 1, "expected one checkpoint file (see 'hippo import --help')");
    HIPPO_CHECK(args.has("out"), "--out DIR is required");
    ImportOptions opt;
    opt.out_dir = args.get("out");
    opt.heads = args.get_int("heads", 0, 1, 1 << 16);
    HIPPO_CHECK(!args.has("heads") || opt.heads > 0, "--heads must be positive");
    if (args.has("config")) {
        std::string c = args.get("config");
        if (!c.empty() && c[0] == '{') {
            opt.config_patch = parse_json_strict(c, "--config");
        } else {
            opt.config_patch = read_json_file(c);
        }
    }
    ImportReport r = import_torch_checkpoint(pos[0], opt);
    std::printf("imported %zu tensors (%.1f MB float32) from %s%s%s\n", r.tensors, double(r.bytes) / 1e6,
                pos[0].c_str(), r.lightning ? " [Lightning checkpoint]" : "", r.legacy ? " [legacy key names remapped]" : "");
    if (r.tied_lm_head) std::printf("lm_head.weight is tied to the embedding: not stored separately\n");
    for (const auto& s : r.skipped) std::printf("skipped: %s\n", s.c_str());
    std::printf("wrote %s/model.safetensors and %s/config.json:\n%s\n", opt.out_dir.c_str(), opt.out_dir.c_str(),
                r.config.dump().c_str());
    return 0;
}

}  // namespace hippo
