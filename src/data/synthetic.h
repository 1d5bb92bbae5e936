// The synthetic recall tasks of the H3 paper (h3.md section 4.2, following safari's
// src/dataloaders/synthetics.py rule for rule; the random stream is hippo's xoshiro, not numpy's), plus
// a harder multi-query associative recall (MQAR).
//
// Vocabulary: vocab_size V counts two special tokens, "." (noop) and "=>" (copy / query prefix); the
// regular tokens are the strings "0" .. "V-3". Token ids are the indices in the lexicographically
// sorted list of all V strings, so "." = 0, the regular tokens are ids 1 .. V-2 in string order
// ("0", "1", "10", "11", ..., "9"), and "=>" = V-1.
//
// induction_head (default V = 20, seq_len = 30): draw seq_len regular tokens uniformly, append "=>";
//   pick pos uniformly in [0, seq_len - 3], set token[pos] = "=>" (token[pos+1] = X stays), append X.
//   seq_len + 2 tokens; input = tokens[0 : seq_len+1], target = tokens[1 : seq_len+2].
// assoc_recall (default V = 10, seq_len = 20, the paper's "h3-vs10"): keys = the first half of the
//   sorted regular tokens, values = the second half. Per sequence a fresh map key -> value (uniform,
//   not necessarily a bijection); seq_len/2 pairs "k v" with keys drawn with replacement; then "=>",
//   a query key drawn uniformly among the distinct keys present, and its value. seq_len + 3 tokens.
// mqar (ours; defaults V = 40, num_pairs = 8): keys/values as above; K = num_pairs distinct keys
//   (drawn without replacement) each with a uniform value; the prefix "k1 v1 ... kK vK" is followed by
//   all K keys again in a random order, each followed by its value: 4K tokens. Test targets keep
//   every answer position (the value after each query key); accuracy counts all of them.
//
// Data set: num_train (5000) + num_test (500) distinct sequences (duplicates are redrawn, so train and
// test never overlap); the first num_train are train. Train targets are the full next-token sequence;
// test targets are ignore_index (-100) except the answer position(s). The generator is seeded from
// the run's seed: another seed gives other data.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hippo {

constexpr int32_t kIgnoreIndex = -100;

struct SyntheticTask {
    std::string kind;        // induction_head | assoc_recall | mqar
    int64_t vocab_size = 0;  // V, including the 2 special tokens
    int64_t seq_len = 0;     // induction_head / assoc_recall: input_seq_len as in safari
    int64_t num_pairs = 8;   // mqar only
    int64_t num_train = 5000, num_test = 500;

    // Defaults for `kind`; hippo::Error for an unknown kind.
    static SyntheticTask defaults(const std::string& kind);
    int64_t input_len() const;  // length of one input (= target) row
};

// "." , "0", "1", "10", ... , "=>": the sorted token strings of a V-token synthetic vocabulary.
std::vector<std::string> synthetic_vocab(int64_t vocab_size);

// Rows of equal length.
struct SeqDataset {
    int64_t n = 0, len = 0;
    std::vector<int32_t> inputs, targets;  // (n, len)
};

struct SyntheticData {
    SeqDataset train, test;
};

SyntheticData make_synthetic(const SyntheticTask& task, uint64_t seed);

}  // namespace hippo
