// The DSS (DSS-exp) and DLR mixers (nn/dss.h), with their config blocks "dss_cfg" and "dlr_cfg".
#include "models/mixer.h"
#include "nn/dss.h"

namespace hippo {

ConfigBlock dss_cfg_block() {
    Schema s("dss_cfg");
    s.integer("d_state", 64, 1, 65536, "N: complex modes per feature (all kept, no conjugate pairs)")
        .string("init", "lin", {"lin", "randn"}, "imaginary parts of Lambda: pi n (lin) or N(0, 1)")
        .number("dt_min", 1e-3, 1e-9, 1e3, "smallest initial step")
        .number("dt_max", 1e-1, 1e-9, 1e3, "largest initial step");
    return {"dss_cfg", s};
}

ConfigBlock dlr_cfg_block() {
    Schema s("dlr_cfg");
    s.integer("d_state", 1024, 1, 65536, "N: complex modes per feature (shared Lambda, per-feature W)")
        .string("init", "omega", {"omega", "randn"}, "imaginary parts of Lambda: 2 pi n / N (omega) or N(0, 1)")
        .number("dt_min", 1e-4, 1e-9, 1e3, "smallest initial decay (Re Lambda = -dt/2)")
        .number("dt_max", 1e-1, 1e-9, 1e3, "largest initial decay")
        .number("W_scale", 0, 0, 1e3, "std of W's parts (0: 1/N)");
    return {"dlr_cfg", s};
}

namespace {

DSSConfig dss_config(const ModelConfig& c, const std::string& kernel) {
    const nlohmann::json& b = c.block(kernel + "_cfg");
    DSSConfig s;
    s.d_model = c.d_model;
    s.kernel = kernel;
    s.d_state = blk_int(b, "d_state");
    s.init = blk_str(b, "init");
    s.dt_min = blk_num(b, "dt_min");
    s.dt_max = blk_num(b, "dt_max");
    if (kernel == "dlr") s.W_scale = blk_num(b, "W_scale");
    return s;
}

MixerDef diag_mixer(const std::string& kernel, const char* help) {
    MixerDef d;
    d.name = kernel;
    d.blocks = {kernel + "_cfg"};
    d.help = help;
    d.validate = [kernel](const ModelConfig& c, const std::string& where) {
        const nlohmann::json& b = c.block(kernel + "_cfg");
        HIPPO_CHECK(blk_num(b, "dt_min") <= blk_num(b, "dt_max"), "%s: %s_cfg.dt_min %g is larger than dt_max %g",
                    where.c_str(), kernel.c_str(), blk_num(b, "dt_min"), blk_num(b, "dt_max"));
    };
    d.make = [kernel](const ModelConfig& c, int64_t, Rng& rng) -> std::unique_ptr<SequenceMixer> {
        auto layer = std::make_shared<DSS>(dss_config(c, kernel), rng);
        return std::make_unique<LayerMixer<DSS, DSSState>>(layer, kernel == "dlr" ? "DLR" : "DSS");
    };
    d.param_count = [kernel](const ModelConfig& c) {
        const int64_t H = c.d_model, N = blk_int(c.block(kernel + "_cfg"), "d_state");
        // D; log_dt (DSS); Lambda (re, im); W; output Linear.
        return H + (kernel == "dss" ? H : 0) + 2 * N + 2 * H * N + H * H + H;
    };
    return d;
}

}  // namespace

MixerDef dss_mixer() {
    return diag_mixer("dss", "DSS (DSS-exp): diagonal SSM with shared Lambda, GELU, Linear head");
}
MixerDef dlr_mixer() {
    return diag_mixer("dlr", "DLR: diagonal linear RNN (no discretisation), GELU, Linear head");
}

}  // namespace hippo
