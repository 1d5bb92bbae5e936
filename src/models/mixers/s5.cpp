// The S5 mixer (nn/s5.h) and its config block "s5_cfg". The official S5 layer (SequenceLayer) has
// no feed-forward part, so S5 stacks have no MLP by default. Defaults are the official
// run_train.py's: P = 256, J = 8, dt in [1e-3, 1e-1], conj_sym, no clip_eigs, half_glu1,
// trunc_standard_normal C (the official code recommends clip_eigs for autoregressive use).
#include "models/mixer.h"
#include "nn/s5.h"

namespace hippo {

ConfigBlock s5_cfg_block() {
    Schema s("s5_cfg");
    s.integer("d_state", 256, 2, 65536, "P: the state size (P/2 complex modes are stored, conj_sym)")
        .integer("blocks", 8, 1, 32768, "J: HiPPO-N blocks of the initial state matrix; d_state/blocks even")
        .number("dt_min", 1e-3, 1e-9, 1e3, "smallest initial timescale")
        .number("dt_max", 1e-1, 1e-9, 1e3, "largest initial timescale")
        .boolean("conj_sym", true, "conjugate symmetry (only true is built)")
        .boolean("clip_eigs", false, "keep Re(Lambda) <= -1e-4 (recommended for autoregressive use)")
        .string("activation", "half_glu1", {"half_glu1", "half_glu2", "full_glu", "gelu"},
                "the SequenceLayer activation after the SSM")
        .boolean("bidirectional", false, "a second scan backward in time (not causal)")
        .string("C_init", "trunc_standard_normal", {"trunc_standard_normal", "lecun_normal", "complex_normal"},
                "initialisation of C")
        .number("step_rescale", 1.0, 1e-6, 1e6, "multiplies every timescale (resolution change)");
    return {"s5_cfg", s};
}

namespace {

S5Config s5_config(const ModelConfig& c) {
    const nlohmann::json& b = c.block("s5_cfg");
    S5Config s;
    s.d_model = c.d_model;
    s.d_state = blk_int(b, "d_state");
    s.blocks = blk_int(b, "blocks");
    s.dt_min = blk_num(b, "dt_min");
    s.dt_max = blk_num(b, "dt_max");
    s.clip_eigs = b.at("clip_eigs").get<bool>();
    s.bidirectional = b.at("bidirectional").get<bool>();
    s.activation = blk_str(b, "activation");
    s.C_init = blk_str(b, "C_init");
    s.step_rescale = blk_num(b, "step_rescale");
    return s;
}

// A bidirectional layer reads the future: it has no recurrent mode.
class S5Mixer : public LayerMixer<S5, S5State> {
public:
    using LayerMixer::LayerMixer;
    bool has_recurrent_mode() const override { return !m_->config().bidirectional; }
};

}  // namespace

MixerDef s5_mixer() {
    MixerDef d;
    d.name = "s5";
    d.blocks = {"s5_cfg"};
    d.default_mlp = false;
    d.help = "S5: one MIMO diagonal SSM per layer (HiPPO-N init, parallel scan), GELU / GLU activation";
    d.validate = [](const ModelConfig& c, const std::string& where) {
        const nlohmann::json& b = c.block("s5_cfg");
        const int64_t P = blk_int(b, "d_state"), J = blk_int(b, "blocks");
        HIPPO_CHECK(P % J == 0 && (P / J) % 2 == 0,
                    "%s: s5_cfg.d_state %lld must be a multiple of s5_cfg.blocks %lld with an even block size",
                    where.c_str(), (long long)P, (long long)J);
        HIPPO_CHECK(blk_num(b, "dt_min") <= blk_num(b, "dt_max"), "%s: s5_cfg.dt_min %g is larger than dt_max %g",
                    where.c_str(), blk_num(b, "dt_min"), blk_num(b, "dt_max"));
        HIPPO_CHECK(b.at("conj_sym").get<bool>(), "%s: s5_cfg.conj_sym = false is not built", where.c_str());
        HIPPO_CHECK(!b.at("bidirectional").get<bool>() || c.arch != "lm",
                    "%s: s5_cfg.bidirectional reads the future; the lm architecture is causal", where.c_str());
    };
    d.make = [](const ModelConfig& c, int64_t, Rng& rng) -> std::unique_ptr<SequenceMixer> {
        return std::make_unique<S5Mixer>(std::make_shared<S5>(s5_config(c), rng), "S5");
    };
    d.param_count = [](const ModelConfig& c) {
        const nlohmann::json& b = c.block("s5_cfg");
        const int64_t H = c.d_model, P2 = blk_int(b, "d_state") / 2;
        const int64_t ndir = b.at("bidirectional").get<bool>() ? 2 : 1;
        const std::string act = blk_str(b, "activation");
        const int64_t dense = act == "gelu" ? 0 : act == "full_glu" ? 2 : 1;
        // Lambda (re, im); B; C (one per direction); D; log_step; the Dense layers.
        return 2 * P2 + 2 * P2 * H + ndir * 2 * H * P2 + H + P2 + dense * (H * H + H);
    };
    return d;
}

}  // namespace hippo
