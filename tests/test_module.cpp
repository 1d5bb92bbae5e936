// Modules: parameter naming and registration, train/eval, initialisers, the first concrete
// modules against direct computations, and gradients living in the optimizer's flat arena.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "autograd/ops.h"
#include "nn/init.h"
#include "nn/module.h"
#include "nn/optim.h"

using namespace hippo;

namespace {

struct Mixer : Module {
    std::shared_ptr<Linear> q_proj;
    Mixer(int64_t d, Rng& rng) { q_proj = register_module("q_proj", std::make_shared<Linear>(d, d, true, rng)); }
    std::string type_name() const override { return "Mixer"; }
};

struct Block : Module {
    std::shared_ptr<LayerNorm> norm;
    std::shared_ptr<Mixer> mixer;
    Block(int64_t d, Rng& rng) {
        norm = register_module("norm", std::make_shared<LayerNorm>(d));
        mixer = register_module("mixer", std::make_shared<Mixer>(d, rng));
    }
    std::string type_name() const override { return "Block"; }
};

struct TinyModel : Module {
    std::shared_ptr<Embedding> embed;
    std::shared_ptr<ModuleList> layers;
    std::shared_ptr<Linear> head;
    TinyModel(int64_t vocab, int64_t d, int n_layers, Rng& rng) {
        embed = register_module("embed", std::make_shared<Embedding>(vocab, d, rng));
        layers = register_module("layers", std::make_shared<ModuleList>());
        for (int i = 0; i < n_layers; i++) layers->push_back(std::make_shared<Block>(d, rng));
        head = register_module("head", std::make_shared<Linear>(d, vocab, false, rng));
    }
    std::string type_name() const override { return "TinyModel"; }
};

std::vector<std::string> names_of(const NamedTensors& ps) {
    std::vector<std::string> n;
    for (auto& p : ps) n.push_back(p.first);
    return n;
}

}  // namespace

TEST(Module, DottedNamesInRegistrationOrder) {
    Rng rng(1);
    TinyModel m(10, 4, 2, rng);
    std::vector<std::string> want = {
        "embed.weight",
        "layers.0.norm.weight", "layers.0.norm.bias", "layers.0.mixer.q_proj.weight", "layers.0.mixer.q_proj.bias",
        "layers.1.norm.weight", "layers.1.norm.bias", "layers.1.mixer.q_proj.weight", "layers.1.mixer.q_proj.bias",
        "head.weight"};
    EXPECT_EQ(names_of(m.named_parameters()), want);
    EXPECT_EQ(m.parameters().size(), want.size());
    EXPECT_EQ(m.num_parameters(), 10 * 4 + 2 * (4 + 4 + 16 + 4) + 40);
    EXPECT_EQ(m.layers->size(), 2u);
    EXPECT_EQ(m.layers->at<Block>(1)->mixer->q_proj->out_features(), 4);
    // Lookup by dotted name returns the same tensor.
    EXPECT_EQ(m.parameter("layers.1.mixer.q_proj.bias").impl(), m.layers->at<Block>(1)->mixer->q_proj->bias.impl());
    EXPECT_THROW(m.parameter("layers.2.norm.weight"), Error);
    EXPECT_THROW(m.parameter("head.bias"), Error);
    for (auto& [name, t] : m.named_parameters()) EXPECT_TRUE(t.requires_grad()) << name;
}

TEST(Module, TiedParametersAreListedOnce) {
    struct Tied : Module {};
    auto outer = std::make_shared<Tied>();
    Tensor shared = Tensor::zeros({10, 4});
    outer->register_parameter("a", shared);
    outer->register_parameter("b", shared);  // tied
    auto names = names_of(outer->named_parameters());
    EXPECT_EQ(names, (std::vector<std::string>{"a"}));
    EXPECT_EQ(outer->num_parameters(), 40);
}

TEST(Module, RegistrationErrors) {
    struct M : Module {};
    M m;
    m.register_parameter("w", Tensor::zeros({2}));
    EXPECT_THROW(m.register_parameter("w", Tensor::zeros({2})), Error);  // duplicate
    EXPECT_THROW(m.register_module("w", std::make_shared<M>()), Error);  // clashes with a parameter
    EXPECT_THROW(m.register_parameter("a.b", Tensor::zeros({2})), Error);
    EXPECT_THROW(m.register_parameter("", Tensor::zeros({2})), Error);
    EXPECT_THROW(m.register_parameter("t", Tensor::zeros({2, 3}).transpose(0, 1)), Error);  // not contiguous
    Tensor leaf = Tensor::ones({2}).set_requires_grad();
    EXPECT_THROW(m.register_parameter("nl", leaf * 2.0f), Error);  // not a leaf
    EXPECT_THROW(m.register_module("null", std::shared_ptr<M>()), Error);
}

TEST(Module, TrainEvalPropagates) {
    Rng rng(1);
    TinyModel m(10, 4, 2, rng);
    EXPECT_TRUE(m.is_training());
    m.eval();
    EXPECT_FALSE(m.is_training());
    EXPECT_FALSE(m.layers->is_training());
    EXPECT_FALSE(m.layers->at<Block>(1)->mixer->q_proj->is_training());
    m.layers->train();  // a subtree only
    EXPECT_FALSE(m.is_training());
    EXPECT_TRUE(m.layers->at<Block>(0)->norm->is_training());
    EXPECT_FALSE(m.head->is_training());
    m.train();
    EXPECT_TRUE(m.head->is_training());
}

TEST(Module, DescribeShowsTreeShapesAndCounts) {
    Rng rng(1);
    TinyModel m(10, 4, 1, rng);
    std::string d = m.describe();
    EXPECT_EQ(d.rfind("TinyModel  (108 params)\n", 0), 0u) << d;
    EXPECT_NE(d.find("  embed: Embedding(num=10, dim=4)  (40 params)\n    weight (10, 4)\n"), std::string::npos) << d;
    EXPECT_NE(d.find("      q_proj: Linear(in=4, out=4, bias=true)  (20 params)\n"), std::string::npos) << d;
    EXPECT_NE(d.find("head: Linear(in=4, out=10, bias=false)"), std::string::npos) << d;
}

TEST(Init, LinearDefaultInitBoundsAndDeterminism) {
    Rng a(5), b(5);
    Linear l1(50, 30, true, a), l2(50, 30, true, b);
    EXPECT_EQ(l1.weight.to_vector(), l2.weight.to_vector());
    EXPECT_EQ(l1.bias.to_vector(), l2.bias.to_vector());
    const float bound = 1.0f / std::sqrt(50.0f);
    double mean = 0, sq = 0;
    for (float w : l1.weight.to_vector()) {
        EXPECT_LE(std::fabs(w), bound);
        mean += w;
        sq += double(w) * w;
    }
    for (float x : l1.bias.to_vector()) EXPECT_LE(std::fabs(x), bound);
    mean /= 1500;
    // uniform(-b, b): variance b^2 / 3
    EXPECT_NEAR(mean, 0.0, 0.1 * bound);
    EXPECT_NEAR(sq / 1500, bound * bound / 3.0, 0.15 * bound * bound / 3.0);
}

TEST(Init, FansAndKaimingBound) {
    Tensor w = Tensor::empty({8, 3, 5});  // (out, in, k)
    EXPECT_EQ(init::fan_in(w), 15);
    EXPECT_EQ(init::fan_out(w), 40);
    EXPECT_THROW(init::fan_in(Tensor::empty({4})), Error);
    Rng rng(2);
    init::kaiming_uniform_(w, 0.0f, rng);  // bound sqrt(6 / fan_in)
    float bound = std::sqrt(6.0f / 15.0f), mx = 0;
    for (float x : w.to_vector()) mx = std::max(mx, std::fabs(x));
    EXPECT_LE(mx, bound);
    EXPECT_GT(mx, 0.9f * bound);
    Tensor n = Tensor::empty({20000});
    init::normal_(n, 1.0f, 2.0f, rng);
    double s = 0, s2 = 0;
    for (float x : n.to_vector()) s += x, s2 += double(x) * x;
    EXPECT_NEAR(s / 20000, 1.0, 0.05);
    EXPECT_NEAR(std::sqrt(s2 / 20000 - (s / 20000) * (s / 20000)), 2.0, 0.05);
    init::zeros_(n);
    EXPECT_EQ(n.to_vector()[7], 0.0f);
    init::ones_(n);
    EXPECT_EQ(n.to_vector()[7], 1.0f);
    Tensor t = Tensor::empty({2, 3}).transpose(0, 1);
    EXPECT_THROW(init::zeros_(t), Error);
}

TEST(Module, LinearForwardMatchesDirectComputation) {
    Rng rng(3);
    Linear lin(5, 3, true, rng);
    Tensor x = Tensor::empty({2, 4, 5});
    init::normal_(x, 0.0f, 1.0f, rng);
    Tensor y = lin(x);
    ASSERT_EQ(y.shape(), Shape({2, 4, 3}));
    auto xv = x.to_vector(), wv = lin.weight.to_vector(), bv = lin.bias.to_vector(), yv = y.to_vector();
    for (int r = 0; r < 8; r++)
        for (int o = 0; o < 3; o++) {
            double s = bv[o];
            for (int i = 0; i < 5; i++) s += double(xv[r * 5 + i]) * wv[o * 5 + i];
            EXPECT_NEAR(yv[r * 3 + o], s, 1e-5);
        }
    Linear nob(5, 3, false, rng);
    EXPECT_FALSE(nob.bias.defined());
    EXPECT_EQ(nob.named_parameters().size(), 1u);
    EXPECT_EQ(nob(x).shape(), Shape({2, 4, 3}));
}

TEST(Module, LayerNormForwardMatchesDirectComputation) {
    Rng rng(4);
    LayerNorm ln(6, 1e-5f);
    init::normal_(ln.weight, 1.0f, 0.5f, rng);
    init::normal_(ln.bias, 0.0f, 0.5f, rng);
    Tensor x = Tensor::empty({3, 6});
    init::normal_(x, 2.0f, 3.0f, rng);
    auto yv = ln(x).to_vector(), xv = x.to_vector(), w = ln.weight.to_vector(), b = ln.bias.to_vector();
    for (int r = 0; r < 3; r++) {
        double mu = 0, var = 0;
        for (int i = 0; i < 6; i++) mu += xv[r * 6 + i];
        mu /= 6;
        for (int i = 0; i < 6; i++) var += (xv[r * 6 + i] - mu) * (xv[r * 6 + i] - mu);
        var /= 6;
        for (int i = 0; i < 6; i++)
            EXPECT_NEAR(yv[r * 6 + i], (xv[r * 6 + i] - mu) / std::sqrt(var + 1e-5) * w[i] + b[i], 1e-5);
    }
    LayerNorm plain(6, 1e-5f, /*affine=*/false);
    EXPECT_EQ(plain.num_parameters(), 0);
    EXPECT_EQ(plain(x).shape(), x.shape());
}

TEST(Module, EmbeddingForwardGathersRows) {
    Rng rng(5);
    Embedding emb(7, 3, rng);
    std::vector<int32_t> ids = {6, 0, 3, 3, 1, 5};
    Tensor y = emb.forward(ids, Shape({2, 3}));
    ASSERT_EQ(y.shape(), Shape({2, 3, 3}));
    auto yv = y.to_vector(), wv = emb.weight.to_vector();
    for (size_t k = 0; k < ids.size(); k++)
        for (int j = 0; j < 3; j++) EXPECT_EQ(yv[k * 3 + j], wv[size_t(ids[k]) * 3 + j]);
}

TEST(Module, ZeroGradKeepsGradsInTheOptimizerArena) {
    Rng rng(6);
    TinyModel m(10, 4, 2, rng);
    AdamW opt(m.named_parameters());
    Tensor arena = opt.grad_arena();
    std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6};
    auto loss_of = [&] {
        Tensor h = m.embed->forward(ids, Shape({2, 3}));
        for (size_t i = 0; i < m.layers->size(); i++) {
            auto blk = m.layers->at<Block>(i);
            h = h + blk->mixer->q_proj->forward((*blk->norm)(h));
        }
        return cross_entropy(m.head->forward(h), {2, 3, 4, 5, 6, 7});
    };
    auto check_views = [&] {
        for (auto& [name, p] : m.named_parameters()) {
            ASSERT_TRUE(p.grad().defined()) << name;
            EXPECT_TRUE(p.grad().same_storage(arena)) << name;
        }
    };
    loss_of().backward();
    check_views();
    std::vector<float> g1 = arena.to_vector();
    double norm = 0;
    for (float x : g1) norm += double(x) * x;
    EXPECT_GT(norm, 0.0);
    // Accumulation: a second backward doubles the arena.
    loss_of().backward();
    std::vector<float> g2 = arena.to_vector();
    for (size_t i = 0; i < g1.size(); i++) EXPECT_NEAR(g2[i], 2 * g1[i], 1e-6 + 1e-5 * std::fabs(g1[i]));
    m.zero_grad();
    check_views();
    for (float x : arena.to_vector()) EXPECT_EQ(x, 0.0f);
    loss_of().backward();
    EXPECT_EQ(arena.to_vector(), g1);
    opt.zero_grad();
    check_views();
    for (float x : arena.to_vector()) EXPECT_EQ(x, 0.0f);
}

TEST(Module, TrainingLoopReducesLoss) {
    Rng rng(7);
    TinyModel m(10, 8, 1, rng);
    AdamWOptions o;
    o.lr = 1e-2;
    AdamW opt(decay_groups(m.named_parameters(), 0.01f), o);
    std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7, 8}, targets = {2, 3, 4, 5, 6, 7, 8, 9};
    auto loss_of = [&] {
        Tensor h = m.embed->forward(ids, Shape({8}));
        auto blk = m.layers->at<Block>(0);
        h = h + blk->mixer->q_proj->forward((*blk->norm)(h));
        return cross_entropy(m.head->forward(h), targets);
    };
    float first = 0, last = 0;
    for (int s = 0; s < 50; s++) {
        opt.zero_grad();
        Tensor loss = loss_of();
        loss.backward();
        clip_grad_norm(m.parameters(), 1.0);
        opt.step();
        (s == 0 ? first : last) = loss.item();
    }
    EXPECT_LT(last, 0.5f * first);
}
