#include "models/lm.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "autograd/ops.h"
#include "data/synthetic.h"
#include "models/mixer.h"
#include "nn/init.h"

namespace hippo {


// ---------------------------------------------------------------------------------------------
// LMModel

LMModel::LMModel(const ModelConfig& cfg, uint64_t seed) : cfg_(cfg) {
    Rng rng(seed);
    const int64_t D = cfg.d_model, V = cfg.padded_vocab();
    auto backbone = register_module("backbone", std::make_shared<Module>());
    auto embeddings = backbone->register_module("embeddings", std::make_shared<Module>());
    word_embeddings = embeddings->register_module("word_embeddings", std::make_shared<Embedding>(V, D, rng))->weight;
    if (cfg.max_position_embeddings > 0)
        position_embeddings =
            embeddings->register_module("position_embeddings", std::make_shared<Embedding>(cfg.max_position_embeddings, D, rng))
                ->weight;
    auto layers = backbone->register_module("layers", std::make_shared<ModuleList>());
    for (int64_t i = 0; i < cfg.n_layer; i++) blocks.push_back(layers->push_back(std::make_shared<Block>(cfg, i, rng)));
    ln_f = backbone->register_module("ln_f", std::make_shared<LayerNorm>(D, float(cfg.layer_norm_epsilon)));
    init_weights(rng);
}

int64_t LMModel::param_count(const ModelConfig& cfg) {
    const int64_t D = cfg.d_model;
    int64_t n = cfg.padded_vocab() * D + cfg.max_position_embeddings * D + 2 * D;  // embeddings, ln_f
    for (int64_t i = 0; i < cfg.n_layer; i++) {
        n += 2 * D + find_mixer(cfg.layer_mixer(i)).param_count(cfg);
        const int64_t ff = feed_forward_param_count(cfg, i);
        n += ff > 0 ? ff + 2 * D : 0;
    }
    return n;
}

void LMModel::init_weights(Rng& rng) {
    NoGradGuard no_grad;
    const float std0 = float(cfg_.initializer_range);
    const float std_res = float(cfg_.initializer_range / std::sqrt(2.0 * double(cfg_.n_layer)));
    std::function<void(const Module&, const std::string&)> walk = [&](const Module& m, const std::string& name) {
        if (auto* lin = dynamic_cast<const Linear*>(&m)) {
            Tensor w = lin->weight;
            bool resid = name == "out_proj" || name == "fc2";
            init::normal_(w, 0.0f, resid ? std_res : std0, rng);
            if (lin->bias.defined()) {
                Tensor b = lin->bias;
                init::zeros_(b);
            }
        } else if (auto* emb = dynamic_cast<const Embedding*>(&m)) {
            Tensor w = emb->weight;
            init::normal_(w, 0.0f, std0, rng);
        }
        for (const auto& [child_name, child] : m.children()) walk(*child, child_name);
    };
    walk(*this, "");
}

Tensor LMModel::embed(const std::vector<int32_t>& ids, int64_t B, int64_t L, int64_t pos0) const {
    HIPPO_CHECK(int64_t(ids.size()) == B * L, "model: %zu ids for a (%lld, %lld) batch", ids.size(), (long long)B,
                (long long)L);
    for (int32_t id : ids)
        HIPPO_CHECK(id >= 0 && id < cfg_.padded_vocab(), "model: token id %d is outside the vocabulary [0, %lld)", id,
                    (long long)cfg_.padded_vocab());
    Tensor h = embedding(word_embeddings, ids, Shape{B, L});
    if (position_embeddings.defined()) {
        HIPPO_CHECK(pos0 + L <= cfg_.max_position_embeddings,
                    "model: position %lld is beyond max_position_embeddings = %lld", (long long)(pos0 + L - 1),
                    (long long)cfg_.max_position_embeddings);
        std::vector<int32_t> pos(static_cast<size_t>(L));
        for (int64_t t = 0; t < L; t++) pos[size_t(t)] = int32_t(pos0 + t);
        h = add(h, embedding(position_embeddings, pos, Shape{L}));
    }
    return h;
}

Tensor LMModel::head(const Tensor& h) const {
    Tensor x = ln_f->forward(h);
    if (!head_decode_.empty() && Linear::is_decode_input(x, cfg_.d_model)) return linear_decode(x, head_decode_);
    return linear(x, word_embeddings);
}

static void set_linear_decode_weights(const Module& m, DecodeWeights w) {
    for (auto& [name, child] : m.children()) {
        if (auto* lin = dynamic_cast<Linear*>(child.get())) lin->set_decode_weights(w);
        set_linear_decode_weights(*child, w);
    }
}

void LMModel::set_decode_weights(DecodeWeights w) {
    set_linear_decode_weights(*this, w);
    head_decode_ = DecodeWeight::from(word_embeddings, w);
    decode_weights_ = w;
}

Tensor LMModel::forward(const std::vector<int32_t>& ids, int64_t B, int64_t L, uint64_t seed, int64_t row_offset) const {
    const bool training = is_training();
    Tensor h = embed(ids, B, L, 0);
    const uint64_t drop_offset = uint64_t(row_offset * L * cfg_.d_model);  // (B, L, D) masks of the global batch
    if (training && cfg_.embed_dropout > 0)
        h = dropout(h, float(cfg_.embed_dropout), dropout_site_seed(seed, 0), true, drop_offset);
    for (size_t i = 0; i < blocks.size(); i++)
        h = blocks[i]->forward(h, dropout_site_seed(seed, 100 + i), training, float(cfg_.resid_dropout), row_offset);
    return head(h);
}

BatchResult LMModel::run_batch(const Batch& b, uint64_t dropout_seed, int64_t row_offset, bool metrics) const {
    BatchResult r;
    for (int32_t t : b.targets) r.count += t != kIgnoreIndex;
    Tensor logits = forward(b.ids, b.B, b.L, dropout_seed, row_offset);
    if (r.count == 0) return r;
    r.loss = cross_entropy(logits, b.targets, kIgnoreIndex);
    r.loss_sum = double(r.loss.item()) * double(r.count);
    if (metrics) {
        Tensor lc = logits.contiguous();
        const float* lp = lc.data();
        const int64_t V = vocab_padded();
        for (size_t i = 0; i < b.targets.size(); i++) {
            if (b.targets[i] == kIgnoreIndex) continue;
            const float* row = lp + int64_t(i) * V;
            r.correct += (std::max_element(row, row + V) - row) == b.targets[i];
        }
    }
    return r;
}

bool LMModel::has_recurrent_mode() const {
    for (const auto& b : blocks)
        if (!b->mixer->has_recurrent_mode()) return false;
    return true;
}

LMState LMModel::new_state(int64_t batch, int64_t max_len) const {
    HIPPO_CHECK(batch >= 1, "model state: batch must be >= 1, got %lld", (long long)batch);
    LMState st;
    st.batch = batch;
    for (const auto& b : blocks) st.layers.push_back(b->mixer->new_state(batch, max_len));
    return st;
}

std::unique_ptr<ModelState> LMModel::new_model_state(int64_t batch, int64_t max_len) const {
    return std::make_unique<LMState>(new_state(batch, max_len));
}

LMState& LMModel::lm_state(ModelState& st) const {
    auto* p = dynamic_cast<LMState*>(&st);
    HIPPO_CHECK(p, "LMModel: recurrent state of another model family");
    return *p;
}

Tensor LMModel::prefill_hidden(const std::vector<int32_t>& ids, int64_t B, int64_t L, LMState& st) const {
    HIPPO_CHECK(B == st.batch && st.pos == 0, "model prefill: the state is for batch %lld and has consumed %lld tokens",
                (long long)st.batch, (long long)st.pos);
    Tensor h = embed(ids, B, L, 0);
    for (size_t i = 0; i < blocks.size(); i++) h = blocks[i]->prefill(h, *st.layers[i]);
    st.pos = L;
    return h;
}

Tensor LMModel::prefill(const std::vector<int32_t>& ids, int64_t B, int64_t L, ModelState& st) const {
    NoGradGuard no_grad;
    return head(prefill_hidden(ids, B, L, lm_state(st)));
}

Tensor LMModel::prefill_last(const std::vector<int32_t>& ids, int64_t B, int64_t L, ModelState& st) const {
    NoGradGuard no_grad;
    Tensor h = prefill_hidden(ids, B, L, lm_state(st));
    return head(h.slice(1, L - 1, L).reshape({B, cfg_.d_model}));
}

Tensor LMModel::step(const std::vector<int32_t>& ids, ModelState& base) const {
    NoGradGuard no_grad;
    LMState& st = lm_state(base);
    HIPPO_CHECK(int64_t(ids.size()) == st.batch, "model step: %zu ids for a state of batch %lld", ids.size(),
                (long long)st.batch);
    Tensor h = embed(ids, st.batch, 1, st.pos).reshape({st.batch, cfg_.d_model});
    for (size_t i = 0; i < blocks.size(); i++) h = blocks[i]->step(h, *st.layers[i]);
    st.pos++;
    return head(h);
}

std::string LMModel::summary() const {
    std::string s = strf("LMModel%s%s: %lld layers, d_model %lld, d_inner %lld, vocab %lld (padded %lld)%s\n",
                         cfg_.name.empty() ? "" : " ", cfg_.name.c_str(), (long long)cfg_.n_layer, (long long)cfg_.d_model,
                         (long long)cfg_.inner(), (long long)cfg_.vocab_size, (long long)cfg_.padded_vocab(),
                         position_embeddings.defined() ? strf(", %lld learned positions", (long long)cfg_.max_position_embeddings).c_str() : "");
    for (size_t i = 0; i < blocks.size(); i++) {
        int64_t n = blocks[i]->num_parameters();
        s += strf("  layer %2zu: %-16s %s  %lld params\n", i, blocks[i]->kind.c_str(), blocks[i]->ff ? "+ MLP" : "     ",
                  (long long)n);
    }
    s += strf("  parameters: %lld (embedding %lld, tied output head)\n", (long long)num_parameters(),
              (long long)word_embeddings.numel());
    return s;
}

}  // namespace hippo
