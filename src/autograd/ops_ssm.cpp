#include "autograd/ops_ssm.h"

#include "kernels/fftconv.h"
#include "kernels/s4_dplr.h"
#include "kernels/shift_conv.h"
#include "kernels/ssm_kernel.h"

namespace hippo {

namespace {
void check_numel(const Tensor& t, int64_t n, const char* what, const char* op) {
    HIPPO_CHECK(t.defined(), "%s: %s is missing", op, what);
    HIPPO_CHECK(t.numel() == n, "%s: %s has shape %s (%lld elements), expected %lld elements", op, what,
                t.shape().str().c_str(), (long long)t.numel(), (long long)n);
}
}  // namespace

Tensor shift_ssm(const Tensor& k_in, const Tensor& B_in, const Tensor& C_in, const Tensor& Dk_in) {
    HIPPO_CHECK(k_in.ndim() == 3, "shift_ssm: k must be (B, L, C), got %s", k_in.shape().str().c_str());
    const int64_t Bn = k_in.size(0), L = k_in.size(1), C = k_in.size(2);
    HIPPO_CHECK(C > 0 && B_in.numel() % C == 0, "shift_ssm: B has %lld elements for %lld channels",
                (long long)B_in.numel(), (long long)C);
    const int64_t N = B_in.numel() / C;
    check_numel(C_in, C * N, "C", "shift_ssm");
    check_numel(Dk_in, C, "D", "shift_ssm");
    Tensor k = k_in.contiguous(), Bs = B_in.contiguous(), Cs = C_in.contiguous(), Dk = Dk_in.contiguous();
    Tensor h = Tensor::empty({C, N});
    shift_kernel_forward(h.data(), Bs.data(), Cs.data(), C, N);
    Tensor y = Tensor::empty(k.shape());
    shift_conv_forward(y.data(), k.data(), h.data(), Dk.data(), Bn, L, C, N);
    record(y, "shift_ssm", {k, Bs, Cs, Dk}, [k, Bs, Cs, Dk, h, Bn, L, C, N](const Tensor& g_in) {
        Tensor g = g_in.contiguous();
        Tensor dk = Tensor::empty(k.shape()), dh = Tensor::empty({C, N}), dDk = Tensor::empty(Dk.shape());
        shift_conv_backward(dk.data(), dh.data(), dDk.data(), g.data(), k.data(), h.data(), Dk.data(), Bn, L, C, N);
        Tensor dB = Tensor::empty(Bs.shape()), dC = Tensor::empty(Cs.shape());
        shift_kernel_backward(dB.data(), dC.data(), dh.data(), Bs.data(), Cs.data(), C, N);
        return std::vector<Tensor>{dk, dB, dC, dDk};
    });
    return y;
}

Tensor ssm_conv(const Tensor& u_in, const Tensor& v_in, const Tensor& q_in, const Tensor& log_dt_in,
                const Tensor& iar_in, const Tensor& aim_in, const Tensor& B_in, const Tensor& C_in, const Tensor& D_in,
                const SsmConvOptions& opt, std::vector<std::complex<float>>* final_state) {
    const char* op = "ssm_conv";
    HIPPO_CHECK(u_in.ndim() == 3, "%s: u must be (B, L, C), got %s", op, u_in.shape().str().c_str());
    const int64_t Bn = u_in.size(0), L = u_in.size(1), C = u_in.size(2), P = opt.channels_per_kernel;
    HIPPO_CHECK(L >= 1, "%s: empty sequence", op);
    HIPPO_CHECK(P >= 1 && C % P == 0, "%s: %lld channels are not a multiple of %lld channels per kernel", op,
                (long long)C, (long long)P);
    const int64_t Hk = C / P;
    check_numel(log_dt_in, Hk, "log_dt", op);
    HIPPO_CHECK(iar_in.numel() % Hk == 0 && iar_in.numel() > 0, "%s: inv_A_real has shape %s for %lld kernels", op,
                iar_in.shape().str().c_str(), (long long)Hk);
    const int64_t M = iar_in.numel() / Hk;
    check_numel(aim_in, Hk * M, "A_imag", op);
    check_numel(B_in, Hk * M * 2, "B", op);
    check_numel(C_in, Hk * M * 2, "C", op);
    check_numel(D_in, Hk, "D", op);
    for (const Tensor* t : {&v_in, &q_in})
        if (t->defined())
            HIPPO_CHECK(t->shape() == u_in.shape(), "%s: gate shape %s differs from input shape %s", op,
                        t->shape().str().c_str(), u_in.shape().str().c_str());

    Tensor u = u_in.contiguous(), v = v_in.defined() ? v_in.contiguous() : Tensor(),
           q = q_in.defined() ? q_in.contiguous() : Tensor();
    Tensor log_dt = log_dt_in.contiguous(), iar = iar_in.contiguous(), aim = aim_in.contiguous(),
           Bp = B_in.contiguous(), Cp = C_in.contiguous(), D = D_in.contiguous();
    FftConvShape s{Bn, L, C, P};
    SsmParams p{log_dt.data(), iar.data(), aim.data(), Bp.data(), Cp.data(), D.data(), M, opt.disc};
    Tensor y = Tensor::empty(u.shape());
    if (final_state) final_state->resize(size_t(Bn * C * M));
    ssm_conv_forward(y.data(), u.data(), v.defined() ? v.data() : nullptr, q.defined() ? q.data() : nullptr, p, s,
                     opt.chunk, final_state ? final_state->data() : nullptr, opt.path);
    record(y, op, {u, v, q, log_dt, iar, aim, Bp, Cp, D},
           [u, v, q, log_dt, iar, aim, Bp, Cp, D, s, M, opt](const Tensor& g_in) {
               Tensor g = g_in.contiguous();
               Tensor du = Tensor::empty(u.shape());
               Tensor dv = v.defined() ? Tensor::empty(v.shape()) : Tensor();
               Tensor dq = q.defined() ? Tensor::empty(q.shape()) : Tensor();
               Tensor g_log_dt = Tensor::empty(log_dt.shape()), g_iar = Tensor::empty(iar.shape()),
                      g_aim = Tensor::empty(aim.shape()), gB = Tensor::empty(Bp.shape()), gC = Tensor::empty(Cp.shape()),
                      gD = Tensor::empty(D.shape());
               SsmParams p{log_dt.data(), iar.data(), aim.data(), Bp.data(), Cp.data(), D.data(), M, opt.disc};
               SsmParamGrads pg{g_log_dt.data(), g_iar.data(), g_aim.data(), gB.data(), gC.data(), gD.data()};
               ssm_conv_backward(du.data(), dv.defined() ? dv.data() : nullptr, dq.defined() ? dq.data() : nullptr, pg,
                                 g.data(), u.data(), v.defined() ? v.data() : nullptr, q.defined() ? q.data() : nullptr,
                                 p, s, opt.chunk, opt.path);
               return std::vector<Tensor>{du, dv, dq, g_log_dt, g_iar, g_aim, gB, gC, gD};
           });
    return y;
}

Tensor modal_conv(const Tensor& u_in, const Tensor& D_in, const ModalParameterisation& mp, int64_t chunk,
                  std::vector<std::complex<double>>* final_X, SsmConvPath path) {
    const char* op = mp.name;
    HIPPO_CHECK(u_in.ndim() == 3, "%s: u must be (B, L, C), got %s", op, u_in.shape().str().c_str());
    const int64_t Bn = u_in.size(0), L = u_in.size(1), C = u_in.size(2), Hk = mp.Hk, M = mp.M;
    HIPPO_CHECK(L >= 1, "%s: empty sequence", op);
    HIPPO_CHECK(Hk >= 1 && M >= 1 && C % Hk == 0, "%s: %lld channels for %lld kernels of %lld modes", op,
                (long long)C, (long long)Hk, (long long)M);
    check_numel(D_in, Hk, "D", op);
    using cd = std::complex<double>;
    std::vector<Tensor> params;
    for (const Tensor& t : mp.params) params.push_back(t.contiguous());
    auto log_z = std::make_shared<std::vector<cd>>(size_t(Hk * M));
    auto W = std::make_shared<std::vector<cd>>(size_t(Hk * M));
    mp.build(params, log_z->data(), W->data());
    Tensor u = u_in.contiguous(), D = D_in.contiguous();
    FftConvShape s{Bn, L, C, C / Hk};
    Tensor y = Tensor::empty(u.shape());
    if (final_X) final_X->resize(size_t(Bn * C * M));
    modal_conv_forward(y.data(), u.data(), nullptr, nullptr, ModalSsm{log_z->data(), W->data(), D.data(), M}, s, chunk,
                       final_X ? final_X->data() : nullptr, path);
    std::vector<Tensor> inputs{u, D};
    inputs.insert(inputs.end(), params.begin(), params.end());
    auto grads_fn = mp.grads;
    record(y, op, inputs, [u, D, params, log_z, W, s, M, Hk, chunk, path, grads_fn](const Tensor& g_in) {
        Tensor g = g_in.contiguous();
        Tensor du = Tensor::empty(u.shape()), gD = Tensor::empty(D.shape());
        std::vector<cd> S0(size_t(Hk * M)), S1(size_t(Hk * M)), gW(size_t(Hk * M)), glz(size_t(Hk * M));
        modal_conv_backward(du.data(), nullptr, nullptr, ModalSums{S0.data(), S1.data(), gD.data()}, g.data(), u.data(),
                            nullptr, nullptr, ModalSsm{log_z->data(), W->data(), D.data(), M}, s, chunk, path);
        modal_grads(gW.data(), glz.data(), S0.data(), S1.data(), W->data(), Hk * M);
        std::vector<Tensor> out{du, gD};
        std::vector<Tensor> pg = grads_fn(params, gW.data(), glz.data());
        HIPPO_CHECK(pg.size() == params.size(), "modal_conv: %zu parameter gradients for %zu parameters", pg.size(),
                    params.size());
        out.insert(out.end(), pg.begin(), pg.end());
        return out;
    });
    return y;
}

Tensor long_conv(const Tensor& u_in, const Tensor& K_in, const Tensor& D_in) {
    const char* op = "long_conv";
    HIPPO_CHECK(u_in.ndim() == 3, "%s: u must be (B, L, C), got %s", op, u_in.shape().str().c_str());
    const int64_t Bn = u_in.size(0), L = u_in.size(1), C = u_in.size(2);
    HIPPO_CHECK(K_in.ndim() == 2 && K_in.size(0) == C && K_in.size(1) >= L, "%s: K must be (%lld, >= %lld), got %s",
                op, (long long)C, (long long)L, K_in.shape().str().c_str());
    check_numel(D_in, C, "D", op);
    const int64_t Lk = K_in.size(1);
    Tensor u = u_in.contiguous(), D = D_in.contiguous();
    Tensor K = Lk == L ? K_in.contiguous() : K_in.slice(1, 0, L).contiguous();
    FftConvShape s{Bn, L, C, 1};
    Tensor y = Tensor::empty(u.shape());
    const bool direct = L <= kSsmDirectMaxL;
    auto fft = std::make_shared<RealFFT>(fftconv_fft_size(L));
    auto Kf = std::make_shared<Buffer<float>>(size_t(C * (fft->size() + 2)));
    if (direct) {
        fftconv_forward_direct(y.data(), u.data(), nullptr, nullptr, K.data(), D.data(), s);
    } else {
        fftconv_kernel_spectrum(Kf->data(), K.data(), C, L, *fft);
        fftconv_forward(y.data(), u.data(), nullptr, nullptr, Kf->data(), D.data(), s, *fft);
    }
    record(y, op, {u, K_in, D}, [u, K, D, s, Lk, direct, fft, Kf](const Tensor& g_in) {
        Tensor g = g_in.contiguous();
        Tensor du = Tensor::empty(u.shape()), dK = Tensor::zeros({s.C, Lk}), gD = Tensor::empty(D.shape());
        Tensor dKl = Tensor::empty({s.C, s.L});
        if (direct)
            fftconv_backward_direct(du.data(), nullptr, nullptr, dKl.data(), gD.data(), g.data(), u.data(), nullptr,
                                    nullptr, K.data(), D.data(), s);
        else
            fftconv_backward(du.data(), nullptr, nullptr, dKl.data(), gD.data(), g.data(), u.data(), nullptr, nullptr,
                             Kf->data(), D.data(), s, *fft);
        for (int64_t c = 0; c < s.C; c++)
            std::copy(dKl.data() + c * s.L, dKl.data() + (c + 1) * s.L, dK.data() + c * Lk);
        return std::vector<Tensor>{du, dK, gD};
    });
    return y;
}

Tensor s4_dplr_kernel(const Tensor& inv_dt_in, const Tensor& A_real_in, const Tensor& A_imag_in, const Tensor& B_in,
                      const Tensor& P_in, const Tensor& Ct_in, int64_t L, int64_t L_out) {
    const char* op = "s4_dplr_kernel";
    const int64_t H = inv_dt_in.numel();
    HIPPO_CHECK(A_real_in.ndim() == 2 && A_real_in.size(0) >= 1 && H % A_real_in.size(0) == 0,
                "%s: A_real must be (S, N2) with S dividing H = %lld, got %s", op, (long long)H,
                A_real_in.shape().str().c_str());
    const int64_t S = A_real_in.size(0), N2 = A_real_in.size(1);
    check_numel(A_imag_in, S * N2, "A_imag", op);
    check_numel(B_in, S * N2 * 2, "B", op);
    check_numel(P_in, S * N2 * 2, "P", op);
    check_numel(Ct_in, H * N2 * 2, "C", op);
    HIPPO_CHECK(L >= 1 && L_out >= 1 && L_out <= L, "%s: bad lengths L=%lld L_out=%lld", op, (long long)L,
                (long long)L_out);
    Tensor inv_dt = inv_dt_in.contiguous(), Ar = A_real_in.contiguous(), Ai = A_imag_in.contiguous(),
           Bp = B_in.contiguous(), Pp = P_in.contiguous(), Ct = Ct_in.contiguous();
    Tensor K = Tensor::empty({H, L_out});
    s4_dplr_kernel_forward(K.data(), inv_dt.data(), Ar.data(), Ai.data(), Bp.data(), Pp.data(), Ct.data(), 1, H, S,
                           N2, L, L_out);
    record(K, op, {inv_dt, Ar, Ai, Bp, Pp, Ct}, [inv_dt, Ar, Ai, Bp, Pp, Ct, H, S, N2, L, L_out](const Tensor& g_in) {
        Tensor g = g_in.contiguous();
        Tensor gdt = Tensor::empty(inv_dt.shape()), gAr = Tensor::empty(Ar.shape()), gAi = Tensor::empty(Ai.shape()),
               gB = Tensor::empty(Bp.shape()), gP = Tensor::empty(Pp.shape()), gC = Tensor::empty(Ct.shape());
        s4_dplr_kernel_backward(gdt.data(), gAr.data(), gAi.data(), gB.data(), gP.data(), gC.data(), g.data(),
                                inv_dt.data(), Ar.data(), Ai.data(), Bp.data(), Pp.data(), Ct.data(), 1, H, S, N2, L,
                                L_out);
        return std::vector<Tensor>{gdt, gAr, gAi, gB, gP, gC};
    });
    return K;
}

}  // namespace hippo
