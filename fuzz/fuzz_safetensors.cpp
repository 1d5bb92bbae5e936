// libFuzzer target for the safetensors reader. Any input must either parse or throw hippo::Error;
// a crash, a sanitizer report, another exception type or a failed round trip is a bug.
// On success every tensor's bytes are read (ASan checks the bounds), float tensors go through
// read_f32, and the file is re-serialized with SafetensorsWriter and parsed again: the writer's
// output must always be valid and describe the same tensors.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/check.h"
#include "io/safetensors.h"

using namespace hippo;

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_safetensors: invariant violated: %s\n", what);
    std::abort();
}

bool is_float(DType dt) {
    return dt == DType::F32 || dt == DType::F16 || dt == DType::BF16 || dt == DType::F64;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    SafetensorsFile f;
    try {
        f = SafetensorsFile::parse(std::vector<uint8_t>(data, data + size), "fuzz");
    } catch (const Error&) {
        return 0;  // rejected cleanly
    }

    uint64_t covered = 0;
    volatile uint8_t sink = 0;
    SafetensorsWriter w;
    for (const TensorInfo& t : f.tensors()) {
        const uint8_t* p = f.data(t);
        for (uint64_t i = 0; i < t.nbytes(); i++) sink = sink ^ p[i];
        covered += t.nbytes();
        if (uint64_t(t.numel()) * dtype_size(t.dtype) != t.nbytes()) fail("numel x size != nbytes");
        if (f.find(t.name) != &t) fail("find() does not return the tensor");
        if (is_float(t.dtype)) {
            std::vector<float> v = f.read_f32(t.name);
            if (v.size() != size_t(t.numel())) fail("read_f32 size");
            for (float x : v) sink = sink ^ uint8_t(x == x);
        } else {
            try {
                f.read_f32(t.name);
                fail("read_f32 accepted a non-float dtype");
            } catch (const Error&) {
            }
        }
        w.add(t.name, t.dtype, t.shape, p, t.nbytes());
    }
    if (covered != f.data_size()) fail("tensors do not cover the buffer");
    for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);

    // Round trip through the writer.
    SafetensorsFile g = SafetensorsFile::parse(w.serialize(), "fuzz-roundtrip");
    if (g.tensors().size() != f.tensors().size() || g.metadata() != f.metadata())
        fail("round trip changed the tensor list or metadata");
    for (size_t i = 0; i < f.tensors().size(); i++) {
        const TensorInfo &a = f.tensors()[i], &b = g.tensors()[i];
        if (a.name != b.name || a.dtype != b.dtype || a.shape != b.shape || a.nbytes() != b.nbytes() ||
            std::memcmp(f.data(a), g.data(b), a.nbytes()) != 0)
            fail("round trip changed a tensor");
    }
    return 0;
}
