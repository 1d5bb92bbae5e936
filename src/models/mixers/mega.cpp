// The Mega mixer (nn/mega.h: moving-average gated attention, Mega-chunk with "chunk" > 0) and its
// config block "mega_cfg". Mega gates the residual stream itself, so it implements the block-level
// calls (forward_block, ...) that see the block's input.
#include "models/mixer.h"
#include "nn/mega.h"

namespace hippo {

ConfigBlock mega_cfg_block() {
    Schema s("mega_cfg");
    s.integer("zdim", 64, 1, 1 << 16, "shared query / key dimension")
        .integer("hdim", 0, 0, 1 << 20, "value / expanded dimension (0: 2 d_model)")
        .integer("ndim", 16, 1, 1024, "EMA expansion per channel")
        .string("attention", "softmax", {"softmax", "laplace", "relu2"}, "attention function")
        .integer("chunk", 0, 0, 1 << 24, "Mega-chunk: attention within chunks of this many tokens (0: full)")
        .integer("max_positions", 1024, 1, 1 << 24, "longest sequence with full attention (bias table size)");
    return {"mega_cfg", s};
}

namespace {

struct MegaMixerState : MixerState {
    MegaState s;
};

class MegaMixer : public SequenceMixer {
public:
    explicit MegaMixer(std::shared_ptr<MegaLayer> m) : m_(std::move(m)) {}
    std::shared_ptr<Module> module() const override { return m_; }
    const char* name() const override { return "Mega"; }
    Tensor forward(const Tensor&, uint64_t, bool, int64_t) const override {
        throw Error("Mega: the layer gates the residual stream and is called through its block");
    }
    Tensor forward_block(const Tensor& xn, const Tensor& h, uint64_t, bool, int64_t) const override {
        return m_->forward(xn, h);
    }
    std::unique_ptr<MixerState> new_state(int64_t batch, int64_t max_len) const override {
        auto st = std::make_unique<MegaMixerState>();
        st->s = m_->new_state(batch, max_len);
        return st;
    }
    Tensor prefill_block(const Tensor& xn, const Tensor& h, MixerState& st) const override {
        return m_->prefill(xn, h, as(st));
    }
    Tensor step_block(const Tensor& xn, const Tensor& h, MixerState& st) const override {
        return m_->step(xn, h, as(st));
    }

private:
    MegaState& as(MixerState& st) const {
        auto* p = dynamic_cast<MegaMixerState*>(&st);
        HIPPO_CHECK(p, "Mega: recurrent state of another mixer kind");
        return p->s;
    }
    std::shared_ptr<MegaLayer> m_;
};

MegaConfig mega_config(const ModelConfig& c) {
    const nlohmann::json& b = c.block("mega_cfg");
    MegaConfig m;
    m.d_model = c.d_model;
    m.zdim = blk_int(b, "zdim");
    m.hdim = blk_int(b, "hdim");
    m.ndim = blk_int(b, "ndim");
    const std::string fn = blk_str(b, "attention");
    m.fn = fn == "laplace" ? AttnFn::laplace : fn == "relu2" ? AttnFn::relu2 : AttnFn::softmax;
    m.chunk = blk_int(b, "chunk");
    m.max_positions = blk_int(b, "max_positions");
    return m;
}

}  // namespace

MixerDef mega_mixer() {
    MixerDef d;
    d.name = "mega";
    d.blocks = {"mega_cfg"};
    d.help = "Mega: damped EMA + single-head gated attention (softmax / laplace / relu2), Mega-chunk with chunk > 0";
    d.validate = [](const ModelConfig&, const std::string&) {};
    d.make = [](const ModelConfig& c, int64_t, Rng& rng) -> std::unique_ptr<SequenceMixer> {
        return std::make_unique<MegaMixer>(std::make_shared<MegaLayer>(mega_config(c), rng));
    };
    d.param_count = [](const ModelConfig& c) {
        const MegaConfig m = mega_config(c);
        const int64_t D = m.d_model, z = m.zdim, h = m.hdim ? m.hdim : 2 * D, n = m.ndim;
        const int64_t maxpos = m.chunk > 0 ? m.chunk : m.max_positions;
        // EMA (delta, alpha, beta, gamma: D n each; omega D); v_proj, mx_proj, h_proj; gamma, beta; bias.
        return 4 * D * n + D + (D * h + h) + (D * (z + h + 2 * D) + z + h + 2 * D) + (h * D + D) + 4 * z +
               (2 * maxpos - 1);
    };
    return d;
}

}  // namespace hippo
