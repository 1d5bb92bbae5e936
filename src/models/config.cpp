#include "models/config.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/check.h"
#include "common/schema.h"
#include "models/mixer.h"
#include "models/model.h"

namespace hippo {

using json = nlohmann::json;

int64_t ModelConfig::padded_vocab() const {
    int64_t m = pad_vocab_size_multiple > 0 ? pad_vocab_size_multiple : 1;
    return (vocab_size + m - 1) / m * m;
}

const std::string& ModelConfig::layer_mixer(int64_t i) const {
    for (int64_t a : attn_layer_idx)
        if (a == i) return attn_mixer;
    return mixer;
}

bool ModelConfig::layer_has_mlp(int64_t) const { return ff == "mlp"; }

const json& ModelConfig::block(const std::string& key) const {
    HIPPO_ASSERT(blocks.contains(key), "config block '%s' is not registered", key.c_str());
    return blocks.at(key);
}

namespace {

// The top-level keys of a model config. Sizes are bounded far above anything this machine can
// hold; whether a model fits in memory is checked from its parameter count (models/model.h).
const Schema& model_schema() {
    static const Schema s = [] {
        Schema m("model");
        m.string("arch", "lm", {}, "model family (lm)")
            .string("name", nullptr, {}, "free text")
            .string("comment", nullptr, {}, "free text")
            .integer("d_model", nullptr, 1, 1 << 20, "width D")
            .integer("n_layer", nullptr, 1, 1 << 20, "number of blocks")
            .integer("d_inner", nullptr, 1, 1 << 24, "MLP width (absent: 4 d_model)")
            .string("mixer", "h3", {}, "the mixer of every layer")
            .string("attn_mixer", "attention", {}, "the mixer of the layers in attn_layer_idx")
            .string("ff", nullptr, {"mlp", "none"}, "feed-forward slot (default: the mixer's)")
            .boolean("mlp", true, "legacy spelling of ff: true = mlp, false = none")
            .integer("max_position_embeddings", 0, 0, 1 << 24, "learned absolute positions (0: none)")
            .number("embed_dropout", 0.1, 0.0, 0.999, "dropout after the embedding (training)")
            .number("resid_dropout", 0.0, 0.0, 0.999, "dropout on each residual branch (training)")
            .integer("pad_vocab_size_multiple", 8, 1, 1 << 16, "vocabulary padded to a multiple of this")
            .number("initializer_range", 0.02, 0.0, 10.0, "std of the normal init of matrices")
            .number("layer_norm_epsilon", 1e-5, 1e-12, 1.0, "LayerNorm epsilon");
        return m;
    }();
    return s;
}

}  // namespace

ModelConfig parse_model_config(const json& top, const std::string& where_in) {
    HIPPO_CHECK(top.is_object(), "%s: expected a JSON object", where_in.c_str());
    const json* jp = &top;
    const std::string where = where_in;
    std::string top_name;
    if (top.contains("model")) {
        for (auto it = top.begin(); it != top.end(); ++it)
            HIPPO_CHECK(it.key() == "model" || it.key() == "train" || it.key() == "name" || it.key() == "comment",
                        "%s: unknown top-level key '%s' (expected model, train, name, comment)", where.c_str(),
                        it.key().c_str());
        jp = &top.at("model");
        HIPPO_CHECK(jp->is_object(), "%s: 'model' must be an object", where.c_str());
        if (top.contains("name") && top.at("name").is_string()) top_name = top.at("name").get<std::string>();
    }
    // Split the object: blocks go to their schemas, special keys are read here, the rest to the
    // top-level schema.
    json plain = json::object();
    json given_blocks = json::object();
    json vocab, attn_idx;
    for (auto it = jp->begin(); it != jp->end(); ++it) {
        const std::string& k = it.key();
        bool is_block = false;
        for (const ConfigBlock& b : config_blocks()) is_block = is_block || b.key == k;
        if (is_block) given_blocks[k] = it.value();
        else if (k == "vocab_size") vocab = it.value();
        else if (k == "attn_layer_idx") attn_idx = it.value();
        else plain[k] = it.value();
    }
    const json v = model_schema().parse(plain, where);
    ModelConfig c;
    c.arch = v.at("arch").get<std::string>();
    find_architecture(c.arch);  // an unknown arch is an error here, naming the choices
    c.name = v.contains("name") ? v.at("name").get<std::string>() : top_name;
    HIPPO_CHECK(v.contains("d_model"), "%s: 'd_model' must be a positive integer", where.c_str());
    HIPPO_CHECK(v.contains("n_layer"), "%s: 'n_layer' must be a positive integer", where.c_str());
    c.d_model = v.at("d_model").get<int64_t>();
    c.n_layer = v.at("n_layer").get<int64_t>();
    if (vocab.is_string()) {
        HIPPO_CHECK(vocab.get<std::string>() == "data", "%s: 'vocab_size' must be a positive integer or \"data\"", where.c_str());
        c.vocab_from_data = true;
        c.vocab_size = 1;  // resolved by the trainer from the data source
    } else {
        HIPPO_CHECK(vocab.is_number_integer() && vocab.get<int64_t>() > 0 && vocab.get<int64_t>() <= (1 << 24),
                    "%s: 'vocab_size' must be a positive integer (at most 16777216) or \"data\", got %s", where.c_str(),
                    vocab.dump().c_str());
        c.vocab_size = vocab.get<int64_t>();
    }
    c.d_inner = v.value("d_inner", int64_t(0));
    try {
        c.mixer = find_mixer(v.at("mixer").get<std::string>()).name;
        c.attn_mixer = find_mixer(v.at("attn_mixer").get<std::string>()).name;
    } catch (const Error& e) {
        throw Error(where + ": " + e.what());
    }
    if (!attn_idx.is_null()) {
        HIPPO_CHECK(attn_idx.is_array(), "%s: 'attn_layer_idx' must be a list of layer indices", where.c_str());
        std::set<int64_t> seen;
        for (const json& x : attn_idx) {
            HIPPO_CHECK(x.is_number_integer(), "%s: attn_layer_idx entry %s is not an integer", where.c_str(), x.dump().c_str());
            int64_t i = x.get<int64_t>();
            HIPPO_CHECK(i >= 0 && i < c.n_layer, "%s: attention layer index %lld is out of range for n_layer = %lld",
                        where.c_str(), (long long)i, (long long)c.n_layer);
            HIPPO_CHECK(seen.insert(i).second, "%s: attention layer index %lld is listed twice", where.c_str(), (long long)i);
            c.attn_layer_idx.push_back(i);
        }
    }
    // The feed-forward slot: "ff", else the legacy "mlp" flag, else the mixer's default.
    if (v.contains("ff")) {
        c.ff = v.at("ff").get<std::string>();
        HIPPO_CHECK(!plain.contains("mlp") || v.at("mlp").get<bool>() == (c.ff == "mlp"),
                    "%s: 'mlp' and 'ff' disagree", where.c_str());
    } else if (plain.contains("mlp")) {
        c.ff = v.at("mlp").get<bool>() ? "mlp" : "none";
    } else {
        c.ff = find_mixer(c.mixer).default_mlp ? "mlp" : "none";
    }
    c.max_position_embeddings = v.at("max_position_embeddings").get<int64_t>();
    c.embed_dropout = v.at("embed_dropout").get<double>();
    c.resid_dropout = v.at("resid_dropout").get<double>();
    c.pad_vocab_size_multiple = v.at("pad_vocab_size_multiple").get<int64_t>();
    c.initializer_range = v.at("initializer_range").get<double>();
    c.layer_norm_epsilon = v.at("layer_norm_epsilon").get<double>();
    for (const ConfigBlock& b : config_blocks()) {
        const json given = given_blocks.contains(b.key) ? given_blocks.at(b.key) : json::object();
        c.blocks[b.key] = b.schema.parse(given.is_null() ? json::object() : given, where + " " + b.key);
    }
    // Checks of each mixer in use that need the whole config.
    std::set<std::string> used;
    for (int64_t i = 0; i < c.n_layer; i++) used.insert(c.layer_mixer(i));
    for (const std::string& m : used)
        if (const MixerDef& d = find_mixer(m); d.validate) d.validate(c, where);
    return c;
}

json ModelConfig::to_json() const {
    json j;
    if (arch != "lm") j["arch"] = arch;
    if (!name.empty()) j["name"] = name;
    j["d_model"] = d_model;
    j["n_layer"] = n_layer;
    j["vocab_size"] = vocab_size;
    j["d_inner"] = inner();
    j["mixer"] = mixer;
    j["attn_mixer"] = attn_mixer;
    j["attn_layer_idx"] = attn_layer_idx;
    j["max_position_embeddings"] = max_position_embeddings;
    j["embed_dropout"] = embed_dropout;
    j["resid_dropout"] = resid_dropout;
    j["pad_vocab_size_multiple"] = pad_vocab_size_multiple;
    j["initializer_range"] = initializer_range;
    j["layer_norm_epsilon"] = layer_norm_epsilon;
    j["mlp"] = ff == "mlp";  // the key older hippo versions read
    for (auto it = blocks.begin(); it != blocks.end(); ++it) j[it.key()] = it.value();
    return j;
}

json read_json_file(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    HIPPO_CHECK(!ec && fs::exists(st), "cannot open '%s': no such file", path.c_str());
    HIPPO_CHECK(fs::is_regular_file(st), "'%s' is not a regular file (a directory, FIFO or device cannot be a config)",
                path.c_str());
    HIPPO_CHECK(fs::file_size(path, ec) <= (64u << 20), "'%s' is larger than 64 MiB: not a config file", path.c_str());
    std::ifstream f(path);
    HIPPO_CHECK(f.good(), "cannot open '%s'", path.c_str());
    std::stringstream ss;
    ss << f.rdbuf();
    return parse_json_strict(ss.str(), "'" + path + "'");
}

}  // namespace hippo
