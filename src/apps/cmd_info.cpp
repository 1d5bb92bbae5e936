#include <cstdio>

#include "apps/args.h"
#include "apps/commands.h"
#include "common/runtime.h"
#include "dist/comm.h"

namespace hippo {

int cmd_info(int argc, char** argv) {
    Args args(argc, argv, {"help"}, {"threads"});
    if (args.has("help")) {
        std::printf("usage: hippo info [--threads N]\n");
        return 0;
    }
    apply_threads_option(args);
    std::printf("hippo %s\n", HIPPO_VERSION);
    std::printf("isa:      %s\n", isa_features().c_str());
    std::printf("threads:  %d (physical cores: %d)\n", num_threads(), physical_cores());
    std::printf("blas:     %s\n", blas_backend().c_str());
    std::printf("fft:      %s\n", fft_backend().c_str());
    if (Comm::built_with_mpi()) {
        Comm& comm = Comm::world();
        std::printf("mpi:      yes (this process: rank %d of %d on %s)\n", comm.rank(), comm.size(), comm.host().c_str());
    } else {
        std::printf("mpi:      no (data-parallel training needs libopenmpi-dev; rebuild with scripts/setup.sh)\n");
    }
    return 0;
}

}  // namespace hippo
