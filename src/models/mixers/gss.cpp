// The GSS mixer (nn/gss.h) and its "gss_cfg" block. GSS stacks have no MLP by default.
#include "models/mixer.h"
#include "nn/gss.h"

namespace hippo {

ConfigBlock gss_cfg_block() {
    Schema s("gss_cfg");
    s.integer("d_state", 64, 2, 65536, "N: state size of the inner DSS; even")
        .integer("expand", 4, 1, 1024, "F = expand * d_model, the gated width")
        .integer("bottleneck", 4, 1, 1 << 20, "H = d_model / bottleneck, the SSM width");
    return {"gss_cfg", s};
}

MixerDef gss_mixer() {
    MixerDef d;
    d.name = "gss";
    d.blocks = {"gss_cfg"};
    d.default_mlp = false;
    d.help = "GSS: gated state space (DSS-exp inside a GELU-gated expansion)";
    d.validate = [](const ModelConfig& c, const std::string& where) {
        const nlohmann::json& b = c.block("gss_cfg");
        HIPPO_CHECK(blk_int(b, "d_state") % 2 == 0, "%s: gss_cfg.d_state must be even", where.c_str());
        HIPPO_CHECK(c.d_model % blk_int(b, "bottleneck") == 0, "%s: d_model %lld is not a multiple of gss_cfg.bottleneck %lld",
                    where.c_str(), (long long)c.d_model, (long long)blk_int(b, "bottleneck"));
    };
    d.make = [](const ModelConfig& c, int64_t, Rng& rng) -> std::unique_ptr<SequenceMixer> {
        const nlohmann::json& b = c.block("gss_cfg");
        GSSConfig g;
        g.d_model = c.d_model;
        g.d_state = blk_int(b, "d_state");
        g.expand = blk_int(b, "expand");
        g.bottleneck = blk_int(b, "bottleneck");
        return std::make_unique<LayerMixer<GSS, GSSState>>(std::make_shared<GSS>(g, rng), "GSS");
    };
    d.param_count = [](const ModelConfig& c) {
        const nlohmann::json& b = c.block("gss_cfg");
        const int64_t E = c.d_model, F = blk_int(b, "expand") * E, H = E / blk_int(b, "bottleneck"), M = blk_int(b, "d_state") / 2;
        return (E * F + F) + (E * H + H) + (H + 6 * H * M) + H + (H * F + F) + (F * E + E);
    };
    return d;
}

}  // namespace hippo
