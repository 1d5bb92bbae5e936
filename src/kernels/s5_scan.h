// The diagonal complex linear recurrence of S5 (Smith, Warrington, Linderman, ICLR 2023):
//
//   x[b,t] = a ∘ x[b,t-1] + u[b,t]     t = 0 .. L-1,  x[b,-1] = x0[b] (or 0)
//
// with one time-invariant diagonal a per layer. `reverse` runs the same recurrence backward in time
// (x[b,t] = a ∘ x[b,t+1] + u[b,t], x[b,L] = x0[b]): the second half of bidirectional S5.
//
// Layout: complex rows are planar, P2 real parts then P2 imaginary parts, because that is what the
// real GEMMs around the scan produce and read (u = B̄ u_in is u_in (B L, H) times a real
// (2 P2, H) matrix; y = 2 Re(C̃ x) is x (B L, 2 P2) times a real (H, 2 P2) matrix), and because the
// per-step update then vectorises over P2 without shuffles.
//   a   (2, P2)
//   u,x (B, L, 2, P2)
//   x0  (B, 2, P2)      initial state; null: zero. The final state is x's last row in scan order.
//
// Gradients use the convention of kernels/ssm_conv.h: for a complex z, gz = dLoss/dRe z +
// i dLoss/dIm z. With G the total gradient of the states (gx plus what flows back through the
// recurrence):
//   G[t] = gx[t] + conj(a) ∘ G[t+1]        (reverse: G[t+1] -> G[t-1])
//   gu = G,  ga = sum_{b,t} G[t] ∘ conj(x[t-1]),  gx0 = conj(a) ∘ G[0]  (x[-1] = x0)
//
// Parallel mode (note [blocked scan]): rows of the batch go to threads when there are enough of
// them; otherwise time is cut into nt + 1 chunks for nt threads, a two-level scan:
//   1. thread 0 scans chunk 0 from x0 (final at once); thread t >= 1 reduces chunk t to its last
//      state from zero (the same recurrence, without writing the rows);
//   2. the carries, in double: h_1 = chunk 0's last state, h_{c+1} = a^len_c h_c + (chunk c's
//      reduction), with a^n = exp(n log a) (no repeated powering);
//   3. thread t scans chunk t + 1 from h_{t+1}, writing the final rows.
// Work: L plus (nt - 1) / (nt + 1) L reads, L writes; time about 2 L / (nt + 1), so 2 threads take
// about 2/3 of one thread's time whatever B P2 (both passes are plain scans, so a row of a few
// complex numbers is latency bound in both). Below min_chunk steps a chunk, the scan stays
// sequential. Chunk boundaries depend on the thread count, so results across thread counts agree
// to rounding, not bit for bit (as BLAS GEMMs do); for a fixed thread count they repeat exactly.
#pragma once
#include <cstdint>

namespace hippo {

struct S5ScanShape {
    int64_t B = 1, L = 1, P2 = 1;
};

struct S5ScanOptions {
    bool reverse = false;
    // The shortest time chunk given to a thread; 0: automatic (enough work per chunk to pay for a
    // parallel region). Tests set 1 to cut even L = 2 into chunks.
    int64_t min_chunk = 0;
    // Threads to use; 0: omp_get_max_threads() (1 inside a parallel region).
    int threads = 0;
};

// x must not alias u. x0 may be null.
void s5_scan_forward(float* x, const float* a, const float* u, const float* x0, const S5ScanShape& s,
                     const S5ScanOptions& o = {});

// gx (B, L, 2, P2): dLoss/dx from outside the recurrence; g_last (B, 2, P2) or null: extra
// gradient on the final state (the last row in scan order). x: the forward states; x0 as given to
// the forward (null: zero). Outputs: gu (B, L, 2, P2) (must not alias gx), ga (2, P2), gx0
// (B, 2, P2) or null; all overwritten.
void s5_scan_backward(float* gu, float* ga, float* gx0, const float* gx, const float* g_last, const float* x,
                      const float* a, const float* x0, const S5ScanShape& s, const S5ScanOptions& o = {});

// Plain sequential references in double, same layouts and semantics.
void s5_scan_ref(double* x, const double* a, const double* u, const double* x0, const S5ScanShape& s,
                 bool reverse = false);
void s5_scan_backward_ref(double* gu, double* ga, double* gx0, const double* gx, const double* g_last,
                          const double* x, const double* a, const double* x0, const S5ScanShape& s,
                          bool reverse = false);

}  // namespace hippo
