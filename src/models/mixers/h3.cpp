// The H3 mixer (nn/ssm_layers.h) and the "ssm_cfg" block it shares with S4D.
#include "models/mixer.h"
#include "nn/ssm_layers.h"

namespace hippo {

ConfigBlock ssm_cfg_block() {
    Schema s("ssm_cfg");
    s.integer("d_state", 64, 2, 65536, "N: state size (shift taps; 2x the complex diagonal modes); even")
        .integer("head_dim", 1, 1, 1 << 20, "H3 only: P, the channels per diagonal SSM (H = d_model / P)")
        .string("init", "lin", {"lin", "inv"}, "imaginary parts: S4D-Lin or S4D-Inv")
        .string("disc", "", {"", "bilinear", "zoh"}, "discretisation (empty: the layer's default, H3 bilinear, S4D zoh)")
        .number("dt_min", 1e-3, 1e-9, 1e3, "smallest initial step")
        .number("dt_max", 1e-1, 1e-9, 1e3, "largest initial step")
        .string("postact", "glu", {"glu", "none"}, "S4D only: GLU output head or a plain Linear");
    return {"ssm_cfg", s};
}

Discretization ssm_disc(const nlohmann::json& b, Discretization def) {
    const std::string s = blk_str(b, "disc");
    if (s.empty()) return def;
    return s == "zoh" ? Discretization::zoh : Discretization::bilinear;
}

void check_ssm_cfg(const ModelConfig& c, const nlohmann::json& b, const std::string& where) {
    HIPPO_CHECK(blk_int(b, "d_state") % 2 == 0, "%s: ssm_cfg.d_state must be even, got %lld", where.c_str(),
                (long long)blk_int(b, "d_state"));
    HIPPO_CHECK(blk_num(b, "dt_min") <= blk_num(b, "dt_max"), "%s: ssm_cfg.dt_min %g is larger than dt_max %g", where.c_str(),
                blk_num(b, "dt_min"), blk_num(b, "dt_max"));
    (void)c;
}

MixerDef h3_mixer() {
    MixerDef d;
    d.name = "h3";
    d.blocks = {"ssm_cfg"};
    d.help = "H3: shift SSM + diagonal SSM + multiplicative gating (FlashConv in parallel mode)";
    d.validate = [](const ModelConfig& c, const std::string& where) {
        const nlohmann::json& b = c.block("ssm_cfg");
        check_ssm_cfg(c, b, where);
        HIPPO_CHECK(c.d_model % blk_int(b, "head_dim") == 0, "%s: d_model %lld is not a multiple of ssm_cfg.head_dim %lld",
                    where.c_str(), (long long)c.d_model, (long long)blk_int(b, "head_dim"));
    };
    d.make = [](const ModelConfig& c, int64_t, Rng& rng) -> std::unique_ptr<SequenceMixer> {
        const nlohmann::json& b = c.block("ssm_cfg");
        H3Config h;
        h.d_model = c.d_model;
        h.d_state = blk_int(b, "d_state");
        h.head_dim = blk_int(b, "head_dim");
        h.disc = ssm_disc(b, Discretization::bilinear);
        h.init = blk_str(b, "init");
        h.dt_min = float(blk_num(b, "dt_min"));
        h.dt_max = float(blk_num(b, "dt_max"));
        return std::make_unique<LayerMixer<H3, H3State>>(std::make_shared<H3>(h, rng), "H3");
    };
    d.param_count = [](const ModelConfig& c) {
        const nlohmann::json& b = c.block("ssm_cfg");
        const int64_t D = c.d_model, N = blk_int(b, "d_state"), H = D / blk_int(b, "head_dim"), M = N / 2;
        // q, k, v, output projections; shift B, C, D; diagonal log_dt, A (re, im), B, C; D skip.
        return 4 * (D * D + D) + 2 * D * N + D + H + 6 * H * M + H;
    };
    return d;
}

}  // namespace hippo
