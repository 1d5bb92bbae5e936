// hippo's own power-of-two real FFT (no third-party code).
//
// Algorithm (see Note [fft layout] in fft.cpp): a real FFT of n = 2m points is a complex FFT of the
// m points z[j] = x[2j] + i x[2j+1] followed by the usual "real split" post-processing. The
// complex FFT works on deinterleaved (split re / im) data: radix-4 decimation-in-frequency passes,
// vectorised along the butterfly index with AVX-512 (16 floats per register), processed depth
// first so that sub-problems stay in L1, and a last 16-point codelet that runs across 16 blocks
// after an in-register 16x16 transpose. Choosing which 16 blocks go together makes that codelet
// write its results in natural order, so no separate bit-reversal pass exists. The inverse runs
// the same steps backwards (pre-processing, transposed codelet, radix-4 decimation in time).
// Builds without AVX-512 (and sizes n < 512) use a plain scalar radix-2 path.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hippo {

// Plan for one real FFT size n = 2^k, 1 <= n <= 2^22 (other n: throws hippo::Error).
// Plans are immutable after construction: any number of threads may call forward()/inverse() on
// one plan concurrently, each with its own `work` buffer. No call allocates.
class RealFFT {
public:
    static constexpr int64_t kMaxSize = int64_t(1) << 22;

    explicit RealFFT(int64_t n);
    ~RealFFT();
    RealFFT(const RealFFT&) = delete;
    RealFFT& operator=(const RealFFT&) = delete;
    RealFFT(RealFFT&& o) noexcept;
    RealFFT& operator=(RealFFT&& o) noexcept;

    int64_t size() const { return n_; }
    // Floats of scratch each call needs (64-byte aligned is best, any alignment works).
    size_t work_floats() const;

    // x: (n) real -> X: (n/2+1) complex interleaved re,im = n+2 floats. Unnormalised, FFTW r2c
    // convention X[k] = sum_j x[j] e^{-2 pi i jk/n}. x == X (a buffer of n+2 floats) is allowed.
    // len (all four transforms; -1 = n): zero padding / truncation for convolutions. forward reads
    // only x[0, len) and takes the rest as zeros (x may then be a buffer of just len floats);
    // inverse writes only x[0, len) (x may be a buffer of just len floats).
    void forward(const float* x, float* X, float* work, int64_t len = -1) const;
    // X: (n/2+1) complex interleaved -> x: (n) real, times `scale` (scale = 1 is FFTW c2r, i.e. n
    // times the true inverse; scale = 1/n gives the true inverse). X[0].im and X[n/2].im are
    // ignored, as in FFTW. X is not modified; X == x is allowed.
    void inverse(const float* X, float* x, float* work, float scale = 1.0f, int64_t len = -1) const;

    // ---- unordered spectra for fast convolution ------------------------------------------------
    // forward_unordered skips the real post-processing and writes the packed "Z-domain" spectrum
    //   S: (n+2) floats = [ Zre: (m) | Zim: (m) | 2 unused ],  m = n/2,
    //   Z[k] = sum_j (x[2j] + i x[2j+1]) e^{-2 pi i jk/m},  i.e. the m-point complex FFT of x read
    //   as interleaved complex numbers, split into re and im blocks (n == 1: S[0] = x[0]).
    // Its relation to the ordered spectrum: X[k] = (Z[k] + conj Z[m-k])/2
    //   - i/2 e^{-2 pi i k/n} (Z[k] - conj Z[m-k]). Spectra in this layout are combined with
    // spectrum_mul / spectrum_mul_conj (which convert pairs of bins (k, m-k) in registers, multiply
    // and convert back) and transformed back with inverse_unordered, so that
    //   inverse_unordered(spectrum_mul(forward_unordered(a), forward_unordered(b)))
    //   == inverse(forward(a) * forward(b))   up to rounding,
    // while each transform saves one pass over the data. In-place (x == S) is allowed.
    void forward_unordered(const float* x, float* S, float* work, int64_t len = -1) const;
    void inverse_unordered(const float* S, float* x, float* work, float scale = 1.0f,
                           int64_t len = -1) const;
    // out = a * b (complex multiply of the ordered spectra, bin by bin), all three in the unordered
    // layout; out may alias a or b. (n+2) floats each.
    void spectrum_mul(const float* a, const float* b, float* out) const;
    // out = a * conj(b) (bin by bin; correlation / backward pass of a convolution).
    void spectrum_mul_conj(const float* a, const float* b, float* out) const;
    // Converts between the unordered layout and the ordered interleaved one (for tests/debugging;
    // not optimised).
    void unordered_to_ordered(const float* S, float* X) const;
    void ordered_to_unordered(const float* X, float* S) const;

private:
    void build_vector_plan();
    int64_t n_ = 0, m_ = 0;  // m = n/2 complex points
    int log2m_ = 0;
    bool vec_ = false;        // AVX-512 path
    float* tw_ = nullptr;     // all twiddle tables, one aligned block
    size_t tw_floats_ = 0;
    // offsets into tw_ (in floats)
    size_t post_off_ = 0;     // W_n^k, k = 0..m/2: re block then im block (each pad16(m/2+1))
    size_t post_stride_ = 0;
    size_t scal_off_ = 0;     // scalar path: W_m^k, k < m/2, re then im
    size_t lvl_off_[32] = {}; // vector path: radix-4 level of size L = 2^l: w1r,w1i,w2r,w2i,w3r,w3i (each L/4)
    size_t r2_off_ = 0;       // radix-2 level L = 32: W_32^j, j < 16, re then im
};

// Plain references, double precision, O(n^2) DFTs (tests only; n any positive integer).
// x: (n) -> X: (n/2+1) complex interleaved = n+2 doubles (n even; for odd n, n+1 used).
void rfft_ref(const float* x, double* X, int64_t n);
// X: (n/2+1) complex interleaved -> x: (n) real, unnormalised (FFTW c2r convention), imaginary
// parts of X[0] and X[n/2] ignored.
void irfft_ref(const double* X, double* x, int64_t n);

}  // namespace hippo
