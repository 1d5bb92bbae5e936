#include "models/block.h"

#include "autograd/ops.h"

namespace hippo {

uint64_t dropout_site_seed(uint64_t seed, uint64_t site) {
    return splitmix64(seed ^ splitmix64(site + 0x51ED270B27A5C8EFull));
}

MLP::MLP(int64_t d, int64_t inner, Rng& rng) {
    fc1 = register_module("fc1", std::make_shared<Linear>(d, inner, true, rng));
    fc2 = register_module("fc2", std::make_shared<Linear>(inner, d, true, rng));
}

Tensor MLP::forward(const Tensor& x) const { return fc2->forward(gelu_tanh(fc1->forward(x))); }

std::shared_ptr<FeedForward> make_feed_forward(const ModelConfig& cfg, int64_t layer, Rng& rng, std::string* name) {
    if (!cfg.layer_has_mlp(layer)) return nullptr;
    *name = "mlp";
    return std::make_shared<MLP>(cfg.d_model, cfg.inner(), rng);
}

int64_t feed_forward_param_count(const ModelConfig& cfg, int64_t layer) {
    if (!cfg.layer_has_mlp(layer)) return 0;
    const int64_t D = cfg.d_model, I = cfg.inner();
    return D * I + I + I * D + D;
}

Block::Block(const ModelConfig& cfg, int64_t layer, Rng& rng) : kind(cfg.layer_mixer(layer)) {
    const float eps = float(cfg.layer_norm_epsilon);
    norm1 = register_module("norm1", std::make_shared<LayerNorm>(cfg.d_model, eps));
    mixer = make_mixer(kind, cfg, layer, rng);
    register_module("mixer", mixer->module());
    std::string ff_name;
    if (auto f = make_feed_forward(cfg, layer, rng, &ff_name)) {
        norm2 = register_module("norm2", std::make_shared<LayerNorm>(cfg.d_model, eps));
        ff = register_module(ff_name, f);
    }
}

Tensor Block::feed_forward(const Tensor& h) const { return ff->forward(norm2->forward(h)); }

Tensor Block::forward(const Tensor& h_in, uint64_t seed, bool training, float p, int64_t row_offset) const {
    const uint64_t drop_offset = uint64_t(row_offset * h_in.size(1) * h_in.size(2));  // (B, L, D) element index
    Tensor x = mixer->forward_block(norm1->forward(h_in), h_in, dropout_site_seed(seed, 1), training, row_offset);
    if (training && p > 0) x = dropout(x, p, dropout_site_seed(seed, 2), true, drop_offset);
    Tensor h = add(h_in, x);
    if (!ff) return h;
    x = feed_forward(h);
    if (training && p > 0) x = dropout(x, p, dropout_site_seed(seed, 3), true, drop_offset);
    return add(h, x);
}

Tensor Block::step(const Tensor& h_in, MixerState& st) const {
    Tensor h = add(h_in, mixer->step_block(norm1->forward(h_in), h_in, st));
    return ff ? add(h, feed_forward(h)) : h;
}

Tensor Block::prefill(const Tensor& h_in, MixerState& st) const {
    Tensor h = add(h_in, mixer->prefill_block(norm1->forward(h_in), h_in, st));
    return ff ? add(h, feed_forward(h)) : h;
}

}  // namespace hippo
