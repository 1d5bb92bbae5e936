// Synthetic task generators (h3.md 4.2 rules), text sources, data state for exact resume.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "common/check.h"
#include "data/source.h"
#include "data/synthetic.h"
#include "text/gpt2_tokenizer.h"

using namespace hippo;

TEST(SyntheticVocab, LexicographicIds) {
    auto v = synthetic_vocab(20);
    ASSERT_EQ(v.size(), 20u);
    EXPECT_EQ(v[0], ".");
    EXPECT_EQ(v[1], "0");
    EXPECT_EQ(v[2], "1");
    EXPECT_EQ(v[3], "10");
    EXPECT_EQ(v[10], "17");
    EXPECT_EQ(v[11], "2");
    EXPECT_EQ(v[18], "9");
    EXPECT_EQ(v[19], "=>");
    auto w = synthetic_vocab(10);
    EXPECT_EQ(w[0], ".");
    EXPECT_EQ(w[1], "0");
    EXPECT_EQ(w[8], "7");
    EXPECT_EQ(w[9], "=>");
}

TEST(Synthetic, InductionHeadRules) {
    SyntheticTask t = SyntheticTask::defaults("induction_head");
    EXPECT_EQ(t.vocab_size, 20);
    EXPECT_EQ(t.seq_len, 30);
    SyntheticData d = make_synthetic(t, 0);
    ASSERT_EQ(d.train.n, 5000);
    ASSERT_EQ(d.test.n, 500);
    ASSERT_EQ(d.train.len, 31);
    const int32_t pre = 19;
    for (int split = 0; split < 2; split++) {
        const SeqDataset& s = split == 0 ? d.train : d.test;
        for (int64_t r = 0; r < s.n; r++) {
            const int32_t* in = s.inputs.data() + r * s.len;
            const int32_t* tg = s.targets.data() + r * s.len;
            ASSERT_EQ(in[30], pre);
            int prefixes = 0;
            int64_t pos = -1;
            for (int i = 0; i < 30; i++) {
                if (in[i] == pre) {
                    prefixes++;
                    pos = i;
                } else {
                    ASSERT_GE(in[i], 1);
                    ASSERT_LE(in[i], 18);
                }
            }
            ASSERT_EQ(prefixes, 1);
            ASSERT_LE(pos, 27);
            ASSERT_EQ(tg[30], in[pos + 1]);  // the answer follows the earlier prefix
            for (int i = 0; i < 30; i++) {
                if (split == 0) ASSERT_EQ(tg[i], in[i + 1]);  // train: full next-token targets
                else ASSERT_EQ(tg[i], kIgnoreIndex);          // test: only the final position
            }
        }
    }
}

TEST(Synthetic, AssocRecallRules) {
    SyntheticTask t = SyntheticTask::defaults("assoc_recall");
    EXPECT_EQ(t.vocab_size, 10);
    EXPECT_EQ(t.seq_len, 20);
    SyntheticData d = make_synthetic(t, 0);
    ASSERT_EQ(d.train.len, 22);  // 10 pairs + "=>" + key (the value is the last target)
    const int32_t pre = 9;
    std::set<int32_t> keys_seen, vals_seen;
    for (int split = 0; split < 2; split++) {
        const SeqDataset& s = split == 0 ? d.train : d.test;
        for (int64_t r = 0; r < s.n; r++) {
            const int32_t* in = s.inputs.data() + r * s.len;
            const int32_t* tg = s.targets.data() + r * s.len;
            std::map<int32_t, int32_t> m;
            for (int i = 0; i < 10; i++) {
                int32_t k = in[2 * i], v = in[2 * i + 1];
                ASSERT_GE(k, 1);
                ASSERT_LE(k, 4);  // keys: the first half of "0".."7" = ids 1..4
                ASSERT_GE(v, 5);
                ASSERT_LE(v, 8);
                keys_seen.insert(k);
                vals_seen.insert(v);
                if (m.count(k)) {
                    ASSERT_EQ(m[k], v);  // one map per sequence
                }
                m[k] = v;
            }
            ASSERT_EQ(in[20], pre);
            ASSERT_TRUE(m.count(in[21]));  // the query key is present
            ASSERT_EQ(tg[21], m[in[21]]);
            for (int i = 0; i < 21; i++) {
                if (split == 0) ASSERT_EQ(tg[i], in[i + 1]);
                else ASSERT_EQ(tg[i], kIgnoreIndex);
            }
        }
    }
    EXPECT_EQ(keys_seen.size(), 4u);
    EXPECT_EQ(vals_seen.size(), 4u);
}

TEST(Synthetic, MqarRules) {
    SyntheticTask t = SyntheticTask::defaults("mqar");
    t.num_train = 200;
    t.num_test = 50;
    SyntheticData d = make_synthetic(t, 3);
    const int64_t K = t.num_pairs;
    ASSERT_EQ(d.train.len, 4 * K - 1);
    for (int64_t r = 0; r < d.test.n; r++) {
        const int32_t* in = d.test.inputs.data() + r * d.test.len;
        const int32_t* tg = d.test.targets.data() + r * d.test.len;
        std::map<int32_t, int32_t> m;
        for (int64_t i = 0; i < K; i++) {
            ASSERT_FALSE(m.count(in[2 * i]));  // distinct keys
            m[in[2 * i]] = in[2 * i + 1];
        }
        std::set<int32_t> queried;
        int answers = 0;
        for (int64_t i = 0; i < K; i++) {
            int32_t q = in[2 * K + 2 * i];
            ASSERT_TRUE(m.count(q));
            queried.insert(q);
            ASSERT_EQ(tg[2 * K + 2 * i], m[q]);
        }
        for (int64_t i = 0; i < d.test.len; i++) answers += tg[i] != kIgnoreIndex;
        EXPECT_EQ(answers, K);
        EXPECT_EQ(int64_t(queried.size()), K);
    }
}

TEST(Synthetic, DeduplicatedAndSeeded) {
    for (const char* kind : {"induction_head", "assoc_recall"}) {
        SyntheticTask t = SyntheticTask::defaults(kind);
        SyntheticData a = make_synthetic(t, 0), b = make_synthetic(t, 0), c = make_synthetic(t, 1);
        EXPECT_EQ(a.train.inputs, b.train.inputs) << kind;
        EXPECT_EQ(a.test.targets, b.test.targets) << kind;
        EXPECT_NE(a.train.inputs, c.train.inputs) << kind;
        std::set<std::vector<int32_t>> rows;
        for (const SeqDataset* s : {&a.train, &a.test})
            for (int64_t r = 0; r < s->n; r++) {
                std::vector<int32_t> row(s->inputs.begin() + r * s->len, s->inputs.begin() + (r + 1) * s->len);
                // the full sequence is input + final target
                row.push_back(s->targets[size_t((r + 1) * s->len - 1)]);
                rows.insert(row);
            }
        EXPECT_EQ(rows.size(), 5500u) << kind;
    }
}

TEST(Synthetic, BadOptions) {
    EXPECT_THROW(make_data_source("copying", 0), Error);
    EXPECT_THROW(make_data_source("assoc_recall:colour=3", 0), Error);
    SyntheticTask t = SyntheticTask::defaults("mqar");
    t.num_pairs = 100;
    EXPECT_THROW(make_synthetic(t, 0), Error);
    auto s = make_data_source("assoc_recall:vocab=20,seq_len=40,num_train=100,num_test=10", 0);
    EXPECT_EQ(s->vocab_size(), 20);
    EXPECT_EQ(s->fixed_seq_len(), 42);
}

TEST(DataSource, SyntheticStateResumesExactly) {
    auto a = make_data_source("induction_head:num_train=100,num_test=10", 5);
    for (int i = 0; i < 7; i++) a->next_train_batch(32, 0);  // crosses two epochs
    auto st = a->state();
    std::vector<Batch> ref;
    for (int i = 0; i < 5; i++) ref.push_back(a->next_train_batch(32, 0));
    auto b = make_data_source("induction_head:num_train=100,num_test=10", 5);
    b->set_state(st);
    for (int i = 0; i < 5; i++) {
        Batch x = b->next_train_batch(32, 0);
        EXPECT_EQ(x.ids, ref[size_t(i)].ids);
        EXPECT_EQ(x.targets, ref[size_t(i)].targets);
    }
    // Every train row appears once per epoch.
    auto c = make_data_source("induction_head:num_train=64,num_test=10", 5);
    Batch e = c->next_train_batch(64, 0);
    std::set<std::vector<int32_t>> rows;
    for (int r = 0; r < 64; r++) rows.insert(std::vector<int32_t>(e.ids.begin() + r * 31, e.ids.begin() + (r + 1) * 31));
    EXPECT_EQ(rows.size(), 64u);
}

namespace {
std::string temp_text(const std::string& name, size_t n) {
    auto p = std::filesystem::temp_directory_path() / name;
    std::ofstream f(p, std::ios::binary);
    for (size_t i = 0; i < n; i++) f.put(char('a' + (i * 7 + i / 13) % 26));
    return p.string();
}
}  // namespace

TEST(DataSource, TextWindowsSplitsAndState) {
    const std::string p = temp_text("hippo_test_text.txt", 20000);
    auto s = make_data_source("text:" + p, 1);
    EXPECT_EQ(s->vocab_size(), 256);
    EXPECT_FALSE(s->synthetic());
    Batch b = s->next_train_batch(4, 64);
    ASSERT_EQ(b.ids.size(), 256u);
    for (int r = 0; r < 4; r++)
        for (int t = 0; t < 63; t++) EXPECT_EQ(b.targets[size_t(r * 64 + t)], b.ids[size_t(r * 64 + t + 1)]);
    auto st = s->state();
    Batch n1 = s->next_train_batch(4, 64);
    auto s2 = make_data_source("text:" + p, 1);
    s2->set_state(st);
    EXPECT_EQ(s2->next_train_batch(4, 64).ids, n1.ids);
    auto other = make_data_source("text:" + p, 2);
    EXPECT_NE(other->next_train_batch(4, 64).ids, b.ids);
    // val: bytes [18000, 19000): 15 windows of 64 (+1 target byte), consecutive.
    auto val = s->eval_batches("val", 4, 64, 0);
    int64_t windows = 0;
    for (auto& x : val) windows += x.B;
    EXPECT_EQ(windows, (1000 - 1) / 64);
    EXPECT_EQ(val[0].ids[0], int32_t('a' + (18000 * 7 + 18000 / 13) % 26));
    EXPECT_EQ(s->eval_batches("test", 4, 64, 2).size(), 2u);
    EXPECT_THROW(s->eval_batches("train", 4, 64, 0), Error);
}

TEST(DataSource, MissingCorpusNamesFileAndFetchCommand) {
    setenv("HIPPO_DATA", "/nonexistent/hippo-data", 1);
    try {
        make_data_source("moby_dick", 0);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("/nonexistent/hippo-data/text/moby_dick.txt"), std::string::npos) << m;
        EXPECT_NE(m.find("scripts/fetch_data.sh moby_dick"), std::string::npos) << m;
    }
    unsetenv("HIPPO_DATA");
    EXPECT_THROW(make_data_source("text:/nonexistent/file.txt", 0), Error);
    EXPECT_THROW(make_data_source("wikitext", 0), Error);
}

// --tokenizer gpt2: text windows are GPT-2 ids whose decoded bytes are a piece of the file.
TEST(TextData, Gpt2Tokens) {
    if (!std::filesystem::exists(Gpt2Tokenizer::default_vocab_dir() + "/encoder.json"))
        GTEST_SKIP() << "GPT-2 files not fetched (scripts/fetch_tokenizer.sh)";
    std::string text;
    for (int i = 0; i < 300; i++) text += "Call me Ishmael. Some years ago, never mind how long precisely. " + std::to_string(i) + "\n";
    std::string path = (std::filesystem::temp_directory_path() / "hippo_gpt2_text.txt").string();
    std::ofstream(path) << text;
    auto src = make_data_source("text:" + path, 3, "gpt2");
    EXPECT_EQ(src->vocab_size(), 50257);
    Batch b = src->next_train_batch(2, 16);
    Gpt2Tokenizer tok = Gpt2Tokenizer::load();
    for (int64_t r = 0; r < 2; r++) {
        std::vector<int32_t> row(b.ids.begin() + r * 16, b.ids.begin() + (r + 1) * 16);
        EXPECT_NE(text.find(tok.decode(row)), std::string::npos);
        EXPECT_EQ(b.targets[size_t(r * 16)], b.ids[size_t(r * 16 + 1)]);
    }
    EXPECT_THROW(make_data_source("text:" + path, 3, "words"), Error);
    EXPECT_THROW(make_data_source("assoc_recall", 3, "gpt2"), Error);
    std::filesystem::remove(path);
}
