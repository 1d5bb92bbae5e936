// safetensors reader and writer (https://github.com/huggingface/safetensors, format section).
//
// Layout:
//   [0, 8)          u64 little-endian N = header length
//   [8, 8+N)        UTF-8 JSON object, starts with '{', may be padded with trailing spaces:
//                     { "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]}, ...,
//                       "__metadata__": {"<key>": "<string value>", ...} }   (metadata optional)
//   [8+N, end)      byte buffer; data_offsets are relative to its start, tensors row-major, LE.
//
// The reader validates everything before handing out a pointer (see SafetensorsFile::parse):
// every tensor's [begin, end) lies in the buffer, matches shape x dtype size, and the tensors tile
// the buffer with no overlap and no hole. Any violation is a hippo::Error naming file and tensor.
// Independent of the Tensor class: tensors are described by TensorInfo and raw bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/file.h"

namespace hippo {

enum class DType { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2 };

size_t dtype_size(DType dt);                  // bytes per element
const char* dtype_name(DType dt);             // "F32", "BF16", ... as spelled in the header
DType dtype_from_name(const std::string& s);  // throws hippo::Error on an unknown name
bool dtype_from_name(const std::string& s, DType* out);  // non-throwing variant

struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;  // rank 0 = scalar (1 element); dims >= 0
    uint64_t begin = 0, end = 0; // byte range relative to the start of the data buffer
    int64_t numel() const;       // product of shape (1 for rank 0); fits int64 after validation
    uint64_t nbytes() const { return end - begin; }
};

class SafetensorsFile {
public:
    // Maps the file (no copy) and validates it. Errors name the path.
    static SafetensorsFile open(const std::string& path);
    // Validates bytes held in memory; `what` names the source in error messages.
    static SafetensorsFile parse(std::vector<uint8_t> bytes, const std::string& what = "<memory>");

    const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by begin offset
    const TensorInfo* find(const std::string& name) const;               // nullptr if absent
    const TensorInfo& get(const std::string& name) const;                // throws if absent
    // Pointer to the tensor's first byte in the mapped/owned buffer. Not aligned in general.
    const uint8_t* data(const TensorInfo& t) const { return buffer_ + t.begin; }

    // Converts F32/F16/BF16/F64 to float. Error for other dtypes or a missing name.
    std::vector<float> read_f32(const std::string& name) const;
    void read_f32(const TensorInfo& t, float* out) const;  // writes t.numel() floats

    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::string& source() const { return what_; }
    uint64_t header_size() const { return header_len_; }  // N
    uint64_t data_size() const { return buffer_len_; }    // byte buffer length

private:
    void init(const uint8_t* bytes, size_t n);

    std::string what_;
    std::vector<uint8_t> owned_;
    std::unique_ptr<MappedFile> mapped_;
    const uint8_t* buffer_ = nullptr;  // start of the byte buffer (8 + N into the file)
    uint64_t header_len_ = 0, buffer_len_ = 0;
    std::vector<TensorInfo> tensors_;
    std::unordered_map<std::string, size_t> index_;
    std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
public:
    // `data` is referenced, not copied, and must stay alive until write()/serialize() return.
    // Errors: duplicate or reserved name ("__metadata__"), negative dim, nbytes != numel x size.
    void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
             size_t nbytes);
    void add_f32(const std::string& name, std::vector<int64_t> shape, const float* data);
    void set_metadata(const std::string& key, const std::string& value);

    // Atomic (write_file_atomic); tensors laid out in insertion order, header padded with spaces
    // so the data buffer starts at a multiple of 8 bytes.
    void write(const std::string& path) const;
    std::vector<uint8_t> serialize() const;
    size_t size() const { return entries_.size(); }

private:
    struct Entry {
        std::string name;
        DType dtype;
        std::vector<int64_t> shape;
        const void* data;
        size_t nbytes;
    };
    std::string header() const;  // the 8-byte length prefix + padded JSON

    std::vector<Entry> entries_;
    std::unordered_map<std::string, size_t> index_;
    std::map<std::string, std::string> metadata_;
};

// Half-precision conversions used by read_f32 (exposed for tests and kernels).
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t h);

}  // namespace hippo
