#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <dirent.h>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

#include "common/check.h"
#include "common/rng.h"
#include "io/file.h"
#include "io/safetensors.h"

using namespace hippo;

namespace {

// A fresh directory under the gtest temp dir, removed at the end of the test.
struct TempDir {
    std::string path;
    TempDir() {
        std::string tmpl = ::testing::TempDir() + "hippo_st_XXXXXX";
        char* p = ::mkdtemp(tmpl.data());
        HIPPO_ASSERT(p, "mkdtemp failed");
        path = p;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::string file(const std::string& name) const { return path + "/" + name; }
    std::vector<std::string> list() const {
        std::vector<std::string> out;
        for (auto& e : std::filesystem::directory_iterator(path)) out.push_back(e.path().filename());
        std::sort(out.begin(), out.end());
        return out;
    }
};

void put_u64(std::vector<uint8_t>& b, uint64_t v) {
    for (int i = 0; i < 8; i++) b.push_back(uint8_t(v >> (8 * i)));
}

// Hand-made file: length prefix (default: the header's own length) + header + `data_len` bytes.
std::vector<uint8_t> raw(const std::string& header, size_t data_len = 0, uint64_t hlen = ~0ull) {
    std::vector<uint8_t> b;
    put_u64(b, hlen == ~0ull ? header.size() : hlen);
    b.insert(b.end(), header.begin(), header.end());
    for (size_t i = 0; i < data_len; i++) b.push_back(uint8_t(i * 7 + 1));
    return b;
}

// Parses bytes, expecting hippo::Error whose message contains `needle`.
void expect_error(const std::vector<uint8_t>& bytes, const std::string& needle) {
    try {
        SafetensorsFile::parse(bytes, "bad.safetensors");
        ADD_FAILURE() << "expected an error containing '" << needle << "'";
    } catch (const Error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
        EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << "message: " << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << "message: " << msg;
    }
}

uint64_t le64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= uint64_t(p[i]) << (8 * i);
    return v;
}

std::vector<uint8_t> small_valid_file() {
    static const float w[6] = {1, 2, 3, 4, 5, 6};
    static const int64_t steps = 42;
    static const uint16_t h[3] = {0x3c00, 0xc000, 0x0000};
    SafetensorsWriter wr;
    wr.add_f32("w", {2, 3}, w);
    wr.add("step", DType::I64, {}, &steps, 8);
    wr.add("h", DType::F16, {3}, h, sizeof(h));
    wr.set_metadata("format", "pt");
    return wr.serialize();
}

}  // namespace

// ---- round trips --------------------------------------------------------------------------------

TEST(Safetensors, DTypeTable) {
    const char* names[] = {"BOOL", "U8",  "I8",  "I16", "U16", "F16", "BF16",    "I32",
                           "U32",  "F32", "F64", "I64", "U64", "F8_E4M3", "F8_E5M2"};
    size_t sizes[] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8, 1, 1};
    for (int i = 0; i < 15; i++) {
        DType dt = dtype_from_name(names[i]);
        EXPECT_STREQ(dtype_name(dt), names[i]);
        EXPECT_EQ(dtype_size(dt), sizes[i]) << names[i];
    }
    EXPECT_THROW(dtype_from_name("f32"), Error);
    EXPECT_THROW(dtype_from_name("F4"), Error);
}

TEST(Safetensors, RoundTripEveryDType) {
    Rng rng(7);
    SafetensorsWriter wr;
    std::vector<std::vector<uint8_t>> bufs;
    std::vector<std::string> names;
    for (DType dt : {DType::BOOL, DType::U8, DType::I8, DType::I16, DType::U16, DType::F16,
                     DType::BF16, DType::I32, DType::U32, DType::F32, DType::F64, DType::I64,
                     DType::U64, DType::F8_E4M3, DType::F8_E5M2}) {
        std::vector<int64_t> shape = {3, int64_t(1 + rng.below(4))};
        std::vector<uint8_t> b(size_t(shape[0] * shape[1]) * dtype_size(dt));
        for (auto& x : b) x = uint8_t(rng.next_u64());
        names.push_back(std::string("t.") + dtype_name(dt));
        bufs.push_back(std::move(b));
        wr.add(names.back(), dt, shape, bufs.back().data(), bufs.back().size());
    }
    auto bytes = wr.serialize();
    auto f = SafetensorsFile::parse(bytes);
    ASSERT_EQ(f.tensors().size(), names.size());
    uint64_t off = 0;
    for (size_t i = 0; i < names.size(); i++) {
        const TensorInfo& t = f.tensors()[i];  // sorted by offset == insertion order
        EXPECT_EQ(t.name, names[i]);
        EXPECT_EQ(std::string("t.") + dtype_name(t.dtype), names[i]);
        EXPECT_EQ(t.begin, off);
        EXPECT_EQ(t.nbytes(), bufs[i].size());
        EXPECT_EQ(0, std::memcmp(f.data(t), bufs[i].data(), bufs[i].size()));
        EXPECT_EQ(f.find(names[i]), &t);
        off = t.end;
    }
    EXPECT_EQ(off, f.data_size());
    EXPECT_EQ(f.find("nope"), nullptr);
    EXPECT_TRUE(f.metadata().empty());
}

TEST(Safetensors, RankZeroAndZeroSize) {
    float scalar = 3.5f;
    float dummy = 0;
    SafetensorsWriter wr;
    wr.add_f32("empty_a", {0, 3}, nullptr);
    wr.add_f32("scalar", {}, &scalar);
    wr.add_f32("empty_b", {4, 0}, &dummy);
    wr.add("empty_c", DType::I64, {0}, nullptr, 0);
    auto f = SafetensorsFile::parse(wr.serialize());
    ASSERT_EQ(f.tensors().size(), 4u);
    const TensorInfo& s = f.get("scalar");
    EXPECT_TRUE(s.shape.empty());
    EXPECT_EQ(s.numel(), 1);
    EXPECT_EQ(f.read_f32("scalar"), std::vector<float>{3.5f});
    EXPECT_EQ(f.get("empty_a").shape, (std::vector<int64_t>{0, 3}));
    EXPECT_EQ(f.get("empty_a").numel(), 0);
    EXPECT_TRUE(f.read_f32("empty_b").empty());
    EXPECT_EQ(f.data_size(), 4u);
}

TEST(Safetensors, EmptyFile) {
    SafetensorsWriter wr;
    auto bytes = wr.serialize();
    ASSERT_EQ(bytes.size(), 16u);  // 8 + "{}" padded to 8
    auto f = SafetensorsFile::parse(bytes);
    EXPECT_TRUE(f.tensors().empty());
}

TEST(Safetensors, MetadataAndUnicodeNames) {
    float a[2] = {1, 2}, b[1] = {3}, c[3] = {4, 5, 6};
    SafetensorsWriter wr;
    wr.add_f32("poids_é", {2}, a);
    wr.add_f32("层.0.权重", {1}, b);
    wr.add_f32("emoji 🦛 \"quoted\"\n", {3}, c);
    wr.set_metadata("format", "pt");
    wr.set_metadata("note", "hippo ✓ \"x\"");
    wr.set_metadata("format", "hippo");  // overwrite
    auto f = SafetensorsFile::parse(wr.serialize());
    EXPECT_EQ(f.metadata().size(), 2u);
    EXPECT_EQ(f.metadata().at("format"), "hippo");
    EXPECT_EQ(f.metadata().at("note"), "hippo ✓ \"x\"");
    EXPECT_EQ(f.read_f32("poids_é"), (std::vector<float>{1, 2}));
    EXPECT_EQ(f.read_f32("层.0.权重"), (std::vector<float>{3}));
    EXPECT_EQ(f.read_f32("emoji 🦛 \"quoted\"\n"), (std::vector<float>{4, 5, 6}));
}

TEST(Safetensors, ByteExactLayout) {
    float a[2] = {1.0f, -2.0f};
    int32_t b[3] = {7, 8, 9};
    SafetensorsWriter wr;
    wr.add_f32("a", {2}, a);
    wr.add("b", DType::I32, {3, 1}, b, sizeof(b));
    auto bytes = wr.serialize();
    std::string json = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"I32","shape":[3,1],"data_offsets":[8,20]}})";
    uint64_t n = le64(bytes.data());
    EXPECT_EQ(n % 8, 0u);
    EXPECT_EQ(n, (json.size() + 7) / 8 * 8);
    EXPECT_EQ(bytes[0], uint8_t(n & 0xff));  // little-endian: low byte first
    EXPECT_EQ(bytes[7], 0);
    ASSERT_EQ(bytes.size(), 8 + n + 20);
    std::string header(bytes.begin() + 8, bytes.begin() + 8 + n);
    EXPECT_EQ(header.substr(0, json.size()), json);
    for (size_t i = json.size(); i < n; i++) EXPECT_EQ(header[i], ' ');
    EXPECT_EQ(0, std::memcmp(bytes.data() + 8 + n, a, 8));
    EXPECT_EQ(0, std::memcmp(bytes.data() + 8 + n + 8, b, 12));

    // Metadata comes first in the header.
    wr.set_metadata("k", "v");
    auto bytes2 = wr.serialize();
    std::string h2(bytes2.begin() + 8, bytes2.begin() + 8 + le64(bytes2.data()));
    EXPECT_EQ(h2.rfind(R"({"__metadata__":{"k":"v"},"a":)", 0), 0u) << h2;
}

TEST(Safetensors, ReadF32Conversions) {
    uint16_t h[6] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x3555};  // 1, -2, 65504, 2^-24, inf, ~1/3
    uint16_t bf[3] = {0x3f80, 0xc0a0, 0x0000};                           // 1, -5, 0
    double d[2] = {0.25, -1e10};
    int32_t i[1] = {5};
    SafetensorsWriter wr;
    wr.add("h", DType::F16, {6}, h, sizeof(h));
    wr.add("bf", DType::BF16, {3}, bf, sizeof(bf));
    wr.add("d", DType::F64, {2}, d, sizeof(d));
    wr.add("i", DType::I32, {1}, i, sizeof(i));
    auto f = SafetensorsFile::parse(wr.serialize());
    auto hv = f.read_f32("h");
    EXPECT_EQ(hv[0], 1.0f);
    EXPECT_EQ(hv[1], -2.0f);
    EXPECT_EQ(hv[2], 65504.0f);
    EXPECT_EQ(hv[3], std::ldexp(1.0f, -24));
    EXPECT_TRUE(std::isinf(hv[4]) && hv[4] > 0);
    EXPECT_NEAR(hv[5], 1.0f / 3, 1e-3);
    EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
    EXPECT_EQ(f.read_f32("bf"), (std::vector<float>{1.0f, -5.0f, 0.0f}));
    EXPECT_EQ(f.read_f32("d"), (std::vector<float>{0.25f, -1e10f}));
    EXPECT_THROW(f.read_f32("i"), Error);
    try {
        f.read_f32("missing");
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("no tensor named \"missing\""), std::string::npos);
    }
}

TEST(Safetensors, ReadsUnpaddedAndWhitespacePaddedHeaders) {
    // Other writers may not pad, or pad with other JSON whitespace; data may then be unaligned.
    auto b = raw(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 0);
    float v = 1.5f;
    b.insert(b.end(), (uint8_t*)&v, (uint8_t*)&v + 4);
    EXPECT_EQ(SafetensorsFile::parse(b).read_f32("x"), std::vector<float>{1.5f});
    auto b2 = raw("{ \"__metadata__\" : { } }\n  \t ", 0);
    EXPECT_TRUE(SafetensorsFile::parse(b2).tensors().empty());
}

// ---- writer errors ------------------------------------------------------------------------------

TEST(Safetensors, WriterRejectsBadInput) {
    float a[4] = {};
    SafetensorsWriter wr;
    wr.add_f32("a", {4}, a);
    EXPECT_THROW(wr.add_f32("a", {4}, a), Error);                    // duplicate
    EXPECT_THROW(wr.add_f32("__metadata__", {4}, a), Error);         // reserved
    EXPECT_THROW(wr.add("b", DType::F32, {3}, a, 16), Error);        // size mismatch
    EXPECT_THROW(wr.add("c", DType::F32, {-1, 4}, a, 16), Error);    // negative dim
    EXPECT_THROW(wr.add("d", DType::F32, {4}, nullptr, 16), Error);  // null data
    EXPECT_THROW(wr.add("e", DType::U8, {int64_t(1) << 62, 8}, a, 16), Error);  // overflow
    EXPECT_THROW(wr.add(std::string("bad\xff"), DType::F32, {4}, a, 16), Error);  // not UTF-8
    EXPECT_THROW(wr.set_metadata("k", std::string("\xc3")), Error);
    EXPECT_EQ(wr.size(), 1u);
}

// ---- malformed files ----------------------------------------------------------------------------

TEST(SafetensorsMalformed, TruncatedAtEveryByte) {
    auto good = small_valid_file();
    ASSERT_NO_THROW(SafetensorsFile::parse(good));
    for (size_t n = 0; n < good.size(); n++) {
        std::vector<uint8_t> cut(good.begin(), good.begin() + n);
        EXPECT_THROW(SafetensorsFile::parse(cut, "cut"), Error) << "length " << n;
    }
}

TEST(SafetensorsMalformed, SingleByteCorruptionNeverCrashes) {
    auto good = small_valid_file();
    const uint8_t vals[] = {0x00, 0xff, '"', '{', '}', '[', ']', ',', '0', '9', '-', ' ', 0x80};
    int rejected = 0;
    for (size_t i = 0; i < good.size(); i++)
        for (uint8_t v : vals) {
            auto b = good;
            b[i] = v;
            try {
                auto f = SafetensorsFile::parse(b, "flip");
                for (const auto& t : f.tensors()) {
                    volatile uint8_t s = 0;
                    for (uint64_t k = 0; k < t.nbytes(); k++) s = s + f.data(t)[k];
                }
            } catch (const Error&) {
                rejected++;
            }
        }
    EXPECT_GT(rejected, 0);
}

TEST(SafetensorsMalformed, HeaderLength) {
    expect_error({1, 2, 3}, "too short");
    expect_error(raw("{}", 0, 3), "exceeds the file size");
    expect_error(raw("{}", 0, 1ull << 63), "exceeds the 100 MB limit");
    expect_error(raw("{}", 0, ~0ull - 1), "exceeds the 100 MB limit");
    expect_error(raw("{}", 0, 100'000'001), "exceeds the 100 MB limit");
    expect_error(raw("", 0), "does not start with '{'");
    std::vector<uint8_t> eight(8, 0);
    expect_error(eight, "does not start with '{'");
}

TEST(SafetensorsMalformed, NotJsonOrNotObject) {
    expect_error(raw("{abc}"), "not valid JSON");
    expect_error(raw("{\"a\":"), "not valid JSON");
    expect_error(raw("{} x"), "not valid JSON");
    expect_error(raw("{}{}"), "not valid JSON");
    expect_error(raw(std::string("{}\0\0", 4)), "not valid JSON");
    expect_error(raw(std::string("{}\0{\"x\":1}", 10)), "contains a NUL byte");
    expect_error(raw("[1, 2]"), "does not start with '{'");
    expect_error(raw(" {}"), "does not start with '{'");
    expect_error(raw("{\"\xff\": 1}"), "not valid JSON");  // invalid UTF-8
    expect_error(raw("{\"a\": 5}"), "tensor \"a\": entry is not an object");
    expect_error(raw("{\"a\": [[[[[[1]]]]]]}"), "nests too deeply");
}

TEST(SafetensorsMalformed, Fields) {
    expect_error(raw(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4), "tensor \"w\": missing field \"dtype\"");
    expect_error(raw(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4), "missing field \"shape\"");
    expect_error(raw(R"({"w":{"dtype":"F32","shape":[1]}})", 4), "missing field \"data_offsets\"");
    expect_error(raw(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4), "unknown field \"x\"");
    expect_error(raw(R"({"w":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", 4), "unknown dtype \"F17\"");
    expect_error(raw(R"({"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4), "unknown dtype");
    expect_error(raw(R"({"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", 4), "dtype is not a string");
    expect_error(raw(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "negative dimension -1");
    expect_error(raw(R"({"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", 4), "not a non-negative integer");
    expect_error(raw(R"({"w":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}})", 4), "not a non-negative integer");
    expect_error(raw(R"({"w":{"dtype":"F32","shape":1,"data_offsets":[0,4]}})", 4), "shape is not an array");
    expect_error(raw(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4), "not a pair");
    expect_error(raw(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 4), "not a pair");
    expect_error(raw(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-1,3]}})", 4), "not a pair");
    expect_error(raw(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}})", 4), "not a pair");
}

TEST(SafetensorsMalformed, SizesAndOffsets) {
    expect_error(raw(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
                 "tensor \"w\": shape [3] F32 needs 12 bytes but data_offsets [0, 8] hold 8");
    expect_error(raw(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4),
                 "go past the end of the 4-byte data buffer");
    expect_error(raw(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "reversed");
    expect_error(raw(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,0]}})", 8),
                 "reversed");
    expect_error(raw(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551614,18446744073709551615]}})", 8),
                 "go past the end");
    // overlap
    expect_error(raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
                 "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\"");
    expect_error(raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
                 "overlap");
    expect_error(raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", 8),
                 "overlap");
    // holes
    expect_error(raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                     R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12),
                 "tensor \"b\": hole in the data buffer: bytes [4, 8)");
    expect_error(raw(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "hole");
    expect_error(raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 9),
                 "the last 5 bytes of the data buffer belong to no tensor");
    expect_error(raw("{}", 3), "the last 3 bytes");
    // Zero-size tensors may sit at any tensor boundary, including the very end.
    EXPECT_NO_THROW(SafetensorsFile::parse(raw(
        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
        R"("z":{"dtype":"F32","shape":[0,5],"data_offsets":[4,4]},)"
        R"("y":{"dtype":"I8","shape":[0],"data_offsets":[0,0]}})", 4)));
}

TEST(SafetensorsMalformed, HugeDimensions) {
    // 2^32 x 2^32 = 2^64 wraps to 0 in uint64: must be an error, not a zero-size tensor.
    expect_error(raw(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})"),
                 "overflows");
    // numel fits but numel x 4 wraps to 0.
    expect_error(raw(R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})"),
                 "overflows");
    expect_error(raw(R"({"w":{"dtype":"U8","shape":[2305843009213693952,4],"data_offsets":[0,0]}})"),
                 "overflows");
    // Even with a zero dimension, the other dims must multiply without overflow.
    expect_error(raw(R"({"w":{"dtype":"U8","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})"),
                 "overflows");
    expect_error(raw(R"({"w":{"dtype":"U8","shape":[0,18446744073709551615],"data_offsets":[0,0]}})"),
                 "too large");
    expect_error(raw(R"({"w":{"dtype":"U8","shape":[1e30],"data_offsets":[0,0]}})"),
                 "not a non-negative integer");
    expect_error(raw(R"({"w":{"dtype":"U8","shape":[99999999999999999999999],"data_offsets":[0,0]}})"),
                 "not a non-negative integer");
}

TEST(SafetensorsMalformed, DuplicateKeys) {
    expect_error(raw(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                     R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", 2),
                 "duplicate key \"w\"");
    expect_error(raw(R"({"w":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 1),
                 "duplicate key \"dtype\"");
    expect_error(raw(R"({"__metadata__":{},"__metadata__":{}})"), "duplicate key \"__metadata__\"");
    expect_error(raw(R"({"__metadata__":{"a":"1","a":"2"}})"), "duplicate key \"a\"");
}

TEST(SafetensorsMalformed, Metadata) {
    expect_error(raw(R"({"__metadata__":{"a":1}})"), "__metadata__ value of \"a\" is not a string");
    expect_error(raw(R"({"__metadata__":{"a":null}})"), "not a string");
    expect_error(raw(R"({"__metadata__":{"a":{"b":"c"}}})"), "not a string");
    expect_error(raw(R"({"__metadata__":["a"]})"), "__metadata__ is not an object");
    expect_error(raw(R"({"__metadata__":"x"})"), "__metadata__ is not an object");
    auto f = SafetensorsFile::parse(raw(R"({"__metadata__":{"a":"1","b":""}})"));
    EXPECT_EQ(f.metadata().at("b"), "");
}

// ---- files ----------------------------------------------------------------------------------------

TEST(SafetensorsFileIO, WriteOpenMmapRoundTrip) {
    TempDir dir;
    std::vector<float> w(1000);
    for (size_t i = 0; i < w.size(); i++) w[i] = float(i) * 0.5f;
    SafetensorsWriter wr;
    wr.add_f32("w", {10, 100}, w.data());
    wr.set_metadata("step", "12");
    std::string path = dir.file("model.safetensors");
    wr.write(path);
    EXPECT_EQ(read_file(path), wr.serialize());
    auto f = SafetensorsFile::open(path);
    EXPECT_EQ(f.read_f32("w"), w);
    EXPECT_EQ(f.metadata().at("step"), "12");
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f.data(f.get("w"))) % 8, 0u);  // aligned data start
    auto moved = std::move(f);
    EXPECT_EQ(moved.read_f32("w"), w);
    EXPECT_EQ(dir.list(), std::vector<std::string>{"model.safetensors"});
}

TEST(SafetensorsFileIO, MissingFileHasClearError) {
    for (int mode = 0; mode < 2; mode++) {
        try {
            if (mode == 0) SafetensorsFile::open("/nonexistent/dir/model.safetensors");
            else read_file("/nonexistent/dir/model.safetensors");
            ADD_FAILURE();
        } catch (const Error& e) {
            EXPECT_STREQ(e.what(), "cannot open '/nonexistent/dir/model.safetensors': No such file or directory");
        }
    }
    TempDir dir;
    EXPECT_THROW(SafetensorsFile::open(dir.path), Error);  // a directory
    EXPECT_THROW(read_file(dir.path), Error);
    write_file_atomic(dir.file("empty"), "", 0);
    MappedFile m(dir.file("empty"));
    EXPECT_EQ(m.size(), 0u);
    EXPECT_THROW(SafetensorsFile::open(dir.file("empty")), Error);
}

TEST(SafetensorsFileIO, BadFileErrorNamesThePath) {
    TempDir dir;
    auto b = raw(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8);
    std::string path = dir.file("broken.safetensors");
    write_file_atomic(path, b.data(), b.size());
    try {
        SafetensorsFile::open(path);
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "safetensors: '" + path + "': tensor \"w\": shape [3] F32 needs 12 bytes but "
                  "data_offsets [0, 8] hold 8");
    }
}

TEST(AtomicWrite, ReplacesTargetAndLeavesNoTempFile) {
    TempDir dir;
    std::string path = dir.file("ckpt.bin");
    write_file_atomic(path, "old", 3);
    write_file_atomic(path, "new contents", 12);
    auto got = read_file(path);
    EXPECT_EQ(std::string(got.begin(), got.end()), "new contents");
    std::string a = "abc", b = "", c = "defg";
    ConstBuffer parts[] = {{a.data(), a.size()}, {b.data(), 0}, {c.data(), c.size()}};
    write_file_atomic(path, parts);
    got = read_file(path);
    EXPECT_EQ(std::string(got.begin(), got.end()), "abcdefg");
    EXPECT_EQ(dir.list(), std::vector<std::string>{"ckpt.bin"});
}

TEST(AtomicWrite, FailureMidWriteKeepsOldFile) {
    TempDir dir;
    std::string path = dir.file("ckpt.bin");
    write_file_atomic(path, "old", 3);
    // Simulated failure after part of the data went out (e.g. disk full while streaming tensors).
    EXPECT_THROW(write_file_atomic(path,
                                   [](FileWriter& w) {
                                       w.write("partial", 7);
                                       EXPECT_EQ(w.bytes_written(), 7u);
                                       throw Error("simulated failure");
                                   }),
                 Error);
    auto got = read_file(path);
    EXPECT_EQ(std::string(got.begin(), got.end()), "old");
    EXPECT_EQ(dir.list(), std::vector<std::string>{"ckpt.bin"});
}

TEST(AtomicWrite, UnwritableTargets) {
    TempDir dir;
    // Directory does not exist.
    try {
        write_file_atomic(dir.file("no/such/dir/x.bin"), "x", 1);
        ADD_FAILURE();
    } catch (const Error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find(dir.file("no/such/dir/x.bin")), std::string::npos) << msg;
        EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
    }
    // Parent is a regular file.
    write_file_atomic(dir.file("f"), "x", 1);
    EXPECT_THROW(write_file_atomic(dir.file("f/x.bin"), "x", 1), Error);
    // Target is a directory: the rename fails after the temp file was written; it must be removed.
    ::mkdir(dir.file("d").c_str(), 0755);
    ::mkdir(dir.file("d/inner").c_str(), 0755);
    SafetensorsWriter wr;
    float v = 1;
    wr.add_f32("v", {1}, &v);
    try {
        wr.write(dir.file("d"));
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("rename"), std::string::npos) << e.what();
    }
    EXPECT_EQ(dir.list(), (std::vector<std::string>{"d", "f"}));
    // Read-only directory (only effective when not running as root).
    if (::geteuid() != 0) {
        ::mkdir(dir.file("ro").c_str(), 0555);
        EXPECT_THROW(write_file_atomic(dir.file("ro/x.bin"), "x", 1), Error);
        ::chmod(dir.file("ro").c_str(), 0755);
    }
}

// ---- interop: a file written by scripts/safetensors_interop.py (numpy + struct + json) --------

TEST(SafetensorsInterop, ReadsPythonFixture) {
    auto f = SafetensorsFile::open(std::string(HIPPO_TEST_DATA) + "/interop.safetensors");
    EXPECT_EQ(f.metadata().at("format"), "pt");
    EXPECT_EQ(f.metadata().at("writer"), "scripts/safetensors_interop.py");

    const TensorInfo& w = f.get("layer.0.weight");
    EXPECT_EQ(w.dtype, DType::F32);
    EXPECT_EQ(w.shape, (std::vector<int64_t>{3, 4}));
    auto wv = f.read_f32("layer.0.weight");
    for (int i = 0; i < 12; i++) EXPECT_EQ(wv[size_t(i)], 0.25f * float(i) - 1.0f);

    const TensorInfo& ids = f.get("token_ids");
    EXPECT_EQ(ids.dtype, DType::I64);
    EXPECT_EQ(ids.shape, (std::vector<int64_t>{5}));
    const int64_t want_ids[5] = {0, 1, -1, int64_t(1) << 40, INT64_MIN};
    EXPECT_EQ(0, std::memcmp(f.data(ids), want_ids, sizeof(want_ids)));

    const TensorInfo& h = f.get("half");
    EXPECT_EQ(h.dtype, DType::F16);
    EXPECT_EQ(h.shape, (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(f.read_f32("half"), (std::vector<float>{1.0f, -2.0f, 0.5f, 65504.0f}));

    const TensorInfo& s = f.get("scale");
    EXPECT_TRUE(s.shape.empty());
    EXPECT_EQ(f.read_f32("scale"), std::vector<float>{3.0f});
    EXPECT_EQ(f.tensors().size(), 4u);
}
