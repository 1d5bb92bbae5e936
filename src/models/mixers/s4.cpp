// The S4 (DPLR) mixer (nn/s4.h) and its config block "s4_cfg".
#include "models/mixer.h"
#include "nn/s4.h"

namespace hippo {

ConfigBlock s4_cfg_block() {
    Schema s("s4_cfg");
    s.integer("d_state", 64, 2, 512, "N: state size (N/2 stored complex modes); even")
        .integer("n_ssm", 0, 0, 1 << 20, "copies of (A, B, P); 0: one per feature (the official default)")
        .integer("l_max", 1024, 1, 1 << 24, "kernel length C~ is attuned to: the longest sequence the layer takes")
        .number("dt_min", 1e-3, 1e-9, 1e3, "smallest initial step")
        .number("dt_max", 1e-1, 1e-9, 1e3, "largest initial step");
    return {"s4_cfg", s};
}

MixerDef s4_mixer() {
    MixerDef d;
    d.name = "s4";
    d.blocks = {"s4_cfg"};
    d.help = "S4: DPLR state space (HiPPO-LegS), Cauchy/Woodbury kernel, GELU, GLU head";
    d.validate = [](const ModelConfig& c, const std::string& where) {
        const nlohmann::json& b = c.block("s4_cfg");
        HIPPO_CHECK(blk_int(b, "d_state") % 2 == 0, "%s: s4_cfg.d_state must be even, got %lld", where.c_str(),
                    (long long)blk_int(b, "d_state"));
        const int64_t S = blk_int(b, "n_ssm");
        HIPPO_CHECK(S == 0 || c.d_model % S == 0, "%s: s4_cfg.n_ssm %lld does not divide d_model %lld", where.c_str(),
                    (long long)S, (long long)c.d_model);
        HIPPO_CHECK(blk_num(b, "dt_min") <= blk_num(b, "dt_max"), "%s: s4_cfg.dt_min %g is larger than dt_max %g",
                    where.c_str(), blk_num(b, "dt_min"), blk_num(b, "dt_max"));
    };
    d.make = [](const ModelConfig& c, int64_t, Rng& rng) -> std::unique_ptr<SequenceMixer> {
        const nlohmann::json& b = c.block("s4_cfg");
        S4Config s;
        s.d_model = c.d_model;
        s.d_state = blk_int(b, "d_state");
        s.n_ssm = blk_int(b, "n_ssm");
        s.l_max = blk_int(b, "l_max");
        s.dt_min = blk_num(b, "dt_min");
        s.dt_max = blk_num(b, "dt_max");
        return std::make_unique<LayerMixer<S4, S4State>>(std::make_shared<S4>(s, rng), "S4");
    };
    d.param_count = [](const ModelConfig& c) {
        const nlohmann::json& b = c.block("s4_cfg");
        const int64_t H = c.d_model, N2 = blk_int(b, "d_state") / 2, S = blk_int(b, "n_ssm") ? blk_int(b, "n_ssm") : H;
        // D, inv_dt; A_real, A_imag, B, P per copy; C~; the GLU output Linear.
        return H + H + 6 * S * N2 + 2 * H * N2 + 2 * H * H + 2 * H;
    };
    return d;
}

}  // namespace hippo
