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

// A typed array from the caching allocator: kernel workspaces use it so that they are reused
// across calls and counted in alloc_stats() (benchmarks report the peak as extra memory).
// Elements are uninitialised unless a fill value is given. T must be trivially copyable.
template <class T>
class Buffer {
public:
    Buffer() = default;
    explicit Buffer(size_t n) : n_(n), p_(n ? static_cast<T*>(cached_alloc(n * sizeof(T))) : nullptr) {}
    Buffer(size_t n, const T& fill) : Buffer(n) {
        for (size_t i = 0; i < n; i++) p_[i] = fill;
    }
    ~Buffer() {
        if (p_) cached_free(p_, n_ * sizeof(T));
    }
    Buffer(Buffer&& o) noexcept : n_(o.n_), p_(o.p_) {
        o.n_ = 0;
        o.p_ = nullptr;
    }
    Buffer& operator=(Buffer&& o) noexcept {
        if (this != &o) {
            this->~Buffer();
            n_ = o.n_;
            p_ = o.p_;
            o.n_ = 0;
            o.p_ = nullptr;
        }
        return *this;
    }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    T* data() { return p_; }
    const T* data() const { return p_; }
    size_t size() const { return n_; }
    T& operator[](size_t i) { return p_[i]; }
    const T& operator[](size_t i) const { return p_[i]; }
    T* begin() { return p_; }
    T* end() { return p_ + n_; }
    const T* begin() const { return p_; }
    const T* end() const { return p_ + n_; }

private:
    size_t n_ = 0;
    T* p_ = nullptr;
};

}  // namespace hippo
