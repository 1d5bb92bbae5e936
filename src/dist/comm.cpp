#include "dist/comm.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "common/check.h"
#include "common/runtime.h"

#ifdef HIPPO_HAVE_MPI
// The C API only (the deprecated C++ bindings would need libmpi_cxx).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace hippo {

namespace {

// MPI counts are int; larger buffers go in pieces of this many elements.
constexpr int64_t kMaxPiece = int64_t(1) << 30;
// All-reduce piece (Note [ring] in comm.h).
constexpr int64_t kRingPiece = int64_t(1) << 20;

bool launched_by_mpi() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
        if (std::getenv(v)) return true;
    return false;
}

#ifdef HIPPO_HAVE_MPI
void check_mpi(int rc, const char* call, const std::string& what) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    Comm::world().abort(strf("%s (%s) failed: %.*s", call, what.c_str(), len, msg));
}

MPI_Request* as_req(void*& h) { return reinterpret_cast<MPI_Request*>(&h); }
static_assert(sizeof(MPI_Request) <= sizeof(void*), "MPI_Request must fit a pointer");
#endif

}  // namespace

std::vector<int64_t> split_range(int64_t total, int parts) {
    HIPPO_ASSERT(parts >= 1 && total >= 0);
    std::vector<int64_t> off(size_t(parts) + 1);
    for (int r = 0; r <= parts; r++) {
        int64_t o = total * r / parts;
        o = (o + 15) / 16 * 16;
        off[size_t(r)] = std::min(o, total);
    }
    off[0] = 0;
    off[size_t(parts)] = total;
    return off;
}

bool Comm::built_with_mpi() {
#ifdef HIPPO_HAVE_MPI
    return true;
#else
    return false;
#endif
}

Comm& Comm::world() {
    static Comm comm;
    return comm;
}

Comm::Comm() {
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) == 0) host_ = host;
    if (const char* t = std::getenv("HIPPO_DIST_TIMEOUT")) {
        char* end = nullptr;
        double v = std::strtod(t, &end);
        if (end != t && v > 0) timeout_s_ = v;
    }
#ifdef HIPPO_HAVE_MPI
    if (!launched_by_mpi()) return;
    int provided = 0;
    // FUNNELED: only the main thread calls MPI; OpenMP workers never do.
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    mpi_ = true;
#else
    if (launched_by_mpi() && std::getenv("OMPI_COMM_WORLD_SIZE") && std::atoi(std::getenv("OMPI_COMM_WORLD_SIZE")) > 1) {
        std::fprintf(stderr,
                     "hippo: started by mpirun with %s ranks, but this build has no MPI (install libopenmpi-dev and "
                     "rebuild with scripts/setup.sh)\n",
                     std::getenv("OMPI_COMM_WORLD_SIZE"));
        std::_Exit(1);
    }
#endif
}

Comm::~Comm() {
#ifdef HIPPO_HAVE_MPI
    if (mpi_) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
    }
#endif
}

void Comm::set_timeout(double seconds) {
    HIPPO_CHECK(seconds > 0, "distributed timeout must be positive, got %g", seconds);
    timeout_s_ = seconds;
}

void Comm::abort(const std::string& message, int code) {
    std::fprintf(stderr, "hippo: rank %d (%s): %s\n", rank_, host_.c_str(), message.c_str());
    std::fflush(stderr);
#ifdef HIPPO_HAVE_MPI
    if (mpi_) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    std::_Exit(code);
}

void Comm::wait_all(std::vector<void*>& handles, const std::string& what, double started) {
#ifdef HIPPO_HAVE_MPI
    if (handles.empty()) return;
    std::vector<MPI_Request> reqs(handles.size());
    for (size_t i = 0; i < handles.size(); i++) reqs[i] = *as_req(handles[i]);
    poll_until(
        [&] {
            int done = 0;
            check_mpi(MPI_Testall(int(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall", what);
            return done != 0;
        },
        what, started);
    handles.clear();
#else
    (void)handles;
    (void)what;
    (void)started;
#endif
}

int Comm::acquire_scratch(int64_t n) {
    for (size_t i = 0; i < scratch_.size(); i++)
        if (!scratch_busy_[i]) {
            if (int64_t(scratch_[i].size()) < n) scratch_[i].resize(size_t(n));
            scratch_busy_[i] = 1;
            return int(i);
        }
    scratch_.emplace_back(static_cast<size_t>(n));
    scratch_busy_.push_back(1);
    return int(scratch_.size()) - 1;
}

Comm::Request Comm::start_ring(float* data, std::vector<int64_t> offsets, bool reduce, bool gather, const char* what) {
    Request r;
    r.what = what;
    r.started = now_seconds();
    if (!distributed()) return r;
    r.active = true;
    r.data = data;
    r.offsets = std::move(offsets);
    r.reduce = reduce;
    r.gather = gather;
    r.phase = reduce ? 0 : 1;
    r.step = 0;
    // Ranks issue collectives in the same order (Note [same order everywhere]), so the same
    // counter gives the same tag everywhere and concurrent rings do not mix their messages.
    r.tag = next_tag_;
    next_tag_ = next_tag_ % 30000 + 1;
    int64_t max_chunk = 0;
    for (int k = 0; k < size_; k++) max_chunk = std::max(max_chunk, r.offsets[size_t(k) + 1] - r.offsets[size_t(k)]);
    HIPPO_ASSERT(max_chunk < kMaxPiece * 2, "%s: a ring chunk of %lld floats exceeds MPI's int counts", what,
                 (long long)max_chunk);
    if (reduce) r.scratch = acquire_scratch(std::max<int64_t>(max_chunk, 1));
    post_ring_step(r);
    return r;
}

// Posts the send and receive of r's current (phase, step); see Note [ring].
void Comm::post_ring_step(Request& r) {
#ifdef HIPPO_HAVE_MPI
    const int K = size_;
    const int right = (rank_ + 1) % K, left = (rank_ + K - 1) % K;
    auto chunk = [&](int c) { return ((c % K) + K) % K; };
    int send_c, recv_c;
    if (r.phase == 0) {  // reduce-scatter: rank r ends with chunk r summed
        send_c = chunk(rank_ - 1 - r.step);
        recv_c = chunk(rank_ - 2 - r.step);
    } else {  // all-gather: rank r starts with chunk r
        send_c = chunk(rank_ - r.step);
        recv_c = chunk(rank_ - 1 - r.step);
    }
    const int64_t so = r.offsets[size_t(send_c)], sn = r.offsets[size_t(send_c) + 1] - so;
    const int64_t ro = r.offsets[size_t(recv_c)], rn = r.offsets[size_t(recv_c) + 1] - ro;
    float* dst = r.phase == 0 ? scratch_[size_t(r.scratch)].data() : r.data + ro;
    check_mpi(MPI_Irecv(dst, int(rn), MPI_FLOAT, left, r.tag, MPI_COMM_WORLD, as_req(r.recv)), "MPI_Irecv", r.what);
    check_mpi(MPI_Isend(r.data + so, int(sn), MPI_FLOAT, right, r.tag, MPI_COMM_WORLD, as_req(r.send)), "MPI_Isend",
              r.what);
#else
    (void)r;
#endif
}

Comm::Request Comm::start_allreduce_sum(float* data, int64_t n, const char* what) {
    const int64_t piece = std::min(n, kRingPiece);
    Request r = start_ring(data, split_range(piece, size_), true, true, what);
    r.remaining = n - piece;
    return r;
}

bool Comm::test(Request& r) {
#ifdef HIPPO_HAVE_MPI
    while (r.active) {
        MPI_Request q[2] = {*as_req(r.send), *as_req(r.recv)};
        int done = 0;
        check_mpi(MPI_Testall(2, q, &done, MPI_STATUSES_IGNORE), "MPI_Testall", r.what);
        if (!done) {
            *as_req(r.send) = q[0];
            *as_req(r.recv) = q[1];
            return false;
        }
        if (r.phase == 0) {
            // Add the received partial sum of chunk recv_c into ours.
            const int K = size_;
            const int c = ((rank_ - 2 - r.step) % K + K) % K;
            float* __restrict dst = r.data + r.offsets[size_t(c)];
            const float* __restrict src = scratch_[size_t(r.scratch)].data();
            const int64_t n = r.offsets[size_t(c) + 1] - r.offsets[size_t(c)];
#pragma omp simd
            for (int64_t i = 0; i < n; i++) dst[i] += src[i];
        }
        if (++r.step == size_ - 1) {
            r.step = 0;
            if (r.phase == 0 && r.gather) {
                r.phase = 1;
            } else if (r.remaining > 0) {  // the next piece of an all-reduce
                r.data += r.offsets.back();
                const int64_t piece = std::min(r.remaining, kRingPiece);
                r.offsets = split_range(piece, size_);
                r.remaining -= piece;
                r.phase = 0;
            } else {
                r.active = false;
                if (r.scratch >= 0) scratch_busy_[size_t(r.scratch)] = 0;
                r.scratch = -1;
                return true;
            }
        }
        post_ring_step(r);
    }
    return true;
#else
    r.active = false;
    return true;
#endif
}

void Comm::poll_until(const std::function<bool()>& done, const std::string& what, double started) {
    // Open MPI moves the data of a non-blocking operation only inside MPI calls, so polling is what
    // makes progress: poll flat out for the first 200 ms (any transfer that is merely large), then
    // with short sleeps (a rank that is far behind, or gone: the timeout check).
    const double spin_until = now_seconds() + 0.2;
    while (!done()) {
        if (now_seconds() > spin_until) {
            std::this_thread::sleep_for(std::chrono::microseconds(20));
            if (now_seconds() - started > timeout_s_)
                abort(strf("%s did not complete within %.0f s: another rank died, hangs or diverged; ending the job "
                           "(HIPPO_DIST_TIMEOUT sets the limit)",
                           what.c_str(), timeout_s_));
        }
    }
}

void Comm::wait(Request& r) {
    poll_until([&] { return test(r); }, r.what, r.started);
}

void Comm::allreduce_sum(float* data, int64_t n, const char* what) {
    if (!distributed()) return;
    Request r = start_allreduce_sum(data, n, what);
    wait(r);
}

void Comm::allreduce_sum(double* data, int64_t n, const char* what) {
#ifdef HIPPO_HAVE_MPI
    if (!distributed()) return;
    HIPPO_ASSERT(n < kMaxPiece);
    std::vector<void*> h(1);
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data, int(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, as_req(h[0])),
              "MPI_Iallreduce", what);
    wait_all(h, what, now_seconds());
#else
    (void)data;
    (void)n;
    (void)what;
#endif
}

void Comm::reduce_scatter_sum(float* data, const std::vector<int64_t>& offsets, const char* what) {
    HIPPO_ASSERT(int(offsets.size()) == size_ + 1);
    if (!distributed()) return;
    Request r = start_ring(data, offsets, true, false, what);
    wait(r);
}

void Comm::allgather(float* data, const std::vector<int64_t>& offsets, const char* what) {
    HIPPO_ASSERT(int(offsets.size()) == size_ + 1);
    if (!distributed()) return;
    Request r = start_ring(data, offsets, false, true, what);
    wait(r);
}

void Comm::broadcast(void* data, int64_t bytes, int root, const char* what) {
#ifdef HIPPO_HAVE_MPI
    if (!distributed()) return;
    std::vector<void*> h;
    char* p = static_cast<char*>(data);
    for (int64_t b = 0; b < bytes; b += kMaxPiece) {
        h.push_back(nullptr);
        check_mpi(MPI_Ibcast(p + b, int(std::min(kMaxPiece, bytes - b)), MPI_BYTE, root, MPI_COMM_WORLD, as_req(h.back())),
                  "MPI_Ibcast", what);
    }
    wait_all(h, what, now_seconds());
#else
    (void)data;
    (void)bytes;
    (void)root;
    (void)what;
#endif
}

std::string Comm::broadcast_string(const std::string& s, int root, const char* what) {
    if (!distributed()) return s;
    int64_t n = int64_t(s.size());
    broadcast(&n, sizeof n, root, what);
    std::string out = rank_ == root ? s : std::string(size_t(n), '\0');
    broadcast(out.data(), n, root, what);
    return out;
}

void Comm::barrier(const char* what) {
#ifdef HIPPO_HAVE_MPI
    if (!distributed()) return;
    std::vector<void*> h(1);
    check_mpi(MPI_Ibarrier(MPI_COMM_WORLD, as_req(h[0])), "MPI_Ibarrier", what);
    wait_all(h, what, now_seconds());
#else
    (void)what;
#endif
}

void Comm::check_same(const std::string& what, const std::string& value) {
    if (!distributed()) return;
    const std::string root_value = broadcast_string(value, 0, what.c_str());
    std::vector<double> differs(static_cast<size_t>(size_), 0.0);
    if (root_value != value) {
        differs[size_t(rank_)] = 1;
        size_t i = 0;
        while (i < value.size() && i < root_value.size() && value[i] == root_value[i]) i++;
        const size_t from = i > 40 ? i - 40 : 0;
        std::fprintf(stderr, "hippo: rank %d: %s differs from rank 0's at byte %zu: here '...%s', rank 0 '...%s'\n", rank_,
                     what.c_str(), i, value.substr(from, 80).c_str(), root_value.substr(from, 80).c_str());
    }
    allreduce_sum(differs.data(), int64_t(differs.size()), what.c_str());
    std::string ranks;
    for (int r = 0; r < size_; r++)
        if (differs[size_t(r)] != 0) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    if (!ranks.empty())
        throw CollectiveError(strf("%s differs between ranks: rank(s) %s differ from rank 0 (all ranks must run the "
                                   "same command on the same files)",
                                   what.c_str(), ranks.c_str()));
}

}  // namespace hippo
