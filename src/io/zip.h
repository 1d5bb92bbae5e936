// Minimal read-only ZIP reader for torch.save archives (PyTorch >= 1.6 writes a ZIP of stored,
// i.e. uncompressed, entries; files over 4 GiB use ZIP64). Works on a caller-owned byte range (an
// mmapped file): entries are views, nothing is copied.
//
// Validated when opened: the end-of-central-directory record (and the ZIP64 locator/record when
// present), every central directory entry, and each entry's local header and data range against
// the archive size. Compressed entries are listed but data() refuses them (zlib is not linked), as
// do encrypted entries. Any problem: hippo::Error "<what>: ...".
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace hippo {

struct ZipEntry {
    std::string name;
    uint16_t method = 0;       // 0 = stored, 8 = deflate, ...
    uint16_t flags = 0;
    uint64_t data_offset = 0;  // start of the entry's data in the archive
    uint64_t size = 0;         // uncompressed size
    uint64_t compressed_size = 0;
    uint32_t crc32 = 0;        // of the uncompressed data, as the central directory records it
};

// CRC-32 (ZIP / zlib polynomial) of n bytes.
uint32_t crc32(const uint8_t* p, size_t n);

class ZipReader {
public:
    ZipReader(const uint8_t* data, size_t size, std::string what);
    const std::vector<ZipEntry>& entries() const { return entries_; }
    const ZipEntry* find(const std::string& name) const;  // nullptr if absent
    // The bytes of a stored entry, CRC-checked; hippo::Error for compressed, encrypted or corrupt
    // entries.
    std::span<const uint8_t> data(const ZipEntry& e) const;
    const std::string& what() const { return what_; }

private:
    const uint8_t* data_;
    size_t size_;
    std::string what_;
    std::vector<ZipEntry> entries_;
    std::unordered_map<std::string, size_t> index_;
};

}  // namespace hippo
