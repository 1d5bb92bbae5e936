#include "models/config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "common/check.h"

namespace hippo {

using json = nlohmann::json;

MixerKind parse_mixer_kind(const std::string& s) {
    if (s == "h3") return MixerKind::h3;
    if (s == "attention" || s == "mha") return MixerKind::attention;
    if (s == "s4d") return MixerKind::s4d;
    if (s == "gss") return MixerKind::gss;
    if (s == "linear_attention") return MixerKind::linear_attention;
    throw Error(strf("unknown mixer '%s' (expected h3, attention, s4d, gss or linear_attention)", s.c_str()));
}

const char* mixer_kind_name(MixerKind k) {
    switch (k) {
        case MixerKind::h3: return "h3";
        case MixerKind::attention: return "attention";
        case MixerKind::s4d: return "s4d";
        case MixerKind::gss: return "gss";
        case MixerKind::linear_attention: return "linear_attention";
    }
    return "?";
}

int64_t ModelConfig::padded_vocab() const {
    int64_t m = pad_vocab_size_multiple > 0 ? pad_vocab_size_multiple : 1;
    return (vocab_size + m - 1) / m * m;
}

MixerKind ModelConfig::layer_mixer(int64_t i) const {
    for (int64_t a : attn_layer_idx)
        if (a == i) return attn_mixer;
    return mixer;
}

bool ModelConfig::layer_has_mlp(int64_t i) const { return mlp; }

namespace {

// Typed getters that name the key and the source in their errors.
struct Reader {
    const json& j;
    std::string where;
    std::set<std::string> known;

    bool has(const std::string& k) {
        known.insert(k);
        return j.contains(k) && !j.at(k).is_null();
    }
    int64_t integer(const std::string& k, int64_t def) {
        if (!has(k)) return def;
        const json& v = j.at(k);
        HIPPO_CHECK(v.is_number_integer(), "%s: '%s' must be an integer, got %s", where.c_str(), k.c_str(), v.dump().c_str());
        return v.get<int64_t>();
    }
    double number(const std::string& k, double def) {
        if (!has(k)) return def;
        const json& v = j.at(k);
        HIPPO_CHECK(v.is_number(), "%s: '%s' must be a number, got %s", where.c_str(), k.c_str(), v.dump().c_str());
        return v.get<double>();
    }
    std::string string(const std::string& k, const std::string& def) {
        if (!has(k)) return def;
        const json& v = j.at(k);
        HIPPO_CHECK(v.is_string(), "%s: '%s' must be a string, got %s", where.c_str(), k.c_str(), v.dump().c_str());
        return v.get<std::string>();
    }
    bool boolean(const std::string& k, bool def) {
        if (!has(k)) return def;
        const json& v = j.at(k);
        HIPPO_CHECK(v.is_boolean(), "%s: '%s' must be true or false, got %s", where.c_str(), k.c_str(), v.dump().c_str());
        return v.get<bool>();
    }
    const json& object(const std::string& k) {
        known.insert(k);
        const json& v = j.at(k);
        HIPPO_CHECK(v.is_object(), "%s: '%s' must be an object, got %s", where.c_str(), k.c_str(), v.dump().c_str());
        return v;
    }
    void finish() {
        for (auto it = j.begin(); it != j.end(); ++it)
            HIPPO_CHECK(known.count(it.key()), "%s: unknown key '%s'", where.c_str(), it.key().c_str());
    }
};

}  // namespace

ModelConfig parse_model_config(const json& top, const std::string& where_in) {
    HIPPO_CHECK(top.is_object(), "%s: expected a JSON object", where_in.c_str());
    const json* jp = &top;
    std::string where = where_in;
    if (top.contains("model")) {
        for (auto it = top.begin(); it != top.end(); ++it)
            HIPPO_CHECK(it.key() == "model" || it.key() == "train" || it.key() == "name" || it.key() == "comment",
                        "%s: unknown top-level key '%s' (expected model, train, name, comment)", where.c_str(),
                        it.key().c_str());
        jp = &top.at("model");
        HIPPO_CHECK(jp->is_object(), "%s: 'model' must be an object", where.c_str());
    }
    Reader r{*jp, where, {}};
    ModelConfig c;
    c.name = r.string("name", top.contains("name") && top.at("name").is_string() ? top.at("name").get<std::string>() : "");
    r.string("comment", "");
    c.d_model = r.integer("d_model", 0);
    c.n_layer = r.integer("n_layer", 0);
    if (r.has("vocab_size") && r.j.at("vocab_size").is_string()) {
        HIPPO_CHECK(r.j.at("vocab_size").get<std::string>() == "data",
                    "%s: 'vocab_size' must be a positive integer or \"data\"", where.c_str());
        c.vocab_from_data = true;
        c.vocab_size = 1;  // resolved by the trainer from the data source
    } else {
        c.vocab_size = r.integer("vocab_size", 0);
    }
    HIPPO_CHECK(c.d_model > 0, "%s: 'd_model' must be a positive integer", where.c_str());
    HIPPO_CHECK(c.n_layer > 0, "%s: 'n_layer' must be a positive integer", where.c_str());
    HIPPO_CHECK(c.vocab_size > 0, "%s: 'vocab_size' must be a positive integer", where.c_str());
    c.d_inner = r.integer("d_inner", 0);
    HIPPO_CHECK(c.d_inner >= 0, "%s: 'd_inner' must be >= 0", where.c_str());
    try {
        c.mixer = parse_mixer_kind(r.string("mixer", "h3"));
        c.attn_mixer = parse_mixer_kind(r.string("attn_mixer", "attention"));
    } catch (const Error& e) {
        throw Error(where + ": " + e.what());
    }
    if (r.has("attn_layer_idx")) {
        const json& a = r.j.at("attn_layer_idx");
        HIPPO_CHECK(a.is_array(), "%s: 'attn_layer_idx' must be a list of layer indices", where.c_str());
        std::set<int64_t> seen;
        for (const json& v : a) {
            HIPPO_CHECK(v.is_number_integer(), "%s: attn_layer_idx entry %s is not an integer", where.c_str(), v.dump().c_str());
            int64_t i = v.get<int64_t>();
            HIPPO_CHECK(i >= 0 && i < c.n_layer, "%s: attention layer index %lld is out of range for n_layer = %lld",
                        where.c_str(), (long long)i, (long long)c.n_layer);
            HIPPO_CHECK(seen.insert(i).second, "%s: attention layer index %lld is listed twice", where.c_str(), (long long)i);
            c.attn_layer_idx.push_back(i);
        }
    }
    c.max_position_embeddings = r.integer("max_position_embeddings", 0);
    HIPPO_CHECK(c.max_position_embeddings >= 0, "%s: 'max_position_embeddings' must be >= 0", where.c_str());
    c.embed_dropout = r.number("embed_dropout", 0.1);
    c.resid_dropout = r.number("resid_dropout", 0.0);
    for (double p : {c.embed_dropout, c.resid_dropout})
        HIPPO_CHECK(p >= 0 && p < 1, "%s: dropout must be in [0, 1), got %g", where.c_str(), p);
    c.pad_vocab_size_multiple = r.integer("pad_vocab_size_multiple", 8);
    HIPPO_CHECK(c.pad_vocab_size_multiple >= 1, "%s: 'pad_vocab_size_multiple' must be >= 1", where.c_str());
    c.initializer_range = r.number("initializer_range", 0.02);
    c.layer_norm_epsilon = r.number("layer_norm_epsilon", 1e-5);
    c.mlp = r.boolean("mlp", c.mixer != MixerKind::gss);
    if (r.has("ssm_cfg")) {
        Reader s{r.object("ssm_cfg"), where + " ssm_cfg", {}};
        c.ssm.d_state = s.integer("d_state", 64);
        c.ssm.head_dim = s.integer("head_dim", 1);
        c.ssm.init = s.string("init", "lin");
        c.ssm.disc = s.string("disc", "");
        c.ssm.dt_min = s.number("dt_min", 1e-3);
        c.ssm.dt_max = s.number("dt_max", 1e-1);
        c.ssm.postact = s.string("postact", "glu");
        s.finish();
        HIPPO_CHECK(c.ssm.postact == "glu" || c.ssm.postact == "none", "%s: ssm_cfg.postact must be glu or none, got '%s'",
                    where.c_str(), c.ssm.postact.c_str());
        HIPPO_CHECK(c.ssm.disc.empty() || c.ssm.disc == "bilinear" || c.ssm.disc == "zoh",
                    "%s: ssm_cfg.disc must be bilinear or zoh, got '%s'", where.c_str(), c.ssm.disc.c_str());
    }
    if (r.has("attn_cfg")) {
        Reader s{r.object("attn_cfg"), where + " attn_cfg", {}};
        c.attn.num_heads = s.integer("num_heads", 1);
        c.attn.rotary_emb_dim = s.integer("rotary_emb_dim", 0);
        c.attn.dropout = s.number("dropout", 0.0);
        s.finish();
        HIPPO_CHECK(c.attn.num_heads >= 1 && c.d_model % c.attn.num_heads == 0,
                    "%s: d_model %lld is not a multiple of attn_cfg.num_heads %lld", where.c_str(), (long long)c.d_model,
                    (long long)c.attn.num_heads);
    }
    if (r.has("gss_cfg")) {
        Reader s{r.object("gss_cfg"), where + " gss_cfg", {}};
        c.gss.d_state = s.integer("d_state", 64);
        c.gss.expand = s.integer("expand", 4);
        c.gss.bottleneck = s.integer("bottleneck", 4);
        s.finish();
    }
    r.finish();
    return c;
}

json ModelConfig::to_json() const {
    json j;
    if (!name.empty()) j["name"] = name;
    j["d_model"] = d_model;
    j["n_layer"] = n_layer;
    j["vocab_size"] = vocab_size;
    j["d_inner"] = inner();
    j["mixer"] = mixer_kind_name(mixer);
    j["attn_mixer"] = mixer_kind_name(attn_mixer);
    j["attn_layer_idx"] = attn_layer_idx;
    j["max_position_embeddings"] = max_position_embeddings;
    j["embed_dropout"] = embed_dropout;
    j["resid_dropout"] = resid_dropout;
    j["pad_vocab_size_multiple"] = pad_vocab_size_multiple;
    j["initializer_range"] = initializer_range;
    j["layer_norm_epsilon"] = layer_norm_epsilon;
    j["mlp"] = mlp;
    j["ssm_cfg"] = {{"d_state", ssm.d_state}, {"head_dim", ssm.head_dim}, {"init", ssm.init},
                    {"disc", ssm.disc},       {"dt_min", ssm.dt_min},     {"dt_max", ssm.dt_max},
                    {"postact", ssm.postact}};
    j["attn_cfg"] = {{"num_heads", attn.num_heads}, {"rotary_emb_dim", attn.rotary_emb_dim}, {"dropout", attn.dropout}};
    j["gss_cfg"] = {{"d_state", gss.d_state}, {"expand", gss.expand}, {"bottleneck", gss.bottleneck}};
    return j;
}

json read_json_file(const std::string& path) {
    std::ifstream f(path);
    HIPPO_CHECK(f.good(), "cannot open '%s'", path.c_str());
    std::stringstream ss;
    ss << f.rdbuf();
    try {
        return json::parse(ss.str());
    } catch (const json::exception& e) {
        throw Error(strf("'%s' is not valid JSON: %s", path.c_str(), e.what()));
    }
}

}  // namespace hippo
