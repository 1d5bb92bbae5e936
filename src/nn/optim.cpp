#include "nn/optim.h"

// Note [matching torch bit for bit]: the update formulas below round where ATen's CPU kernels
// round: `x.add_(y, alpha=a)` is a fused multiply-add (Vectorized fmadd), while `mul_`, `addcmul_`,
// `addcdiv_` and `sqrt() / s` round after every operation. fmaf spells out the fused steps and
// contraction of the others is switched off here, so with the same inputs the results are
// identical to torch 1.13 (tests/test_optim.cpp checks to 1e-6; they currently agree exactly).
// The per-chunk loops are functions of their own carrying that attribute, and call the builtins (an
// std:: wrapper without the attribute would not be inlined into them).
#define HIPPO_EXACT_FP __attribute__((optimize("-ffp-contract=off")))

#include <cmath>
#include <cstring>
#include "common/simd.h"
#include <unordered_set>

namespace hippo {

namespace {

constexpr int64_t kChunk = 1 << 15;    // elements per unit of parallel work
constexpr int64_t kAlignFloats = 16;   // 64 bytes

int64_t align_up(int64_t n) { return (n + kAlignFloats - 1) / kAlignFloats * kAlignFloats; }

std::string fmt_double(double x) { return strf("%.17g", x); }

// A contiguous view of `numel` floats of `flat` at `offset`, with `shape`.
Tensor flat_view(const Tensor& flat, int64_t offset, const Shape& shape) {
    NoGradGuard ng;
    return flat.slice(0, offset, offset + shape.numel()).reshape(shape);
}

}  // namespace

std::vector<ParamGroup> decay_groups(const NamedTensors& params, float weight_decay) {
    ParamGroup decay, no_decay;
    decay.weight_decay = weight_decay;
    no_decay.weight_decay = 0.0f;
    for (const auto& p : params) (p.second.ndim() >= 2 ? decay : no_decay).params.push_back(p);
    std::vector<ParamGroup> out;
    if (!decay.params.empty()) out.push_back(std::move(decay));
    if (!no_decay.params.empty()) out.push_back(std::move(no_decay));
    return out;
}

// ---------------------------------------------------------------------------------------------
// Optimizer

Optimizer::Optimizer(std::string name, std::vector<ParamGroup> groups, double lr, float default_wd)
    : name_(std::move(name)), groups_(std::move(groups)) {
    set_lr(lr);
    std::unordered_set<std::string> names;
    std::unordered_set<const TensorImpl*> seen;
    for (size_t gi = 0; gi < groups_.size(); gi++) {
        ParamGroup& g = groups_[gi];
        if (!g.weight_decay) g.weight_decay = default_wd;
        HIPPO_CHECK(std::isfinite(*g.weight_decay) && *g.weight_decay >= 0.0f,
                    "%s: group %zu has invalid weight_decay %g", name_.c_str(), gi, double(*g.weight_decay));
        HIPPO_CHECK(std::isfinite(g.lr_scale) && g.lr_scale >= 0.0, "%s: group %zu has invalid lr_scale %g",
                    name_.c_str(), gi, g.lr_scale);
        group_wd_.push_back(*g.weight_decay);
        for (const auto& [pname, t] : g.params) {
            HIPPO_CHECK(t.defined(), "%s: parameter '%s' is undefined", name_.c_str(), pname.c_str());
            HIPPO_CHECK(names.insert(pname).second, "%s: parameter name '%s' appears twice", name_.c_str(),
                        pname.c_str());
            HIPPO_CHECK(seen.insert(t.impl().get()).second, "%s: parameter '%s' is the same tensor as another",
                        name_.c_str(), pname.c_str());
            HIPPO_CHECK(t.is_leaf() && t.is_contiguous(), "%s: parameter '%s' must be a contiguous leaf tensor",
                        name_.c_str(), pname.c_str());
            slots_.push_back({t.data(), total_, t.numel(), int(gi)});
            params_.emplace_back(pname, t);
            total_ += align_up(t.numel());
        }
    }
    state_end_ = total_;
    rebuild_chunks();

    // The arena starts at zero; gradients that already exist are carried over.
    grad_arena_ = Tensor::zeros({total_});
    grads_ = grad_arena_.data();
    for (size_t i = 0; i < params_.size(); i++) {
        Tensor view = flat_view(grad_arena_, slots_[i].offset, params_[i].second.shape());
        grad_views_.push_back(view.impl());
    }
    bind_grads();
}

void Optimizer::rebuild_chunks() {
    chunks_.clear();
    for (size_t s = 0; s < slots_.size(); s++) {
        const int64_t lo = std::max<int64_t>(0, state_begin_ - slots_[s].offset);
        const int64_t hi = std::min<int64_t>(slots_[s].numel, state_end_ - slots_[s].offset);
        for (int64_t b = lo; b < hi; b += kChunk) chunks_.push_back({int(s), b, std::min(hi, b + kChunk)});
    }
}

void Optimizer::register_state(std::vector<Tensor> buffers) {
    state_bufs_ = std::move(buffers);
    state_begin_ = 0;
    state_end_ = total_;
    rebuild_chunks();
}

void Optimizer::set_state_range(int64_t begin, int64_t end, std::vector<Tensor> buffers) {
    HIPPO_CHECK(0 <= begin && begin <= end && end <= total_, "%s: state range [%lld, %lld) outside the arena of %lld",
                name_.c_str(), (long long)begin, (long long)end, (long long)total_);
    HIPPO_CHECK(buffers.size() == state_bufs_.size(), "%s: %zu state buffers given, %zu expected", name_.c_str(),
                buffers.size(), state_bufs_.size());
    for (const Tensor& b : buffers)
        HIPPO_CHECK(b.is_contiguous() && b.numel() == end - begin, "%s: a state buffer has %lld floats, expected %lld",
                    name_.c_str(), (long long)b.numel(), (long long)(end - begin));
    state_bufs_ = std::move(buffers);
    state_begin_ = begin;
    state_end_ = end;
    rebuild_chunks();
}

void Optimizer::shard_state(int64_t begin, int64_t end) {
    HIPPO_CHECK(state_begin_ <= begin && begin <= end && end <= state_end_,
                "%s: shard [%lld, %lld) is not inside the state range [%lld, %lld)", name_.c_str(), (long long)begin,
                (long long)end, (long long)state_begin_, (long long)state_end_);
    std::vector<Tensor> kept;
    for (const Tensor& b : state_bufs_) {
        Tensor k = Tensor::empty({end - begin});
        std::memcpy(k.data(), b.data() + (begin - state_begin_), size_t(end - begin) * sizeof(float));
        kept.push_back(k);
    }
    set_state_range(begin, end, std::move(kept));
}

void Optimizer::params_to_flat(float* flat, int64_t begin, int64_t end) const {
    for (const Slot& s : slots_) {
        const int64_t lo = std::max(begin, s.offset), hi = std::min(end, s.offset + s.numel);
        if (lo < hi) std::memcpy(flat + lo, s.param + (lo - s.offset), size_t(hi - lo) * sizeof(float));
    }
}

void Optimizer::params_from_flat(const float* flat, int64_t begin, int64_t end) {
    for (const Slot& s : slots_) {
        const int64_t lo = std::max(begin, s.offset), hi = std::min(end, s.offset + s.numel);
        if (lo < hi) std::memcpy(s.param + (lo - s.offset), flat + lo, size_t(hi - lo) * sizeof(float));
    }
}

void Optimizer::bind_grads(bool keep_values) {
    for (size_t i = 0; i < params_.size(); i++) {
        TensorImpl& p = *params_[i].second.impl();
        if (p.grad == grad_views_[i]) continue;
        float* dst = grads_ + slots_[i].offset;
        if (p.grad && keep_values) {
            Tensor g(p.grad);
            HIPPO_CHECK(g.shape() == p.shape, "%s: gradient of '%s' has shape %s, parameter has %s", name_.c_str(),
                        params_[i].first.c_str(), g.shape().str().c_str(), p.shape.str().c_str());
            copy_strided(dst, g);
        } else {
            std::memset(dst, 0, size_t(slots_[i].numel) * sizeof(float));
        }
        p.grad = grad_views_[i];
    }
}

void Optimizer::zero_grad() {
    float* g = grads_;
    int64_t n = total_;
#pragma omp parallel for simd if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) g[i] = 0.0f;
    bind_grads(/*keep_values=*/false);
}

void Optimizer::set_lr(double lr) {
    HIPPO_CHECK(std::isfinite(lr) && lr >= 0.0, "%s: invalid learning rate %g", name_.c_str(), lr);
    lr_ = lr;
}

void Optimizer::set_step_count(int64_t s) {
    HIPPO_CHECK(s >= 0, "%s: negative step count %lld", name_.c_str(), (long long)s);
    step_ = s;
}

double Optimizer::clip_grad_norm(double max_norm) {
    bind_grads();
    std::vector<Tensor> ps;
    for (auto& p : params_) ps.push_back(p.second);
    return hippo::clip_grad_norm(ps, max_norm);
}

std::map<std::string, std::string> Optimizer::hyperparameters() const {
    std::map<std::string, std::string> h;
    h["lr"] = fmt_double(lr_);
    h["num_groups"] = std::to_string(groups_.size());
    for (size_t i = 0; i < groups_.size(); i++) {
        h[strf("group%zu.lr_scale", i)] = fmt_double(groups_[i].lr_scale);
        h[strf("group%zu.weight_decay", i)] = strf("%.9g", double(*groups_[i].weight_decay));
        h[strf("group%zu.num_params", i)] = std::to_string(groups_[i].params.size());
    }
    return h;
}

NamedTensors Optimizer::views_of(const Tensor& flat, const std::string& prefix) const {
    NamedTensors out;
    for (size_t i = 0; i < params_.size(); i++)
        out.emplace_back(prefix + params_[i].first, flat_view(flat, slots_[i].offset, params_[i].second.shape()));
    return out;
}

// ---------------------------------------------------------------------------------------------
// AdamW

namespace {

struct AdamConsts {
    float beta1, one_m_beta1, beta2, one_m_beta2, bc2_sqrt, eps;
};

HIPPO_EXACT_FP void adamw_chunk(float* __restrict p, const float* __restrict g, float* __restrict m,
                                float* __restrict v, int64_t n, const AdamConsts k, float decay, float neg_step) {
    int64_t i = 0;
#ifdef __AVX512F__
    // GCC will not vectorise the scalar loop below (sqrtf may set errno), hence the explicit
    // version; it performs the same IEEE operations in the same order, so the results are identical.
    const __m512 b1 = _mm512_set1_ps(k.beta1), omb1 = _mm512_set1_ps(k.one_m_beta1);
    const __m512 b2 = _mm512_set1_ps(k.beta2), omb2 = _mm512_set1_ps(k.one_m_beta2);
    const __m512 bc2s = _mm512_set1_ps(k.bc2_sqrt), eps = _mm512_set1_ps(k.eps);
    const __m512 dk = _mm512_set1_ps(decay), ns = _mm512_set1_ps(neg_step);
    for (; i + 16 <= n; i += 16) {
        __m512 gi = _mm512_loadu_ps(g + i);
        __m512 mi = _mm512_fmadd_ps(gi, omb1, _mm512_mul_ps(_mm512_loadu_ps(m + i), b1));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), b2), _mm512_mul_ps(_mm512_mul_ps(omb2, gi), gi));
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc2s), eps);
        __m512 pi = _mm512_mul_ps(_mm512_loadu_ps(p + i), dk);
        _mm512_storeu_ps(p + i, _mm512_add_ps(pi, _mm512_div_ps(_mm512_mul_ps(ns, mi), denom)));
    }
#endif
    for (; i < n; i++) {
        float gi = g[i];
        float mi = __builtin_fmaf(gi, k.one_m_beta1, m[i] * k.beta1);  // exp_avg.mul_(b1).add_(g, alpha=1-b1)
        float vi = v[i] * k.beta2 + k.one_m_beta2 * gi * gi;           // exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2)
        m[i] = mi;
        v[i] = vi;
        float denom = __builtin_sqrtf(vi) / k.bc2_sqrt + k.eps;        // (v.sqrt() / sqrt(bc2)).add_(eps)
        p[i] = p[i] * decay + neg_step * mi / denom;                   // p.mul_(1-lr wd); p.addcdiv_(m, denom, -step)
    }
}

}  // namespace

AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& opt)
    : Optimizer("adamw", std::move(groups), opt.lr, opt.weight_decay), opt_(opt) {
    HIPPO_CHECK(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1,
                "adamw: betas must be in [0, 1), got (%g, %g)", opt.beta1, opt.beta2);
    HIPPO_CHECK(opt.eps >= 0, "adamw: eps must be >= 0, got %g", opt.eps);
    register_state({new_flat_buffer(), new_flat_buffer()});  // m, v
}

void AdamW::step() {
    bind_grads();
    step_++;
    // Scalars are formed in double and rounded to float where torch rounds its Python floats.
    const double bc1 = 1.0 - std::pow(opt_.beta1, double(step_));
    const double bc2 = 1.0 - std::pow(opt_.beta2, double(step_));
    AdamConsts k;
    k.beta1 = float(opt_.beta1);
    k.one_m_beta1 = float(1.0 - opt_.beta1);
    k.beta2 = float(opt_.beta2);
    k.one_m_beta2 = float(1.0 - opt_.beta2);
    k.bc2_sqrt = float(std::sqrt(bc2));
    k.eps = float(opt_.eps);
    std::vector<float> decay(groups().size()), neg_step(groups().size());
    for (size_t g = 0; g < groups().size(); g++) {
        double lr = lr_ * groups()[g].lr_scale;
        decay[g] = float(1.0 - lr * double(group_wd_[g]));
        neg_step[g] = float(-(lr / bc1));
    }
    // Arena offset o lives at index o - state_begin_ of the state buffers.
    float* m_all = state_bufs_[0].data();
    float* v_all = state_bufs_[1].data();
    const int64_t base = state_begin_;
    const int64_t nchunks = int64_t(chunks_.size());
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunks; c++) {
        const Chunk ch = chunks_[size_t(c)];
        const Slot& s = slots_[size_t(ch.slot)];
        float* __restrict p = s.param + ch.begin;
        const float* __restrict g = grads_ + s.offset + ch.begin;
        const int64_t at = s.offset + ch.begin - base;
        adamw_chunk(p, g, m_all + at, v_all + at, ch.end - ch.begin, k,
                    decay[size_t(s.group)], neg_step[size_t(s.group)]);
    }
}

std::map<std::string, std::string> AdamW::hyperparameters() const {
    auto h = Optimizer::hyperparameters();
    h["beta1"] = fmt_double(opt_.beta1);
    h["beta2"] = fmt_double(opt_.beta2);
    h["eps"] = fmt_double(opt_.eps);
    h["weight_decay"] = strf("%.9g", double(opt_.weight_decay));
    return h;
}

NamedTensors AdamW::state_tensors() const {
    HIPPO_CHECK(state_begin_ == 0 && state_end_ == total_size(), "adamw: the state is sharded (ZeRO-1); gather it first");
    NamedTensors out = views_of(state_bufs_[0], "m.");
    for (auto& t : views_of(state_bufs_[1], "v.")) out.push_back(std::move(t));
    return out;
}

// ---------------------------------------------------------------------------------------------
// SGD

namespace {

// b == nullptr: no momentum.
HIPPO_EXACT_FP void sgd_chunk(float* __restrict p, const float* __restrict g, float* __restrict b, int64_t n, float wd,
                              float neg_lr, float mom, float one_m_damp, bool first, bool nesterov) {
    if (!b) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) p[i] = __builtin_fmaf(__builtin_fmaf(p[i], wd, g[i]), neg_lr, p[i]);
        return;
    }
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float d = __builtin_fmaf(p[i], wd, g[i]);                          // g.add(p, alpha=wd)
        float bi = first ? d : __builtin_fmaf(d, one_m_damp, b[i] * mom);  // b.mul_(mom).add_(d, alpha=1-damp)
        b[i] = bi;
        float u = nesterov ? __builtin_fmaf(bi, mom, d) : bi;              // d.add(b, alpha=mom)
        p[i] = __builtin_fmaf(u, neg_lr, p[i]);                            // p.add_(u, alpha=-lr)
    }
}

}  // namespace

SGD::SGD(std::vector<ParamGroup> groups, const SGDOptions& opt)
    : Optimizer("sgd", std::move(groups), opt.lr, opt.weight_decay), opt_(opt) {
    HIPPO_CHECK(opt.momentum >= 0, "sgd: momentum must be >= 0, got %g", opt.momentum);
    HIPPO_CHECK(!opt.nesterov || (opt.momentum > 0 && opt.dampening == 0),
                "sgd: nesterov needs momentum > 0 and dampening = 0");
    if (opt.momentum != 0) register_state({new_flat_buffer()});
    else register_state({});
}

void SGD::step() {
    bind_grads();
    const bool first = step_ == 0;
    step_++;
    const bool use_momentum = opt_.momentum != 0, nesterov = opt_.nesterov;
    const float mom = float(opt_.momentum), one_m_damp = float(1.0 - opt_.dampening);
    std::vector<float> wd(group_wd_), neg_lr(groups().size());
    for (size_t g = 0; g < groups().size(); g++) neg_lr[g] = float(-(lr_ * groups()[g].lr_scale));
    float* buf_all = use_momentum ? state_bufs_[0].data() : nullptr;
    const int64_t base = state_begin_;
    const int64_t nchunks = int64_t(chunks_.size());
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunks; c++) {
        const Chunk ch = chunks_[size_t(c)];
        const Slot& s = slots_[size_t(ch.slot)];
        float* __restrict p = s.param + ch.begin;
        const float* __restrict g = grads_ + s.offset + ch.begin;
        float* b = use_momentum ? buf_all + (s.offset + ch.begin - base) : nullptr;
        sgd_chunk(p, g, b, ch.end - ch.begin, wd[size_t(s.group)], neg_lr[size_t(s.group)], mom, one_m_damp, first,
                  nesterov);
    }
}

std::map<std::string, std::string> SGD::hyperparameters() const {
    auto h = Optimizer::hyperparameters();
    h["momentum"] = fmt_double(opt_.momentum);
    h["dampening"] = fmt_double(opt_.dampening);
    h["nesterov"] = opt_.nesterov ? "true" : "false";
    h["weight_decay"] = strf("%.9g", double(opt_.weight_decay));
    return h;
}

NamedTensors SGD::state_tensors() const {
    if (state_bufs_.empty()) return {};
    HIPPO_CHECK(state_begin_ == 0 && state_end_ == total_size(), "sgd: the state is sharded (ZeRO-1); gather it first");
    return views_of(state_bufs_[0], "momentum.");
}

// ---------------------------------------------------------------------------------------------
// Gradient norm and clipping

namespace {

// Gradients of the parameters that have one, as contiguous tensors.
std::vector<Tensor> grads_of(const std::vector<Tensor>& params) {
    std::vector<Tensor> gs;
    for (const auto& p : params) {
        Tensor g = p.grad();
        if (!g.defined()) continue;
        HIPPO_CHECK(g.is_contiguous(), "clip_grad_norm: non-contiguous gradient of shape %s", g.shape().str().c_str());
        gs.push_back(g);
    }
    return gs;
}

double total_norm(const std::vector<Tensor>& gs) {
    // Fixed chunks, each summed in double, then added in order: the same bits on any thread count.
    std::vector<Tensor> chunk_t;
    std::vector<std::pair<int64_t, int64_t>> chunk_r;
    for (size_t t = 0; t < gs.size(); t++)
        for (int64_t b = 0; b < gs[t].numel(); b += kChunk) {
            chunk_t.push_back(gs[t]);
            chunk_r.emplace_back(b, std::min(gs[t].numel(), b + kChunk));
        }
    std::vector<double> partial(chunk_t.size());
    const int64_t n = int64_t(chunk_t.size());
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t c = 0; c < n; c++) {
        const float* g = chunk_t[size_t(c)].data();
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = chunk_r[size_t(c)].first; i < chunk_r[size_t(c)].second; i++) s += double(g[i]) * double(g[i]);
        partial[size_t(c)] = s;
    }
    double sum = 0;
    for (double s : partial) sum += s;
    return std::sqrt(sum);
}

}  // namespace

double grad_norm(const std::vector<Tensor>& params) { return total_norm(grads_of(params)); }

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
    HIPPO_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got %g", max_norm);
    std::vector<Tensor> gs = grads_of(params);
    double norm = total_norm(gs);
    if (!std::isfinite(norm)) return norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return norm;
    const float c = float(coef);
    for (auto& g : gs) {
        float* d = g.data();
        int64_t n = g.numel();
#pragma omp parallel for simd if (n > (1 << 16))
        for (int64_t i = 0; i < n; i++) d[i] *= c;
    }
    return norm;
}

}  // namespace hippo
