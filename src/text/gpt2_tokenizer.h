// GPT-2 byte-level BPE tokenizer (OpenAI's encoder.json + vocab.bpe, 50257 tokens; also loadable
// from the equivalent r50k_base.tiktoken rank file). Gives exactly the ids of the reference
// tokenizers (js-tiktoken, gpt-tokenizer, gpt-3-encoder; tests/test_tokenizer.cpp and
// scripts/tokenizer_compare.sh check this on edge cases and whole books).
//
// Encoding = pre-tokenisation with GPT-2's regex
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (hand-written matcher over code points, text/unicode.h: \p{L}/\p{N} from Unicode 15.0, \s as in
// JavaScript), then BPE on each piece's UTF-8 bytes: repeatedly merge the adjacent pair of lowest
// merge rank (leftmost first on ties) until no pair is mergeable. Pieces are cached.
//
// Invalid UTF-8: the input is bytes, not a string. A byte that is not part of a well-formed UTF-8
// sequence counts as one "other" character (the class of U+FFFD, which is what a JS reference sees
// after decoding), so piece boundaries are those of the reference on the lossily decoded text, but
// the piece's own bytes are encoded (byte-level BPE covers every byte). Hence decode(encode(x)) == x
// for ANY byte string x; for valid UTF-8 the ids equal the reference's.
//
// Special tokens: encode() treats "<|endoftext|>" in the input as plain text (as gpt-3-encoder and
// js-tiktoken's encode(s, [], []) do); append eot() yourself. decode() turns id 50256 into that text.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace hippo {

class Gpt2Tokenizer {
public:
    Gpt2Tokenizer() = default;

    // OpenAI's original files. Checks structure (256 byte tokens, every merge's parts and result
    // present, ids dense); any problem is a hippo::Error naming the file.
    static Gpt2Tokenizer from_gpt2_files(const std::string& encoder_json, const std::string& vocab_bpe);
    // tiktoken rank file (lines "base64(bytes) rank"); "<|endoftext|>" gets the next id (50256).
    // Merge priority is the rank of the merged token (tiktoken's rule; identical ids for GPT-2).
    static Gpt2Tokenizer from_tiktoken(const std::string& path);
    // `path`: a directory holding encoder.json + vocab.bpe (preferred) or r50k_base.tiktoken, or a
    // .tiktoken file. Empty: default_vocab_dir(). Error text tells how to fetch the files.
    static Gpt2Tokenizer load(const std::string& path = "");
    // $HIPPO_DATA/gpt2, else $HOME/.cache/hippo/gpt2 (where scripts/fetch_tokenizer.sh puts them).
    static std::string default_vocab_dir();

    // Not thread-safe (the piece cache is updated): use one tokenizer per thread.
    std::vector<int32_t> encode(std::string_view bytes);
    void encode(std::string_view bytes, std::vector<int32_t>& out);  // appends
    // Throws hippo::Error for an id outside [0, vocab_size()).
    std::string decode(std::span<const int32_t> ids) const;
    const std::string& token_bytes(int32_t id) const;  // the bytes of one token (checked)

    int32_t vocab_size() const { return int32_t(tokens_.size()); }  // 50257
    int32_t eot() const { return eot_; }                            // 50256
    size_t cache_size() const { return cache_.size(); }
    void set_cache_limit(size_t n) { cache_limit_ = n; }             // 0: no cache

    // The pre-tokeniser alone (exposed for tests): splits `s` into the regex's matches.
    static std::vector<std::string_view> pretokenize(std::string_view s);

private:
    void finalize();  // builds the byte table and checks consistency
    void bpe(std::string_view piece, std::vector<int32_t>& out) const;
    void bpe_long(std::string_view piece, std::vector<int32_t>& out) const;

    struct Merge {
        uint32_t rank;
        int32_t id;
    };
    static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

    std::vector<std::string> tokens_;                    // id -> bytes
    int32_t byte_id_[256] = {};                          // byte -> id of its one-byte token
    std::unordered_map<uint64_t, Merge> merges_;         // (left id, right id) -> rank, merged id
    int32_t eot_ = -1;

    struct SvHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>()(s); }
    };
    std::unordered_map<std::string, std::vector<int32_t>, SvHash, std::equal_to<>> cache_;
    size_t cache_limit_ = 1 << 20;
};

// Incremental detokenizer for generation: push ids one at a time, get back only complete UTF-8
// characters (a multi-byte character split across tokens is held until its last byte arrives).
// Bytes that can never become valid UTF-8 are passed through as they are, so the concatenation of
// all push() results and finish() is exactly decode(all ids).
class Utf8StreamDecoder {
public:
    explicit Utf8StreamDecoder(const Gpt2Tokenizer& tok) : tok_(&tok) {}
    std::string push(int32_t id);
    std::string push_bytes(std::string_view bytes);
    std::string finish();  // whatever is still held (an incomplete sequence), raw
    size_t pending() const { return pending_.size(); }

private:
    const Gpt2Tokenizer* tok_;
    std::string pending_;
};

}  // namespace hippo
