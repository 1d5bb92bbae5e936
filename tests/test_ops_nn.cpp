// Autograd ops of PART B (ops_nn.cpp): finite-difference gradient checks for every op, dropout
// mask semantics and determinism across thread counts, input validation, and a PyTorch fixture
// of a small composite block (scripts/fixtures/make_nn_fixture.py -> tests/data/nn_block.json).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "common/rng.h"
#include "gradcheck.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace hippo;
using hippo::test::expect_close;
using hippo::test::with_threads;
using hippo::test::expect_gradients_match;
using hippo::test::randn;
using Ins = std::vector<Tensor>;

namespace {

// Shape of a matmul operand: (batch..., rows, cols), swapped when transposed.
Shape operand(const std::vector<int64_t>& batch, int64_t rows, int64_t cols, bool trans) {
    std::vector<int64_t> d = batch;
    d.push_back(trans ? cols : rows);
    d.push_back(trans ? rows : cols);
    return Shape(d);
}

template <class F>
std::string error_of(F&& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "<no hippo::Error thrown>";
}

}  // namespace

// ---- matmul ----------------------------------------------------------------------------------

TEST(OpsNN, MatmulAllTransposes2D) {
    Rng rng(10);
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            SCOPED_TRACE(testing::Message() << "ta=" << ta << " tb=" << tb);
            Tensor a = randn(operand({}, 3, 5, ta), rng), b = randn(operand({}, 5, 4, tb), rng);
            expect_gradients_match([=](const Ins& in) { return matmul(in[0], in[1], ta, tb); }, {a, b});
        }
}

TEST(OpsNN, MatmulBatchedAllTransposes) {
    Rng rng(11);
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            SCOPED_TRACE(testing::Message() << "ta=" << ta << " tb=" << tb);
            Tensor a = randn(operand({2, 3}, 4, 3, ta), rng), b = randn(operand({2, 3}, 3, 5, tb), rng);
            expect_gradients_match([=](const Ins& in) { return matmul(in[0], in[1], ta, tb); }, {a, b});
        }
}

TEST(OpsNN, MatmulSharedB) {
    Rng rng(12);
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            SCOPED_TRACE(testing::Message() << "ta=" << ta << " tb=" << tb);
            Tensor a = randn(operand({3}, 4, 3, ta), rng), b = randn(operand({}, 3, 5, tb), rng);
            expect_gradients_match([=](const Ins& in) { return matmul(in[0], in[1], ta, tb); }, {a, b});
        }
}

TEST(OpsNN, MatmulForwardValuesAndStridedInput) {
    // (2,3) @ (3,2) by hand, a given as a transposed view (non-contiguous).
    Tensor at = Tensor::from_vector({3, 2}, {1, 4, 2, 5, 3, 6});  // a = [[1,2,3],[4,5,6]]
    Tensor b = Tensor::from_vector({3, 2}, {1, 0, 0, 1, 1, 1});
    Tensor c = matmul(at.transpose(0, 1), b);
    EXPECT_EQ(c.to_vector(), (std::vector<float>{4, 5, 10, 11}));
    Rng rng(13);
    expect_gradients_match([](const Ins& in) { return matmul(in[0].transpose(-1, -2), in[1]); },
                           {randn({2, 3, 4}, rng), randn({2, 3, 5}, rng)});
}

TEST(OpsNN, MatmulGradOnlyOneInput) {
    Rng rng(14);
    Tensor w = randn({4, 5}, rng);  // constant
    expect_gradients_match([=](const Ins& in) { return matmul(in[0], w); }, {randn({2, 3, 4}, rng)});
    Tensor x = randn({2, 3, 4}, rng);
    expect_gradients_match([=](const Ins& in) { return matmul(x, in[0], false, true); }, {randn({5, 4}, rng)});
}

TEST(OpsNN, MatmulErrors) {
    Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 5});
    std::string e = error_of([&] { matmul(a, b); });
    EXPECT_NE(e.find("inner dims"), std::string::npos) << e;
    EXPECT_THROW(matmul(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 4, 5})), Error);  // batch mismatch
    EXPECT_THROW(matmul(Tensor::zeros({3, 4}), Tensor::zeros({2, 4, 5})), Error);     // 3-D b, 2-D a
    EXPECT_THROW(matmul(Tensor::zeros({4}), Tensor::zeros({4, 5})), Error);           // 1-D
    EXPECT_NO_THROW(matmul(a, Tensor::zeros({5, 3}), false, true));
}

// ---- linear ----------------------------------------------------------------------------------

TEST(OpsNN, LinearWithAndWithoutBias) {
    Rng rng(20);
    expect_gradients_match([](const Ins& in) { return linear(in[0], in[1], in[2]); },
                           {randn({5, 4}, rng), randn({3, 4}, rng), randn({3}, rng)});
    expect_gradients_match([](const Ins& in) { return linear(in[0], in[1]); }, {randn({5, 4}, rng), randn({3, 4}, rng)});
}

TEST(OpsNN, Linear3D) {
    Rng rng(21);
    expect_gradients_match([](const Ins& in) { return linear(in[0], in[1], in[2]); },
                           {randn({2, 3, 6}, rng), randn({5, 6}, rng), randn({5}, rng)});
    Tensor y = linear(Tensor::ones({2, 3, 6}), Tensor::ones({5, 6}), Tensor::full({5}, 0.5f));
    EXPECT_EQ(y.shape(), Shape({2, 3, 5}));
    for (float v : y.to_vector()) EXPECT_FLOAT_EQ(v, 6.5f);
}

TEST(OpsNN, LinearErrors) {
    std::string e = error_of([] { linear(Tensor::zeros({2, 5}), Tensor::zeros({3, 4})); });
    EXPECT_NE(e.find("input features"), std::string::npos) << e;
    EXPECT_THROW(linear(Tensor::zeros({2, 4}), Tensor::zeros({3, 4}), Tensor::zeros({4})), Error);
    EXPECT_THROW(linear(Tensor::zeros({2, 4}), Tensor::zeros({4})), Error);
}

// ---- normalisation ---------------------------------------------------------------------------

TEST(OpsNN, LayerNormAffine) {
    Rng rng(30);
    expect_gradients_match([](const Ins& in) { return layer_norm(in[0], in[1], in[2]); },
                           {randn({2, 3, 7}, rng), randn({7}, rng), randn({7}, rng)});
}

TEST(OpsNN, LayerNormNoAffine) {
    Rng rng(31);
    expect_gradients_match([](const Ins& in) { return layer_norm(in[0], Tensor(), Tensor()); }, {randn({4, 9}, rng)});
    // weight only
    expect_gradients_match([](const Ins& in) { return layer_norm(in[0], in[1], Tensor()); },
                           {randn({3, 5}, rng), randn({5}, rng)});
}

TEST(OpsNN, LayerNormErrors) {
    EXPECT_THROW(layer_norm(Tensor::zeros({2, 4}), Tensor::ones({5}), Tensor()), Error);
    EXPECT_THROW(layer_norm(Tensor::zeros({2, 4}), Tensor(), Tensor::ones({3})), Error);
}

TEST(OpsNN, RmsNorm) {
    Rng rng(32);
    expect_gradients_match([](const Ins& in) { return rms_norm(in[0], in[1]); }, {randn({2, 3, 6}, rng), randn({6}, rng)});
    expect_gradients_match([](const Ins& in) { return rms_norm(in[0], Tensor()); }, {randn({3, 17}, rng)});
    EXPECT_THROW(rms_norm(Tensor::zeros({2, 4}), Tensor::ones({3})), Error);
}

// ---- softmax family --------------------------------------------------------------------------

TEST(OpsNN, Softmax) {
    Rng rng(40);
    expect_gradients_match([](const Ins& in) { return softmax(in[0]); }, {randn({2, 3, 5}, rng, 2.0f)});
    Tensor y = softmax(Tensor::from_vector({1, 3}, {1, 2, 3}));
    double s = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    EXPECT_NEAR(y.to_vector()[2], std::exp(3.0) / s, 1e-6);
}

TEST(OpsNN, LogSoftmax) {
    Rng rng(41);
    expect_gradients_match([](const Ins& in) { return log_softmax(in[0]); }, {randn({4, 6}, rng, 2.0f)});
}

TEST(OpsNN, CrossEntropyWithIgnored) {
    Rng rng(42);
    std::vector<int32_t> t = {1, -100, 4, 0, -100, 2};
    expect_gradients_match([=](const Ins& in) { return cross_entropy(in[0], t); }, {randn({2, 3, 5}, rng, 2.0f)});
    // value: mean over the 4 counted positions of -log_softmax at the target
    Tensor x = randn({6, 5}, rng);
    Tensor ls = log_softmax(x);
    std::vector<float> l = ls.to_vector();
    double want = 0;
    int n = 0;
    for (int r = 0; r < 6; r++)
        if (t[r] != -100) {
            want -= l[size_t(r * 5 + t[r])];
            n++;
        }
    EXPECT_NEAR(cross_entropy(x, t).item(), want / n, 1e-5);
    // custom ignore index
    std::vector<int32_t> t2 = {1, 7, 4, 0, 7, 2};
    EXPECT_NEAR(cross_entropy(x, t2, 7).item(), want / n, 1e-5);
}

TEST(OpsNN, CrossEntropyAllIgnored) {
    Rng rng(43);
    Tensor x = randn({3, 4}, rng);
    x.set_requires_grad(true);
    Tensor loss = cross_entropy(x, {-100, -100, -100});
    EXPECT_EQ(loss.item(), 0.0f);
    loss.backward();
    ASSERT_TRUE(x.grad().defined());
    for (float g : x.grad().to_vector()) EXPECT_EQ(g, 0.0f);
}

TEST(OpsNN, CrossEntropyErrors) {
    EXPECT_THROW(cross_entropy(Tensor::zeros({2, 4}), {1}), Error);         // count
    EXPECT_THROW(cross_entropy(Tensor::zeros({2, 4}), {1, 4}), Error);      // target == V
    EXPECT_THROW(cross_entropy(Tensor::zeros({2, 4}), {-1, 0}), Error);     // negative, not ignore
}

// ---- embedding -------------------------------------------------------------------------------

TEST(OpsNN, EmbeddingRepeatedIds) {
    Rng rng(50);
    std::vector<int32_t> ids = {3, 1, 3, 0, 3, 4};
    expect_gradients_match([=](const Ins& in) { return embedding(in[0], ids, Shape{2, 3}); }, {randn({5, 4}, rng)});
    Tensor w = randn({5, 4}, rng);
    Tensor e = embedding(w, ids, Shape{2, 3});
    EXPECT_EQ(e.shape(), Shape({2, 3, 4}));
    std::vector<float> ev = e.to_vector(), wv = w.to_vector();
    for (int n = 0; n < 6; n++)
        for (int j = 0; j < 4; j++) EXPECT_EQ(ev[size_t(n * 4 + j)], wv[size_t(ids[n] * 4 + j)]);
}

TEST(OpsNN, EmbeddingErrors) {
    Tensor w = Tensor::zeros({5, 3});
    std::string e = error_of([&] { embedding(w, {1, 7}, Shape{2}); });
    EXPECT_NE(e.find("id 7"), std::string::npos) << e;
    EXPECT_NE(e.find("V=5"), std::string::npos) << e;
    EXPECT_THROW(embedding(w, {-1}, Shape{1}), Error);
    EXPECT_THROW(embedding(w, {1, 2, 3}, Shape{2}), Error);  // ids / shape mismatch
    EXPECT_THROW(embedding(Tensor::zeros({5}), {1}, Shape{1}), Error);
}

TEST(OpsNN, EmbeddingBackwardDeterministicAcrossThreads) {
    Rng rng(51);
    const int64_t V = 37, D = 96, N = 4096;  // big enough to run the parallel scatter
    std::vector<int32_t> ids(static_cast<size_t>(N));
    for (auto& id : ids) id = int32_t(rng.below(uint64_t(V)));
    Tensor g = randn({N, D}, rng);
    std::vector<std::vector<float>> grads;
    for (int threads : {1, 2})
        with_threads(threads, [&] {
            Tensor w = randn({V, D}, rng);
            w.set_requires_grad(true);
            embedding(w, ids, Shape{N}).backward(g);
            grads.push_back(w.grad().to_vector());
        });
    EXPECT_EQ(grads[0], grads[1]);
}

// ---- dropout ---------------------------------------------------------------------------------

TEST(OpsNN, DropoutMaskAndGradient) {
    Rng rng(60);
    const float p = 0.3f;
    const uint64_t seed = 99;
    Tensor x = randn({4, 50}, rng);
    Tensor y = dropout(x, p, seed);
    std::vector<float> xv = x.to_vector(), yv = y.to_vector();
    int kept = 0;
    for (size_t i = 0; i < xv.size(); i++) {
        bool keep = hash_uniform(seed, i) >= p;
        kept += keep;
        EXPECT_FLOAT_EQ(yv[i], keep ? xv[i] / (1.0f - p) : 0.0f) << i;
    }
    EXPECT_NEAR(double(kept) / double(xv.size()), 0.7, 0.08);
    expect_gradients_match([=](const Ins& in) { return dropout(in[0], p, seed); }, {randn({3, 7}, rng)});
}

TEST(OpsNN, DropoutIdentityAndErrors) {
    Tensor x = Tensor::from_vector({3}, {1, 2, 3});
    EXPECT_EQ(dropout(x, 0.5f, 1, /*training=*/false).to_vector(), x.to_vector());
    EXPECT_EQ(dropout(x, 0.0f, 1).to_vector(), x.to_vector());
    EXPECT_THROW(dropout(x, 1.0f, 1), Error);
    EXPECT_THROW(dropout(x, -0.1f, 1), Error);
}

TEST(OpsNN, DropoutSameMaskForAnyThreadCount) {
    Rng rng(61);
    Tensor x = randn({300, 1000}, rng);  // above the parallel threshold
    std::vector<std::vector<float>> outs;
    for (int threads : {1, 2}) with_threads(threads, [&] { outs.push_back(dropout(x, 0.25f, 12345).to_vector()); });
    EXPECT_EQ(outs[0], outs[1]);
    EXPECT_NE(dropout(x, 0.25f, 12346).to_vector(), outs[0]);  // a different seed, a different mask
}

// The determinism promise (README): a run is bit-identical to itself for the same thread count.
// hippo's own kernels (LayerNorm here) are also bit-identical across thread counts; a GEMM through
// BLAS is not promised to be: OpenBLAS picks its kernel and blocking by thread count and by
// OPENBLAS_CORETYPE, so across thread counts Linear gradients agree to rounding only.
TEST(OpsNN, LayerNormGradsIdenticalAcrossThreads) {
    Rng rng(62);
    Tensor x = randn({512, 96}, rng), w = randn({96}, rng), b = randn({96}, rng), g = randn({512, 96}, rng);
    std::vector<std::vector<float>> res;
    for (int threads : {1, 2})
        with_threads(threads, [&] {
            for (Tensor* t : {&x, &w, &b}) {
                t->set_requires_grad(true);
                t->zero_grad();
            }
            layer_norm(x, w, b).backward(g);
            std::vector<float> all;
            for (Tensor* t : {&x, &w, &b}) {
                auto v = t->grad().to_vector();
                all.insert(all.end(), v.begin(), v.end());
            }
            res.push_back(all);
        });
    EXPECT_EQ(res[0], res[1]);
}

TEST(OpsNN, LinearGradsIdenticalForSameThreadCount) {
    Rng rng(63);
    Tensor x = randn({512, 96}, rng), w = randn({96}, rng), b = randn({96}, rng), W = randn({48, 96}, rng),
           bb = randn({48}, rng), g = randn({512, 48}, rng);
    std::vector<std::vector<float>> res;  // threads 1, 2, 1, 2
    for (int threads : {1, 2, 1, 2})
        with_threads(threads, [&] {
            for (Tensor* t : {&x, &w, &b, &W, &bb}) {
                t->set_requires_grad(true);
                t->zero_grad();
            }
            linear(layer_norm(x, w, b), W, bb).backward(g);
            std::vector<float> all;
            for (Tensor* t : {&x, &w, &b, &W, &bb}) {
                auto v = t->grad().to_vector();
                all.insert(all.end(), v.begin(), v.end());
            }
            res.push_back(all);
        });
    EXPECT_EQ(res[0], res[2]);
    EXPECT_EQ(res[1], res[3]);
    ASSERT_EQ(res[0].size(), res[1].size());
    for (size_t i = 0; i < res[0].size(); i++)
        ASSERT_NEAR(res[0][i], res[1][i], 1e-4 * (1.0 + std::fabs(res[0][i]))) << i;
}

// ---- PyTorch fixture -------------------------------------------------------------------------
// x = E[ids]; h = LayerNorm(x); h = Linear1(h); h = gelu_tanh(h); h = Linear2(h); r = x + h;
// n = RMSNorm(r); logits = n @ E^T; loss = cross_entropy(logits, targets, ignore_index).

namespace {
Tensor from_json(const nlohmann::json& j) {
    std::vector<int64_t> shape = j.at("shape").get<std::vector<int64_t>>();
    std::vector<float> data = j.at("data").get<std::vector<float>>();
    return Tensor::from_vector(Shape(shape), data);
}
}  // namespace

TEST(OpsNN, MatchesPyTorchBlockFixture) {
    std::ifstream f(std::string(HIPPO_TEST_DATA) + "/nn_block.json");
    ASSERT_TRUE(f.good()) << "missing tests/data/nn_block.json (run scripts/fixtures/make_nn_fixture.py)";
    nlohmann::json j = nlohmann::json::parse(f);
    const nlohmann::json& P = j.at("params");
    const nlohmann::json& G = j.at("grads");
    const int32_t ignore = j.at("ignore_index").get<int32_t>();
    std::vector<int32_t> ids = j.at("ids").at("data").get<std::vector<int32_t>>();
    Shape ids_shape(j.at("ids").at("shape").get<std::vector<int64_t>>());
    std::vector<int32_t> targets = j.at("targets").at("data").get<std::vector<int32_t>>();
    const float ln_eps = j.at("ln_eps").get<float>(), rms_eps = j.at("rms_eps").get<float>();

    const char* names[] = {"E", "ln_w", "ln_b", "W1", "b1", "W2", "b2", "rms_w"};
    std::map<std::string, Tensor> p;
    for (const char* n : names) {
        p[n] = from_json(P.at(n));
        p[n].set_requires_grad(true);
    }
    Tensor x = embedding(p["E"], ids, ids_shape);
    Tensor h = layer_norm(x, p["ln_w"], p["ln_b"], ln_eps);
    h = linear(h, p["W1"], p["b1"]);
    h = gelu_tanh(h);
    h = linear(h, p["W2"], p["b2"]);
    Tensor r = add(x, h);
    Tensor nrm = rms_norm(r, p["rms_w"], rms_eps);
    Tensor logits = matmul(nrm, p["E"], false, true);
    Tensor loss = cross_entropy(logits, targets, ignore);

    Tensor want_logits = from_json(j.at("logits"));
    ASSERT_EQ(logits.shape(), want_logits.shape());
    expect_close(logits.to_vector().data(), want_logits.to_vector().data(), logits.numel(), 1e-5, 1e-4, "logits");
    EXPECT_NEAR(loss.item(), j.at("loss").get<double>(), 1e-5 + 1e-4 * std::fabs(j.at("loss").get<double>()));

    loss.backward();
    for (const char* n : names) {
        Tensor want = from_json(G.at(n));
        ASSERT_TRUE(p[n].grad().defined()) << n;
        ASSERT_EQ(p[n].grad().shape(), want.shape()) << n;
        expect_close(p[n].grad().to_vector().data(), want.to_vector().data(), want.numel(), 1e-6, 1e-4,
                     (std::string("grad ") + n).c_str());
    }
}
