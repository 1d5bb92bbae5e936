#include "models/model.h"

#include <unistd.h>

#include "models/lm.h"

namespace hippo {

std::unique_ptr<ModelState> Model::new_model_state(int64_t, int64_t) const {
    throw Error(strf("architecture '%s' has no recurrent mode (generation and step-by-step scoring need one)",
                     config().arch.c_str()));
}
Tensor Model::prefill_last(const std::vector<int32_t>&, int64_t, int64_t, ModelState&) const {
    throw Error(strf("architecture '%s' has no recurrent mode", config().arch.c_str()));
}
Tensor Model::step(const std::vector<int32_t>&, ModelState&) const {
    throw Error(strf("architecture '%s' has no recurrent mode", config().arch.c_str()));
}
Tensor Model::forward_logits(const std::vector<int32_t>&, int64_t, int64_t) const {
    throw Error(strf("architecture '%s' has no per-token logits", config().arch.c_str()));
}
void Model::set_decode_weights(DecodeWeights w) {
    HIPPO_CHECK(w == DecodeWeights::fp32, "architecture '%s' has only fp32 decode weights", config().arch.c_str());
}

const std::vector<ArchDef>& architectures() {
    static const std::vector<ArchDef> archs = {
        {"lm", "decoder-only language model: embedding, blocks of any mixer, tied output head",
         [](const ModelConfig& c, uint64_t seed) -> std::unique_ptr<Model> { return std::make_unique<LMModel>(c, seed); },
         LMModel::param_count},
    };
    return archs;
}

const ArchDef& find_architecture(const std::string& name) {
    std::string names;
    for (const ArchDef& a : architectures()) {
        if (a.name == name) return a;
        names += (names.empty() ? "" : ", ") + a.name;
    }
    throw Error(strf("unknown architecture '%s' (expected one of %s)", name.c_str(), names.c_str()));
}

void check_fits_in_memory(double bytes, const std::string& what) {
    const double phys = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
    HIPPO_CHECK(phys <= 0 || bytes <= phys, "%s needs %.1f GiB, more than this machine's %.1f GiB of memory", what.c_str(),
                bytes / double(1ull << 30), phys / double(1ull << 30));
}

std::unique_ptr<Model> make_model(const ModelConfig& cfg, uint64_t seed, int64_t bytes_per_param) {
    const ArchDef& a = find_architecture(cfg.arch);
    const double params = double(a.param_count(cfg));
    check_fits_in_memory(params * double(bytes_per_param),
                         strf("model '%s' (%s, %.4g parameters%s)", cfg.name.empty() ? cfg.arch.c_str() : cfg.name.c_str(),
                              cfg.arch.c_str(), params, bytes_per_param > 4 ? ", with gradients and optimizer state" : ""));
    return a.make(cfg, seed);
}

}  // namespace hippo
