#include "text/gpt2_tokenizer.h"

#include <set>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <queue>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "io/file.h"
#include "text/unicode.h"

namespace hippo {

namespace {

using text::CharClass;

// GPT-2's bytes_to_unicode(): the printable bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order. Returns the inverse (code point -> byte), -1 for code points not used.
std::vector<int> unicode_to_byte() {
    std::vector<int> inv(512, -1);
    bool printable[256] = {};
    for (int b = '!'; b <= '~'; b++) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; b++) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; b++) printable[b] = true;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        if (printable[b]) inv[b] = b;
        else inv[256 + n++] = b;
    }
    return inv;
}

// Maps a token spelled in GPT-2's byte alphabet (UTF-8 text) back to its bytes.
bool alphabet_to_bytes(const std::string& s, const std::vector<int>& inv, std::string* out) {
    out->clear();
    const uint8_t* p = reinterpret_cast<const uint8_t*>(s.data());
    size_t i = 0, n = s.size();
    while (i < n) {
        uint32_t cp;
        size_t len = text::utf8_decode(p + i, n - i, &cp);
        if (cp == text::kInvalidCp || cp >= inv.size() || inv[cp] < 0) return false;
        out->push_back(char(inv[cp]));
        i += len;
    }
    return true;
}

// Class of the character at s[i] and its length. ASCII through a table.
struct AsciiClass {
    uint8_t t[128];
    constexpr AsciiClass() : t() {
        for (int c = 0; c < 128; c++) {
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) t[c] = text::kLetter;
            else if (c >= '0' && c <= '9') t[c] = text::kNumber;
            else if (c == ' ' || (c >= 9 && c <= 13)) t[c] = text::kSpace;
            else t[c] = text::kOther;
        }
    }
};
constexpr AsciiClass kAscii;

inline CharClass class_at(const uint8_t* s, size_t i, size_t n, size_t* len) {
    uint8_t b = s[i];
    if (b < 0x80) {
        *len = 1;
        return CharClass(kAscii.t[b]);
    }
    uint32_t cp;
    *len = text::utf8_decode(s + i, n - i, &cp);
    return cp == text::kInvalidCp ? text::kOther : text::char_class(cp);
}

// Length of the regex match starting at s[i] (i < n); see the header for the pattern.
size_t match_at(const uint8_t* s, size_t i, size_t n) {
    if (s[i] == '\'' && i + 1 < n) {
        uint8_t a = s[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
        if (i + 2 < n) {
            uint8_t b = s[i + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
        }
    }
    size_t len0;
    CharClass c0 = class_at(s, i, n, &len0);
    size_t j;
    CharClass run;
    if (s[i] == ' ' && i + 1 < n) {
        size_t len1;
        CharClass c1 = class_at(s, i + 1, n, &len1);
        if (c1 != text::kSpace) {
            run = c1;
            j = i + 1 + len1;
            goto extend;
        }
    }
    if (c0 != text::kSpace) {
        run = c0;
        j = i + len0;
        goto extend;
    }
    {
        // Whitespace run [i, j); `last` = start of its last character.
        size_t last = i;
        j = i + len0;
        while (j < n) {
            size_t l;
            if (class_at(s, j, n, &l) != text::kSpace) break;
            last = j;
            j += l;
        }
        if (j == n || last == i) return j - i;  // \s+(?!\S) at the end, or a single \s
        return last - i;                         // \s+(?!\S): leave the last one for the next piece
    }
extend:
    while (j < n) {
        size_t l;
        if (class_at(s, j, n, &l) != run) break;
        j += l;
    }
    return j - i;
}

bool is_dir(const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

int b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

bool b64_decode(std::string_view s, std::string* out) {
    out->clear();
    uint32_t acc = 0;
    int bits = 0;
    size_t i = 0;
    for (; i < s.size() && s[i] != '='; i++) {
        int v = b64_value(s[i]);
        if (v < 0) return false;
        acc = (acc << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out->push_back(char((acc >> bits) & 0xFF));
        }
    }
    for (; i < s.size(); i++)
        if (s[i] != '=') return false;
    return true;
}

constexpr uint32_t kNoMerge = std::numeric_limits<uint32_t>::max();

}  // namespace

std::string Gpt2Tokenizer::default_vocab_dir() {
    const char* d = std::getenv("HIPPO_DATA");
    if (d && *d) return std::string(d) + "/gpt2";
    const char* h = std::getenv("HOME");
    return std::string(h && *h ? h : ".") + "/.cache/hippo/gpt2";
}

Gpt2Tokenizer Gpt2Tokenizer::load(const std::string& path_in) {
    std::string path = path_in.empty() ? default_vocab_dir() : path_in;
    if (is_dir(path)) {
        if (is_file(path + "/encoder.json") && is_file(path + "/vocab.bpe"))
            return from_gpt2_files(path + "/encoder.json", path + "/vocab.bpe");
        if (is_file(path + "/r50k_base.tiktoken")) return from_tiktoken(path + "/r50k_base.tiktoken");
        throw Error(strf("no GPT-2 vocabulary in '%s' (encoder.json + vocab.bpe or r50k_base.tiktoken); "
                         "run scripts/fetch_tokenizer.sh",
                         path.c_str()));
    }
    if (is_file(path)) return from_tiktoken(path);
    throw Error(strf("GPT-2 vocabulary '%s' not found; run scripts/fetch_tokenizer.sh", path.c_str()));
}

Gpt2Tokenizer Gpt2Tokenizer::from_gpt2_files(const std::string& encoder_json, const std::string& vocab_bpe) {
    Gpt2Tokenizer t;
    std::vector<int> inv = unicode_to_byte();
    std::unordered_map<std::string, int32_t> ids;
    {
        std::vector<uint8_t> raw = read_file(encoder_json);
        nlohmann::json j = nlohmann::json::parse(raw.begin(), raw.end(), nullptr, false);
        HIPPO_CHECK(j.is_object() && !j.empty(), "%s: not a JSON object of token -> id", encoder_json.c_str());
        HIPPO_CHECK(j.size() < (1u << 24), "%s: too many tokens", encoder_json.c_str());
        t.tokens_.assign(j.size(), std::string());
        std::vector<bool> seen(j.size(), false);
        std::string bytes;
        for (auto it = j.begin(); it != j.end(); ++it) {
            HIPPO_CHECK(it.value().is_number_integer(), "%s: id of '%s' is not an integer", encoder_json.c_str(),
                        it.key().c_str());
            int64_t id = it.value().get<int64_t>();
            HIPPO_CHECK(id >= 0 && id < int64_t(j.size()) && !seen[id], "%s: ids are not 0..%zu without gaps",
                        encoder_json.c_str(), j.size() - 1);
            seen[id] = true;
            HIPPO_CHECK(alphabet_to_bytes(it.key(), inv, &bytes), "%s: token '%s' is not in GPT-2's byte alphabet",
                        encoder_json.c_str(), it.key().c_str());
            t.tokens_[id] = bytes;
            if (it.key() == "<|endoftext|>") t.eot_ = int32_t(id);
            ids.emplace(bytes, int32_t(id));
        }
    }
    std::vector<uint8_t> raw = read_file(vocab_bpe);
    std::string_view s(reinterpret_cast<const char*>(raw.data()), raw.size());
    size_t pos = 0;
    uint32_t rank = 0;
    size_t line_no = 0;
    std::string a, b;
    t.merges_.reserve(60000);
    while (pos < s.size()) {
        size_t e = s.find('\n', pos);
        if (e == std::string_view::npos) e = s.size();
        std::string_view line = s.substr(pos, e - pos);
        pos = e + 1;
        line_no++;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty() || (line_no == 1 && line.substr(0, 8) == "#version")) continue;
        size_t sp = line.find(' ');
        HIPPO_CHECK(sp != std::string_view::npos && sp > 0 && sp + 1 < line.size() &&
                        line.find(' ', sp + 1) == std::string_view::npos,
                    "%s:%zu: expected two tokens separated by one space", vocab_bpe.c_str(), line_no);
        bool ok = alphabet_to_bytes(std::string(line.substr(0, sp)), inv, &a) &&
                  alphabet_to_bytes(std::string(line.substr(sp + 1)), inv, &b);
        HIPPO_CHECK(ok, "%s:%zu: token not in GPT-2's byte alphabet", vocab_bpe.c_str(), line_no);
        auto ia = ids.find(a), ib = ids.find(b), iab = ids.find(a + b);
        HIPPO_CHECK(ia != ids.end() && ib != ids.end() && iab != ids.end(),
                    "%s:%zu: merge refers to a token missing from %s", vocab_bpe.c_str(), line_no,
                    encoder_json.c_str());
        t.merges_.emplace(pair_key(ia->second, ib->second), Merge{rank, iab->second});
        rank++;
    }
    HIPPO_CHECK(rank > 0, "%s: no merges", vocab_bpe.c_str());
    // Every multi-byte token of the encoder is made by exactly one merge; a merges file cut short
    // would otherwise load and give other token ids.
    {
        std::set<int32_t> made;
        for (const auto& [key, m] : t.merges_) made.insert(m.id);
        int64_t multi = 0;
        for (size_t id = 0; id < t.tokens_.size(); id++)
            multi += t.tokens_[id].size() >= 2 && int32_t(id) != t.eot_;
        HIPPO_CHECK(int64_t(made.size()) == multi,
                    "%s: %zu merges make %zu of the %lld multi-byte tokens of %s: the merges file is incomplete or "
                    "does not belong to this vocabulary",
                    vocab_bpe.c_str(), size_t(rank), made.size(), (long long)multi, encoder_json.c_str());
    }
    t.finalize();
    return t;
}

Gpt2Tokenizer Gpt2Tokenizer::from_tiktoken(const std::string& path) {
    Gpt2Tokenizer t;
    std::vector<uint8_t> raw = read_file(path);
    std::string_view s(reinterpret_cast<const char*>(raw.data()), raw.size());
    std::unordered_map<std::string, int32_t> ids;
    std::vector<std::pair<int64_t, std::string>> entries;
    size_t pos = 0, line_no = 0;
    std::string bytes;
    while (pos < s.size()) {
        size_t e = s.find('\n', pos);
        if (e == std::string_view::npos) e = s.size();
        std::string_view line = s.substr(pos, e - pos);
        pos = e + 1;
        line_no++;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) continue;
        size_t sp = line.find(' ');
        HIPPO_CHECK(sp != std::string_view::npos, "%s:%zu: expected 'base64 rank'", path.c_str(), line_no);
        HIPPO_CHECK(b64_decode(line.substr(0, sp), &bytes) && !bytes.empty(), "%s:%zu: bad base64", path.c_str(),
                    line_no);
        std::string r(line.substr(sp + 1));
        char* end = nullptr;
        long long rank = std::strtoll(r.c_str(), &end, 10);
        HIPPO_CHECK(!r.empty() && *end == 0 && rank >= 0 && rank < (1 << 24), "%s:%zu: bad rank", path.c_str(),
                    line_no);
        entries.emplace_back(rank, bytes);
    }
    HIPPO_CHECK(!entries.empty(), "%s: empty rank file", path.c_str());
    t.tokens_.assign(entries.size() + 1, std::string());
    std::vector<bool> seen(entries.size(), false);
    for (auto& [rank, b] : entries) {
        HIPPO_CHECK(rank < int64_t(entries.size()) && !seen[rank], "%s: ranks are not 0..%zu without gaps",
                    path.c_str(), entries.size() - 1);
        seen[rank] = true;
        HIPPO_CHECK(ids.emplace(b, int32_t(rank)).second, "%s: duplicate token", path.c_str());
        t.tokens_[rank] = b;
    }
    t.eot_ = int32_t(entries.size());
    t.tokens_[t.eot_] = "<|endoftext|>";
    // tiktoken's rule: any adjacent pair whose concatenation is a token merges, with that token's
    // rank as priority.
    t.merges_.reserve(entries.size() * 4);
    for (int32_t id = 0; id < t.eot_; id++) {
        const std::string& tok = t.tokens_[id];
        for (size_t k = 1; k < tok.size(); k++) {
            auto ia = ids.find(tok.substr(0, k));
            if (ia == ids.end()) continue;
            auto ib = ids.find(tok.substr(k));
            if (ib == ids.end()) continue;
            t.merges_.emplace(pair_key(ia->second, ib->second), Merge{uint32_t(id), id});
        }
    }
    t.finalize();
    return t;
}

void Gpt2Tokenizer::finalize() {
    std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
    for (size_t id = 0; id < tokens_.size(); id++)
        if (tokens_[id].size() == 1) byte_id_[uint8_t(tokens_[id][0])] = int32_t(id);
    for (int b = 0; b < 256; b++)
        HIPPO_CHECK(byte_id_[b] >= 0, "GPT-2 vocabulary has no token for byte 0x%02X", b);
}

const std::string& Gpt2Tokenizer::token_bytes(int32_t id) const {
    HIPPO_CHECK(id >= 0 && id < vocab_size(), "token id %d outside the vocabulary [0, %d)", id, vocab_size());
    return tokens_[id];
}

std::vector<std::string_view> Gpt2Tokenizer::pretokenize(std::string_view str) {
    std::vector<std::string_view> out;
    const uint8_t* s = reinterpret_cast<const uint8_t*>(str.data());
    size_t n = str.size(), i = 0;
    while (i < n) {
        size_t l = match_at(s, i, n);
        out.push_back(str.substr(i, l));
        i += l;
    }
    return out;
}

void Gpt2Tokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
    size_t m = piece.size();
    if (m == 1) {
        out.push_back(byte_id_[uint8_t(piece[0])]);
        return;
    }
    if (m > 128) {
        bpe_long(piece, out);
        return;
    }
    int32_t ids[128];
    uint32_t rk[128];
    for (size_t k = 0; k < m; k++) ids[k] = byte_id_[uint8_t(piece[k])];
    auto rank_of = [&](size_t k) {
        auto it = merges_.find(pair_key(ids[k], ids[k + 1]));
        return it == merges_.end() ? kNoMerge : it->second.rank;
    };
    for (size_t k = 0; k + 1 < m; k++) rk[k] = rank_of(k);
    while (m > 1) {
        size_t best = 0;
        for (size_t k = 1; k + 1 < m; k++)
            if (rk[k] < rk[best]) best = k;
        if (rk[best] == kNoMerge) break;
        ids[best] = merges_.find(pair_key(ids[best], ids[best + 1]))->second.id;
        for (size_t k = best + 1; k + 1 < m; k++) ids[k] = ids[k + 1];
        for (size_t k = best + 1; k + 2 < m; k++) rk[k] = rk[k + 1];
        m--;
        if (best > 0) rk[best - 1] = rank_of(best - 1);
        if (best + 1 < m) rk[best] = rank_of(best);
    }
    out.insert(out.end(), ids, ids + m);
}

// O(n log n) variant for long pieces (e.g. a megabyte of '=' or of spaces): doubly linked list of
// parts and a min-heap of candidate pairs (rank, left position), stale entries skipped on pop.
void Gpt2Tokenizer::bpe_long(std::string_view piece, std::vector<int32_t>& out) const {
    size_t m = piece.size();
    std::vector<int32_t> ids(m), prev(m), next(m);
    for (size_t k = 0; k < m; k++) {
        ids[k] = byte_id_[uint8_t(piece[k])];
        prev[k] = int32_t(k) - 1;
        next[k] = k + 1 < m ? int32_t(k + 1) : -1;
    }
    struct Cand {
        uint32_t rank;
        int32_t pos, left, right;
        bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto push = [&](int32_t k) {
        if (k < 0 || next[k] < 0) return;
        auto it = merges_.find(pair_key(ids[k], ids[next[k]]));
        if (it != merges_.end()) heap.push({it->second.rank, k, ids[k], ids[next[k]]});
    };
    for (size_t k = 0; k + 1 < m; k++) push(int32_t(k));
    std::vector<bool> dead(m, false);
    while (!heap.empty()) {
        Cand c = heap.top();
        heap.pop();
        int32_t k = c.pos;
        if (dead[k] || next[k] < 0 || ids[k] != c.left || ids[next[k]] != c.right) continue;
        int32_t r = next[k];
        ids[k] = merges_.find(pair_key(c.left, c.right))->second.id;
        dead[r] = true;
        next[k] = next[r];
        if (next[r] >= 0) prev[next[r]] = k;
        push(prev[k]);
        push(k);
    }
    for (int32_t k = 0; k >= 0; k = next[k]) out.push_back(ids[k]);
}

void Gpt2Tokenizer::encode(std::string_view str, std::vector<int32_t>& out) {
    HIPPO_CHECK(!tokens_.empty(), "tokenizer has no vocabulary loaded");
    const uint8_t* s = reinterpret_cast<const uint8_t*>(str.data());
    size_t n = str.size(), i = 0;
    while (i < n) {
        size_t l = match_at(s, i, n);
        std::string_view piece = str.substr(i, l);
        i += l;
        if (l == 1) {
            out.push_back(byte_id_[s[i - 1]]);
            continue;
        }
        if (cache_limit_ == 0 || l > 64) {
            bpe(piece, out);
            continue;
        }
        auto it = cache_.find(piece);
        if (it != cache_.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            continue;
        }
        size_t start = out.size();
        bpe(piece, out);
        if (cache_.size() >= cache_limit_) cache_.clear();
        cache_.emplace(std::string(piece), std::vector<int32_t>(out.begin() + start, out.end()));
    }
}

std::vector<int32_t> Gpt2Tokenizer::encode(std::string_view bytes) {
    std::vector<int32_t> out;
    out.reserve(bytes.size() / 3 + 16);
    encode(bytes, out);
    return out;
}

std::string Gpt2Tokenizer::decode(std::span<const int32_t> ids) const {
    std::string out;
    for (int32_t id : ids) out += token_bytes(id);
    return out;
}

// ---- streaming decoder --------------------------------------------------------------------------

std::string Utf8StreamDecoder::push(int32_t id) { return push_bytes(tok_->token_bytes(id)); }

std::string Utf8StreamDecoder::push_bytes(std::string_view bytes) {
    pending_.append(bytes);
    // Hold back a trailing lead byte (+ continuation bytes) whose sequence is not complete yet but
    // could still become valid. Everything before it is emitted.
    size_t n = pending_.size();
    size_t hold = 0;
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t b = uint8_t(pending_[n - back]);
        if ((b & 0xC0) == 0x80) continue;  // continuation byte: look further back
        size_t need = (b >= 0xC2 && b <= 0xDF) ? 2 : (b >= 0xE0 && b <= 0xEF) ? 3 : (b >= 0xF0 && b <= 0xF4) ? 4 : 0;
        if (need > back) {
            // Incomplete; keep it only if the bytes so far are a valid prefix.
            uint32_t cp;
            std::string probe = pending_.substr(n - back);
            // Pad with the smallest continuation bytes that keep the prefix valid, then decode.
            for (size_t k = back; k < need; k++) probe.push_back(char(0x80 | (k == 1 && b == 0xE0 ? 0x20 : 0) |
                                                                      (k == 1 && b == 0xF0 ? 0x10 : 0)));
            if (text::utf8_decode(reinterpret_cast<const uint8_t*>(probe.data()), probe.size(), &cp) == need)
                hold = back;
        }
        break;
    }
    std::string out = pending_.substr(0, n - hold);
    pending_.erase(0, n - hold);
    return out;
}

std::string Utf8StreamDecoder::finish() {
    std::string out;
    out.swap(pending_);
    return out;
}

}  // namespace hippo
