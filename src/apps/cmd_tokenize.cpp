// hippo tokenize encode|decode: GPT-2 byte-level BPE from the command line (text/gpt2_tokenizer.h).
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "apps/args.h"
#include "apps/commands.h"
#include "common/check.h"
#include "io/file.h"
#include "text/gpt2_tokenizer.h"

namespace hippo {

namespace {

const char* kUsage =
    "usage: hippo tokenize encode [FILE|-] [--vocab PATH] [--eot] [--stats]\n"
    "       hippo tokenize decode [FILE|-] [--vocab PATH]\n"
    "\n"
    "encode: reads bytes (FILE or stdin), prints GPT-2 token ids separated by spaces, one line.\n"
    "decode: reads whitespace-separated ids, writes the bytes they stand for.\n"
    "  --vocab PATH  directory with encoder.json + vocab.bpe (or r50k_base.tiktoken), or a .tiktoken\n"
    "                file (default: $HIPPO_DATA/gpt2 or ~/.cache/hippo/gpt2; scripts/fetch_tokenizer.sh)\n"
    "  --eot         append <|endoftext|> (50256) after the text\n"
    "  --stats       print bytes, tokens and encoding speed to stderr\n"
    "Text is bytes: invalid UTF-8 is encoded too, and decode(encode(x)) == x for any input.\n";

std::string read_input(const std::string& path) {
    if (path.empty() || path == "-") {
        std::string s;
        char buf[1 << 16];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) s.append(buf, n);
        HIPPO_CHECK(!std::ferror(stdin), "cannot read stdin");
        return s;
    }
    std::vector<uint8_t> b = read_file(path);
    return std::string(b.begin(), b.end());
}

void write_out(const std::string& s) {
    HIPPO_CHECK(std::fwrite(s.data(), 1, s.size(), stdout) == s.size() && std::fflush(stdout) == 0,
                "cannot write to stdout");
}

}  // namespace

int cmd_tokenize(int argc, char** argv) {
    Args args(argc, argv, {"help", "eot", "stats"}, {"vocab"});
    const auto& pos = args.positional();
    if (args.has("help")) {
        std::printf("%s", kUsage);
        return 0;
    }
    HIPPO_CHECK(!pos.empty() && (pos[0] == "encode" || pos[0] == "decode"),
                "expected 'encode' or 'decode' (see 'hippo tokenize --help')");
    HIPPO_CHECK(pos.size() <= 2, "too many arguments (see 'hippo tokenize --help')");
    std::string input = read_input(pos.size() > 1 ? pos[1] : "-");
    Gpt2Tokenizer tok = Gpt2Tokenizer::load(args.get("vocab"));

    if (pos[0] == "encode") {
        auto t0 = std::chrono::steady_clock::now();
        std::vector<int32_t> ids = tok.encode(input);
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (args.has("eot")) ids.push_back(tok.eot());
        std::string out;
        out.reserve(ids.size() * 6 + 1);
        char buf[16];
        for (size_t i = 0; i < ids.size(); i++) {
            if (i) out.push_back(' ');
            int n = std::snprintf(buf, sizeof buf, "%d", ids[i]);
            out.append(buf, size_t(n));
        }
        out.push_back('\n');
        write_out(out);
        if (args.has("stats"))
            std::fprintf(stderr, "bytes %zu tokens %zu (%.3f bytes/token) encode %.3f s = %.2f MB/s\n", input.size(),
                         ids.size(), ids.empty() ? 0.0 : double(input.size()) / double(ids.size()), secs,
                         secs > 0 ? double(input.size()) / secs / 1e6 : 0.0);
        return 0;
    }
    HIPPO_CHECK(!args.has("eot") && !args.has("stats"), "--eot and --stats apply to 'encode' only");
    std::vector<int32_t> ids;
    size_t i = 0, n = input.size();
    while (i < n) {
        char c = input[i];
        if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
            i++;
            continue;
        }
        size_t j = i;
        long long v = 0;
        while (j < n && input[j] >= '0' && input[j] <= '9' && v < (1LL << 40)) v = v * 10 + (input[j++] - '0');
        HIPPO_CHECK(j > i && (j == n || input[j] == ' ' || input[j] == '\n' || input[j] == '\t' || input[j] == '\r'),
                    "decode: expected a non-negative integer id at byte %zu", i);
        HIPPO_CHECK(v < tok.vocab_size(), "decode: token id %lld outside the vocabulary [0, %d)", v, tok.vocab_size());
        ids.push_back(int32_t(v));
        i = j;
    }
    write_out(tok.decode(ids));
    return 0;
}

}  // namespace hippo
