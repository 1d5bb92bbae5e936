// Import of torch.save checkpoints (io/torch_import.h, io/zip.h, io/pickle.h). The fixtures in
// tests/data/torch/ and their expected values (expected.json) come from
// scripts/fixtures/make_torch_checkpoints.py (run with /usr/bin/python3, torch 1.13).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "io/file.h"
#include "io/pickle.h"
#include "io/zip.h"
#include "io/safetensors.h"
#include "io/torch_import.h"
#include "models/h3_import.h"

using namespace hippo;

namespace {

std::string fx(const std::string& n) { return std::string(HIPPO_TEST_DATA) + "/torch/" + n; }

const nlohmann::json& expected() {
    static nlohmann::json j = [] {
        auto b = read_file(fx("expected.json"));
        return nlohmann::json::parse(b.begin(), b.end());
    }();
    return j;
}

std::string tmp_dir(const std::string& tag) {
    std::string d = (std::filesystem::temp_directory_path() / ("hippo_test_import_" + tag + "_" + std::to_string(::getpid()))).string();
    std::filesystem::remove_all(d);
    return d;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "<no error>";
}

// Imports `file` and checks every expected tensor of "plain" (lm_head is the tied alias).
void check_import(const std::string& file) {
    std::string out = tmp_dir(file);
    ImportOptions opt;
    opt.out_dir = out;
    opt.heads = 2;
    ImportReport r = import_torch_checkpoint(fx(file), opt);
    SafetensorsFile st = SafetensorsFile::open(out + "/model.safetensors");
    const auto& exp = expected()["plain"];
    size_t n = 0;
    for (auto it = exp.begin(); it != exp.end(); ++it) {
        if (it.key() == "lm_head.weight") {
            EXPECT_EQ(st.find(it.key()), nullptr) << "tied lm_head should be dropped";
            continue;
        }
        const TensorInfo* t = st.find(it.key());
        ASSERT_NE(t, nullptr) << file << ": missing " << it.key();
        EXPECT_EQ(t->dtype, DType::F32);
        EXPECT_EQ(t->shape, it.value()["shape"].get<std::vector<int64_t>>()) << it.key();
        EXPECT_EQ(st.read_f32(it.key()), it.value()["values"].get<std::vector<float>>()) << it.key();
        n++;
    }
    EXPECT_EQ(st.tensors().size(), n);
    EXPECT_EQ(r.tensors, n);
    std::vector<uint8_t> cfg_bytes = read_file(out + "/config.json");
    auto cfg = nlohmann::json::parse(cfg_bytes.begin(), cfg_bytes.end());
    const auto& ec = expected()["config"];
    EXPECT_EQ(cfg["d_model"], ec["d_model"]);
    EXPECT_EQ(cfg["n_layer"], ec["n_layer"]);
    EXPECT_EQ(cfg["vocab_size"], ec["vocab_size"]);
    EXPECT_EQ(cfg["d_inner"], ec["d_inner"]);
    EXPECT_EQ(cfg["attn_layer_idx"], ec["attn_layer_idx"]);
    EXPECT_EQ(cfg["ssm_cfg"]["d_state"], ec["d_state"]);
    EXPECT_EQ(cfg["ssm_cfg"]["head_dim"], 1);
    EXPECT_EQ(cfg["attn_cfg"]["num_heads"], ec["heads"]);
    EXPECT_EQ(cfg["attn_cfg"]["rotary_emb_dim"], ec["rotary_emb_dim"]);
    std::filesystem::remove_all(out);
}

}  // namespace

TEST(TorchImport, Plain) { check_import("plain.pt"); }

TEST(TorchImport, Lightning) {
    check_import("lightning.pt");
    TorchCheckpoint c = TorchCheckpoint::open(fx("lightning.pt"));
    EXPECT_TRUE(c.lightning());
    for (auto& t : c.tensors()) EXPECT_EQ(t.name.rfind("model.", 0), std::string::npos) << t.name;
}

TEST(TorchImport, LegacyNames) {
    check_import("legacy.pt");
    std::vector<std::string> old = {"embedding.weight",
                                    "s4seq.encoder.norm.weight",
                                    "s4seq.encoder.layers.0.norm1.weight",
                                    "s4seq.encoder.layers.0.norm2.weight",
                                    "s4seq.encoder.layers.1.norm1.weight",
                                    "s4seq.encoder.layers.1.norm2.weight",
                                    "s4seq.encoder.layers.1.mixer.D"};
    bool legacy = false;
    auto got = remap_h3_keys(old, &legacy);
    EXPECT_TRUE(legacy);
    std::vector<std::string> want = {"backbone.embeddings.word_embeddings.weight",
                                     "backbone.layers.0.norm1.weight",
                                     "backbone.layers.0.norm2.weight",
                                     "backbone.layers.1.norm1.weight",
                                     "backbone.layers.1.norm2.weight",
                                     "backbone.ln_f.weight",
                                     "backbone.layers.1.mixer.D"};
    EXPECT_EQ(got, want);
    std::vector<std::string> modern = {"backbone.layers.0.norm1.weight", "backbone.ln_f.weight"};
    EXPECT_EQ(remap_h3_keys(modern, &legacy), modern);
    EXPECT_FALSE(legacy);
}

TEST(TorchImport, DtypesViewsComplex) {
    TorchCheckpoint c = TorchCheckpoint::open(fx("mixed.pt"));
    const auto& exp = expected()["mixed"];
    size_t n = 0;
    for (const TorchTensor& t : c.tensors()) {
        ASSERT_TRUE(exp.contains(t.name)) << t.name;
        EXPECT_EQ(t.f32_shape(), exp[t.name]["shape"].get<std::vector<int64_t>>()) << t.name;
        EXPECT_EQ(c.read_f32(t), exp[t.name]["values"].get<std::vector<float>>()) << t.name;
        const float* d = c.direct_f32(t);
        if (d) {
            EXPECT_EQ(std::vector<float>(d, d + t.f32_numel()), c.read_f32(t)) << t.name;
        }
        n++;
    }
    EXPECT_EQ(n, exp.size());
    ASSERT_EQ(c.skipped().size(), 1u);
    EXPECT_NE(c.skipped()[0].find("int_buffer"), std::string::npos);
}

TEST(TorchImport, HostilePickleIsNeverExecuted) {
    std::string marker = expected()["marker"];
    std::filesystem::remove(marker);
    std::string e = error_of([] { TorchCheckpoint::open(fx("hostile.pt")); });
    EXPECT_NE(e.find("os.system"), std::string::npos) << e;
    EXPECT_FALSE(std::filesystem::exists(marker)) << "the pickle's command ran!";
}

TEST(TorchImport, ClearErrors) {
    auto imp = [](const std::string& f, int64_t heads) {
        return error_of([&] {
            ImportOptions o;
            o.out_dir = tmp_dir("err");
            o.heads = heads;
            import_torch_checkpoint(fx(f), o);
        });
    };
    EXPECT_NE(imp("truncated.pt", 2).find("truncated"), std::string::npos);
    EXPECT_NE(imp("deflate.pt", 2).find("compressed"), std::string::npos);
    EXPECT_NE(imp("missing.pt", 2).find("missing from the archive"), std::string::npos);
    EXPECT_NE(imp("bad_shape.pt", 2).find("Wqkv.weight' has shape [40,16], expected [48,16]"), std::string::npos);
    EXPECT_NE(imp("not_zip.pt", 2).find("legacy torch.save format"), std::string::npos);
    EXPECT_NE(imp("plain.pt", 0).find("--heads is required"), std::string::npos);
    EXPECT_NE(imp("plain.pt", 3).find("does not divide"), std::string::npos);
    EXPECT_NE(imp("no_such_file.pt", 2).find("no_such_file.pt"), std::string::npos);
    for (const std::string& e : {imp("truncated.pt", 2), imp("missing.pt", 2)})
        EXPECT_EQ(e.find('\n'), std::string::npos) << "one-line errors";
}

TEST(TorchImport, ConfigPatch) {
    ImportOptions o;
    o.out_dir = tmp_dir("patch");
    o.config_patch = nlohmann::json::parse(R"({"attn_cfg": {"num_heads": 2}, "vocab_size": 64, "embed_dropout": 0.0})");
    ImportReport r = import_torch_checkpoint(fx("plain.pt"), o);  // heads from the patch
    EXPECT_EQ(r.config["attn_cfg"]["num_heads"], 2);
    EXPECT_EQ(r.config["embed_dropout"], 0.0);
    o.config_patch = nlohmann::json::parse(R"({"bogus_key": 1})");
    o.heads = 2;
    EXPECT_NE(error_of([&] { import_torch_checkpoint(fx("plain.pt"), o); }).find("bogus_key"), std::string::npos);
    // A patch that describes another model (here 4 heads of 4 dims, too narrow for the checkpoint's
    // rotary_emb_dim 8; or an extra layer) is refused before anything is written: the directory
    // would not load.
    const std::string out2 = tmp_dir("patch_bad");
    o.out_dir = out2;
    o.config_patch = nlohmann::json::parse(R"({"attn_cfg": {"num_heads": 4}})");
    EXPECT_NE(error_of([&] { import_torch_checkpoint(fx("plain.pt"), o); }).find("rotary_emb_dim 8"), std::string::npos);
    o.config_patch = nlohmann::json::parse(R"({"n_layer": 4})");
    EXPECT_NE(error_of([&] { import_torch_checkpoint(fx("plain.pt"), o); }).find("which the checkpoint lacks"), std::string::npos);
    o.config_patch = nlohmann::json::parse(R"({"d_inner": 32})");
    EXPECT_NE(error_of([&] { import_torch_checkpoint(fx("plain.pt"), o); }).find("in the model the config describes"),
              std::string::npos);
    EXPECT_FALSE(std::filesystem::exists(out2 + "/config.json"));
    std::filesystem::remove_all(out2);
    std::filesystem::remove_all(o.out_dir);
}

// Every prefix and many single-byte corruptions of a real checkpoint: hippo::Error or success, never a crash.
TEST(TorchImport, TruncationsAndCorruptionsFailCleanly) {
    std::vector<uint8_t> full = read_file(fx("plain.pt"));
    for (size_t n = 0; n < full.size(); n += 97) {
        std::vector<uint8_t> b(full.begin(), full.begin() + n);
        EXPECT_THROW(TorchCheckpoint::parse(b, "prefix"), Error) << n;
    }
    size_t ok = 0;
    for (size_t i = 0; i < full.size(); i += 13) {
        std::vector<uint8_t> b = full;
        b[i] ^= 0x5A;
        try {
            TorchCheckpoint c = TorchCheckpoint::parse(b, "corrupt");
            for (auto& t : c.tensors()) c.read_f32(t);
            ok++;
        } catch (const Error&) {
        }
    }
    EXPECT_GT(ok, 0u);  // flips inside tensor data are harmless
}

// A pickle that nests one-element tuples millions deep is refused at the object cap instead of
// growing memory by gigabytes (the cap is far above any model checkpoint's object count).
TEST(TorchImport, PickleObjectCountIsBounded) {
    std::vector<uint8_t> p{0x80, 2, 'N'};
    p.insert(p.end(), size_t(3) << 20, uint8_t(0x85));  // TUPLE1
    p.push_back('.');
    pickle::Unpickler u(p, "nested.pkl");
    std::string e;
    try {
        u.load();
    } catch (const Error& err) {
        e = err.what();
    }
    EXPECT_NE(e.find("objects: not a model checkpoint"), std::string::npos) << e;
    // Shallow pickles far below the cap still load.
    std::vector<uint8_t> ok{0x80, 2, 'N', 0x85, 0x85, '.'};
    pickle::Unpickler u2(ok, "ok.pkl");
    EXPECT_NO_THROW(u2.load());
}

// One flipped byte in a stored tensor is caught by the entry's CRC-32, not imported as a wrong weight.
TEST(TorchImport, CorruptTensorBytesAreRefused) {
    const char* check = "123456789";
    EXPECT_EQ(crc32(reinterpret_cast<const uint8_t*>(check), 9), 0xCBF43926u);  // the standard check value
    std::vector<uint8_t> bytes = read_file(fx("plain.pt"));
    uint64_t off = 0;
    {
        ZipReader z(bytes.data(), bytes.size(), "plain.pt");
        for (const ZipEntry& e : z.entries())
            if (e.name.find("/data/") != std::string::npos && e.size > 8) off = e.data_offset + e.size / 2;
    }
    ASSERT_GT(off, 0u);
    bytes[off] ^= 0x10;
    const std::string bad = std::filesystem::temp_directory_path() / "hippo_corrupt.pt";
    write_file_atomic(bad, bytes.data(), bytes.size());
    ImportOptions o;
    o.out_dir = tmp_dir("corrupt");
    o.heads = 2;
    EXPECT_NE(error_of([&] { import_torch_checkpoint(bad, o); }).find("is corrupt (CRC-32"), std::string::npos);
    EXPECT_FALSE(std::filesystem::exists(o.out_dir + "/model.safetensors"));
    std::filesystem::remove(bad);
}

// An output directory that cannot be created says why (here: its parent is a file), not "no such file".
TEST(TorchImport, UncreatableOutputDirectorySaysWhy) {
    const std::string file = std::filesystem::temp_directory_path() / "hippo_import_parent_file";
    write_file_atomic(file, "x", 1);
    ImportOptions o;
    o.out_dir = file + "/model";
    o.heads = 2;
    const std::string e = error_of([&] { import_torch_checkpoint(fx("plain.pt"), o); });
    EXPECT_NE(e.find("cannot create output directory"), std::string::npos) << e;
    EXPECT_NE(e.find("Not a directory"), std::string::npos) << e;
    std::filesystem::remove(file);
}
