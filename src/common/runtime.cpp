#include "common/runtime.h"

#include <fstream>
#include <set>
#include <thread>

#include "common/check.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef HIPPO_USE_OPENBLAS
#include <cblas.h>
#endif
#ifdef HIPPO_HAVE_FFTW
#include <fftw3.h>
#endif

namespace hippo {

int physical_cores() {
    // Count distinct (physical id, core id) pairs; fall back to the logical count.
    std::ifstream f("/proc/cpuinfo");
    std::set<std::pair<int, int>> cores;
    std::string line;
    int phys = 0;
    while (std::getline(f, line)) {
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        if (line.rfind("physical id", 0) == 0) phys = std::stoi(line.substr(colon + 1));
        if (line.rfind("core id", 0) == 0) cores.insert({phys, std::stoi(line.substr(colon + 1))});
    }
    int logical = int(std::thread::hardware_concurrency());
    if (cores.empty()) return logical > 0 ? logical : 1;
    return int(cores.size());
}

static int g_threads = 0;

int num_threads() {
    if (g_threads <= 0) set_num_threads(physical_cores());
    return g_threads;
}

void set_num_threads(int n) {
    HIPPO_CHECK(n >= 1 && n <= 4096, "thread count must be in 1..4096, got %d", n);
    g_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
#ifdef HIPPO_USE_OPENBLAS
    openblas_set_num_threads(n);
#endif
}

std::string isa_features() {
    std::string s;
    auto add = [&](const char* name, bool on) { s += strf("%s%s=%d", s.empty() ? "" : " ", name, on ? 1 : 0); };
#if defined(__x86_64__)
#ifdef __AVX2__
    add("AVX2", true);
#else
    add("AVX2", false);
#endif
#ifdef __FMA__
    add("FMA", true);
#else
    add("FMA", false);
#endif
#ifdef __AVX512F__
    add("AVX512F", true);
#else
    add("AVX512F", false);
#endif
#ifdef __AVX512BF16__
    add("AVX512BF16", true);
#else
    add("AVX512BF16", false);
#endif
#endif
#ifdef _OPENMP
    add("OPENMP", true);
#else
    add("OPENMP", false);
#endif
    return s;
}

std::string blas_backend() {
#ifdef HIPPO_USE_OPENBLAS
    const char* par = "";
    switch (openblas_get_parallel()) {
        case 0: par = "sequential"; break;
        case 1: par = "pthreads"; break;
        case 2: par = "OpenMP"; break;
    }
    return strf("%s (%s threading, core %s)", openblas_get_config(), par, openblas_get_corename());
#else
    return "built-in blocked GEMM";
#endif
}

std::string fft_backend() {
#ifdef __AVX512F__
    std::string s = "hippo real FFT (power of two, radix-4 AVX-512)";
#else
    std::string s = "hippo real FFT (power of two, scalar radix-2)";
#endif
#ifdef HIPPO_HAVE_FFTW
    s += strf("; peer %s", fftwf_version);
#endif
    return s;
}

}  // namespace hippo
