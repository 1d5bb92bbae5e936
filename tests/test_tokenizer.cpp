// GPT-2 BPE tokenizer (text/gpt2_tokenizer.h).
//  - Pre-tokeniser and Unicode classes: always run (no vocabulary needed).
//  - Ids: compared with tests/data/gpt2_tokenizer_cases.json, written by
//    `node scripts/tokenizer_reference.js cases` (js-tiktoken, gpt-tokenizer and gpt-3-encoder all
//    agree on every case). Needs the vocabulary in the cache (scripts/fetch_tokenizer.sh); skipped
//    with a message otherwise.
//  - Whole books: compared with $CACHE/text/<book>.gpt2.ids written by scripts/tokenizer_compare.sh;
//    skipped when absent.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "io/file.h"
#include "text/gpt2_tokenizer.h"
#include "text/unicode.h"

using namespace hippo;

namespace {

bool exists(const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0;
}

std::string cache_dir() {
    const char* d = std::getenv("HIPPO_DATA");
    if (d && *d) return d;
    const char* h = std::getenv("HOME");
    return std::string(h ? h : ".") + "/.cache/hippo";
}

// Loaded once per test binary (1 MB JSON); nullptr when the files are not fetched.
Gpt2Tokenizer* tok_gpt2() {
    static std::optional<Gpt2Tokenizer> t;
    static bool tried = false;
    if (!tried) {
        tried = true;
        std::string d = Gpt2Tokenizer::default_vocab_dir();
        if (exists(d + "/encoder.json") && exists(d + "/vocab.bpe"))
            t = Gpt2Tokenizer::from_gpt2_files(d + "/encoder.json", d + "/vocab.bpe");
    }
    return t ? &*t : nullptr;
}
Gpt2Tokenizer* tok_tiktoken() {
    static std::optional<Gpt2Tokenizer> t;
    static bool tried = false;
    if (!tried) {
        tried = true;
        std::string p = Gpt2Tokenizer::default_vocab_dir() + "/r50k_base.tiktoken";
        if (exists(p)) t = Gpt2Tokenizer::from_tiktoken(p);
    }
    return t ? &*t : nullptr;
}

#define NEED_VOCAB(t)                                                                                  \
    if (!(t))                                                                                          \
        GTEST_SKIP() << "GPT-2 vocabulary not in " << Gpt2Tokenizer::default_vocab_dir()               \
                     << " (run scripts/fetch_tokenizer.sh)";

std::vector<std::string> split(std::string_view s) {
    std::vector<std::string> out;
    for (auto p : Gpt2Tokenizer::pretokenize(s)) out.emplace_back(p);
    return out;
}

std::string load(const std::string& p) {
    auto b = read_file(p);
    return std::string(b.begin(), b.end());
}

}  // namespace

TEST(Unicode, Classes) {
    using namespace hippo::text;
    EXPECT_EQ(char_class('a'), kLetter);
    EXPECT_EQ(char_class('7'), kNumber);
    EXPECT_EQ(char_class(' '), kSpace);
    EXPECT_EQ(char_class('!'), kOther);
    EXPECT_EQ(char_class(0x00E9), kLetter);   // é
    EXPECT_EQ(char_class(0x4E2D), kLetter);   // 中 (inside a First/Last range)
    EXPECT_EQ(char_class(0xAC00), kLetter);   // Hangul syllable range start
    EXPECT_EQ(char_class(0x0663), kNumber);   // Arabic-Indic 3
    EXPECT_EQ(char_class(0x216B), kNumber);   // Roman numeral twelve (Nl)
    EXPECT_EQ(char_class(0x00BD), kNumber);   // ½ (No)
    EXPECT_EQ(char_class(0x0301), kOther);    // combining acute (Mn)
    EXPECT_EQ(char_class(0x093F), kOther);    // Devanagari vowel sign (Mc)
    EXPECT_EQ(char_class(0x00A0), kSpace);    // JS \s
    EXPECT_EQ(char_class(0xFEFF), kSpace);    // JS \s
    EXPECT_EQ(char_class(0x0085), kOther);    // NEL: not in JS \s
    EXPECT_EQ(char_class(0x1F600), kOther);   // emoji
    EXPECT_EQ(char_class(0x20000), kLetter);  // CJK ext. B
    EXPECT_EQ(char_class(0x1D400), kLetter);  // math bold A
    EXPECT_EQ(char_class(0x110000), kOther);
}

TEST(Unicode, Utf8Decode) {
    using namespace hippo::text;
    uint32_t cp;
    auto dec = [&](std::string s) { return utf8_decode(reinterpret_cast<const uint8_t*>(s.data()), s.size(), &cp); };
    EXPECT_EQ(dec("\xE2\x82\xAC"), 3u);
    EXPECT_EQ(cp, 0x20ACu);
    EXPECT_EQ(dec("\xF0\x9F\x98\x80"), 4u);
    EXPECT_EQ(cp, 0x1F600u);
    EXPECT_EQ(dec("\xC0\xAF"), 1u);  // overlong
    EXPECT_EQ(cp, kInvalidCp);
    EXPECT_EQ(dec("\xED\xA0\x80"), 1u);  // surrogate
    EXPECT_EQ(dec("\xF4\x90\x80\x80"), 1u);  // > U+10FFFF
    EXPECT_EQ(dec("\xE2\x82"), 1u);  // truncated
    EXPECT_EQ(dec("\x80"), 1u);
    EXPECT_EQ(cp, kInvalidCp);
}

TEST(Pretokenize, MatchesGpt2Regex) {
    using V = std::vector<std::string>;
    EXPECT_EQ(split("Hello world"), (V{"Hello", " world"}));
    EXPECT_EQ(split("Hello   world  "), (V{"Hello", "  ", " world", "  "}));
    EXPECT_EQ(split("I'm IT'S"), (V{"I", "'m", " IT", "'", "S"}));
    EXPECT_EQ(split("a  \n  b"), (V{"a", "  \n ", " b"}));
    EXPECT_EQ(split("x\n\ny"), (V{"x", "\n", "\n", "y"}));
    EXPECT_EQ(split("abc123def"), (V{"abc", "123", "def"}));
    EXPECT_EQ(split(" 42!? ok"), (V{" 42", "!?", " ok"}));
    EXPECT_EQ(split("don't"), (V{"don", "'t"}));
    EXPECT_EQ(split(" 's"), (V{" '", "s"}));
    EXPECT_EQ(split("e\xCC\x81"), (V{"e", "\xCC\x81"}));  // letter, then combining mark (other)
    EXPECT_EQ(split(""), V{});
    EXPECT_EQ(split("   "), (V{"   "}));
}

TEST(Pretokenize, InvalidBytesAreOtherCharacters) {
    // Each invalid byte behaves like U+FFFD (class other): same piece structure.
    std::string raw = "ab\xFF\xFE cd \x80x \xE2\x82 y\xC0";
    std::string repl;
    for (size_t i = 0; i < raw.size();) {
        uint32_t cp;
        size_t l = text::utf8_decode(reinterpret_cast<const uint8_t*>(raw.data()) + i, raw.size() - i, &cp);
        repl += cp == text::kInvalidCp ? std::string("\xEF\xBF\xBD") : raw.substr(i, l);
        i += l;
    }
    auto a = split(raw), b = split(repl);
    ASSERT_EQ(a.size(), b.size());
    std::string cat;
    for (auto& p : a) cat += p;
    EXPECT_EQ(cat, raw);
}

TEST(Tokenizer, ReferenceCases) {
    Gpt2Tokenizer* tok = tok_gpt2();
    NEED_VOCAB(tok);
    EXPECT_EQ(tok->vocab_size(), 50257);
    EXPECT_EQ(tok->eot(), 50256);
    auto j = nlohmann::json::parse(load(std::string(HIPPO_TEST_DATA) + "/gpt2_tokenizer_cases.json"));
    ASSERT_GT(j.size(), 50u);
    for (auto& c : j) {
        std::string text = c["text"].get<std::string>();
        std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
        EXPECT_EQ(tok->encode(text), want) << "text: " << c["text"].dump();
        EXPECT_EQ(tok->decode(want), text);
    }
}

TEST(Tokenizer, TiktokenFileGivesSameIds) {
    Gpt2Tokenizer *a = tok_gpt2(), *b = tok_tiktoken();
    NEED_VOCAB(a && b);
    ASSERT_EQ(a->vocab_size(), b->vocab_size());
    for (int32_t id = 0; id < a->vocab_size(); id++) ASSERT_EQ(a->token_bytes(id), b->token_bytes(id)) << id;
    auto j = nlohmann::json::parse(load(std::string(HIPPO_TEST_DATA) + "/gpt2_tokenizer_cases.json"));
    for (auto& c : j) {
        std::string text = c["text"].get<std::string>();
        EXPECT_EQ(b->encode(text), c["ids"].get<std::vector<int32_t>>()) << c["text"].dump();
    }
}

TEST(Tokenizer, RandomBytesRoundTrip) {
    Gpt2Tokenizer* tok = tok_gpt2();
    NEED_VOCAB(tok);
    std::mt19937 rng(7);
    const char* alphabet[] = {"a", "Z", " ", "  ", "\n", "'", "s", "9", "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80",
                              "\xFF", "\x80", "\xE2\x82", "\xC0", "!", "\t", "\xC2\xA0", "'ll", "\xED\xA0\x80"};
    for (int trial = 0; trial < 400; trial++) {
        std::string s;
        int n = int(rng() % 60);
        for (int i = 0; i < n; i++) {
            if (rng() % 4 == 0) s.push_back(char(rng() & 0xFF));
            else s += alphabet[rng() % (sizeof alphabet / sizeof *alphabet)];
        }
        std::vector<int32_t> ids = tok->encode(s);
        ASSERT_EQ(tok->decode(ids), s);
        tok->set_cache_limit(0);
        ASSERT_EQ(tok->encode(s), ids) << "cache changed the result";
        tok->set_cache_limit(1 << 20);
    }
    // Every byte value alone and a long run (the O(n log n) BPE path).
    for (int b = 0; b < 256; b++) {
        std::string s(1, char(b));
        ASSERT_EQ(tok->decode(tok->encode(s)), s);
        std::string r(1000, char(b));
        ASSERT_EQ(tok->decode(tok->encode(r)), r);
    }
}

TEST(Tokenizer, DecodeRejectsBadIds) {
    Gpt2Tokenizer* tok = tok_gpt2();
    NEED_VOCAB(tok);
    std::vector<int32_t> bad = {1, 50257};
    EXPECT_THROW(tok->decode(bad), Error);
    std::vector<int32_t> neg = {-1};
    EXPECT_THROW(tok->decode(neg), Error);
    std::vector<int32_t> eot = {tok->eot()};
    EXPECT_EQ(tok->decode(eot), "<|endoftext|>");
}

TEST(Tokenizer, StreamDecoderEmitsWholeCharacters) {
    Gpt2Tokenizer* tok = tok_gpt2();
    NEED_VOCAB(tok);
    std::string text = "caf\xC3\xA9 \xF0\x9F\x98\x80\xF0\x9F\x8E\x89 \xE4\xB8\xAD\xE6\x96\x87 ok end \xE2\x82";
    std::vector<int32_t> ids = tok->encode(text);
    Utf8StreamDecoder dec(*tok);
    std::string all;
    for (int32_t id : ids) {
        std::string piece = dec.push(id);
        // Every emitted chunk is whole characters (the text is valid UTF-8 up to its last 2 bytes).
        {
            size_t i = 0;
            while (i < piece.size()) {
                uint32_t cp;
                i += text::utf8_decode(reinterpret_cast<const uint8_t*>(piece.data()) + i, piece.size() - i, &cp);
                EXPECT_NE(cp, text::kInvalidCp) << "partial character emitted";
            }
        }
        all += piece;
    }
    EXPECT_EQ(dec.pending(), 2u);  // the trailing truncated "\xE2\x82"
    all += dec.finish();
    EXPECT_EQ(all, text);
    // Byte-wise feeding of one emoji: nothing until the 4th byte.
    Utf8StreamDecoder d2(*tok);
    EXPECT_EQ(d2.push_bytes("\xF0"), "");
    EXPECT_EQ(d2.push_bytes("\x9F"), "");
    EXPECT_EQ(d2.push_bytes("\x98"), "");
    EXPECT_EQ(d2.push_bytes("\x80"), "\xF0\x9F\x98\x80");
    EXPECT_EQ(d2.push_bytes("\xC3\x28"), "\xC3\x28");  // invalid: passed through at once
}

TEST(Tokenizer, LoadErrors) {
    EXPECT_THROW(Gpt2Tokenizer::load("/nonexistent/gpt2"), Error);
    try {
        Gpt2Tokenizer::load("/nonexistent/gpt2");
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("fetch_tokenizer.sh"), std::string::npos);
    }
}

// Whole books vs. the reference ids written by scripts/tokenizer_compare.sh; also reports speed.
TEST(Tokenizer, WholeBooksMatchReference) {
    Gpt2Tokenizer* tok = tok_gpt2();
    NEED_VOCAB(tok);
    int compared = 0;
    for (std::string book : {"moby_dick", "sotu"}) {
        std::string txt = cache_dir() + "/text/" + book + ".txt", ids_path = cache_dir() + "/text/" + book + ".gpt2.ids";
        if (!exists(txt) || !exists(ids_path)) {
            std::printf("[ skipped  ] %s: %s or %s missing (run scripts/tokenizer_compare.sh)\n", book.c_str(),
                        txt.c_str(), ids_path.c_str());
            continue;
        }
        std::string text = load(txt);
        std::vector<int32_t> want;
        {
            std::ifstream f(ids_path);
            int32_t v;
            while (f >> v) want.push_back(v);
        }
        Gpt2Tokenizer fresh = *tok;  // cold cache for the timing
        fresh.set_cache_limit(1 << 20);
        auto t0 = std::chrono::steady_clock::now();
        std::vector<int32_t> got = fresh.encode(text);
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("[   info   ] %s: %zu bytes -> %zu tokens, encode %.1f MB/s\n", book.c_str(), text.size(), got.size(),
                    text.size() / s / 1e6);
        ASSERT_EQ(got.size(), want.size()) << book;
        size_t first = 0;
        while (first < got.size() && got[first] == want[first]) first++;
        EXPECT_EQ(first, got.size()) << book << ": first difference at token " << first;
        EXPECT_EQ(fresh.decode(got), text);
        compared++;
    }
    if (compared == 0) GTEST_SKIP() << "no book with reference ids in " << cache_dir() << "/text";
}

// A vocab.bpe cut short (here to half its merges) loads no more: the ids it would give differ.
TEST(Tokenizer, IncompleteMergesAreRefused) {
    NEED_VOCAB(tok_gpt2());
    const std::string src = Gpt2Tokenizer::default_vocab_dir();
    const std::string dir = (std::filesystem::temp_directory_path() / "hippo_half_bpe").string();
    std::filesystem::create_directories(dir);
    std::filesystem::copy_file(src + "/encoder.json", dir + "/encoder.json",
                               std::filesystem::copy_options::overwrite_existing);
    std::ifstream in(src + "/vocab.bpe");
    std::ofstream out(dir + "/vocab.bpe");
    std::string line;
    for (int i = 0; i < 25001 && std::getline(in, line); i++) out << line << "\n";
    out.close();
    std::string e;
    try {
        Gpt2Tokenizer::load(dir);
    } catch (const Error& err) {
        e = err.what();
    }
    EXPECT_NE(e.find("merges file is incomplete"), std::string::npos) << e;
    std::filesystem::remove_all(dir);
}
