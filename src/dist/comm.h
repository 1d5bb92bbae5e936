// Process group for data-parallel training: MPI (Debian's Open MPI) when hippo is built with it and
// the process was started by an MPI launcher (mpirun / mpiexec), else a world of one rank in which
// every collective is a no-op. Code written against Comm runs unchanged in both.
//
// Note [bounded waits]: every collective is issued non-blocking and then polled. A wait that
// exceeds timeout_s (default 300 s; HIPPO_DIST_TIMEOUT or set_timeout) prints one line naming the
// operation and the rank and ends the whole job with MPI_Abort, so a rank that died or hangs never
// leaves the others blocked forever. A rank that exits on its own (an error, a signal) is also seen
// by mpirun, which then stops the other ranks; the timeout covers the cases it cannot see (a rank
// that hangs, a network partition).
//
// Note [same order everywhere]: MPI matches collectives by the order in which ranks issue them.
// Callers issue them in an order that depends only on the program and the model (never on timing
// or data), so every rank issues the same sequence.
//
// Counts are int64_t; buffers beyond MPI's int counts are split into pieces internally.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hippo {

class Comm {
public:
    // The process group of this process. The first call initialises MPI when hippo has MPI and an
    // MPI launcher started the process (OMPI_COMM_WORLD_SIZE / PMI_SIZE in the environment);
    // MPI_Finalize runs at exit.
    static Comm& world();
    // Whether this build has MPI support at all (hippo info, tests).
    static bool built_with_mpi();

    int rank() const { return rank_; }
    int size() const { return size_; }
    bool is_root() const { return rank_ == 0; }
    bool distributed() const { return size_ > 1; }
    const std::string& host() const { return host_; }

    void set_timeout(double seconds);
    double timeout() const { return timeout_s_; }

    // In place element-wise sum over all ranks; every rank gets the same result.
    void allreduce_sum(float* data, int64_t n, const char* what);
    void allreduce_sum(double* data, int64_t n, const char* what);
    // data holds `total` floats with the same layout on every rank; rank r's part is
    // [offsets[r], offsets[r + 1]) (offsets has size() + 1 entries, non-decreasing, offsets[0] = 0,
    // offsets[size()] = total).
    // reduce_scatter_sum: afterwards data[offsets[r], offsets[r + 1]) on rank r holds the sum of that
    // range over all ranks (the rest of data is scratch).
    void reduce_scatter_sum(float* data, const std::vector<int64_t>& offsets, const char* what);
    // allgather: every rank's part of data is copied to all ranks.
    void allgather(float* data, const std::vector<int64_t>& offsets, const char* what);
    void broadcast(void* data, int64_t bytes, int root, const char* what);
    std::string broadcast_string(const std::string& s, int root, const char* what);
    void barrier(const char* what);
    // Throws nothing and returns on every rank when `value` is equal on all ranks; otherwise every
    // rank throws a hippo::Error naming `what` and the first ranks that differ (a config mismatch).
    void check_same(const std::string& what, const std::string& value);

    // Non-blocking all-reduce (sum, float) for overlapping communication with computation.
    // start_allreduce_sum() issues it; test() makes progress and says whether it finished; wait()
    // blocks (with the bounded wait of the note above). `data` must stay valid until it finished.
    //
    // Note [ring]: the float collectives are a bandwidth-optimal ring on MPI point-to-point
    // messages, not MPI_(I)allreduce: Open MPI 4.1's non-blocking collectives (libnbc) reached
    // 0.7-1.5 GB/s here against several times that for the ring (hippo bench allreduce). The
    // chunks of split_range(n, K) travel K - 1 steps around the ring being summed (reduce-scatter:
    // rank r ends with the sum of chunk r), then K - 1 steps more being copied (all-gather). Each
    // chunk's sum is formed once, in ring order, and copied to the others, so every rank has the
    // same bits. Receive buffers come from a pool that is kept (fresh pages cost ~11 us each here).
    // An all-reduce runs over pieces of at most 1 Mi floats, one after another, so a piece's chunks
    // are still in cache when they are summed and sent on (11 GB/s for a 4 MiB piece here against
    // 3.4 GB/s for 64 MiB in one ring).
    struct Request {
        std::string what;
        double started = 0;
        bool active = false;
        float* data = nullptr;             // the current piece
        std::vector<int64_t> offsets;      // chunks of the current piece
        int64_t remaining = 0;             // all-reduce: floats after the current piece
        bool reduce = true, gather = true;
        int phase = 0;  // 0 reduce-scatter, 1 all-gather
        int step = 0;
        int tag = 0;
        int scratch = -1;          // pool buffer index
        void* send = nullptr;      // MPI_Request of the step in flight
        void* recv = nullptr;
    };
    Request start_allreduce_sum(float* data, int64_t n, const char* what);
    bool test(Request& r);
    void wait(Request& r);

    // Ends the job on every rank (MPI_Abort) after printing "hippo: rank R: message" on stderr; in
    // a one-rank world it exits the process.
    [[noreturn]] void abort(const std::string& message, int code = 1);

    Comm(const Comm&) = delete;
    Comm& operator=(const Comm&) = delete;
    ~Comm();

private:
    Comm();
    void wait_all(std::vector<void*>& handles, const std::string& what, double started);
    // Calls done() until it returns true: flat out for 200 ms, then with short sleeps, ending the
    // job after timeout_s_ (Note [bounded waits]).
    void poll_until(const std::function<bool()>& done, const std::string& what, double started);
    Request start_ring(float* data, std::vector<int64_t> offsets, bool reduce, bool gather, const char* what);
    void post_ring_step(Request& r);
    int acquire_scratch(int64_t n);
    std::vector<std::vector<float>> scratch_;
    std::vector<char> scratch_busy_;
    int next_tag_ = 1;
    int rank_ = 0, size_ = 1;
    bool mpi_ = false;
    double timeout_s_ = 300;
    std::string host_;
};

// Contiguous, 16-float aligned split of [0, total) into `parts` nearly equal ranges: returns the
// parts + 1 offsets (the layout of reduce_scatter_sum / allgather and of ZeRO-1 optimizer shards).
std::vector<int64_t> split_range(int64_t total, int parts);

}  // namespace hippo
