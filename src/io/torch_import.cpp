#include "io/torch_import.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "common/check.h"
#include "io/pickle.h"
#include "io/zip.h"

namespace hippo {

namespace {

size_t storage_elem_size(const std::string& t) {
    static const std::map<std::string, size_t> kSizes = {
        {"Float", 4}, {"Double", 8}, {"Half", 2}, {"BFloat16", 2}, {"ComplexFloat", 8}, {"ComplexDouble", 16},
        {"Long", 8},  {"Int", 4},    {"Short", 2}, {"Char", 1},    {"Byte", 1},        {"Bool", 1}};
    auto it = kSizes.find(t);
    return it == kSizes.end() ? 0 : it->second;
}

std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); i++) r += (i ? "," : "") + std::to_string(s[i]);
    return r + "]";
}

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

}  // namespace

bool TorchTensor::is_complex() const { return storage_type == "ComplexFloat" || storage_type == "ComplexDouble"; }
bool TorchTensor::is_float() const {
    return storage_type == "Float" || storage_type == "Double" || storage_type == "Half" ||
           storage_type == "BFloat16" || is_complex();
}
std::vector<int64_t> TorchTensor::f32_shape() const {
    std::vector<int64_t> s = shape;
    if (is_complex()) s.push_back(2);
    return s;
}
int64_t TorchTensor::f32_numel() const {
    int64_t n = 1;
    for (int64_t d : f32_shape()) n *= d;
    return n;
}

TorchCheckpoint TorchCheckpoint::open(const std::string& path) {
    TorchCheckpoint c;
    c.what_ = path;
    c.mapped_ = std::make_shared<MappedFile>(path);
    c.init(c.mapped_->data(), c.mapped_->size());
    return c;
}

TorchCheckpoint TorchCheckpoint::parse(std::vector<uint8_t> bytes, const std::string& what) {
    TorchCheckpoint c;
    c.what_ = what;
    c.owned_ = std::move(bytes);
    c.init(c.owned_.data(), c.owned_.size());
    return c;
}

void TorchCheckpoint::init(const uint8_t* data, size_t size) {
    data_ = data;
    size_ = size;
    const char* w = what_.c_str();
    HIPPO_CHECK(!(size >= 2 && data[0] == 0x80 && data[1] <= 5),
                "%s: legacy torch.save format (PyTorch < 1.6, not a zip archive) is not supported; re-save it with "
                "torch >= 1.6",
                w);
    ZipReader zip(data, size, what_);
    const ZipEntry* pkl = nullptr;
    for (const ZipEntry& e : zip.entries()) {
        size_t slash = e.name.find('/');
        if (slash != std::string::npos && e.name.substr(slash) == "/data.pkl") {
            HIPPO_CHECK(!pkl, "%s: more than one data.pkl in the archive", w);
            pkl = &e;
            prefix_ = e.name.substr(0, slash);
        }
    }
    HIPPO_CHECK(pkl, "%s: not a torch.save archive (no <name>/data.pkl entry)", w);

    pickle::Unpickler up(zip.data(*pkl), what_ + ":" + pkl->name);
    const pickle::Value* root = up.load();
    HIPPO_CHECK(root->is(pickle::Kind::Dict), "%s: no state dict: the pickled object is %s, not a dict", w,
                pickle::describe(root).c_str());
    const pickle::Value* sd = root;
    std::string strip;
    if (const pickle::Value* v = root->get("state_dict"); v && v->is(pickle::Kind::Dict)) {
        sd = v;
        lightning_ = true;
        strip = "model.";
    } else if (const pickle::Value* m = root->get("model"); m && m->is(pickle::Kind::Dict)) {
        sd = m;
    }
    std::set<std::string> names;
    std::map<std::string, StorageView> storages;
    for (auto& [k, v] : sd->dict) {
        HIPPO_CHECK(k->is(pickle::Kind::Str), "%s: state dict key is %s, not a string", w, pickle::describe(k).c_str());
        std::string name = k->s;
        if (!strip.empty() && starts_with(name, strip)) name = name.substr(strip.size());
        if (!v->is(pickle::Kind::Tensor)) {
            skipped_.push_back(name + " (" + pickle::describe(v) + ")");
            continue;
        }
        HIPPO_CHECK(names.insert(name).second, "%s: duplicate state dict key '%s'", w, name.c_str());
        const pickle::Value* st = v->storage;
        TorchTensor t;
        t.name = name;
        t.storage_type = st->s;
        t.storage_key = st->name;
        t.shape = v->shape;
        t.stride = v->stride;
        t.offset = v->offset;
        size_t es = storage_elem_size(t.storage_type);
        if (!t.is_float() || es == 0) {
            skipped_.push_back(name + " (" + t.storage_type + " tensor)");
            continue;
        }
        // Storage file: present, stored, exactly numel x element size.
        std::string entry = prefix_ + "/data/" + t.storage_key;
        const ZipEntry* ze = zip.find(entry);
        HIPPO_CHECK(ze, "%s: tensor '%s': storage file '%s' is missing from the archive", w, name.c_str(), entry.c_str());
        auto bytes = zip.data(*ze);
        HIPPO_CHECK(st->numel >= 0 && uint64_t(st->numel) <= bytes.size() / es && uint64_t(st->numel) * es == bytes.size(),
                    "%s: tensor '%s': storage '%s' holds %zu bytes, expected %lld x %zu", w, name.c_str(), entry.c_str(),
                    bytes.size(), (long long)st->numel, es);
        // View inside the storage.
        HIPPO_CHECK(t.offset >= 0, "%s: tensor '%s': negative storage offset", w, name.c_str());
        __int128 last = t.offset, numel = 1;
        for (size_t d = 0; d < t.shape.size(); d++) {
            HIPPO_CHECK(t.shape[d] >= 0 && t.stride[d] >= 0, "%s: tensor '%s': negative size or stride %s/%s", w,
                        name.c_str(), shape_str(t.shape).c_str(), shape_str(t.stride).c_str());
            numel *= t.shape[d];
            HIPPO_CHECK(numel < (__int128(1) << 62), "%s: tensor '%s': too many elements", w, name.c_str());
            if (t.shape[d] > 0) last += __int128(t.shape[d] - 1) * t.stride[d];
        }
        HIPPO_CHECK(numel == 0 || last < st->numel,
                    "%s: tensor '%s' of shape %s (offset %lld, stride %s) reaches outside its storage of %lld elements",
                    w, name.c_str(), shape_str(t.shape).c_str(), (long long)t.offset, shape_str(t.stride).c_str(),
                    (long long)st->numel);
        storages.emplace(t.storage_key, StorageView{bytes.data(), bytes.size()});
        tensors_.push_back(std::move(t));
    }
    HIPPO_CHECK(!tensors_.empty(), "%s: the state dict holds no float tensors", w);
    storages_.assign(storages.begin(), storages.end());
}

const uint8_t* TorchCheckpoint::storage_bytes(const TorchTensor& t, size_t* elem_size) const {
    auto it = std::lower_bound(storages_.begin(), storages_.end(), t.storage_key,
                               [](const auto& a, const std::string& k) { return a.first < k; });
    HIPPO_ASSERT(it != storages_.end() && it->first == t.storage_key);
    *elem_size = storage_elem_size(t.storage_type);
    return it->second.data;
}

bool TorchCheckpoint::same_view(const TorchTensor& a, const TorchTensor& b) {
    return a.storage_key == b.storage_key && a.storage_type == b.storage_type && a.offset == b.offset &&
           a.shape == b.shape && a.stride == b.stride;
}

const float* TorchCheckpoint::direct_f32(const TorchTensor& t) const {
    if (t.storage_type != "Float") return nullptr;
    int64_t expect = 1;
    for (size_t d = t.shape.size(); d-- > 0;) {
        if (t.shape[d] != 1 && t.stride[d] != expect) return nullptr;
        expect *= t.shape[d];
    }
    size_t es;
    const uint8_t* p = storage_bytes(t, &es);
    if (reinterpret_cast<uintptr_t>(p) % alignof(float)) return nullptr;
    return reinterpret_cast<const float*>(p) + t.offset;
}

std::vector<float> TorchCheckpoint::read_f32(const TorchTensor& t) const {
    HIPPO_CHECK(t.is_float(), "%s: tensor '%s' has %s storage, not float", what_.c_str(), t.name.c_str(),
                t.storage_type.c_str());
    size_t es;
    const uint8_t* base = storage_bytes(t, &es);
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    const int comps = t.is_complex() ? 2 : 1;
    const size_t cs = es / comps;  // bytes per real component
    std::vector<float> out(size_t(n) * comps);
    std::vector<int64_t> idx(t.shape.size(), 0);
    int64_t off = t.offset;
    for (int64_t i = 0; i < n; i++) {
        for (int c = 0; c < comps; c++) {
            const uint8_t* p = base + size_t(off) * es + size_t(c) * cs;
            float v;
            if (cs == 4) std::memcpy(&v, p, 4);
            else if (cs == 8) {
                double d;
                std::memcpy(&d, p, 8);
                v = float(d);
            } else {
                uint16_t h;
                std::memcpy(&h, p, 2);
                v = t.storage_type == "BFloat16" ? bf16_to_f32(h) : f16_to_f32(h);
            }
            out[size_t(i) * comps + c] = v;
        }
        for (size_t d = t.shape.size(); d-- > 0;) {
            off += t.stride[d];
            if (++idx[d] < t.shape[d]) break;
            off -= t.stride[d] * t.shape[d];
            idx[d] = 0;
        }
    }
    return out;
}

}  // namespace hippo
