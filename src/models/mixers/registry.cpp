// The mixer registry: one line per mixer, one per config block. A model config names mixers by
// these names; every stack (LM now, classifiers next) builds them through make_mixer.
#include <mutex>

#include "models/mixer.h"

namespace hippo {

ConfigBlock ssm_cfg_block();
ConfigBlock attn_cfg_block();
ConfigBlock gss_cfg_block();
ConfigBlock bigbird_cfg_block();
ConfigBlock dss_cfg_block();
ConfigBlock dlr_cfg_block();
ConfigBlock s4_cfg_block();
ConfigBlock mega_cfg_block();
ConfigBlock s5_cfg_block();
MixerDef h3_mixer();
MixerDef s4d_mixer();
MixerDef gss_mixer();
MixerDef attention_mixer();
MixerDef linear_attention_mixer();
MixerDef bigbird_mixer();
MixerDef dss_mixer();
MixerDef dlr_mixer();
MixerDef s4_mixer();
MixerDef mega_mixer();
MixerDef s5_mixer();

const std::vector<ConfigBlock>& config_blocks() {
    static const std::vector<ConfigBlock> blocks = {ssm_cfg_block(), attn_cfg_block(), gss_cfg_block(), bigbird_cfg_block(),
                                                       dss_cfg_block(), dlr_cfg_block(), s4_cfg_block(),
                                                       mega_cfg_block(), s5_cfg_block()};
    return blocks;
}

const std::vector<MixerDef>& mixer_registry() {
    static const std::vector<MixerDef> mixers = {h3_mixer(),        s4d_mixer(),           gss_mixer(),
                                                 attention_mixer(), linear_attention_mixer(), bigbird_mixer(),
                                                 dss_mixer(),       dlr_mixer(),           s4_mixer(),
                                                 mega_mixer(),      s5_mixer()};
    return mixers;
}

std::string mixer_names() {
    std::string s;
    for (const MixerDef& d : mixer_registry()) s += (s.empty() ? "" : ", ") + d.name;
    return s;
}

const MixerDef& find_mixer(const std::string& name) {
    for (const MixerDef& d : mixer_registry()) {
        if (d.name == name) return d;
        for (const std::string& a : d.aliases)
            if (a == name) return d;
    }
    throw Error(strf("unknown mixer '%s' (expected one of %s)", name.c_str(), mixer_names().c_str()));
}

std::unique_ptr<SequenceMixer> make_mixer(const std::string& name, const ModelConfig& cfg, int64_t layer, Rng& rng) {
    return find_mixer(name).make(cfg, layer, rng);
}

std::unique_ptr<MixerState> SequenceMixer::new_state(int64_t, int64_t) const {
    throw Error(strf("mixer %s has no recurrent mode (generation and step-by-step scoring need one)", name()));
}
Tensor SequenceMixer::prefill(const Tensor&, MixerState&) const {
    throw Error(strf("mixer %s has no recurrent mode", name()));
}
Tensor SequenceMixer::step(const Tensor&, MixerState&) const {
    throw Error(strf("mixer %s has no recurrent mode", name()));
}

}  // namespace hippo
