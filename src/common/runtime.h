// Process-wide runtime facts and settings: threads, timing, compiled features.
#pragma once
#include <chrono>
#include <string>

namespace hippo {

// Number of threads the kernels use. Default: physical cores (hyper-threads slow GEMM-bound work).
int num_threads();
void set_num_threads(int n);
int physical_cores();

// Compiled ISA features, e.g. "AVX2=1 AVX512F=1 AVX512BF16=1 FMA=1".
std::string isa_features();
std::string blas_backend();  // e.g. "openblas 0.3.21 (OpenMP)"
std::string fft_backend();   // e.g. "hippo radix-4 AVX-512 (FFTW 3.3.10 peer)"

inline double now_seconds() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace hippo
