// libFuzzer target for the torch.save reader (io/zip.h + io/pickle.h + io/torch_import.h).
// Any input must either be read or throw hippo::Error; a crash, a sanitizer report (including a
// leak) or another exception type is a bug.
//   first byte even: the rest is a whole archive (ZIP parsing, storage/view validation);
//   first byte odd:  the rest is data.pkl, wrapped here in a stored ZIP as "archive/data.pkl" next
//                    to 4 storage files "archive/data/0".."3" of 64 bytes each, so the pickle machine
//                    is reached directly.
// On success every tensor is converted with read_f32 (ASan checks the strided gathers), the
// direct_f32 view (when there is one) must equal it, and config inference and key remapping run
// on the names/shapes (they may throw hippo::Error only).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/check.h"
#include "io/torch_import.h"
#include "models/h3_import.h"

using namespace hippo;

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_torch_import: invariant violated: %s\n", what);
    std::abort();
}

void put16(std::vector<uint8_t>& b, uint32_t v) {
    b.push_back(uint8_t(v));
    b.push_back(uint8_t(v >> 8));
}
void put32(std::vector<uint8_t>& b, uint32_t v) {
    put16(b, v & 0xFFFF);
    put16(b, v >> 16);
}

// A minimal stored ZIP (no CRCs checked by our reader, so they are left 0).
std::vector<uint8_t> make_zip(const std::vector<std::pair<std::string, std::vector<uint8_t>>>& files) {
    std::vector<uint8_t> z, cd;
    for (auto& [name, data] : files) {
        uint32_t off = uint32_t(z.size());
        put32(z, 0x04034b50);
        put16(z, 20), put16(z, 0), put16(z, 0), put16(z, 0), put16(z, 0);
        put32(z, 0), put32(z, uint32_t(data.size())), put32(z, uint32_t(data.size()));
        put16(z, uint16_t(name.size())), put16(z, 0);
        z.insert(z.end(), name.begin(), name.end());
        z.insert(z.end(), data.begin(), data.end());
        put32(cd, 0x02014b50);
        put16(cd, 20), put16(cd, 20), put16(cd, 0), put16(cd, 0), put16(cd, 0), put16(cd, 0);
        put32(cd, 0), put32(cd, uint32_t(data.size())), put32(cd, uint32_t(data.size()));
        put16(cd, uint16_t(name.size())), put16(cd, 0), put16(cd, 0), put16(cd, 0), put16(cd, 0);
        put32(cd, 0), put32(cd, off);
        cd.insert(cd.end(), name.begin(), name.end());
    }
    uint32_t cd_off = uint32_t(z.size());
    z.insert(z.end(), cd.begin(), cd.end());
    put32(z, 0x06054b50);
    put16(z, 0), put16(z, 0), put16(z, uint16_t(files.size())), put16(z, uint16_t(files.size()));
    put32(z, uint32_t(cd.size())), put32(z, cd_off), put16(z, 0);
    return z;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    std::vector<uint8_t> input(data + 1, data + size);
    if (data[0] & 1) {
        std::vector<std::pair<std::string, std::vector<uint8_t>>> files;
        files.emplace_back("archive/data.pkl", input);
        for (int k = 0; k < 4; k++) {
            std::vector<uint8_t> s(64);
            for (int i = 0; i < 64; i++) s[i] = uint8_t(i * 37 + k);
            files.emplace_back("archive/data/" + std::to_string(k), s);
        }
        input = make_zip(files);
    }
    try {
        TorchCheckpoint c = TorchCheckpoint::parse(std::move(input), "fuzz");
        std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
        std::vector<std::string> names;
        for (const TorchTensor& t : c.tensors()) {
            if (t.f32_numel() > (int64_t(1) << 24)) continue;  // a legal but huge broadcast view
            std::vector<float> v = c.read_f32(t);
            if (int64_t(v.size()) != t.f32_numel()) fail("read_f32 size");
            if (const float* d = c.direct_f32(t))
                if (std::memcmp(d, v.data(), v.size() * sizeof(float)) != 0) fail("direct_f32 != read_f32");
            shapes.emplace_back(t.name, t.f32_shape());
            names.push_back(t.name);
        }
        try {
            remap_h3_keys(names);
            infer_h3_config(shapes, 1);
        } catch (const Error&) {
        }
    } catch (const Error&) {
    }
    return 0;
}
