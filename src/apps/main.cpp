// hippo: one binary, subcommands in the style of git / llama.cpp tools.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "common/check.h"
#include "dist/comm.h"

namespace {

struct Command {
    const char* name;
    int (*run)(int argc, char** argv);
    const char* help;
};

const Command kCommands[] = {
    {"info", hippo::cmd_info, "print version, ISA features, threads and backends"},
    {"bench", hippo::cmd_bench, "run benchmarks (hippo bench core|gemm|fft|elementwise --json)"},
    {"train", hippo::cmd_train, "train a model (hippo train --model CONFIG.json --data SOURCE --out RUN_DIR)"},
    {"eval", hippo::cmd_eval, "evaluate a run's checkpoint (hippo eval RUN_DIR --split test --json)"},
    {"plot", hippo::cmd_plot, "draw loss/accuracy curves of runs to SVG (hippo plot RUN_DIR... --out curves.svg)"},
    {"tokenize", hippo::cmd_tokenize, "GPT-2 BPE: hippo tokenize encode FILE | decode [FILE|-]"},
    {"import", hippo::cmd_import, "convert a PyTorch H3 checkpoint (hippo import FILE.pt --out DIR [--heads N])"},
    {"generate", hippo::cmd_generate, "generate text (hippo generate MODEL_DIR --prompt TEXT [--n 64 --temperature --top-k --top-p])"},
    {"score", hippo::cmd_score, "log-likelihood / perplexity / logits of tokens (hippo score MODEL_DIR --tokens T.bin)"},
};

void usage(FILE* f) {
    std::fprintf(f, "usage: hippo <command> [options]\n\ncommands:\n");
    for (auto& c : kCommands) std::fprintf(f, "  %-10s %s\n", c.name, c.help);
    std::fprintf(f, "\n'hippo <command> --help' describes each command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    std::string name = argv[1];
    if (name == "-h" || name == "--help" || name == "help") {
        usage(stdout);
        return 0;
    }
    if (name == "--version" || name == "version") {
        std::printf("hippo %s\n", HIPPO_VERSION);
        return 0;
    }
    for (auto& c : kCommands) {
        if (name == c.name) {
            try {
                return c.run(argc - 1, argv + 1);
            } catch (const hippo::CollectiveError& e) {
                // Raised by every rank together: rank 0 reports, all exit in order.
                if (hippo::Comm::world().is_root()) std::fprintf(stderr, "hippo %s: error: %s\n", c.name, e.what());
                return 1;
            } catch (const std::exception& e) {
                // An error on one rank of a data-parallel job ends the others too (they would wait
                // for it in the next collective).
                hippo::Comm& comm = hippo::Comm::world();
                if (comm.distributed()) comm.abort(hippo::strf("hippo %s: error: %s", c.name, e.what()));
                std::fprintf(stderr, "hippo %s: error: %s\n", c.name, e.what());
                return 1;
            }
        }
    }
    std::fprintf(stderr, "hippo: unknown command '%s'\n", name.c_str());
    usage(stderr);
    return 2;
}
