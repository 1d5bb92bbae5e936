// hippo generate: prompt -> parallel prefill -> token-by-token decoding with the recurrent state
// of every SSM layer and the KV cache of every attention layer.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "apps/args.h"
#include "apps/commands.h"
#include "apps/model_dir.h"
#include "common/check.h"
#include "common/runtime.h"
#include "io/file.h"
#include "models/sampler.h"
#include "text/gpt2_tokenizer.h"

namespace hippo {

namespace {

struct Codec {
    std::string kind;
    Gpt2Tokenizer gpt2;
    static std::vector<int32_t> bytes_of(const std::string& text) {
        std::vector<int32_t> v;
        for (unsigned char c : text) v.push_back(int32_t(c));
        return v;
    }
    std::string decode(int32_t id) const {
        if (kind == "gpt2") return gpt2.token_bytes(id);
        if (kind == "bytes") return std::string(1, char(id));
        return strf("%d ", id);
    }
};

std::vector<int32_t> parse_ids(const std::string& s) {
    std::vector<int32_t> v;
    std::istringstream in(s);
    std::string tok;
    while (in >> tok) {
        char* end = nullptr;
        long x = std::strtol(tok.c_str(), &end, 10);
        HIPPO_CHECK(end && *end == '\0', "--prompt-ids: '%s' is not an integer", tok.c_str());
        v.push_back(int32_t(x));
    }
    return v;
}

}  // namespace

int cmd_generate(int argc, char** argv) {
    Args args(argc, argv, {"help", "greedy", "json"},
              {"prompt", "prompt-file", "prompt-ids", "prompts-file", "n", "temperature", "top-k", "top-p",
               "repetition-penalty", "seed", "stop", "batch", "tokenizer", "vocab", "threads", "decode-weights"});
    if (args.has("help") || args.positional().empty()) {
        std::fputs(
            "usage: hippo generate MODEL_DIR [prompt] [options]\n"
            "  MODEL_DIR            a training run, a checkpoint or the output of hippo import\n"
            "  --prompt TEXT | --prompt-file F | --prompt-ids \"1 2 3\" | --prompts-file F (one prompt a line)\n"
            "  --batch N            generate N continuations of the prompt at once\n"
            "  --n N                tokens to generate (default 64)\n"
            "  --greedy | --temperature T (1) --top-k K (0: off) --top-p P (1: off) --repetition-penalty R (1)\n"
            "  --seed S             sampling seed (default 0); --stop STR  stop a sequence at this text\n"
            "  --tokenizer gpt2|bytes|ids   (default from the model) --vocab DIR (GPT-2 files)\n"
            "  --json               one JSON object per sequence instead of streamed text\n"
            "  --decode-weights fp32|bf16|int8  weights read by each decode step (default fp32, exact);\n"
            "                       bf16 halves the bytes a step streams, int8 quarters them (per-row int8\n"
            "                       weights, activations quantized per token); the prompt stays fp32\n",
            args.has("help") ? stdout : stderr);
        return args.has("help") ? 0 : 2;
    }
    apply_threads_option(args);
    LoadedModel lm = load_model_dir(args.positional()[0]);
    lm.model->set_decode_weights(parse_decode_weights(args.get("decode-weights", "fp32")));
    const Model& model = *lm.model;
    HIPPO_CHECK(model.has_recurrent_mode(), "generate: this model (%s) has a layer without a recurrent mode",
                model.config().arch.c_str());
    const int64_t vocab = model.config().vocab_size;
    Codec codec;
    codec.kind = tokenizer_kind(lm, args.get("tokenizer"));
    if (codec.kind == "gpt2") codec.gpt2 = Gpt2Tokenizer::load(args.get("vocab"));
    const int32_t eos = codec.kind == "gpt2" ? codec.gpt2.eot() : -1;

    // Prompts
    std::vector<std::vector<int32_t>> prompts;
    auto encode = [&](const std::string& text) {
        std::vector<int32_t> ids = codec.kind == "gpt2" ? codec.gpt2.encode(text) : Codec::bytes_of(text);
        HIPPO_CHECK(codec.kind != "ids", "this model takes token ids only: use --prompt-ids");
        return ids;
    };
    if (args.has("prompts-file")) {
        std::ifstream f(args.get("prompts-file"));
        HIPPO_CHECK(f, "cannot open prompts file '%s'", args.get("prompts-file").c_str());
        for (std::string line; std::getline(f, line);)
            if (!line.empty()) prompts.push_back(encode(line));
    } else {
        std::vector<int32_t> p;
        if (args.has("prompt-ids")) p = parse_ids(args.get("prompt-ids"));
        else if (args.has("prompt-file")) {
            std::vector<uint8_t> bytes = read_file(args.get("prompt-file"));
            p = encode(std::string(bytes.begin(), bytes.end()));
        } else if (args.has("prompt")) p = encode(args.get("prompt"));
        else if (args.positional().size() > 1) p = encode(args.positional()[1]);
        int64_t copies = args.get_int("batch", 1, 1, 4096);
        HIPPO_CHECK(copies >= 1, "--batch must be >= 1");
        for (int64_t i = 0; i < copies; i++) prompts.push_back(p);
    }
    HIPPO_CHECK(!prompts.empty(), "no prompt given");
    for (auto& p : prompts) {
        if (p.empty() && eos >= 0) p.push_back(eos);  // GPT-2 starts from <|endoftext|>
        HIPPO_CHECK(!p.empty(), "empty prompt (give --prompt, --prompt-file or --prompt-ids)");
        for (int32_t t : p) HIPPO_CHECK(t >= 0 && t < vocab, "prompt token %d is outside the vocabulary [0, %lld)", t, (long long)vocab);
    }

    SamplingOptions so;
    so.greedy = args.has("greedy");
    so.temperature = float(args.get_double("temperature", 1.0, 0.0, 1e4));
    so.top_k = args.get_int("top-k", 0, 0, 1 << 24);
    so.top_p = float(args.get_double("top-p", 1.0, 0.0, 1.0));
    so.repetition_penalty = float(args.get_double("repetition-penalty", 1.0, 1e-3, 1e3));
    check_sampling_options(so);
    const int64_t n_new = args.get_int("n", 64, 0, 1 << 24);
    HIPPO_CHECK(n_new >= 0, "--n must be >= 0");
    const std::string stop = args.get("stop");
    const uint64_t seed = uint64_t(args.get_int("seed", 0, 0, LLONG_MAX));
    const bool json = args.has("json");

    const int64_t B = int64_t(prompts.size());
    size_t min_len = prompts[0].size(), max_len = 0;
    for (auto& p : prompts) {
        min_len = std::min(min_len, p.size());
        max_len = std::max(max_len, p.size());
    }
    // Prefill the common length in parallel; longer prompts feed their remaining tokens through
    // the step path (forced), so sequences of different lengths share one batched state.
    // Learned positions bound the context: say so before a token is printed.
    const int64_t ctx = model.config().max_position_embeddings;
    HIPPO_CHECK(ctx == 0 || int64_t(max_len) + n_new <= ctx,
                "generate: the longest prompt (%zu tokens) plus --n %lld exceeds the model's %lld positions "
                "(max_position_embeddings)",
                max_len, (long long)n_new, (long long)ctx);
    {
        // The KV caches of the attention layers (keys and values, fp32) dominate the state: refuse
        // what cannot fit before allocating any of it.
        const ModelConfig& c = model.config();
        int64_t attn = 0;
        for (int64_t i = 0; i < c.n_layer; i++) attn += c.layer_mixer(i) == "attention";
        check_fits_in_memory(2.0 * double(attn) * double(B) * double(int64_t(max_len) + n_new) * double(c.d_model) * 4.0,
                             strf("generate: the KV cache for %lld sequences of %lld tokens", (long long)B,
                                  (long long)(int64_t(max_len) + n_new)));
    }
    std::vector<int32_t> head;
    for (auto& p : prompts) head.insert(head.end(), p.begin(), p.begin() + int64_t(min_len));
    std::unique_ptr<ModelState> st_ptr = model.new_model_state(B, int64_t(max_len) + n_new);
    ModelState& st = *st_ptr;
    double t0 = now_seconds();
    Tensor logits = model.prefill_last(head, B, int64_t(min_len), st);
    double t_prefill = now_seconds() - t0;

    std::vector<Rng> rngs;
    for (int64_t b = 0; b < B; b++) rngs.emplace_back(splitmix64(seed ^ splitmix64(uint64_t(b))));
    std::vector<std::vector<int32_t>> history(prompts.begin(), prompts.end()), generated(static_cast<size_t>(B));
    std::vector<std::string> text(static_cast<size_t>(B));
    std::vector<size_t> pos(size_t(B), min_len);
    std::vector<bool> done(size_t(B), n_new == 0);
    Utf8StreamDecoder stream(codec.gpt2);  // only its byte interface is used, for any tokenizer
    const bool streaming = B == 1 && !json;
    int64_t produced = 0;
    double t1 = now_seconds();
    while (true) {
        std::vector<int32_t> next(size_t(B), 0);
        bool any_active = false;
        for (int64_t b = 0; b < B; b++) {
            size_t ub = size_t(b);
            if (pos[ub] < prompts[ub].size()) {  // still reading its prompt
                next[ub] = prompts[ub][pos[ub]++];
                any_active = true;
                continue;
            }
            if (done[ub]) continue;
            int32_t t = sample_token(logits.data() + b * logits.size(1), vocab, so, history[ub], rngs[ub]);
            next[ub] = t;
            history[ub].push_back(t);
            generated[ub].push_back(t);
            produced++;
            if (t == eos) {
                done[ub] = true;
            } else {
                std::string piece = codec.decode(t);
                text[ub] += piece;
                if (!stop.empty() && text[ub].find(stop) != std::string::npos) {
                    text[ub].resize(text[ub].find(stop));
                    done[ub] = true;
                } else if (streaming) {
                    std::string out = stream.push_bytes(piece);
                    std::fwrite(out.data(), 1, out.size(), stdout);
                    std::fflush(stdout);
                }
            }
            if (int64_t(generated[ub].size()) >= n_new) done[ub] = true;
            any_active |= !done[ub];
        }
        bool all_done = true;
        for (int64_t b = 0; b < B; b++) all_done &= done[size_t(b)] && pos[size_t(b)] >= prompts[size_t(b)].size();
        if (all_done || !any_active) break;
        logits = model.step(next, st);
    }
    double t_decode = now_seconds() - t1;
    if (streaming) {
        std::string rest = stream.finish();
        std::fwrite(rest.data(), 1, rest.size(), stdout);
        std::printf("\n");
    } else {
        for (int64_t b = 0; b < B; b++) {
            if (json) {
                nlohmann::json j{{"index", b}, {"text", text[size_t(b)]}, {"ids", generated[size_t(b)]}};
                std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
            } else {
                std::printf("=== %lld ===\n%s\n", (long long)b, text[size_t(b)].c_str());
            }
        }
    }
    std::fprintf(stderr, "hippo generate: prompt %zu-%zu tokens x %lld in %.1f ms, %lld tokens in %.1f ms (%.1f tokens/s)\n",
                 min_len, max_len, (long long)B, t_prefill * 1e3, (long long)produced, t_decode * 1e3,
                 t_decode > 0 ? double(produced) / t_decode : 0.0);
    return 0;
}

}  // namespace hippo
