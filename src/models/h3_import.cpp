#include "models/h3_import.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "common/check.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "models/config.h"
#include "models/model.h"

namespace hippo {

namespace {
bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); i++) r += (i ? "," : "") + std::to_string(s[i]);
    return r + "]";
}
}  // namespace

std::vector<std::string> remap_h3_keys(const std::vector<std::string>& names, bool* legacy) {
    std::vector<std::string> out = names;
    bool changed = false;
    auto replace_prefix = [&](std::string& s, const std::string& from, const std::string& to) {
        if (starts_with(s, from)) {
            s = to + s.substr(from.size());
            changed = true;
        }
    };
    bool has_ln0 = false;
    for (std::string& s : out) {
        replace_prefix(s, "s4seq.encoder.", "backbone.");
        replace_prefix(s, "embedding.", "backbone.embeddings.word_embeddings.");
        replace_prefix(s, "backbone.norm.", "backbone.ln_0.");
        if (starts_with(s, "backbone.ln_0.")) has_ln0 = true;
    }
    if (has_ln0) {
        changed = true;
        // Layer index of "backbone.layers.<i>.<rest>"; -1 otherwise.
        auto layer_of = [](const std::string& s, std::string* rest) -> long {
            if (!starts_with(s, "backbone.layers.")) return -1;
            size_t p = 16, q = s.find('.', p);
            if (q == std::string::npos || q == p || q - p > 9) return -1;
            for (size_t k = p; k < q; k++)
                if (s[k] < '0' || s[k] > '9') return -1;
            *rest = s.substr(q + 1);
            return std::stol(s.substr(p, q - p));
        };
        long last = -1;
        std::string rest;
        for (const std::string& s : out) last = std::max(last, layer_of(s, &rest));
        for (std::string& s : out) {
            long l = layer_of(s, &rest);
            if (starts_with(s, "backbone.ln_0.")) s = "backbone.layers.0.norm1." + s.substr(14);
            else if (l >= 0 && starts_with(rest, "norm1."))
                s = "backbone.layers." + std::to_string(l) + ".norm2." + rest.substr(6);
            else if (l >= 0 && starts_with(rest, "norm2."))
                s = l == last ? "backbone.ln_f." + rest.substr(6)
                              : "backbone.layers." + std::to_string(l + 1) + ".norm1." + rest.substr(6);
        }
    }
    std::set<std::string> seen;
    for (const std::string& s : out) HIPPO_CHECK(seen.insert(s).second, "key remapping produced '%s' twice", s.c_str());
    if (legacy) *legacy = changed;
    return out;
}

nlohmann::json infer_h3_config(const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes, int64_t heads) {
    std::map<std::string, std::vector<int64_t>> sh(shapes.begin(), shapes.end());
    auto get = [&](const std::string& n) -> const std::vector<int64_t>* {
        auto it = sh.find(n);
        return it == sh.end() ? nullptr : &it->second;
    };
    auto expect = [&](const std::string& n, const std::vector<int64_t>& want) {
        const auto* s = get(n);
        HIPPO_CHECK(s, "tensor '%s' is missing", n.c_str());
        HIPPO_CHECK(*s == want, "tensor '%s' has shape %s, expected %s", n.c_str(), shape_str(*s).c_str(),
                    shape_str(want).c_str());
    };
    const auto* emb = get("backbone.embeddings.word_embeddings.weight");
    HIPPO_CHECK(emb && emb->size() == 2,
                "not an H3 / SSMLMHeadModel state dict: no 2-d backbone.embeddings.word_embeddings.weight");
    int64_t vocab = (*emb)[0], d = (*emb)[1];
    int64_t n_layer = 0;
    for (auto& [n, s] : sh) {
        if (!starts_with(n, "backbone.layers.")) continue;
        size_t q = n.find('.', 16);
        std::string num = n.substr(16, q == std::string::npos ? std::string::npos : q - 16);
        HIPPO_CHECK(!num.empty() && num.size() < 7 && num.find_first_not_of("0123456789") == std::string::npos,
                    "unexpected tensor name '%s'", n.c_str());
        n_layer = std::max<int64_t>(n_layer, std::stol(num) + 1);
    }
    HIPPO_CHECK(n_layer > 0, "no backbone.layers.<i>.* tensors");
    std::vector<int64_t> attn;
    int64_t d_state = -1, head_dim = -1, rotary = 0, d_inner = -1;
    for (int64_t i = 0; i < n_layer; i++) {
        std::string p = "backbone.layers." + std::to_string(i) + ".";
        expect(p + "norm1.weight", {d});
        expect(p + "norm2.weight", {d});
        const auto* fc1 = get(p + "mlp.fc1.weight");
        HIPPO_CHECK(fc1 && fc1->size() == 2 && (*fc1)[1] == d, "layer %lld: mlp.fc1.weight missing or not [*, %lld]",
                    (long long)i, (long long)d);
        if (d_inner < 0) d_inner = (*fc1)[0];
        expect(p + "mlp.fc1.weight", {d_inner, d});
        expect(p + "mlp.fc2.weight", {d, d_inner});
        if (get(p + "mixer.Wqkv.weight")) {
            attn.push_back(i);
            expect(p + "mixer.Wqkv.weight", {3 * d, d});
            expect(p + "mixer.out_proj.weight", {d, d});
            if (const auto* f = get(p + "mixer.rotary_emb.inv_freq")) {
                HIPPO_CHECK(f->size() == 1, "layer %lld: rotary_emb.inv_freq must be 1-d", (long long)i);
                HIPPO_CHECK(rotary == 0 || rotary == 2 * (*f)[0], "attention layers disagree on the rotary dimension");
                rotary = 2 * (*f)[0];
            }
            continue;
        }
        for (const char* n : {"q_proj", "k_proj", "v_proj", "output_linear"})
            expect(p + "mixer." + n + ".weight", {d, d});
        const auto* kb = get(p + "mixer.ssm_k_kernel.kernel.B");
        HIPPO_CHECK(kb && kb->size() == 2 && (*kb)[0] == d,
                    "layer %lld: mixer.ssm_k_kernel.kernel.B missing or not [%lld, d_state]", (long long)i, (long long)d);
        HIPPO_CHECK(d_state < 0 || d_state == (*kb)[1], "layers disagree on d_state");
        d_state = (*kb)[1];
        const auto* dt = get(p + "mixer.kernel.kernel.log_dt");
        HIPPO_CHECK(dt && dt->size() == 1 && (*dt)[0] > 0 && d % (*dt)[0] == 0,
                    "layer %lld: mixer.kernel.kernel.log_dt missing or its length does not divide d_model", (long long)i);
        int64_t H = (*dt)[0];
        HIPPO_CHECK(head_dim < 0 || head_dim == d / H, "layers disagree on the SSM head dimension");
        head_dim = d / H;
        if (get(p + "mixer.kernel.kernel.B")) expect(p + "mixer.kernel.kernel.B", {H, d_state / 2, 2});
        if (get(p + "mixer.kernel.kernel.A_imag")) expect(p + "mixer.kernel.kernel.A_imag", {H, d_state / 2});
    }
    nlohmann::json j;
    j["d_model"] = d;
    j["n_layer"] = n_layer;
    j["vocab_size"] = vocab;
    j["d_inner"] = d_inner;
    j["max_position_embeddings"] = 0;
    if (int64_t(attn.size()) == n_layer) {
        j["mixer"] = "attention";
    } else {
        j["mixer"] = "h3";
        j["ssm_cfg"] = {{"d_state", d_state}, {"head_dim", head_dim}};
        if (!attn.empty()) j["attn_layer_idx"] = attn;
    }
    if (!attn.empty()) {
        nlohmann::json a;
        if (heads > 0) {
            HIPPO_CHECK(d % heads == 0, "--heads %lld does not divide d_model %lld", (long long)heads, (long long)d);
            HIPPO_CHECK(rotary <= d / heads, "rotary dimension %lld exceeds the head dimension %lld", (long long)rotary,
                        (long long)(d / heads));
            a["num_heads"] = heads;
        }
        a["rotary_emb_dim"] = rotary;
        j["attn_cfg"] = a;
    }
    return j;
}

ImportReport import_torch_checkpoint(const std::string& path, const ImportOptions& opt) {
    HIPPO_CHECK(!opt.out_dir.empty(), "no output directory");
    TorchCheckpoint ck = TorchCheckpoint::open(path);
    ImportReport rep;
    rep.lightning = ck.lightning();
    rep.skipped = ck.skipped();
    const auto& ts = ck.tensors();
    std::vector<std::string> names;
    for (const auto& t : ts) names.push_back(t.name);
    names = remap_h3_keys(names, &rep.legacy);

    // Drop lm_head.weight when it is the embedding itself (tied weights).
    std::vector<size_t> keep;
    const TorchTensor* emb = nullptr;
    for (size_t i = 0; i < ts.size(); i++)
        if (names[i] == "backbone.embeddings.word_embeddings.weight") emb = &ts[i];
    std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
    for (size_t i = 0; i < ts.size(); i++) {
        if (names[i] == "lm_head.weight" && emb && TorchCheckpoint::same_view(ts[i], *emb)) {
            rep.tied_lm_head = true;
            continue;
        }
        keep.push_back(i);
        shapes.emplace_back(names[i], ts[i].f32_shape());
    }
    nlohmann::json cfg;
    try {
        cfg = infer_h3_config(shapes, opt.heads);
    } catch (const Error& e) {
        throw Error(strf("%s: %s", path.c_str(), e.what()));
    }
    if (!opt.config_patch.is_null()) {
        HIPPO_CHECK(opt.config_patch.is_object(), "--config must be a JSON object");
        cfg.merge_patch(opt.config_patch);
    }
    if (cfg.contains("attn_cfg") && !cfg["attn_cfg"].contains("num_heads"))
        throw Error(strf("%s: --heads is required: layers %s use attention and the number of heads cannot be read off "
                         "the tensors (H3 releases: 12 for 125M, 16 for 355M/1.3B, 20 for 2.7B)",
                         path.c_str(), cfg.value("attn_layer_idx", nlohmann::json::array()).dump().c_str()));
    ModelConfig mc = parse_model_config(cfg, "imported config");
    {
        // The directory must load: the model this config describes has exactly these tensors.
        std::unique_ptr<Model> m = make_model(mc, 0);
        std::map<std::string, std::vector<int64_t>> have(shapes.begin(), shapes.end());
        for (const auto& [name, t] : m->named_parameters()) {
            auto it = have.find(name);
            HIPPO_CHECK(it != have.end(), "%s: the config describes a model with parameter '%s', which the checkpoint lacks",
                        path.c_str(), name.c_str());
            HIPPO_CHECK(it->second == t.shape().vec(), "%s: '%s' is %s in the checkpoint but %s in the model the config describes",
                        path.c_str(), name.c_str(), shape_str(it->second).c_str(), shape_str(t.shape().vec()).c_str());
            have.erase(it);
        }
        HIPPO_CHECK(have.empty(), "%s: tensor '%s' has no place in the model the config describes", path.c_str(),
                    have.begin()->first.c_str());
    }

    // Tensors: direct views of the mmapped file where possible, converted copies otherwise.
    std::vector<std::vector<float>> converted;
    converted.reserve(keep.size());
    SafetensorsWriter w;
    for (size_t i : keep) {
        const TorchTensor& t = ts[i];
        const float* p = ck.direct_f32(t);
        if (!p) {
            converted.push_back(ck.read_f32(t));
            p = converted.back().data();
        }
        w.add_f32(names[i], t.f32_shape(), p);
        rep.bytes += uint64_t(t.f32_numel()) * 4;
    }
    rep.tensors = keep.size();
    w.set_metadata("format", "hippo");
    w.set_metadata("source", "torch.save checkpoint imported by hippo import");

    std::error_code ec;
    // The creation's own error (e.g. permission denied), not the later is_directory's "no such file".
    std::filesystem::create_directories(opt.out_dir, ec);
    std::error_code ec_dir;
    HIPPO_CHECK(std::filesystem::is_directory(opt.out_dir, ec_dir), "cannot create output directory '%s'%s%s",
                opt.out_dir.c_str(), ec ? ": " : "", ec ? ec.message().c_str() : "");
    w.write(opt.out_dir + "/model.safetensors");
    std::string js = cfg.dump(2) + "\n";
    write_file_atomic(opt.out_dir + "/config.json", js.data(), js.size());
    rep.config = cfg;
    return rep;
}

}  // namespace hippo
