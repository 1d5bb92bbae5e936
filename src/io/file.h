// Whole-file I/O for checkpoints and configs.
//
// Note [atomic replace]: a checkpoint is never written in place. write_file_atomic writes a temp
// file `<path>.tmp.<pid>.<seq>` in the same directory, fsyncs it, renames it over `path` and fsyncs
// the directory. A crash at any point leaves either the old file or the new one, never a torn mix,
// and a reader that has the old file mmapped keeps seeing the old inode (we never truncate a file
// that someone may have mapped; truncating a mapped file under a reader would SIGBUS it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace hippo {

// Sink handed to the write_file_atomic callback. write() throws hippo::Error on failure.
class FileWriter {
public:
    virtual ~FileWriter() = default;
    virtual void write(const void* data, size_t n) = 0;
    virtual uint64_t bytes_written() const = 0;
};

// One piece of a scattered write (not owned).
struct ConstBuffer {
    const void* data;
    size_t size;
};

// Atomically replaces `path` with the bytes the callback writes. If the callback throws, or any
// system call fails, the temp file is removed, `path` is left untouched and hippo::Error (naming the
// path and strerror) is thrown; an exception from the callback itself is rethrown unchanged.
void write_file_atomic(const std::string& path, const std::function<void(FileWriter&)>& fill);
// Same, for the concatenation of `parts` (written without copying them into one buffer).
void write_file_atomic(const std::string& path, std::span<const ConstBuffer> parts);
void write_file_atomic(const std::string& path, const void* data, size_t n);

// Reads a whole file. Missing or unreadable files: hippo::Error "cannot open 'path': <strerror>".
// A regular file's bytes (a directory, FIFO or device is an error naming what it is).
std::vector<uint8_t> read_file(const std::string& path);
// "" for a regular file, else what is wrong ("does not exist", "is a directory", ...).
std::string regular_file_problem(const std::string& path);
// hippo::Error when `out` names the same existing file as `in` (an output must not replace an input).
void check_output_is_not_input(const std::string& out, const std::string& in, const std::string& what);

// Read-only memory map of a whole regular file (PROT_READ, MAP_PRIVATE). An empty file maps to
// data() == nullptr, size() == 0. Move-only; unmaps on destruction.
class MappedFile {
public:
    MappedFile() = default;
    explicit MappedFile(const std::string& path);
    ~MappedFile();
    MappedFile(MappedFile&& o) noexcept;
    MappedFile& operator=(MappedFile&& o) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    void reset();
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
};

}  // namespace hippo
