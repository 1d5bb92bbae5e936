#include "io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "common/check.h"

namespace hippo {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host needs byte swaps here");

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeader = 100'000'000;  // same limit as the reference implementation
constexpr const char* kMetadataKey = "__metadata__";

struct DTypeDesc {
    DType dt;
    const char* name;
    size_t size;
};
constexpr DTypeDesc kDTypes[] = {
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},     {DType::I8, "I8", 1},
    {DType::I16, "I16", 2},   {DType::U16, "U16", 2},   {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I32, "I32", 4},   {DType::U32, "U32", 4},
    {DType::F32, "F32", 4},   {DType::F64, "F64", 8},   {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},   {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};

const DTypeDesc& desc(DType dt) {
    for (const auto& d : kDTypes)
        if (d.dt == dt) return d;
    HIPPO_ASSERT(false, "bad DType %d", int(dt));
    __builtin_unreachable();
}

// A name as it appears in messages: JSON-quoted, so control characters and quotes stay on one line.
std::string json_quote(const std::string& s) {
    return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string shape_str(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// Element count of a shape; false if the product of the non-zero dims exceeds INT64_MAX (so that
// any left-to-right int64 product a consumer computes cannot overflow either).
bool checked_numel(const std::vector<int64_t>& shape, uint64_t* out) {
    uint64_t p = 1;
    bool zero = false;
    for (int64_t d : shape) {
        if (d < 0) return false;
        if (d == 0) {
            zero = true;
            continue;
        }
        if (__builtin_mul_overflow(p, uint64_t(d), &p) || p > uint64_t(INT64_MAX)) return false;
    }
    *out = zero ? 0 : p;
    return true;
}

bool valid_utf8(const std::string& s) {
    try {
        (void)json(s).dump();
        return true;
    } catch (const json::exception&) {
        return false;
    }
}

}  // namespace

// ---- dtypes -----------------------------------------------------------------------------------

size_t dtype_size(DType dt) { return desc(dt).size; }
const char* dtype_name(DType dt) { return desc(dt).name; }

bool dtype_from_name(const std::string& s, DType* out) {
    for (const auto& d : kDTypes)
        if (s == d.name) {
            *out = d.dt;
            return true;
        }
    return false;
}

DType dtype_from_name(const std::string& s) {
    DType dt;
    HIPPO_CHECK(dtype_from_name(s, &dt), "unknown dtype %s", json_quote(s).c_str());
    return dt;
}

int64_t TensorInfo::numel() const {
    uint64_t n = 0;
    HIPPO_CHECK(checked_numel(shape, &n), "tensor %s: shape %s overflows", json_quote(name).c_str(),
                shape_str(shape).c_str());
    return int64_t(n);
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = uint32_t(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in fp32
        float v = std::ldexp(float(mant), -24);
        return sign ? -v : v;
    }
    uint32_t bits = exp == 31 ? (sign | 0x7f800000u | (mant << 13))  // inf / nan (payload kept)
                              : (sign | ((exp + 112) << 23) | (mant << 13));
    return std::bit_cast<float>(bits);
}

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

// ---- reader -----------------------------------------------------------------------------------

SafetensorsFile SafetensorsFile::open(const std::string& path) {
    SafetensorsFile f;
    f.what_ = path;
    f.mapped_ = std::make_unique<MappedFile>(path);
    f.init(f.mapped_->data(), f.mapped_->size());
    return f;
}

SafetensorsFile SafetensorsFile::parse(std::vector<uint8_t> bytes, const std::string& what) {
    SafetensorsFile f;
    f.what_ = what;
    f.owned_ = std::move(bytes);
    f.init(f.owned_.data(), f.owned_.size());
    return f;
}

void SafetensorsFile::init(const uint8_t* bytes, size_t n) {
    const char* src = what_.c_str();
    HIPPO_CHECK(n >= 8, "safetensors: '%s': file is %zu bytes, too short for the 8-byte header length",
                src, n);
    uint64_t hlen;
    std::memcpy(&hlen, bytes, 8);  // little-endian (static_assert above)
    HIPPO_CHECK(hlen <= kMaxHeader, "safetensors: '%s': header length %llu exceeds the 100 MB limit",
                src, (unsigned long long)hlen);
    HIPPO_CHECK(hlen <= n - 8, "safetensors: '%s': header length %llu exceeds the file size %zu",
                src, (unsigned long long)hlen, n);
    HIPPO_CHECK(hlen > 0 && bytes[8] == '{', "safetensors: '%s': header does not start with '{'", src);
    // nlohmann's lexer takes a NUL byte for the end of input, so "{}\0garbage" would pass; JSON
    // text never contains a raw NUL (inside strings it must be escaped), so reject it up front.
    HIPPO_CHECK(std::memchr(bytes + 8, 0, hlen) == nullptr,
                "safetensors: '%s': header is not valid JSON: it contains a NUL byte", src);
    header_len_ = hlen;
    buffer_len_ = n - 8 - hlen;
    buffer_ = bytes + 8 + hlen;

    // Parse with a callback that rejects duplicate keys (nlohmann keeps the last silently) and
    // nesting deeper than the format needs (root object > entry object > shape array).
    json root;
    try {
        std::vector<std::unordered_set<std::string>> keys;
        json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
            switch (ev) {
            case json::parse_event_t::object_start:
            case json::parse_event_t::array_start:
                HIPPO_CHECK(depth <= 2, "safetensors: '%s': header JSON nests too deeply", src);
                if (ev == json::parse_event_t::object_start) keys.emplace_back();
                break;
            case json::parse_event_t::key: {
                const std::string& k = parsed.get_ref<const std::string&>();
                HIPPO_CHECK(keys.back().insert(k).second,
                            "safetensors: '%s': duplicate key %s in header", src, json_quote(k).c_str());
                break;
            }
            case json::parse_event_t::object_end: keys.pop_back(); break;
            default: break;
            }
            return true;
        };
        const char* h = reinterpret_cast<const char*>(bytes + 8);
        root = json::parse(h, h + hlen, cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
    } catch (const json::exception& e) {
        throw Error(strf("safetensors: '%s': header is not valid JSON: %s", src, e.what()));
    }
    HIPPO_CHECK(root.is_object(), "safetensors: '%s': header is not a JSON object", src);

    tensors_.clear();
    tensors_.reserve(root.size());
    for (auto& [name, v] : root.items()) {
        const std::string qn = json_quote(name);
        if (name == kMetadataKey) {
            HIPPO_CHECK(v.is_object(), "safetensors: '%s': __metadata__ is not an object", src);
            for (auto& [k, mv] : v.items()) {
                HIPPO_CHECK(mv.is_string(), "safetensors: '%s': __metadata__ value of %s is not a string",
                            src, json_quote(k).c_str());
                metadata_[k] = mv.get<std::string>();
            }
            continue;
        }
#define ST_CHECK(cond, fmt, ...) \
    HIPPO_CHECK(cond, "safetensors: '%s': tensor %s: " fmt, src, qn.c_str() __VA_OPT__(, ) __VA_ARGS__)
        ST_CHECK(v.is_object(), "entry is not an object");
        for (auto& [k, unused] : v.items())
            ST_CHECK(k == "dtype" || k == "shape" || k == "data_offsets", "unknown field %s",
                     json_quote(k).c_str());
        ST_CHECK(v.contains("dtype"), "missing field \"dtype\"");
        ST_CHECK(v.contains("shape"), "missing field \"shape\"");
        ST_CHECK(v.contains("data_offsets"), "missing field \"data_offsets\"");

        TensorInfo t;
        t.name = name;
        const json& jd = v["dtype"];
        ST_CHECK(jd.is_string(), "dtype is not a string");
        ST_CHECK(dtype_from_name(jd.get_ref<const std::string&>(), &t.dtype), "unknown dtype %s",
                 json_quote(jd.get_ref<const std::string&>()).c_str());

        const json& js = v["shape"];
        ST_CHECK(js.is_array(), "shape is not an array");
        for (const json& d : js) {
            ST_CHECK(!(d.is_number_integer() && !d.is_number_unsigned()), "negative dimension %lld",
                     (long long)d.get<int64_t>());
            ST_CHECK(d.is_number_unsigned(), "shape has a dimension that is not a non-negative integer");
            uint64_t du = d.get<uint64_t>();
            ST_CHECK(du <= uint64_t(INT64_MAX), "dimension %llu is too large",
                     (unsigned long long)du);
            t.shape.push_back(int64_t(du));
        }

        const json& jo = v["data_offsets"];
        ST_CHECK(jo.is_array() && jo.size() == 2 && jo[0].is_number_unsigned() &&
                     jo[1].is_number_unsigned(),
                 "data_offsets is not a pair of non-negative integers");
        t.begin = jo[0].get<uint64_t>();
        t.end = jo[1].get<uint64_t>();
        ST_CHECK(t.begin <= t.end, "data_offsets [%llu, %llu] are reversed",
                 (unsigned long long)t.begin, (unsigned long long)t.end);
        ST_CHECK(t.end <= buffer_len_, "data_offsets [%llu, %llu] go past the end of the %llu-byte data buffer",
                 (unsigned long long)t.begin, (unsigned long long)t.end,
                 (unsigned long long)buffer_len_);

        uint64_t numel = 0, nbytes = 0;
        ST_CHECK(checked_numel(t.shape, &numel) &&
                     !__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &nbytes),
                 "shape %s overflows", shape_str(t.shape).c_str());
        ST_CHECK(nbytes == t.end - t.begin,
                 "shape %s %s needs %llu bytes but data_offsets [%llu, %llu] hold %llu",
                 shape_str(t.shape).c_str(), dtype_name(t.dtype), (unsigned long long)nbytes,
                 (unsigned long long)t.begin, (unsigned long long)t.end,
                 (unsigned long long)(t.end - t.begin));
#undef ST_CHECK
        tensors_.push_back(std::move(t));
    }

    // The tensors must tile the buffer exactly: sorted by offset, each starts where the previous
    // one ended, and the last ends at the end of the file.
    std::stable_sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t cursor = 0;
    for (size_t i = 0; i < tensors_.size(); i++) {
        const TensorInfo& t = tensors_[i];
        HIPPO_CHECK(t.begin >= cursor, "safetensors: '%s': tensor %s: data_offsets [%llu, %llu] overlap tensor %s",
                    src, json_quote(t.name).c_str(), (unsigned long long)t.begin,
                    (unsigned long long)t.end, json_quote(tensors_[i - 1].name).c_str());
        HIPPO_CHECK(t.begin == cursor,
                    "safetensors: '%s': tensor %s: hole in the data buffer: bytes [%llu, %llu) belong to no tensor",
                    src, json_quote(t.name).c_str(), (unsigned long long)cursor,
                    (unsigned long long)t.begin);
        cursor = t.end;
    }
    HIPPO_CHECK(cursor == buffer_len_,
                "safetensors: '%s': the last %llu bytes of the data buffer belong to no tensor", src,
                (unsigned long long)(buffer_len_ - cursor));

    index_.clear();
    for (size_t i = 0; i < tensors_.size(); i++) index_.emplace(tensors_[i].name, i);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& SafetensorsFile::get(const std::string& name) const {
    const TensorInfo* t = find(name);
    HIPPO_CHECK(t, "safetensors: '%s': no tensor named %s", what_.c_str(), json_quote(name).c_str());
    return *t;
}

std::vector<float> SafetensorsFile::read_f32(const std::string& name) const {
    const TensorInfo& t = get(name);
    std::vector<float> out(size_t(t.numel()));
    read_f32(t, out.data());
    return out;
}

void SafetensorsFile::read_f32(const TensorInfo& t, float* out) const {
    const uint8_t* p = data(t);
    size_t n = size_t(t.numel());
    switch (t.dtype) {
    case DType::F32:
        if (n) std::memcpy(out, p, n * 4);
        break;
    case DType::F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            std::memcpy(&d, p + 8 * i, 8);
            out[i] = float(d);
        }
        break;
    case DType::F16:
    case DType::BF16: {
        bool bf = t.dtype == DType::BF16;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            out[i] = bf ? bf16_to_f32(h) : f16_to_f32(h);
        }
        break;
    }
    default:
        throw Error(strf("safetensors: '%s': tensor %s has dtype %s, expected a float type (F32, F16, BF16, F64)",
                         what_.c_str(), json_quote(t.name).c_str(), dtype_name(t.dtype)));
    }
}

// ---- writer -----------------------------------------------------------------------------------

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            const void* data, size_t nbytes) {
    const std::string qn = json_quote(name);
    HIPPO_CHECK(name != kMetadataKey, "safetensors writer: tensor name %s is reserved", qn.c_str());
    HIPPO_CHECK(valid_utf8(name), "safetensors writer: tensor name %s is not valid UTF-8", qn.c_str());
    HIPPO_CHECK(!index_.count(name), "safetensors writer: duplicate tensor name %s", qn.c_str());
    for (int64_t d : shape)
        HIPPO_CHECK(d >= 0, "safetensors writer: tensor %s: negative dimension in shape %s",
                    qn.c_str(), shape_str(shape).c_str());
    uint64_t numel = 0, need = 0;
    HIPPO_CHECK(checked_numel(shape, &numel) &&
                    !__builtin_mul_overflow(numel, uint64_t(dtype_size(dtype)), &need),
                "safetensors writer: tensor %s: shape %s overflows", qn.c_str(),
                shape_str(shape).c_str());
    HIPPO_CHECK(need == nbytes, "safetensors writer: tensor %s: shape %s %s needs %llu bytes, got %zu",
                qn.c_str(), shape_str(shape).c_str(), dtype_name(dtype), (unsigned long long)need,
                nbytes);
    HIPPO_CHECK(data || nbytes == 0, "safetensors writer: tensor %s: null data", qn.c_str());
    index_.emplace(name, entries_.size());
    entries_.push_back({name, dtype, std::move(shape), data, nbytes});
}

void SafetensorsWriter::add_f32(const std::string& name, std::vector<int64_t> shape, const float* data) {
    uint64_t numel = 0;
    HIPPO_CHECK(checked_numel(shape, &numel) && numel <= SIZE_MAX / 4,
                "safetensors writer: tensor %s: bad shape %s", json_quote(name).c_str(),
                shape_str(shape).c_str());
    add(name, DType::F32, std::move(shape), data, size_t(numel) * 4);
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
    HIPPO_CHECK(valid_utf8(key) && valid_utf8(value),
                "safetensors writer: metadata %s is not valid UTF-8", json_quote(key).c_str());
    metadata_[key] = value;
}

std::string SafetensorsWriter::header() const {
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    if (!metadata_.empty()) h[kMetadataKey] = metadata_;
    uint64_t off = 0;
    for (const Entry& e : entries_) {
        nlohmann::ordered_json j;
        j["dtype"] = dtype_name(e.dtype);
        j["shape"] = e.shape;
        j["data_offsets"] = {off, off + e.nbytes};
        h[e.name] = std::move(j);
        off += e.nbytes;
    }
    std::string s = h.dump();
    s.resize((s.size() + 7) / 8 * 8, ' ');  // data starts 8-byte aligned (8 + N, N % 8 == 0)
    uint64_t n = s.size();
    std::string out(8, '\0');
    std::memcpy(out.data(), &n, 8);
    return out + s;
}

std::vector<uint8_t> SafetensorsWriter::serialize() const {
    std::string h = header();
    size_t total = h.size();
    for (const Entry& e : entries_) total += e.nbytes;
    std::vector<uint8_t> out;
    out.reserve(total);
    out.insert(out.end(), h.begin(), h.end());
    for (const Entry& e : entries_) {
        const uint8_t* p = static_cast<const uint8_t*>(e.data);
        if (e.nbytes) out.insert(out.end(), p, p + e.nbytes);
    }
    return out;
}

void SafetensorsWriter::write(const std::string& path) const {
    std::string h = header();
    std::vector<ConstBuffer> parts;
    parts.reserve(entries_.size() + 1);
    parts.push_back({h.data(), h.size()});
    for (const Entry& e : entries_) parts.push_back({e.data, e.nbytes});
    write_file_atomic(path, parts);
}

}  // namespace hippo
