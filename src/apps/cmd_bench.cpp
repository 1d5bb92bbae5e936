#include <cstdio>

#include "apps/args.h"
#include "apps/commands.h"
#include "common/bench.h"
#include "common/check.h"
#include "common/runtime.h"

namespace hippo {

int cmd_bench(int argc, char** argv) {
    Args args(argc, argv, {"help", "json"}, {"threads"});
    if (args.has("help") || args.positional().empty()) {
        std::printf("usage: hippo bench NAME [--json] [--threads N]\n  NAME: core\n");
        return args.has("help") ? 0 : 2;
    }
    if (args.has("threads")) set_num_threads(int(args.get_int("threads", 1)));
    std::vector<BenchRecord> recs;
    const std::string& name = args.positional()[0];
    throw Error(strf("unknown benchmark '%s'", name.c_str()));
    print_records(recs, args.has("json"));
    return 0;
}

}  // namespace hippo
