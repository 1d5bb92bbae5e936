// Training / evaluation data behind one interface, selected by a SOURCE string:
//   induction_head | assoc_recall | mqar        the synthetic tasks (data/synthetic.h); options as
//                                               "assoc_recall:vocab=20,seq_len=40", "mqar:pairs=16,vocab=64",
//                                               also num_train=, num_test=
//   sotu | moby_dick | brown | gcide            a fetched corpus, $HIPPO_DATA/text/<name>.txt
//                                               (default cache ~/.cache/hippo; scripts/fetch_data.sh)
//   text:PATH                                   any plain file
// Text is byte-level (vocabulary 256), split by contiguous ranges 90 / 5 / 5 % into train / val /
// test. Training batches are random windows of seq_len + 1 bytes drawn from the train range (seeded);
// evaluation batches are consecutive non-overlapping windows from the start of the range.
// Synthetic training walks the 5000 train sequences in a fresh random order each epoch; evaluation
// uses the test set (the "val" split is the test set too, as in safari).
//
// Exact resume: state() returns the loader position and RNG words, set_state() restores them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace hippo {

struct Batch {
    int64_t B = 0, L = 0;
    std::vector<int32_t> ids, targets;  // (B, L); targets may hold kIgnoreIndex (-100)
    std::vector<int32_t> labels;        // (B): per-sequence labels (classification); empty otherwise
};

class DataSource {
public:
    virtual ~DataSource() = default;
    virtual std::string describe() const = 0;
    virtual int64_t vocab_size() const = 0;
    virtual bool synthetic() const = 0;
    // The sequence length of every batch (synthetic), or 0 (text: the caller chooses).
    virtual int64_t fixed_seq_len() const = 0;
    Batch next_train_batch(int64_t B, int64_t L) { return next_train_rows(B, L, 0, B); }
    // Rows [row_begin, row_end) of the next global batch of B rows (a data-parallel rank's shard):
    // the loader draws and advances past the whole global batch, so ranks asking for different rows
    // stay at the same position, and the global batch does not depend on how it is split.
    virtual Batch next_train_rows(int64_t B, int64_t L, int64_t row_begin, int64_t row_end) = 0;
    // split: "val" or "test". max_batches 0 = the whole split.
    virtual std::vector<Batch> eval_batches(const std::string& split, int64_t B, int64_t L, int64_t max_batches) const = 0;
    virtual std::vector<int64_t> state() const = 0;
    virtual void set_state(const std::vector<int64_t>& s) = 0;
};

// The data cache directory: $HIPPO_DATA, else $HOME/.cache/hippo.
std::string data_cache_dir();
// Named corpora and their file names under data_cache_dir()/text.
std::vector<std::string> corpus_names();
// Path of a named corpus or of text:PATH; hippo::Error when the file does not exist (naming it and
// the fetch command).
std::string corpus_path(const std::string& spec);

// tokenizer (text sources only): "bytes" (vocabulary 256) or "gpt2" (GPT-2 BPE, vocabulary 50257,
// files from scripts/fetch_tokenizer.sh).
std::unique_ptr<DataSource> make_data_source(const std::string& spec, uint64_t seed,
                                             const std::string& tokenizer = "bytes");

}  // namespace hippo
