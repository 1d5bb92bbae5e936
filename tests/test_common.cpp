#include <gtest/gtest.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "common/runtime.h"

using namespace hippo;

TEST(Alloc, ReusesFreedBlocks) {
    void* a = cached_alloc(100000);
    cached_free(a, 100000);
    uint64_t before = alloc_stats().system_allocs;
    void* b = cached_alloc(99000);  // same size class
    EXPECT_EQ(a, b);
    EXPECT_EQ(alloc_stats().system_allocs, before);
    cached_free(b, 99000);
}

TEST(Alloc, AlignedTo64) {
    for (size_t n : {1, 63, 4096, 3 << 20}) {
        void* p = cached_alloc(n);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kAlign, 0u);
        cached_free(p, n);
    }
}

TEST(Rng, DeterministicAndResumable) {
    Rng a(42), b(42);
    for (int i = 0; i < 10; i++) EXPECT_EQ(a.next_u64(), b.next_u64());
    a.normal();
    auto st = a.state();
    double x = a.normal(), y = a.normal();
    b.set_state(st);
    EXPECT_EQ(b.normal(), x);
    EXPECT_EQ(b.normal(), y);
}

TEST(Runtime, OpenMPUsesSeveralThreadsWhenCoresExist) {
#ifdef _OPENMP
    if (physical_cores() > 1) {
        EXPECT_GT(num_threads(), 1);
    }
#endif
}
