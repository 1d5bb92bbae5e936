#include "common/alloc.h"

#include <sys/mman.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "common/check.h"

namespace hippo {

namespace {
constexpr size_t kHugePage = size_t(2) << 20;

struct Cache {
    std::mutex mu;
    std::map<size_t, std::vector<void*>> free_lists;  // size class -> blocks
    AllocStats stats;
};
Cache& cache() {
    static Cache* c = new Cache;  // never destroyed: blocks may be freed during static teardown
    return *c;
}

void* system_alloc(size_t bytes) {
    size_t align = bytes >= kHugePage ? kHugePage : kAlign;
    void* p = std::aligned_alloc(align, (bytes + align - 1) / align * align);
    if (!p) throw std::bad_alloc();
    if (bytes >= kHugePage) madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}
}  // namespace

void* aligned_alloc_bytes(size_t bytes) { return system_alloc(bytes == 0 ? kAlign : bytes); }
void aligned_free(void* p) { std::free(p); }

size_t alloc_size_class(size_t bytes) {
    if (bytes <= 256) return 256;
    // Four classes per power of two keeps waste under 25% while letting similar sizes share blocks.
    size_t p = 1;
    while (p * 2 <= bytes) p *= 2;
    size_t step = p / 4;
    return (bytes + step - 1) / step * step;
}

void* cached_alloc(size_t bytes) {
    size_t cls = alloc_size_class(bytes);
    Cache& c = cache();
    {
        std::lock_guard<std::mutex> lock(c.mu);
        auto it = c.free_lists.find(cls);
        if (it != c.free_lists.end() && !it->second.empty()) {
            void* p = it->second.back();
            it->second.pop_back();
            c.stats.cached_bytes -= cls;
            c.stats.live_bytes += cls;
            if (c.stats.live_bytes > c.stats.peak_live_bytes) c.stats.peak_live_bytes = c.stats.live_bytes;
            return p;
        }
        c.stats.system_allocs++;
        c.stats.live_bytes += cls;
        if (c.stats.live_bytes > c.stats.peak_live_bytes) c.stats.peak_live_bytes = c.stats.live_bytes;
    }
    return system_alloc(cls);
}

void cached_free(void* p, size_t bytes) {
    if (!p) return;
    size_t cls = alloc_size_class(bytes);
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    c.free_lists[cls].push_back(p);
    c.stats.live_bytes -= cls;
    c.stats.cached_bytes += cls;
}

AllocStats alloc_stats() {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    return c.stats;
}

void alloc_reset_peak() {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    c.stats.peak_live_bytes = c.stats.live_bytes;
}

void alloc_release_cache() {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    for (auto& [cls, blocks] : c.free_lists)
        for (void* p : blocks) std::free(p);
    c.free_lists.clear();
    c.stats.cached_bytes = 0;
}

}  // namespace hippo
