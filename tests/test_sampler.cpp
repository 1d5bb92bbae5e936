#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "common/check.h"
#include "models/sampler.h"

using namespace hippo;

TEST(Sampler, GreedyAndTopOneAreArgmax) {
    std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f};
    Rng rng(1);
    SamplingOptions g;
    g.greedy = true;
    EXPECT_EQ(sample_token(logits.data(), 4, g, {}, rng), 1);
    SamplingOptions k1;
    k1.top_k = 1;
    EXPECT_EQ(sample_token(logits.data(), 4, k1, {}, rng), 1);
    SamplingOptions t0;
    t0.temperature = 0;
    EXPECT_EQ(sample_token(logits.data(), 4, t0, {}, rng), 1);
}

TEST(Sampler, PaddedVocabularyIsNeverSampled) {
    std::vector<float> logits = {0.0f, 0.0f, 100.0f, 100.0f};  // entries 2, 3 are padding
    Rng rng(2);
    for (int i = 0; i < 200; i++) EXPECT_LT(sample_token(logits.data(), 2, SamplingOptions{}, {}, rng), 2);
}

TEST(Sampler, FollowsTheSoftmaxDistribution) {
    std::vector<float> logits = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};  // p = 0.1 .. 0.4
    Rng rng(3);
    std::map<int, int> count;
    const int n = 40000;
    for (int i = 0; i < n; i++) count[sample_token(logits.data(), 4, SamplingOptions{}, {}, rng)]++;
    for (int t = 0; t < 4; t++) EXPECT_NEAR(double(count[t]) / n, 0.1 * (t + 1), 0.01) << t;
}

TEST(Sampler, TopKTopPAndTemperature) {
    std::vector<float> logits = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};
    Rng rng(4);
    SamplingOptions k2;
    k2.top_k = 2;  // only tokens 3 and 2 remain, in ratio 4:3
    std::map<int, int> c;
    for (int i = 0; i < 20000; i++) c[sample_token(logits.data(), 4, k2, {}, rng)]++;
    EXPECT_EQ(c[0] + c[1], 0);
    EXPECT_NEAR(double(c[3]) / 20000, 4.0 / 7.0, 0.015);
    SamplingOptions p;
    p.top_p = 0.65f;  // 0.4 + 0.3 = 0.7 >= 0.65: tokens 3 and 2
    c.clear();
    for (int i = 0; i < 2000; i++) c[sample_token(logits.data(), 4, p, {}, rng)]++;
    EXPECT_EQ(c[0] + c[1], 0);
    EXPECT_GT(c[2], 0);
    SamplingOptions cold;
    cold.temperature = 0.05f;  // nearly greedy
    c.clear();
    for (int i = 0; i < 500; i++) c[sample_token(logits.data(), 4, cold, {}, rng)]++;
    EXPECT_GT(c[3], 490);
}

TEST(Sampler, RepetitionPenaltyAndDeterminism) {
    std::vector<float> logits = {1.0f, 1.1f};
    Rng rng(5);
    SamplingOptions g;
    g.greedy = true;
    g.repetition_penalty = 2.0f;  // token 1 was seen: 1.1 / 2 < 1.0
    EXPECT_EQ(sample_token(logits.data(), 2, g, {1}, rng), 0);
    Rng a(9), b(9);
    std::vector<float> l = {0.3f, 0.2f, 0.1f, 0.4f, 0.0f};
    for (int i = 0; i < 50; i++) EXPECT_EQ(sample_token(l.data(), 5, {}, {}, a), sample_token(l.data(), 5, {}, {}, b));
    SamplingOptions bad;
    bad.top_p = 0;
    EXPECT_THROW(check_sampling_options(bad), Error);
}
