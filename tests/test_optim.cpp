// Optimizers, LR schedules and gradient clipping against PyTorch 1.13 reference trajectories
// (tests/data/optim_fixture.json, made by scripts/fixtures/make_adamw_fixture.py). The tolerance
// is 1e-6 relative (absolute below 1); the updates currently agree with torch bit for bit (see the
// note in nn/optim.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "common/rng.h"
#include "common/runtime.h"
#include "nn/optim.h"
#include "nn/schedule.h"

using namespace hippo;
using json = nlohmann::json;

namespace {

const json& fixture() {
    static const json j = [] {
        std::ifstream f(std::string(HIPPO_TEST_DATA) + "/optim_fixture.json");
        EXPECT_TRUE(f.good()) << "missing tests/data/optim_fixture.json";
        return json::parse(f);
    }();
    return j;
}

std::vector<float> floats(const json& a) {
    std::vector<float> v;
    for (const auto& x : a) v.push_back(float(x.get<double>()));
    return v;
}

// |got - want| <= tol * max(1, |want|), elementwise.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < got.size(); i++) {
        double d = std::fabs(double(got[i]) - double(want[i])) / std::max(1.0, std::fabs(double(want[i])));
        if (!(d <= worst)) worst = d, wi = i;
    }
    EXPECT_LE(worst, tol) << what << ": element " << wi << " got " << got[wi] << " want " << want[wi];
}

// The fixture's parameters, fresh, by name.
std::map<std::string, Tensor> make_params() {
    std::map<std::string, Tensor> ps;
    for (const auto& p : fixture()["params"]) {
        Tensor t = Tensor::from_vector(Shape(p["shape"].get<std::vector<int64_t>>()), floats(p["init"]));
        t.set_requires_grad(true);
        ps[p["name"].get<std::string>()] = t;
    }
    return ps;
}

std::vector<std::string> param_names() {
    std::vector<std::string> n;
    for (const auto& p : fixture()["params"]) n.push_back(p["name"].get<std::string>());
    return n;
}

void run_fixture(const std::string& run_name) {
    const json& run = fixture()["runs"][run_name];
    auto ps = make_params();
    std::vector<ParamGroup> groups;
    for (const auto& g : run["groups"]) {
        ParamGroup pg;
        for (const auto& n : g["params"]) pg.params.emplace_back(n.get<std::string>(), ps.at(n.get<std::string>()));
        pg.lr_scale = g["lr_scale"].get<double>();
        pg.weight_decay = float(g["weight_decay"].get<double>());
        groups.push_back(pg);
    }
    double base_lr = run["base_lr"].get<double>();
    std::unique_ptr<Optimizer> opt;
    if (run["optimizer"] == "adamw") {
        AdamWOptions o;
        o.lr = base_lr;
        o.beta1 = run["beta1"].get<double>();
        o.beta2 = run["beta2"].get<double>();
        o.eps = run["eps"].get<double>();
        opt = std::make_unique<AdamW>(groups, o);
    } else {
        SGDOptions o;
        o.lr = base_lr;
        o.momentum = run["momentum"].get<double>();
        o.dampening = run["dampening"].get<double>();
        o.nesterov = run["nesterov"].get<bool>();
        opt = std::make_unique<SGD>(groups, o);
    }
    std::optional<LrSchedule> sched;
    if (run.contains("schedule"))
        sched = LrSchedule::parse(run["schedule"].get<std::string>(), base_lr, run["warmup"].get<int64_t>(),
                                  run["total"].get<int64_t>(), run["min_lr"].get<double>());
    auto names = param_names();
    int steps = fixture()["steps"].get<int>();
    for (int t = 0; t < steps; t++) {
        if (sched) {
            opt->set_lr(sched->lr_at(t));
            EXPECT_NEAR(opt->lr(), run["lrs"][t].get<double>(), 1e-12 + 1e-9 * opt->lr()) << run_name << " step " << t;
        }
        opt->zero_grad();
        for (size_t i = 0; i < names.size(); i++) {
            Tensor g = ps.at(names[i]).grad();
            ASSERT_TRUE(g.defined());
            g.copy_from(Tensor::from_vector(g.shape(), floats(fixture()["grads"][t][i])));
        }
        opt->step();
        EXPECT_EQ(opt->step_count(), t + 1);
        for (size_t i = 0; i < names.size(); i++)
            expect_close(ps.at(names[i]).to_vector(), floats(run["trajectory"][t][i]), 1e-6,
                         run_name + " step " + std::to_string(t) + " param " + names[i]);
    }
}

}  // namespace

TEST(Optim, FixtureIsFromTorch113) {
    EXPECT_EQ(fixture()["torch_version"].get<std::string>().rfind("1.13", 0), 0u);
}

TEST(Optim, AdamWMatchesTorchTwoGroups) { run_fixture("adamw"); }
TEST(Optim, AdamWMatchesTorchDefaults) { run_fixture("adamw_default"); }
TEST(Optim, AdamWWithCosineScheduleMatchesTorch) { run_fixture("adamw_cosine"); }
TEST(Optim, SGDMomentumMatchesTorch) { run_fixture("sgd"); }
TEST(Optim, SGDNesterovMatchesTorch) { run_fixture("sgd_nesterov"); }
TEST(Optim, SGDDampeningMatchesTorch) { run_fixture("sgd_dampening"); }
TEST(Optim, SGDPlainMatchesTorch) { run_fixture("sgd_plain"); }

TEST(Optim, GradientsAreViewsOfOneAlignedArena) {
    Tensor a = Tensor::ones({3, 5}).set_requires_grad(), b = Tensor::ones({7}).set_requires_grad();
    Tensor c = Tensor::ones({2, 3, 4}).set_requires_grad();
    AdamW opt(NamedTensors{{"a", a}, {"b", b}, {"c", c}});
    Tensor arena = opt.grad_arena();
    EXPECT_EQ(arena.ndim(), 1);
    for (Tensor* p : {&a, &b, &c}) {
        Tensor g = p->grad();
        ASSERT_TRUE(g.defined());
        EXPECT_TRUE(g.same_storage(arena));
        EXPECT_EQ(g.shape(), p->shape());
        EXPECT_TRUE(g.is_contiguous());
        EXPECT_EQ(reinterpret_cast<uintptr_t>(g.data()) % 64, 0u);
        EXPECT_GE(g.data(), arena.data());
        EXPECT_LE(g.data() + g.numel(), arena.data() + arena.numel());
    }
    // Writing through a grad view shows in the arena; zero_grad clears the arena and keeps the views.
    b.grad().fill_(2.0f);
    double s = 0;
    for (float x : arena.to_vector()) s += x;
    EXPECT_EQ(s, 14.0);
    Tensor before = b.grad();
    opt.zero_grad();
    EXPECT_EQ(b.grad().impl(), before.impl());
    for (float x : arena.to_vector()) EXPECT_EQ(x, 0.0f);
}

TEST(Optim, ExistingGradIsCarriedIntoArenaAndResetGradIsRebound) {
    Tensor a = Tensor::zeros({4}).set_requires_grad();
    a.impl()->grad = Tensor::from_vector({4}, {1, 2, 3, 4}).impl();
    SGD opt(NamedTensors{{"a", a}}, SGDOptions{1.0, 0, 0, false, 0});
    EXPECT_TRUE(a.grad().same_storage(opt.grad_arena()));
    EXPECT_EQ(a.grad().to_vector(), (std::vector<float>{1, 2, 3, 4}));
    opt.step();
    EXPECT_EQ(a.to_vector(), (std::vector<float>{-1, -2, -3, -4}));
    // Tensor::zero_grad drops the buffer; the next step treats it as zero and re-binds the view.
    a.zero_grad();
    opt.step();
    EXPECT_EQ(a.to_vector(), (std::vector<float>{-1, -2, -3, -4}));
    EXPECT_TRUE(a.grad().same_storage(opt.grad_arena()));
    // A replaced gradient is copied into the arena.
    a.impl()->grad = Tensor::full({4}, 0.5f).impl();
    opt.step();
    EXPECT_EQ(a.to_vector(), (std::vector<float>{-1.5f, -2.5f, -3.5f, -4.5f}));
    EXPECT_TRUE(a.grad().same_storage(opt.grad_arena()));
    // zero_grad re-binds a replaced gradient without taking its values.
    a.impl()->grad = Tensor::full({4}, 7.0f).impl();
    opt.zero_grad();
    EXPECT_TRUE(a.grad().same_storage(opt.grad_arena()));
    EXPECT_EQ(a.grad().to_vector(), (std::vector<float>{0, 0, 0, 0}));
}

TEST(Optim, StepIsIndependentOfThreadCount) {
    const int64_t n = 300001;  // several chunks, odd tail
    auto run = [&](int threads) {
        set_num_threads(threads);
        Rng rng(7);
        Tensor p = Tensor::empty({n});
        for (int64_t i = 0; i < n; i++) p.data()[i] = float(rng.normal());
        p.set_requires_grad();
        AdamW opt(NamedTensors{{"p", p}});
        for (int s = 0; s < 3; s++) {
            for (int64_t i = 0; i < n; i++) p.grad().data()[i] = float(rng.normal());
            EXPECT_TRUE(std::isfinite(opt.clip_grad_norm(100.0)));
            opt.step();
        }
        return p.to_vector();
    };
    int prev = num_threads();
    auto one = run(1), many = run(std::max(2, prev));
    set_num_threads(prev);
    EXPECT_EQ(one, many);
}

TEST(Optim, ValidatesConfiguration) {
    Tensor a = Tensor::zeros({2}).set_requires_grad();
    EXPECT_THROW(AdamW(NamedTensors{{"a", a}, {"a2", a}}), Error);  // same tensor twice
    Tensor b = Tensor::zeros({2}).set_requires_grad();
    EXPECT_THROW(AdamW(NamedTensors{{"a", a}, {"a", b}}), Error);   // same name twice
    SGDOptions nest;
    nest.nesterov = true;
    EXPECT_THROW(SGD(NamedTensors{{"a", a}}, nest), Error);          // nesterov without momentum
    AdamWOptions bad;
    bad.beta1 = 1.0;
    EXPECT_THROW(AdamW(NamedTensors{{"a", a}}, bad), Error);
    AdamW ok(NamedTensors{{"a", a}});
    EXPECT_THROW(ok.set_lr(-1.0), Error);
    EXPECT_THROW(ok.set_lr(std::nan("")), Error);
}

TEST(Optim, DecayGroupsSplitMatricesFromVectors) {
    NamedTensors ps{{"w", Tensor::zeros({2, 3})}, {"b", Tensor::zeros({3})}, {"e", Tensor::zeros({4, 2})}};
    auto groups = decay_groups(ps, 0.1f);
    ASSERT_EQ(groups.size(), 2u);
    ASSERT_EQ(groups[0].params.size(), 2u);
    EXPECT_EQ(groups[0].params[0].first, "w");
    EXPECT_EQ(groups[0].params[1].first, "e");
    EXPECT_EQ(*groups[0].weight_decay, 0.1f);
    ASSERT_EQ(groups[1].params.size(), 1u);
    EXPECT_EQ(groups[1].params[0].first, "b");
    EXPECT_EQ(*groups[1].weight_decay, 0.0f);
}

TEST(Optim, GroupDefaultWeightDecayComesFromOptions) {
    Tensor a = Tensor::ones({1}).set_requires_grad();
    AdamWOptions o;
    o.lr = 0.1;
    o.weight_decay = 0.5f;
    AdamW opt(NamedTensors{{"a", a}}, o);
    EXPECT_EQ(*opt.groups()[0].weight_decay, 0.5f);
    opt.step();  // zero gradient: only the decay moves the parameter
    EXPECT_FLOAT_EQ(a.item(), 1.0f - 0.1f * 0.5f);
}

// ---- schedules -----------------------------------------------------------------------------

TEST(Schedule, MatchesTorchSchedulersWithoutWarmup) {
    for (const auto& [name, s] : fixture()["schedules"].items()) {
        LrSchedule sch = LrSchedule::parse(name, s["lr"].get<double>(), s["warmup"].get<int64_t>(),
                                           s["total"].get<int64_t>(), s["min_lr"].get<double>());
        int64_t total = s["total"].get<int64_t>();
        for (int64_t t = 0; t <= total; t++) {
            double want = s["lrs"][t].get<double>();
            EXPECT_NEAR(sch.lr_at(t), want, 1e-9 * s["lr"].get<double>()) << name << " step " << t;
        }
    }
}

TEST(Schedule, ClosedFormsWithWarmup) {
    const double lr = 1.0, mn = 0.1;
    LrSchedule cos(LrScheduleKind::Cosine, lr, 10, 110, mn);
    LrSchedule lin = LrSchedule::parse("linear", lr, 10, 110, mn);
    LrSchedule con = LrSchedule::parse("constant", lr, 10);
    for (const LrSchedule* s : {&cos, &lin, &con}) {
        EXPECT_DOUBLE_EQ(s->lr_at(0), 0.1);   // (0 + 1) / 10
        EXPECT_DOUBLE_EQ(s->lr_at(4), 0.5);
        EXPECT_DOUBLE_EQ(s->lr_at(9), 1.0);   // end of warmup
        EXPECT_DOUBLE_EQ(s->lr_at(10), 1.0);  // decay starts from the peak
    }
    EXPECT_DOUBLE_EQ(cos.lr_at(35), mn + (lr - mn) * 0.5 * (1 + std::cos(M_PI * 0.25)));
    EXPECT_DOUBLE_EQ(cos.lr_at(60), 0.55);  // middle
    EXPECT_DOUBLE_EQ(lin.lr_at(35), lr - (lr - mn) * 0.25);
    EXPECT_DOUBLE_EQ(lin.lr_at(60), 0.55);
    for (const LrSchedule* s : {&cos, &lin}) {
        EXPECT_NEAR(s->lr_at(109), mn, 1e-2);
        EXPECT_DOUBLE_EQ(s->lr_at(110), mn);      // end
        EXPECT_DOUBLE_EQ(s->lr_at(1000000), mn);  // floor afterwards
    }
    EXPECT_DOUBLE_EQ(con.lr_at(1000000), lr);
    // Monotone decay after warmup.
    for (int64_t t = 10; t < 110; t++) {
        EXPECT_GE(cos.lr_at(t), cos.lr_at(t + 1));
        EXPECT_GE(lin.lr_at(t), lin.lr_at(t + 1));
    }
    EXPECT_EQ(cos.str(), "cosine(lr=1, warmup=10, total=110, min_lr=0.1)");
}

TEST(Schedule, ParseAndValidate) {
    EXPECT_EQ(parse_lr_schedule_kind("cosine"), LrScheduleKind::Cosine);
    EXPECT_EQ(parse_lr_schedule_kind("linear"), LrScheduleKind::Linear);
    EXPECT_EQ(parse_lr_schedule_kind("constant"), LrScheduleKind::Constant);
    try {
        parse_lr_schedule_kind("exponential");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("'exponential'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("cosine"), std::string::npos) << e.what();
    }
    EXPECT_THROW(LrSchedule::parse("cosine", 1e-3, 100, 100), Error);       // total must exceed warmup
    EXPECT_THROW(LrSchedule::parse("linear", 1e-3, 0, 10, 1e-2), Error);    // min_lr > lr
    EXPECT_THROW(LrSchedule::parse("constant", -1.0), Error);
    EXPECT_THROW(LrSchedule::parse("constant", 1.0, -1), Error);
    EXPECT_THROW(LrSchedule::parse("constant", 1.0).lr_at(-1), Error);
}

// ---- clipping ------------------------------------------------------------------------------

TEST(Clip, MatchesTorchClipGradNorm) {
    auto names = param_names();
    for (const auto& c : fixture()["clip"]) {
        auto ps = make_params();
        std::vector<Tensor> params;
        for (size_t i = 0; i < names.size(); i++) {
            Tensor& p = ps.at(names[i]);
            p.impl()->grad = Tensor::from_vector(p.shape(), floats(c["grads_in"][i])).impl();
            params.push_back(p);
        }
        double want = c["total_norm"].get<double>();
        EXPECT_NEAR(grad_norm(params), want, 1e-6 * want);
        double got = clip_grad_norm(params, c["max_norm"].get<double>());
        EXPECT_NEAR(got, want, 1e-6 * want);
        for (size_t i = 0; i < names.size(); i++)
            expect_close(params[i].grad().to_vector(), floats(c["grads_out"][i]), 1e-6, "clipped grad " + names[i]);
    }
}

TEST(Clip, NonFiniteNormIsReportedAndGradsUntouched) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        Tensor a = Tensor::zeros({3}).set_requires_grad(), b = Tensor::zeros({2}).set_requires_grad();
        a.impl()->grad = Tensor::from_vector({3}, {1, bad, 2}).impl();
        b.impl()->grad = Tensor::from_vector({2}, {30, 40}).impl();
        double n = clip_grad_norm({a, b}, 1.0);
        EXPECT_FALSE(std::isfinite(n));
        if (std::isnan(bad)) {
            EXPECT_TRUE(std::isnan(n));
        }
        EXPECT_EQ(b.grad().to_vector(), (std::vector<float>{30, 40}));
    }
}

TEST(Clip, SkipsParamsWithoutGradAndRejectsBadMaxNorm) {
    Tensor a = Tensor::zeros({2}).set_requires_grad(), b = Tensor::zeros({2}).set_requires_grad();
    a.impl()->grad = Tensor::from_vector({2}, {3, 4}).impl();
    EXPECT_DOUBLE_EQ(clip_grad_norm({a, b}, 10.0), 5.0);
    EXPECT_EQ(a.grad().to_vector(), (std::vector<float>{3, 4}));  // coef clamped to 1
    EXPECT_DOUBLE_EQ(clip_grad_norm({a, b}, 1.0), 5.0);
    EXPECT_NEAR(a.grad().to_vector()[0], 3.0 / (5.0 + 1e-6), 1e-7);
    EXPECT_THROW(clip_grad_norm({a}, 0.0), Error);
}

TEST(Clip, NormIsIndependentOfThreadCount) {
    Rng rng(3);
    Tensor a = Tensor::zeros({1000003}).set_requires_grad();
    Tensor g = Tensor::empty({1000003});
    for (int64_t i = 0; i < g.numel(); i++) g.data()[i] = float(rng.normal());
    a.impl()->grad = g.impl();
    int prev = num_threads();
    set_num_threads(1);
    double one = grad_norm({a});
    set_num_threads(std::max(2, prev));
    double many = grad_norm({a});
    set_num_threads(prev);
    EXPECT_EQ(one, many);
}
