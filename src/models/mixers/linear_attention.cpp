// Linear attention ("Transformers are RNNs", phi = elu + 1); reads "attn_cfg".num_heads.
#include "models/mixer.h"
#include "nn/attention.h"

namespace hippo {

void check_attn_cfg(const ModelConfig& c, const std::string& where);

MixerDef linear_attention_mixer() {
    MixerDef d;
    d.name = "linear_attention";
    d.blocks = {"attn_cfg"};
    d.help = "linear attention with phi = elu + 1 (a recurrent state of heads x head_dim^2)";
    d.validate = check_attn_cfg;
    d.make = [](const ModelConfig& c, int64_t, Rng& rng) -> std::unique_ptr<SequenceMixer> {
        LinearAttentionConfig a;
        a.d_model = c.d_model;
        a.num_heads = blk_int(c.block("attn_cfg"), "num_heads");
        a.causal = true;
        return std::make_unique<LayerMixer<LinearAttention, LinearAttentionState>>(std::make_shared<LinearAttention>(a, rng),
                                                                                   "LinearAttention");
    };
    d.param_count = [](const ModelConfig& c) { return 4 * c.d_model * c.d_model + 4 * c.d_model; };
    return d;
}

}  // namespace hippo
