// DSS (Gupta, Gu, Berant 2022) and DLR (Gupta, Mehta, Berant 2022) layers: diagonal SSMs that keep
// all N complex modes (no conjugate pairs, the real part is taken without a factor 2) and share the
// eigenvalues Lambda (N) across the H features. Both are the official standalone block
// (ag1988/dlr, src/models/sequence/ss/standalone/dss.py, class DSS, channels = 1):
//
//   y = output_linear(GELU(K * u + D u)),   u, y (B, L, H)
//
//   DSS-exp:  lambda_n = -exp(Lambda_log_neg_re_n) + i Lambda_im_n,  dt_h = exp(log_dt_h)
//             K[h,l] = Re sum_n W[h,n] (exp(dt_h lambda_n) - 1) / lambda_n exp(l dt_h lambda_n)
//   DLR:      lambda_n = -Lambda_log_neg_re_n^2 + i Lambda_im_n           (no dt, no B)
//             K[h,l] = Re sum_n W[h,n] exp(l lambda_n)
//
// Parameter names and shapes are the official state_dict's: D (1, H); kernel.log_dt (H) (DSS only);
// kernel.Lambda_log_neg_re (N); kernel.Lambda_im (N); kernel.W (1, H, N, 2) as (re, im) pairs;
// output_linear.weight (H, H), output_linear.bias (H) (the official transposed Linear stores the
// bias as (H, 1); import reshapes it). Modes: parallel (modal FlashConv, chunked state passing above
// `chunk`, kernels/ssm_conv.h) and recurrent (x <- z x + u, y = Re(W x) + D u, one step per token).
// Not built: DSS-softmax (its kernel depends on L through the normaliser, so it has no recurrent
// mode and no state passing), the other official versions, channels > 1, bidirectional.
#pragma once
#include <complex>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops_ssm.h"
#include "nn/module.h"

namespace hippo {

struct DSSConfig {
    int64_t d_model = 0;
    int64_t d_state = 64;        // N complex modes
    std::string kernel = "dss";  // "dss" (DSS-exp) or "dlr"
    std::string init;            // dss: "lin" (default) | "randn"; dlr: "omega" (default) | "randn"
    double dt_min = 0, dt_max = 0;  // 0: the official defaults (dss 1e-3..1e-1, dlr 1e-4..1e-1)
    double W_scale = 0;          // dlr: std of W's re and im parts; 0: 1/N
    int64_t chunk = 8192;        // state passing above this length
};

struct DSSState {
    int64_t batch = 0;
    std::vector<std::complex<float>> x;       // (batch, H, N)
    std::vector<std::complex<float>> z, one, W;  // (H, N): z = exp(log z), 1, W/2 of the modal form
};

class DSS : public Module {
public:
    DSS(const DSSConfig& cfg, Rng& rng);
    // u: (B, L, H) -> (B, L, H)
    Tensor forward(const Tensor& u) const;
    Tensor operator()(const Tensor& u) const { return forward(u); }
    DSSState new_state(int64_t batch) const;
    Tensor prefill(const Tensor& u, DSSState& st) const;
    Tensor step(const Tensor& u, DSSState& st) const;  // u (B, H) -> (B, H)
    std::string type_name() const override { return cfg_.kernel == "dlr" ? "DLR" : "DSS"; }
    std::string extra_repr() const override;
    const DSSConfig& config() const { return cfg_; }

    // The SSM part alone, z = K * u + D u (B, L, H), for tests and benches.
    Tensor ssm(const Tensor& u, std::vector<std::complex<double>>* final_X = nullptr) const;
    // The modal form (log z, W/2 as in kernels/ssm_conv.h), (H, N) each, in double.
    void modal(std::complex<double>* log_z, std::complex<double>* W) const;

    std::shared_ptr<Linear> output_linear;
    Tensor D, log_dt, Lambda_log_neg_re, Lambda_im, W;

private:
    ModalParameterisation parameterisation() const;
    DSSConfig cfg_;
};

}  // namespace hippo
