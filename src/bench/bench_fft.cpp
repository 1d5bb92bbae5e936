#include "bench/bench_fft.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>

#include "common/alloc.h"
#include "common/check.h"
#include "common/rng.h"
#include "common/runtime.h"
#include "kernels/fft.h"
#ifdef HIPPO_HAVE_FFTW
#include <fftw3.h>
#endif

namespace hippo {

namespace {

struct Buf {
    float* p = nullptr;
    explicit Buf(size_t n) {
        p = static_cast<float*>(aligned_alloc_bytes(n * sizeof(float)));
        std::memset(p, 0, n * sizeof(float));
    }
    ~Buf() { aligned_free(p); }
    Buf(const Buf&) = delete;
    Buf& operator=(const Buf&) = delete;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

std::vector<BenchRecord> bench_fft(const std::vector<int>& log2_sizes) {
    std::vector<BenchRecord> out;
    for (int lg : log2_sizes) {
        HIPPO_CHECK(lg >= 1 && lg <= 22, "bench fft: log2 size %d outside [1, 22]", lg);
        const int64_t n = int64_t(1) << lg;
        RealFFT plan(n);
        Buf x(size_t(n + 2)), X(size_t(n + 2)), y(size_t(n + 2)), S(size_t(n + 2)), w(plan.work_floats());
        Rng rng{uint64_t(lg)};
        for (int64_t i = 0; i < n; i++) x.p[i] = float(rng.normal());
        plan.forward(x.p, X.p, w.p);
        plan.forward_unordered(x.p, S.p, w.p);

        struct Variant {
            std::string name, pass;
            std::function<void()> fn;
            std::vector<double> ms;
            int runs = 0;
        };
        std::vector<Variant> vs;
        vs.push_back({"fft.hippo", "fwd", [&] { plan.forward(x.p, X.p, w.p); }, {}});
        vs.push_back({"fft.hippo", "inv", [&] { plan.inverse(X.p, y.p, w.p); }, {}});
        vs.push_back({"fft.hippo_unordered", "fwd", [&] { plan.forward_unordered(x.p, S.p, w.p); }, {}});
        vs.push_back({"fft.hippo_unordered", "inv", [&] { plan.inverse_unordered(S.p, y.p, w.p); }, {}});
#ifdef HIPPO_HAVE_FFTW
        float* fin = fftwf_alloc_real(size_t(n + 2));
        fftwf_complex* fout = fftwf_alloc_complex(size_t(n / 2 + 1));
        fftwf_plan pf = fftwf_plan_dft_r2c_1d(int(n), fin, fout, FFTW_MEASURE);
        fftwf_plan pi = fftwf_plan_dft_c2r_1d(int(n), fout, fin, FFTW_MEASURE);
        std::memcpy(fin, x.p, sizeof(float) * size_t(n));  // planning overwrote the arrays
        fftwf_execute(pf);
        // c2r destroys its input; repeated runs keep going on whatever is left there (NaN/inf
        // arithmetic runs at full speed on x86, and hippo's inverse is timed on a fixed input).
        vs.push_back({"fft.fftw", "fwd", [&] { fftwf_execute(pf); }, {}});
        vs.push_back({"fft.fftw", "inv", [&] { fftwf_execute(pi); }, {}});
#endif
        // batch size: about 0.5 ms of work per timed call (>= 1 transform)
        const double est_ms = 2.5 * double(n) * lg / 20e9 * 1e3;
        const int reps = std::max(1, int(0.5 / std::max(est_ms, 1e-6)));
        const int rounds = 9;
        for (int r = 0; r < rounds; r++)
            for (auto& v : vs) {
                Timing t = time_median(
                    [&] {
                        for (int i = 0; i < reps; i++) v.fn();
                    },
                    3, 0.01, 50);
                v.ms.push_back(t.median_ms / reps);
                v.runs += t.runs;
            }
        const double flops = 2.5 * double(n) * lg;
        std::map<std::string, double> fftw_ms;
        for (auto& v : vs)
            if (v.name == "fft.fftw") fftw_ms[v.pass] = median(v.ms);
        for (auto& v : vs) {
            BenchRecord rec;
            rec.name = v.name;
            rec.shape["n"] = n;
            rec.pass = v.pass;
            rec.ms = median(v.ms);
            rec.runs = v.runs * reps;
            rec.derived["gflops"] = flops / (rec.ms * 1e6);
            if (v.name != "fft.fftw" && fftw_ms.count(v.pass)) rec.derived["ratio_to_fftw"] = rec.ms / fftw_ms[v.pass];
            rec.extra["threads"] = 1;
            rec.extra["batch"] = reps;
            out.push_back(std::move(rec));
        }
#ifdef HIPPO_HAVE_FFTW
        fftwf_destroy_plan(pf);
        fftwf_destroy_plan(pi);
        fftwf_free(fin);
        fftwf_free(fout);
#endif
    }
    return out;
}

}  // namespace hippo
