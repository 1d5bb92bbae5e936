// Memory for tensors and kernel workspaces.
//
// Note [why a caching allocator]: on the development machine the first touch of a freshly mapped
// 4 KiB page costs ~11 us (~0.35 GB/s), far slower than DRAM. A training step that mallocs its
// activations anew would spend most of its time in page faults. So freed blocks are kept in
// per-size free lists and handed out again; blocks of 2 MiB and more are 2 MiB aligned and advised
// with MADV_HUGEPAGE (~0.16 us per 4 KiB once faulted as huge pages).
#pragma once
#include <cstddef>
#include <cstdint>

namespace hippo {

constexpr size_t kAlign = 64;  // one cache line / one AVX-512 register

// Raw aligned allocation without caching (for long-lived buffers such as FFT twiddles).
void* aligned_alloc_bytes(size_t bytes);
void aligned_free(void* p);

// Caching allocator: sizes are rounded up to a size class; freed blocks are reused by later
// requests of the same class. Thread-safe.
void* cached_alloc(size_t bytes);
void cached_free(void* p, size_t bytes);

struct AllocStats {
    size_t live_bytes = 0;      // handed out and not yet freed
    size_t peak_live_bytes = 0; // max of live_bytes since the last reset
    size_t cached_bytes = 0;    // held in free lists
    uint64_t system_allocs = 0; // calls that had to go to the OS
};
AllocStats alloc_stats();
void alloc_reset_peak();
void alloc_release_cache();  // return every cached block to the OS

// Round a request up to its size class (exposed for tests).
size_t alloc_size_class(size_t bytes);

}  // namespace hippo
