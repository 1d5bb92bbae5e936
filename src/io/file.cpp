#include "io/file.h"

#include <filesystem>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/check.h"

namespace hippo {

namespace {

std::string errno_str(int e) { return std::strerror(e); }

// Directory part of a path for the post-rename fsync: "a/b/c" -> "a/b", "c" -> ".", "/c" -> "/".
std::string dir_of(const std::string& path) {
    size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

class FdWriter final : public FileWriter {
public:
    FdWriter(int fd, const std::string& path) : fd_(fd), path_(path) {}
    void write(const void* data, size_t n) override {
        const char* p = static_cast<const char*>(data);
        while (n > 0) {
            // Linux writes at most ~2 GiB per call; loop on partial writes and EINTR.
            ssize_t w = ::write(fd_, p, n < (size_t(1) << 30) ? n : (size_t(1) << 30));
            if (w < 0) {
                if (errno == EINTR) continue;
                throw Error(strf("cannot write '%s': %s", path_.c_str(), errno_str(errno).c_str()));
            }
            HIPPO_CHECK(w > 0, "cannot write '%s': write returned 0", path_.c_str());
            p += w;
            n -= size_t(w);
            written_ += uint64_t(w);
        }
    }
    uint64_t bytes_written() const override { return written_; }

private:
    int fd_;
    const std::string& path_;
    uint64_t written_ = 0;
};

std::atomic<uint64_t> g_tmp_seq{0};

}  // namespace

void write_file_atomic(const std::string& path, const std::function<void(FileWriter&)>& fill) {
    HIPPO_CHECK(!path.empty(), "write_file_atomic: empty path");
    // pid + per-process sequence number: unique among live processes and threads.
    std::string tmp = strf("%s.tmp.%ld.%llu", path.c_str(), long(::getpid()),
                           (unsigned long long)g_tmp_seq.fetch_add(1));
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        throw Error(strf("cannot write '%s': cannot create temp file '%s': %s", path.c_str(),
                         tmp.c_str(), errno_str(errno).c_str()));
    auto fail = [&](const char* what, int e) {
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        throw Error(strf("cannot write '%s': %s: %s", path.c_str(), what, errno_str(e).c_str()));
    };
    try {
        FdWriter w(fd, path);
        fill(w);
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (::fsync(fd) != 0) fail("fsync", errno);
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) fail("close", errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename", errno);
    // Make the rename itself durable. Some file systems cannot fsync a directory (EINVAL): then
    // there is nothing more we can do, and the data is already in place.
    int dfd = ::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        throw Error(strf("cannot write '%s': cannot open its directory to fsync: %s",
                         path.c_str(), errno_str(errno).c_str()));
    if (::fsync(dfd) != 0 && errno != EINVAL && errno != ENOTSUP) {
        int e = errno;
        ::close(dfd);
        throw Error(strf("cannot write '%s': fsync of directory: %s", path.c_str(),
                         errno_str(e).c_str()));
    }
    ::close(dfd);
}

void write_file_atomic(const std::string& path, std::span<const ConstBuffer> parts) {
    write_file_atomic(path, [&](FileWriter& w) {
        for (const ConstBuffer& b : parts)
            if (b.size > 0) w.write(b.data, b.size);
    });
}

void write_file_atomic(const std::string& path, const void* data, size_t n) {
    ConstBuffer b{data, n};
    write_file_atomic(path, std::span<const ConstBuffer>(&b, 1));
}

std::string regular_file_problem(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return errno == ENOENT ? "does not exist" : errno_str(errno);
    if (S_ISDIR(st.st_mode)) return "is a directory";
    if (!S_ISREG(st.st_mode)) return "is not a regular file (a FIFO, device or socket)";
    return "";
}

void check_output_is_not_input(const std::string& out, const std::string& in, const std::string& what) {
    std::error_code ec;
    HIPPO_CHECK(!std::filesystem::equivalent(out, in, ec) || ec, "%s '%s' is the input '%s': refusing to overwrite it",
                what.c_str(), out.c_str(), in.c_str());
}

std::vector<uint8_t> read_file(const std::string& path) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below as not a file).
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) throw Error(strf("cannot open '%s': %s", path.c_str(), errno_str(errno).c_str()));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        int e = errno;
        ::close(fd);
        throw Error(strf("cannot stat '%s': %s", path.c_str(), errno_str(e).c_str()));
    }
    if (S_ISDIR(st.st_mode)) {
        ::close(fd);
        throw Error(strf("cannot read '%s': is a directory", path.c_str()));
    }
    if (!S_ISREG(st.st_mode)) {  // /dev/zero or a FIFO would be read until memory runs out
        ::close(fd);
        throw Error(strf("cannot read '%s': not a regular file (a FIFO, device or socket is not data)", path.c_str()));
    }
    std::vector<uint8_t> out;
    if (S_ISREG(st.st_mode)) out.reserve(size_t(st.st_size));
    uint8_t buf[1 << 16];
    for (;;) {
        ssize_t r = ::read(fd, buf, sizeof(buf));
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            ::close(fd);
            throw Error(strf("cannot read '%s': %s", path.c_str(), errno_str(e).c_str()));
        }
        if (r == 0) break;
        out.insert(out.end(), buf, buf + r);
    }
    ::close(fd);
    return out;
}

// ---- MappedFile -----------------------------------------------------------------------------

MappedFile::MappedFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(strf("cannot open '%s': %s", path.c_str(), errno_str(errno).c_str()));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        int e = errno;
        ::close(fd);
        throw Error(strf("cannot stat '%s': %s", path.c_str(), errno_str(e).c_str()));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(strf("cannot map '%s': not a regular file", path.c_str()));
    }
    size_ = size_t(st.st_size);
    if (size_ > 0) {
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            ::close(fd);
            size_ = 0;
            throw Error(strf("cannot mmap '%s': %s", path.c_str(), errno_str(e).c_str()));
        }
        data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);  // the mapping stays valid without the descriptor
}

MappedFile::~MappedFile() { reset(); }

MappedFile::MappedFile(MappedFile&& o) noexcept
    : data_(o.data_), size_(o.size_), path_(std::move(o.path_)) {
    o.data_ = nullptr;
    o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
    if (this != &o) {
        reset();
        data_ = o.data_;
        size_ = o.size_;
        path_ = std::move(o.path_);
        o.data_ = nullptr;
        o.size_ = 0;
    }
    return *this;
}

void MappedFile::reset() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
}

}  // namespace hippo
