// hippo: one binary, subcommands in the style of git / llama.cpp tools.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "common/check.h"

namespace {

struct Command {
    const char* name;
    int (*run)(int argc, char** argv);
    const char* help;
};

const Command kCommands[] = {
    {"info", hippo::cmd_info, "print version, ISA features, threads and backends"},
    {"bench", hippo::cmd_bench, "run benchmarks (hippo bench core|gemm|fft|elementwise --json)"},
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
            } catch (const hippo::Error& e) {
                std::fprintf(stderr, "hippo %s: error: %s\n", c.name, e.what());
                return 1;
            } catch (const std::exception& e) {
                std::fprintf(stderr, "hippo %s: error: %s\n", c.name, e.what());
                return 1;
            }
        }
    }
    std::fprintf(stderr, "hippo: unknown command '%s'\n", name.c_str());
    usage(stderr);
    return 2;
}
