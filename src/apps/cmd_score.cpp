// hippo score: log-likelihood and perplexity of tokens under a model, from the parallel forward or
// (with --step) token by token through the recurrent path, optionally writing the logits.
#include <cmath>
#include <cstdio>
#include <cstring>

#include "apps/args.h"
#include "apps/commands.h"
#include "apps/model_dir.h"
#include "common/check.h"
#include "common/runtime.h"
#include "io/file.h"
#include "text/gpt2_tokenizer.h"

namespace hippo {

int cmd_score(int argc, char** argv) {
    Args args(argc, argv, {"help", "step", "json"}, {"tokens", "batch", "text", "logits-out", "tokenizer", "vocab", "threads", "decode-weights"});
    if (args.has("help") || args.positional().empty()) {
        std::fputs(
            "usage: hippo score MODEL_DIR (--tokens T.bin [--batch B] | --text FILE) [--logits-out L.bin] [--step] [--json]\n"
            "  --tokens T.bin     int32 little-endian ids of shape (batch, length)\n"
            "  --text FILE        a text file, tokenised with the model's tokenizer (batch 1)\n"
            "  --logits-out L.bin float32 little-endian logits (batch, length, padded vocabulary)\n"
            "  --step             compute the logits token by token through the recurrent path\n"
            "  --decode-weights fp32|bf16|int8  weights of the --step path (default fp32; as hippo generate)\n",
            args.has("help") ? stdout : stderr);
        return args.has("help") ? 0 : 2;
    }
    apply_threads_option(args);
    LoadedModel lm = load_model_dir(args.positional()[0]);
    lm.model->set_decode_weights(parse_decode_weights(args.get("decode-weights", "fp32")));
    const Model& model = *lm.model;
    const int64_t vocab = model.config().vocab_size, Vp = model.vocab_padded();

    std::vector<int32_t> ids;
    int64_t B = args.get_int("batch", 1, 1, 1 << 20);
    if (args.has("tokens")) {
        std::vector<uint8_t> raw = read_file(args.get("tokens"));
        HIPPO_CHECK(raw.size() % 4 == 0, "'%s' has %zu bytes, not a whole number of int32 ids", args.get("tokens").c_str(), raw.size());
        ids.resize(raw.size() / 4);
        std::memcpy(ids.data(), raw.data(), raw.size());
    } else if (args.has("text")) {
        HIPPO_CHECK(B == 1, "--text scores one sequence (--batch 1)");
        std::vector<uint8_t> raw = read_file(args.get("text"));
        std::string kind = tokenizer_kind(lm, args.get("tokenizer"));
        if (kind == "gpt2") {
            Gpt2Tokenizer tok = Gpt2Tokenizer::load(args.get("vocab"));
            ids = tok.encode(std::string(raw.begin(), raw.end()));
        } else {
            HIPPO_CHECK(kind == "bytes", "--text needs a text tokenizer; this model takes ids (--tokens)");
            for (uint8_t c : raw) ids.push_back(int32_t(c));
        }
    } else {
        throw Error("give --tokens T.bin or --text FILE");
    }
    HIPPO_CHECK(B >= 1 && !ids.empty() && int64_t(ids.size()) % B == 0, "%zu ids do not split into --batch %lld rows",
                ids.size(), (long long)B);
    const int64_t L = int64_t(ids.size()) / B;
    HIPPO_CHECK(L >= 2, "score: each of the %lld rows has %lld token(s); scoring needs at least 2 per row (a token and its "
                "successor)", (long long)B, (long long)L);
    if (args.has("logits-out"))
        for (const char* in : {"tokens", "text"})
            if (args.has(in)) check_output_is_not_input(args.get("logits-out"), args.get(in), "--logits-out");
    check_fits_in_memory(double(B) * double(L) * double(Vp) * 4.0, strf("score: the logits (%lld x %lld x %lld floats)",
                                                                      (long long)B, (long long)L, (long long)Vp));
    for (int32_t t : ids) HIPPO_CHECK(t >= 0 && t < vocab, "token %d is outside the vocabulary [0, %lld)", t, (long long)vocab);

    double t0 = now_seconds();
    Tensor logits;
    {
        NoGradGuard ng;
        if (!args.has("step")) {
            logits = model.forward_logits(ids, B, L);
        } else {
            logits = Tensor::empty({B, L, Vp});
            std::unique_ptr<ModelState> st_ptr = model.new_model_state(B, L);
            ModelState& st = *st_ptr;
            for (int64_t t = 0; t < L; t++) {
                std::vector<int32_t> col(static_cast<size_t>(B));
                for (int64_t b = 0; b < B; b++) col[size_t(b)] = ids[size_t(b * L + t)];
                Tensor lt = model.step(col, st);
                for (int64_t b = 0; b < B; b++)
                    std::memcpy(logits.data() + (b * L + t) * Vp, lt.data() + b * Vp, size_t(Vp) * sizeof(float));
            }
        }
    }
    double secs = now_seconds() - t0;
    // Negative log-likelihood of every next token, log-softmax over the real vocabulary in double.
    double nll = 0;
    int64_t count = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t + 1 < L; t++) {
            const float* row = logits.data() + (b * L + t) * Vp;
            double mx = row[0];
            for (int64_t v = 1; v < vocab; v++) mx = std::max(mx, double(row[v]));
            double se = 0;
            for (int64_t v = 0; v < vocab; v++) se += std::exp(double(row[v]) - mx);
            nll += mx + std::log(se) - double(row[ids[size_t(b * L + t + 1)]]);
            count++;
        }
    if (args.has("logits-out"))
        write_file_atomic(args.get("logits-out"), logits.data(), size_t(logits.numel()) * sizeof(float));
    nlohmann::json j{{"batch", B},
                     {"length", L},
                     {"tokens_scored", count},
                     {"nll", nll},
                     {"loss", count ? nll / double(count) : 0.0},
                     {"perplexity", count ? std::exp(nll / double(count)) : 1.0},
                     {"bits_per_token", count ? nll / double(count) / std::log(2.0) : 0.0},
                     {"mode", args.has("step") ? "step" : "parallel"},
                     {"seconds", secs}};
    std::printf("%s\n", args.has("json") ? j.dump().c_str() : j.dump(1).c_str());
    return 0;
}

}  // namespace hippo
