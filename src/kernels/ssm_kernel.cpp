#include "kernels/ssm_kernel.h"

#include <cmath>
#include <vector>

#include "common/simd.h"

namespace hippo {

using cd = std::complex<double>;

namespace {

constexpr int kTable = ModalPowers::kTable;
constexpr int kReanchorBlocks = 64; // exact exp() every kReanchorBlocks * kTable steps

struct ModeParams {
    double dt;
    cd A, Bc, Cc;
};

ModeParams mode_params(const float* log_dt, const float* inv_A_real, const float* A_imag, const float* B,
                       const float* C, int64_t M, int64_t h, int64_t m) {
    int64_t i = h * M + m;
    return {std::exp(double(log_dt[h])), cd(-std::exp(double(inv_A_real[i])), double(A_imag[i])),
            B ? cd(B[2 * i], B[2 * i + 1]) : cd(1.0), C ? cd(C[2 * i], C[2 * i + 1]) : cd(1.0)};
}

// log(1 + x) for a complex x whose real part is > -1: real part 0.5 log1p(|1 + x|^2 - 1), with
// |1 + x|^2 - 1 = 2 xr + xr^2 + xi^2 formed without cancellation, imaginary part the argument.
// (std::log of a complex goes through glibc's clog, whose exact x^2 + y^2 - 1 sorts partial
// products: 80% of a 128-token hybrid prefill was spent there.)
cd log1p_complex(cd x) {
    const double xr = x.real(), xi = x.imag();
    return {0.5 * std::log1p(xr * (2.0 + xr) + xi * xi), std::atan2(xi, 1.0 + xr)};
}

// dA, dB and log(dA) for one mode.
void discretize_mode(const ModeParams& p, Discretization disc, cd* dA, cd* dB, cd* log_dA) {
    if (disc == Discretization::bilinear) {
        cd x = p.dt * p.A * 0.5;
        *dA = (1.0 + x) / (1.0 - x);
        *dB = p.Bc * p.dt / (1.0 - x);
        // log((1 + x) / (1 - x)), |Re x| < 1 (Re A < 0): each argument lies in (-pi/2, pi/2), so the
        // difference is the principal logarithm.
        *log_dA = log1p_complex(x) - log1p_complex(-x);
    } else {
        cd a = p.dt * p.A;
        *log_dA = a;
        *dA = std::exp(a);
        // (e^a - 1) / A with a complex expm1 to avoid cancellation for |a| << 1.
        double s = std::sin(a.imag() * 0.5);
        cd em1(std::expm1(a.real()) * std::cos(a.imag()) - 2.0 * s * s, std::exp(a.real()) * std::sin(a.imag()));
        *dB = p.Bc * em1 / p.A;
    }
}

}  // namespace

void s4d_discretize(cd* dA, cd* dB, cd* W, const float* log_dt, const float* inv_A_real, const float* A_imag,
                    const float* B, const float* C, int64_t H, int64_t M, Discretization disc) {
#pragma omp parallel for schedule(static) if (H * M >= 4096)
    for (int64_t h = 0; h < H; h++)
        for (int64_t m = 0; m < M; m++) {
            ModeParams p = mode_params(log_dt, inv_A_real, A_imag, B, C, M, h, m);
            cd a, b, l;
            discretize_mode(p, disc, &a, &b, &l);
            int64_t i = h * M + m;
            if (dA) dA[i] = a;
            if (dB) dB[i] = b;
            if (W) W[i] = p.Cc * b;
        }
}

ModalPowers::ModalPowers(const cd* log_z, int64_t H, int64_t M)
    : H_(H), M_(M), Mp_((M + 15) / 16 * 16), tr_(size_t(H * M * kTable)), ti_(size_t(H * M * kTable)),
      mr_(size_t(H * kTable * ((M + 15) / 16 * 16)), 0.0f), mi_(mr_.size(), 0.0f), log_z_(log_z, log_z + H * M),
      step_re_(size_t(H * ((M + 15) / 16 * 16)), 0.0), step_im_(step_re_.size(), 0.0) {
#pragma omp parallel for schedule(static) if (H * M > 64)
    for (int64_t h = 0; h < H; h++)
        for (int64_t m = 0; m < M; m++) {
            size_t i = size_t(h * M + m);
            // z^j by repeated multiplication in double: 63 roundings of 1e-16 are far below the fp32
            // table's own rounding, and one exp() per mode instead of 64 (this runs every forward).
            const cd z = std::exp(log_z_[i]);
            cd p = 1.0;
            for (int j = 0; j < kTable; j++, p *= z) {
                tr_[i * kTable + size_t(j)] = float(p.real());
                ti_[i * kTable + size_t(j)] = float(p.imag());
                mr_[size_t((h * kTable + j) * Mp_ + m)] = float(p.real());
                mi_[size_t((h * kTable + j) * Mp_ + m)] = float(p.imag());
            }
            cd st = std::exp(double(kTable) * log_z_[i]);
            step_re_[size_t(h * Mp_ + m)] = st.real();
            step_im_[size_t(h * Mp_ + m)] = st.imag();
        }
}

cd ModalPowers::power(int64_t h, int64_t m, int64_t l) const { return std::exp(double(l) * log_z(h, m)); }

// z^(kTable b) for every mode of one head, in double, advanced block by block: one complex
// multiplication per block, an exact exp() every kReanchorBlocks blocks.
struct ModalAnchors {
    const ModalPowers& pw;
    int64_t h;
    std::vector<double> re, im;  // (Mp)
    ModalAnchors(const ModalPowers& p, int64_t head) : pw(p), h(head), re(size_t(p.Mp_), 0.0), im(size_t(p.Mp_), 0.0) {
        for (int64_t m = 0; m < pw.M_; m++) re[size_t(m)] = 1.0;
    }
    void advance(int64_t b_next) {
        const int64_t Mp = pw.Mp_;
        if (b_next % kReanchorBlocks == 0) {
            for (int64_t m = 0; m < pw.M_; m++) {
                cd a = std::exp(double(b_next * kTable) * pw.log_z(h, m));
                re[size_t(m)] = a.real();
                im[size_t(m)] = a.imag();
            }
            return;
        }
        const double* sr = pw.step_re_.data() + h * Mp;
        const double* si = pw.step_im_.data() + h * Mp;
        double* ar = re.data();
        double* ai = im.data();
#pragma omp simd
        for (int64_t m = 0; m < Mp; m++) {
            double r = ar[m] * sr[m] - ai[m] * si[m];
            ai[m] = ar[m] * si[m] + ai[m] * sr[m];
            ar[m] = r;
        }
    }
};

void ModalPowers::eval(float* out, int64_t T, const cd* W, int64_t h) const {
    ModalAnchors anc(*this, h);
    std::vector<double> wr(size_t(Mp_), 0.0), wi(size_t(Mp_), 0.0);
    std::vector<float> fr(static_cast<size_t>(Mp_)), fi(static_cast<size_t>(Mp_));
    for (int64_t m = 0; m < M_; m++) {
        wr[size_t(m)] = 2.0 * W[m].real();
        wi[size_t(m)] = 2.0 * W[m].imag();
    }
    const float* tr0 = tr_.data() + size_t(h * M_ * kTable);
    const float* ti0 = ti_.data() + size_t(h * M_ * kTable);
    for (int64_t b = 0, l0 = 0; l0 < T; b++, l0 += kTable) {
        // a_m = 2 W_m z_m^l0, rounded to float once per block
#pragma omp simd
        for (int64_t m = 0; m < Mp_; m++) {
            fr[size_t(m)] = float(wr[size_t(m)] * anc.re[size_t(m)] - wi[size_t(m)] * anc.im[size_t(m)]);
            fi[size_t(m)] = float(wr[size_t(m)] * anc.im[size_t(m)] + wi[size_t(m)] * anc.re[size_t(m)]);
        }
        const int64_t n = std::min<int64_t>(kTable, T - l0);
        float* o = out + l0;
#ifdef __AVX512F__
        if (n == kTable) {
            // 64 outputs stay in four registers while every mode is added in.
            __m512 acc0 = _mm512_loadu_ps(o), acc1 = _mm512_loadu_ps(o + 16), acc2 = _mm512_loadu_ps(o + 32),
                   acc3 = _mm512_loadu_ps(o + 48);
            for (int64_t m = 0; m < M_; m++) {
                const float* tr = tr0 + m * kTable;
                const float* ti = ti0 + m * kTable;
                __m512 ar = _mm512_set1_ps(fr[size_t(m)]), ai = _mm512_set1_ps(fi[size_t(m)]);
                acc0 = _mm512_fnmadd_ps(ai, _mm512_loadu_ps(ti), _mm512_fmadd_ps(ar, _mm512_loadu_ps(tr), acc0));
                acc1 = _mm512_fnmadd_ps(ai, _mm512_loadu_ps(ti + 16), _mm512_fmadd_ps(ar, _mm512_loadu_ps(tr + 16), acc1));
                acc2 = _mm512_fnmadd_ps(ai, _mm512_loadu_ps(ti + 32), _mm512_fmadd_ps(ar, _mm512_loadu_ps(tr + 32), acc2));
                acc3 = _mm512_fnmadd_ps(ai, _mm512_loadu_ps(ti + 48), _mm512_fmadd_ps(ar, _mm512_loadu_ps(tr + 48), acc3));
            }
            _mm512_storeu_ps(o, acc0);
            _mm512_storeu_ps(o + 16, acc1);
            _mm512_storeu_ps(o + 32, acc2);
            _mm512_storeu_ps(o + 48, acc3);
        } else
#endif
        {
            for (int64_t m = 0; m < M_; m++) {
                const float* tr = tr0 + m * kTable;
                const float* ti = ti0 + m * kTable;
                const float ar = fr[size_t(m)], ai = fi[size_t(m)];
#pragma omp simd
                for (int64_t j = 0; j < n; j++) o[j] += ar * tr[j] - ai * ti[j];
            }
        }
        anc.advance(b + 1);
    }
}

void ModalPowers::sums(cd* S0, cd* S1, const float* g, int64_t T, int64_t h, bool reversed) const {
    ModalAnchors anc(*this, h);
    const int64_t Mp = Mp_;
    std::vector<double> s0r(size_t(Mp), 0.0), s0i(size_t(Mp), 0.0), s1r(size_t(Mp), 0.0), s1i(size_t(Mp), 0.0);
    std::vector<float> ur(static_cast<size_t>(Mp)), ui(static_cast<size_t>(Mp)), vr(static_cast<size_t>(Mp)), vi(static_cast<size_t>(Mp));
    const float* mr0 = mr_.data() + size_t(h * kTable * Mp);
    const float* mi0 = mi_.data() + size_t(h * kTable * Mp);
    float gb[kTable];
    for (int64_t b = 0, l0 = 0; l0 < T; b++, l0 += kTable) {
        const int64_t n = std::min<int64_t>(kTable, T - l0);
        for (int64_t j = 0; j < n; j++) gb[j] = reversed ? g[T - 1 - l0 - j] : g[l0 + j];
        // U_m = sum_j g_j z_m^j and V_m = sum_j g_j j z_m^j over this block, vectorised over modes.
        std::fill(ur.begin(), ur.end(), 0.0f);
        std::fill(ui.begin(), ui.end(), 0.0f);
        std::fill(vr.begin(), vr.end(), 0.0f);
        std::fill(vi.begin(), vi.end(), 0.0f);
#ifdef __AVX512F__
        if (Mp <= 64) {
            __m512 aur[4], aui[4], avr[4], avi[4];
            const int nv = int(Mp / 16);
            for (int v = 0; v < nv; v++) aur[v] = aui[v] = avr[v] = avi[v] = _mm512_setzero_ps();
            for (int64_t j = 0; j < n; j++) {
                const __m512 gj = _mm512_set1_ps(gb[j]);
                const float* mr = mr0 + j * Mp;
                const float* mi = mi0 + j * Mp;
                for (int v = 0; v < nv; v++) {
                    aur[v] = _mm512_fmadd_ps(gj, _mm512_loadu_ps(mr + 16 * v), aur[v]);
                    aui[v] = _mm512_fmadd_ps(gj, _mm512_loadu_ps(mi + 16 * v), aui[v]);
                }
                if (S1) {
                    const __m512 gjj = _mm512_set1_ps(gb[j] * float(j));
                    for (int v = 0; v < nv; v++) {
                        avr[v] = _mm512_fmadd_ps(gjj, _mm512_loadu_ps(mr + 16 * v), avr[v]);
                        avi[v] = _mm512_fmadd_ps(gjj, _mm512_loadu_ps(mi + 16 * v), avi[v]);
                    }
                }
            }
            for (int v = 0; v < nv; v++) {
                _mm512_storeu_ps(ur.data() + 16 * v, aur[v]);
                _mm512_storeu_ps(ui.data() + 16 * v, aui[v]);
                _mm512_storeu_ps(vr.data() + 16 * v, avr[v]);
                _mm512_storeu_ps(vi.data() + 16 * v, avi[v]);
            }
        } else
#endif
        {
            for (int64_t j = 0; j < n; j++) {
                const float gj = gb[j], gjj = gb[j] * float(j);
                const float* mr = mr0 + j * Mp;
                const float* mi = mi0 + j * Mp;
#pragma omp simd
                for (int64_t m = 0; m < Mp; m++) {
                    ur[size_t(m)] += gj * mr[m];
                    ui[size_t(m)] += gj * mi[m];
                    vr[size_t(m)] += gjj * mr[m];
                    vi[size_t(m)] += gjj * mi[m];
                }
            }
        }
        // S0 += anchor U,  S1 += anchor (l0 U + V), in double.
        const double dl0 = double(l0);
#pragma omp simd
        for (int64_t m = 0; m < Mp; m++) {
            const double are = anc.re[size_t(m)], aim = anc.im[size_t(m)];
            const double Ur = ur[size_t(m)], Ui = ui[size_t(m)];
            s0r[size_t(m)] += are * Ur - aim * Ui;
            s0i[size_t(m)] += are * Ui + aim * Ur;
            const double Wr = dl0 * Ur + vr[size_t(m)], Wi = dl0 * Ui + vi[size_t(m)];
            s1r[size_t(m)] += are * Wr - aim * Wi;
            s1i[size_t(m)] += are * Wi + aim * Wr;
        }
        anc.advance(b + 1);
    }
    for (int64_t m = 0; m < M_; m++) {
        S0[m] = cd(s0r[size_t(m)], s0i[size_t(m)]);
        if (S1) S1[m] = cd(s1r[size_t(m)], s1i[size_t(m)]);
    }
}

void s4d_log_dA(cd* log_dA, const float* log_dt, const float* inv_A_real, const float* A_imag, int64_t H, int64_t M,
                Discretization disc) {
#pragma omp parallel for schedule(static) if (H * M >= 4096)
    for (int64_t h = 0; h < H; h++)
        for (int64_t m = 0; m < M; m++) {
            ModeParams p = mode_params(log_dt, inv_A_real, A_imag, nullptr, nullptr, M, h, m);
            cd a, b, l;
            discretize_mode(p, disc, &a, &b, &l);
            log_dA[h * M + m] = l;
        }
}

void s4d_kernel_forward(float* K, const float* log_dt, const float* inv_A_real, const float* A_imag,
                        const float* B, const float* C, int64_t H, int64_t M, int64_t L, Discretization disc) {
    std::vector<cd> log_dA(size_t(H * M)), W(size_t(H * M));
    s4d_log_dA(log_dA.data(), log_dt, inv_A_real, A_imag, H, M, disc);
    s4d_discretize(nullptr, nullptr, W.data(), log_dt, inv_A_real, A_imag, B, C, H, M, disc);
    s4d_kernel_eval(K, ModalPowers(log_dA.data(), H, M), W.data(), L);
}

void s4d_kernel_eval(float* K, const ModalPowers& pw, const cd* W, int64_t L) {
    const int64_t H = pw.heads(), M = pw.modes();
#pragma omp parallel for schedule(static)
    for (int64_t h = 0; h < H; h++) {
        std::fill(K + h * L, K + (h + 1) * L, 0.0f);
        pw.eval(K + h * L, L, W + h * M, h);
    }
}

void s4d_param_grads(float* d_log_dt, float* d_inv_A_real, float* d_A_imag, float* dB_out, float* dC_out,
                     const cd* S0, const cd* S1, const float* log_dt, const float* inv_A_real, const float* A_imag,
                     const float* B, const float* C, int64_t H, int64_t M, Discretization disc) {
    for (int64_t h = 0; h < H; h++) {
        double g_dt_total = 0;
        for (int64_t m = 0; m < M; m++) {
            ModeParams p = mode_params(log_dt, inv_A_real, A_imag, B, C, M, h, m);
            cd dA, dB, log_dA;
            discretize_mode(p, disc, &dA, &dB, &log_dA);
            int64_t i = h * M + m;
            // K_l = 2 Re(W z^l): complex gradients (dL/dre + i dL/dim) of W and z.
            cd W = p.Cc * dB;
            cd gW = 2.0 * std::conj(S0[i]);
            cd gz = std::abs(dA) > 1e-300 ? 2.0 * std::conj(W * S1[i] / dA) : 0.0;
            cd gC = gW * std::conj(dB);
            cd gdB = gW * std::conj(p.Cc);
            // Partial derivatives of dA and dB with respect to A, dt and B.
            cd dA_dA, dA_ddt, dB_dA, dB_ddt, dB_dB;
            if (disc == Discretization::bilinear) {
                cd x = p.dt * p.A * 0.5, den = 1.0 - x, den2 = den * den;
                dA_dA = p.dt / den2;
                dA_ddt = p.A / den2;
                dB_dB = p.dt / den;
                dB_dA = p.Bc * p.dt * p.dt * 0.5 / den2;
                dB_ddt = p.Bc / den2;
            } else {
                cd e = dA;
                double s = std::sin(log_dA.imag() * 0.5);
                cd em1(std::expm1(log_dA.real()) * std::cos(log_dA.imag()) - 2.0 * s * s,
                       std::exp(log_dA.real()) * std::sin(log_dA.imag()));  // e^{dt A} - 1
                dA_dA = p.dt * e;
                dA_ddt = p.A * e;
                dB_dB = em1 / p.A;
                dB_ddt = p.Bc * e;
                dB_dA = p.Bc * (p.dt * e * p.A - em1) / (p.A * p.A);
            }
            cd gA = gz * std::conj(dA_dA) + gdB * std::conj(dB_dA);
            cd gB = gdB * std::conj(dB_dB);
            double gdt = (gz * std::conj(dA_ddt)).real() + (gdB * std::conj(dB_ddt)).real();
            d_inv_A_real[i] = float(gA.real() * -std::exp(double(inv_A_real[i])));
            d_A_imag[i] = float(gA.imag());
            dB_out[2 * i] = float(gB.real());
            dB_out[2 * i + 1] = float(gB.imag());
            dC_out[2 * i] = float(gC.real());
            dC_out[2 * i + 1] = float(gC.imag());
            g_dt_total += gdt * p.dt;  // d dt / d log_dt = dt
        }
        d_log_dt[h] = float(g_dt_total);
    }
}

void s4d_kernel_backward(float* d_log_dt, float* d_inv_A_real, float* d_A_imag, float* dB_out, float* dC_out,
                         const float* dK, const float* log_dt, const float* inv_A_real, const float* A_imag,
                         const float* B, const float* C, int64_t H, int64_t M, int64_t L, Discretization disc) {
    std::vector<cd> log_dA(size_t(H * M)), S0(size_t(H * M)), S1(size_t(H * M));
    s4d_log_dA(log_dA.data(), log_dt, inv_A_real, A_imag, H, M, disc);
    ModalPowers pw(log_dA.data(), H, M);
#pragma omp parallel for schedule(static)
    for (int64_t h = 0; h < H; h++) pw.sums(S0.data() + h * M, S1.data() + h * M, dK + h * L, L, h);
    s4d_param_grads(d_log_dt, d_inv_A_real, d_A_imag, dB_out, dC_out, S0.data(), S1.data(), log_dt, inv_A_real, A_imag,
                    B, C, H, M, disc);
}

void s4d_kernel_forward_ref(double* K, const double* log_dt, const double* inv_A_real, const double* A_imag,
                            const double* B, const double* C, int64_t H, int64_t M, int64_t L, Discretization disc) {
    for (int64_t h = 0; h < H; h++) {
        double dt = std::exp(log_dt[h]);
        for (int64_t l = 0; l < L; l++) K[h * L + l] = 0;
        for (int64_t m = 0; m < M; m++) {
            int64_t i = h * M + m;
            cd A(-std::exp(inv_A_real[i]), A_imag[i]), Bc(B[2 * i], B[2 * i + 1]), Cc(C[2 * i], C[2 * i + 1]);
            cd dA, dB, log_dA;
            if (disc == Discretization::bilinear) {
                dA = (1.0 + dt * A / 2.0) / (1.0 - dt * A / 2.0);
                dB = Bc * dt / (1.0 - dt * A / 2.0);
                log_dA = std::log(dA);
            } else {
                log_dA = dt * A;
                dA = std::exp(log_dA);
                dB = Bc * (dA - 1.0) / A;
            }
            for (int64_t l = 0; l < L; l++) K[h * L + l] += 2.0 * (Cc * dB * std::exp(double(l) * log_dA)).real();
        }
    }
}

void shift_kernel_forward(float* h, const float* B, const float* C, int64_t D, int64_t N) {
#pragma omp parallel for schedule(static) if (D * N * N > 100000)
    for (int64_t c = 0; c < D; c++) {
        const float* b = B + c * N;
        const float* cc = C + c * N;
        for (int64_t j = 0; j < N; j++) {
            float acc = 0;
            for (int64_t m = 0; m + j < N; m++) acc += b[m] * cc[m + j];
            h[c * N + j] = acc;
        }
    }
}

void shift_kernel_backward(float* dB, float* dC, const float* dh, const float* B, const float* C, int64_t D,
                           int64_t N) {
#pragma omp parallel for schedule(static) if (D * N * N > 100000)
    for (int64_t c = 0; c < D; c++) {
        const float* b = B + c * N;
        const float* cc = C + c * N;
        const float* g = dh + c * N;
        for (int64_t m = 0; m < N; m++) {
            float acc = 0;  // dB[m] = sum_j g[j] C[m + j]
            for (int64_t j = 0; m + j < N; j++) acc += g[j] * cc[m + j];
            dB[c * N + m] = acc;
        }
        for (int64_t k = 0; k < N; k++) {
            float acc = 0;  // dC[k] = sum_{m <= k} g[k - m] B[m]
            for (int64_t m = 0; m <= k; m++) acc += g[k - m] * b[m];
            dC[c * N + k] = acc;
        }
    }
}

void shift_kernel_forward_ref(double* h, const double* B, const double* C, int64_t D, int64_t N) {
    for (int64_t c = 0; c < D; c++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t m = 0; m + j < N; m++) acc += B[c * N + m] * C[c * N + m + j];
            h[c * N + j] = acc;
        }
}

}  // namespace hippo
