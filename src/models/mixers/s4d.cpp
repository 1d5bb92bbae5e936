// The standalone S4D mixer (nn/ssm_layers.h); reads the "ssm_cfg" block (models/mixers/h3.cpp).
#include "models/mixer.h"
#include "nn/ssm_layers.h"

namespace hippo {

Discretization ssm_disc(const nlohmann::json& b, Discretization def);
void check_ssm_cfg(const ModelConfig& c, const nlohmann::json& b, const std::string& where);

MixerDef s4d_mixer() {
    MixerDef d;
    d.name = "s4d";
    d.blocks = {"ssm_cfg"};
    d.help = "S4D: diagonal SSM per channel, GELU, GLU (or plain Linear) head";
    d.validate = [](const ModelConfig& c, const std::string& where) { check_ssm_cfg(c, c.block("ssm_cfg"), where); };
    d.make = [](const ModelConfig& c, int64_t, Rng& rng) -> std::unique_ptr<SequenceMixer> {
        const nlohmann::json& b = c.block("ssm_cfg");
        S4DConfig s;
        s.d_model = c.d_model;
        s.d_state = blk_int(b, "d_state");
        s.disc = ssm_disc(b, Discretization::zoh);
        s.init = blk_str(b, "init");
        s.dt_min = float(blk_num(b, "dt_min"));
        s.dt_max = float(blk_num(b, "dt_max"));
        s.glu = blk_str(b, "postact") == "glu";
        return std::make_unique<LayerMixer<S4D, S4DState>>(std::make_shared<S4D>(s, rng), "S4D");
    };
    d.param_count = [](const ModelConfig& c) {
        const nlohmann::json& b = c.block("ssm_cfg");
        const int64_t D = c.d_model, M = blk_int(b, "d_state") / 2, out = blk_str(b, "postact") == "glu" ? 2 * D : D;
        return D + 6 * D * M + D + D * out + out;
    };
    return d;
}

}  // namespace hippo
