#include "io/zip.h"

#include <array>

#include <cstring>

#include "common/check.h"

namespace hippo {

namespace {

uint16_t u16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t u32(const uint8_t* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24); }
uint64_t u64(const uint8_t* p) { return uint64_t(u32(p)) | (uint64_t(u32(p + 4)) << 32); }

constexpr uint32_t kEocdSig = 0x06054b50, kZip64LocSig = 0x07064b50, kZip64EocdSig = 0x06064b50,
                   kCentralSig = 0x02014b50, kLocalSig = 0x04034b50;

}  // namespace

ZipReader::ZipReader(const uint8_t* data, size_t size, std::string what) : data_(data), size_(size), what_(std::move(what)) {
    const char* w = what_.c_str();
    HIPPO_CHECK(size_ >= 22, "%s: not a ZIP archive (too short: %zu bytes)", w, size_);
    // End of central directory: the last 22 bytes, or up to 64 KiB earlier when there is a comment.
    size_t eocd = size_t(-1);
    size_t lo = size_ > 22 + 65535 ? size_ - 22 - 65535 : 0;
    for (size_t p = size_ - 22 + 1; p-- > lo;) {
        if (u32(data_ + p) == kEocdSig && p + 22 + u16(data_ + p + 20) == size_) {
            eocd = p;
            break;
        }
    }
    HIPPO_CHECK(eocd != size_t(-1), "%s: not a ZIP archive or truncated (no end-of-central-directory record)", w);
    const uint8_t* e = data_ + eocd;
    HIPPO_CHECK(u16(e + 4) == 0 && u16(e + 6) == 0, "%s: multi-disk ZIP archives are not supported", w);
    uint64_t count = u16(e + 10), cd_size = u32(e + 12), cd_off = u32(e + 16);
    if (count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        HIPPO_CHECK(eocd >= 20 && u32(data_ + eocd - 20) == kZip64LocSig, "%s: ZIP64 locator missing", w);
        uint64_t z = u64(data_ + eocd - 20 + 8);
        HIPPO_CHECK(size_ >= 56 && z <= size_ - 56 && u32(data_ + z) == kZip64EocdSig, "%s: bad ZIP64 end-of-central-directory record", w);
        count = u64(data_ + z + 32);
        cd_size = u64(data_ + z + 40);
        cd_off = u64(data_ + z + 48);
    }
    HIPPO_CHECK(cd_off <= size_ && cd_size <= size_ - cd_off, "%s: central directory outside the file (truncated?)", w);
    HIPPO_CHECK(count <= cd_size / 46, "%s: central directory too small for %llu entries", w, (unsigned long long)count);
    entries_.reserve(count);
    uint64_t p = cd_off, end = cd_off + cd_size;
    for (uint64_t i = 0; i < count; i++) {
        HIPPO_CHECK(end - p >= 46 && u32(data_ + p) == kCentralSig, "%s: bad central directory entry %llu", w,
                    (unsigned long long)i);
        const uint8_t* c = data_ + p;
        ZipEntry z;
        z.flags = u16(c + 8);
        z.method = u16(c + 10);
        z.crc32 = u32(c + 16);
        z.compressed_size = u32(c + 20);
        z.size = u32(c + 24);
        uint16_t nlen = u16(c + 28), xlen = u16(c + 30), clen = u16(c + 32);
        uint64_t local = u32(c + 42);
        HIPPO_CHECK(end - p - 46 >= uint64_t(nlen) + xlen + clen, "%s: central directory entry %llu overruns", w,
                    (unsigned long long)i);
        z.name.assign(reinterpret_cast<const char*>(c + 46), nlen);
        // ZIP64 extra field: the 64-bit values of the fields that are 0xFFFFFFFF, in this order.
        const uint8_t* x = c + 46 + nlen;
        for (size_t q = 0; q + 4 <= xlen;) {
            uint16_t id = u16(x + q), len = u16(x + q + 2);
            HIPPO_CHECK(q + 4 + len <= xlen, "%s: bad extra field in '%s'", w, z.name.c_str());
            if (id == 0x0001) {
                const uint8_t* f = x + q + 4;
                size_t left = len;
                auto take = [&](uint64_t* v) {
                    if (*v != 0xFFFFFFFFu) return;
                    HIPPO_CHECK(left >= 8, "%s: short ZIP64 extra field in '%s'", w, z.name.c_str());
                    *v = u64(f);
                    f += 8;
                    left -= 8;
                };
                take(&z.size);
                take(&z.compressed_size);
                take(&local);
            }
            q += 4 + len;
        }
        HIPPO_CHECK(local <= size_ && size_ - local >= 30 && u32(data_ + local) == kLocalSig,
                    "%s: bad local header for '%s' (truncated?)", w, z.name.c_str());
        uint64_t start = local + 30 + u16(data_ + local + 26) + u16(data_ + local + 28);
        HIPPO_CHECK(start <= size_ && z.compressed_size <= size_ - start, "%s: data of '%s' lies outside the file (truncated?)",
                    w, z.name.c_str());
        if (z.method == 0)
            HIPPO_CHECK(z.size == z.compressed_size, "%s: stored entry '%s' has inconsistent sizes", w, z.name.c_str());
        z.data_offset = start;
        HIPPO_CHECK(index_.emplace(z.name, entries_.size()).second, "%s: duplicate entry '%s'", w, z.name.c_str());
        entries_.push_back(std::move(z));
        p += 46 + uint64_t(nlen) + xlen + clen;
    }
}

const ZipEntry* ZipReader::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &entries_[it->second];
}

std::span<const uint8_t> ZipReader::data(const ZipEntry& e) const {
    HIPPO_CHECK(!(e.flags & 1), "%s: entry '%s' is encrypted", what_.c_str(), e.name.c_str());
    HIPPO_CHECK(e.method == 0,
                "%s: entry '%s' is compressed (method %u); only stored (uncompressed) entries are supported, as "
                "torch.save writes them",
                what_.c_str(), e.name.c_str(), unsigned(e.method));
    std::span<const uint8_t> bytes{data_ + e.data_offset, size_t(e.size)};
    // A flipped byte in a stored tensor would otherwise import as a silently wrong weight.
    const uint32_t crc = crc32(bytes.data(), bytes.size());
    HIPPO_CHECK(crc == e.crc32, "%s: entry '%s' is corrupt (CRC-32 %08x, the archive records %08x)", what_.c_str(),
                e.name.c_str(), unsigned(crc), unsigned(e.crc32));
    return bytes;
}

uint32_t crc32(const uint8_t* p, size_t n) {
    // Slicing-by-4 over the reflected polynomial 0xEDB88320 (the ZIP / zlib CRC-32).
    static const auto tables = [] {
        std::array<std::array<uint32_t, 256>, 4> t{};
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++)
            for (int s = 1; s < 4; s++) t[size_t(s)][i] = (t[size_t(s - 1)][i] >> 8) ^ t[0][t[size_t(s - 1)][i] & 0xFF];
        return t;
    }();
    uint32_t c = 0xFFFFFFFFu;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        c ^= u32(p + i);
        c = tables[3][c & 0xFF] ^ tables[2][(c >> 8) & 0xFF] ^ tables[1][(c >> 16) & 0xFF] ^ tables[0][c >> 24];
    }
    for (; i < n; i++) c = tables[0][(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

}  // namespace hippo
