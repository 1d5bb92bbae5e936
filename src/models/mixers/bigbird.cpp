// BigBird block-sparse attention: MHA (heads, rotary, dropout from "attn_cfg") whose attention runs
// the tiled kernel over a BigBird-ITC block mask ("bigbird_cfg", kernels/attention.h
// bigbird_block_mask): a window of blocks around each query block, global blocks, random blocks.
// Causal. No recurrent mode (the random blocks of a token's query block are not a fixed cache).
#include <map>
#include <mutex>

#include "kernels/attention.h"
#include "models/mixer.h"
#include "nn/attention.h"

namespace hippo {

void check_attn_cfg(const ModelConfig& c, const std::string& where);
MHAConfig mha_config(const ModelConfig& c, int64_t layer, Rng& rng);
int64_t mha_param_count(const ModelConfig& c);
std::unique_ptr<SequenceMixer> make_mha_mixer(const MHAConfig& a, Rng& rng);

ConfigBlock bigbird_cfg_block() {
    Schema s("bigbird_cfg");
    s.integer("block", 64, 1, 1 << 16, "square block size (queries and keys)")
        .integer("window", 3, 1, 1023, "blocks in the sliding window around each query block (odd)")
        .integer("global", 2, 0, 1 << 16, "global blocks (causal: the first ones)")
        .integer("random", 3, 0, 1 << 16, "random blocks per query block row")
        .integer("seed", 0, 0, 1LL << 53, "seed of the random blocks (the same pattern for every step)");
    return {"bigbird_cfg", s};
}

MixerDef bigbird_mixer() {
    MixerDef d;
    d.name = "bigbird";
    d.blocks = {"attn_cfg", "bigbird_cfg"};
    d.help = "BigBird block-sparse causal attention (window + global + random blocks), no recurrent mode";
    d.validate = [](const ModelConfig& c, const std::string& where) {
        check_attn_cfg(c, where);
        HIPPO_CHECK(blk_int(c.block("bigbird_cfg"), "window") % 2 == 1, "%s: bigbird_cfg.window must be odd", where.c_str());
    };
    d.make = [](const ModelConfig& c, int64_t layer, Rng& rng) {
        MHAConfig a = mha_config(c, layer, rng);
        const nlohmann::json& b = c.block("bigbird_cfg");
        const int64_t block = blk_int(b, "block"), window = blk_int(b, "window"), global = blk_int(b, "global"),
                      random = blk_int(b, "random"), heads = a.num_heads;
        const uint64_t seed = uint64_t(blk_int(b, "seed")) ^ uint64_t(layer);
        // One pattern per length, built once (the pattern is part of the model, not of the step).
        auto cache = std::make_shared<std::map<int64_t, std::shared_ptr<const BlockMask>>>();
        auto mu = std::make_shared<std::mutex>();
        a.block_mask = [=](int64_t L) -> std::shared_ptr<const BlockMask> {
            std::lock_guard<std::mutex> lock(*mu);
            auto it = cache->find(L);
            if (it != cache->end()) return it->second;
            auto m = std::make_shared<const BlockMask>(bigbird_block_mask(L, block, window, global, random, seed, true, heads));
            (*cache)[L] = m;
            return m;
        };
        return make_mha_mixer(a, rng);
    };
    d.param_count = mha_param_count;
    return d;
}

}  // namespace hippo
