// Deterministic parallelism for normkit kernels.
//
// Rule: no result may depend on the number of threads. Two tools make that hold:
//  * parallel_ranges() splits independent items (rows) across OpenMP threads; each item is
//    computed by the same code whatever thread runs it.
//  * Reductions across rows (dweight, dbias, batch statistics) go through fixed chunks:
//    row_chunks(M, N) depends only on the problem size, each chunk writes its own partial
//    (indexed by chunk, never by thread), and combine_chunks() adds the partials in chunk order.
// So outputs are bitwise identical for 1, 2, 3 or any number of threads.
//
// Everything here is `static`/templated: each per-ISA translation unit keeps its own copy.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace nk::cpu {
int kernel_threads();             // dispatch.cpp: threads a kernel may use (>= 1)
int64_t last_level_cache_bytes();  // dispatch.cpp: size of the last-level cache
int64_t l2_cache_bytes();          // dispatch.cpp: size of one core's L2
}

namespace nk::cpu::par {

// Below this many elements of work a kernel runs on the calling thread (fork/join costs more).
static constexpr int64_t kMinParallelWork = int64_t{1} << 15;

// Calls f(begin, end) on contiguous, disjoint ranges covering [0, n), on at most `max_threads`
// OpenMP threads (omp_get_thread_num() < max_threads inside f, so per-thread buffers sized by
// max_threads are safe).
template <class F>
static inline void parallel_ranges(int max_threads, int64_t n, int64_t work, F&& f) {
  const int nt = (work >= kMinParallelWork && n > 1) ? static_cast<int>(std::min<int64_t>(max_threads, n)) : 1;
  if (nt <= 1) {
    if (n > 0) f(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t b = n * t / T, e = n * (t + 1) / T;
    if (b < e) f(b, e);
  }
}

// Fixed row chunks for cross-row reductions: at most kMaxChunks chunks, each at least
// kMinChunkWork elements, so partial buffers stay small and every core gets work.
struct RowChunks {
  int64_t rows;   // rows per chunk (the last one may have fewer)
  int64_t count;  // number of chunks
};
static constexpr int64_t kMaxChunks = 64;
static constexpr int64_t kMinChunkWork = int64_t{1} << 15;
static inline RowChunks row_chunks(int64_t M, int64_t N) {
  if (M <= 0) return {1, 0};
  const int64_t by_count = (M + kMaxChunks - 1) / kMaxChunks;
  const int64_t by_work = N > 0 ? (kMinChunkWork + N - 1) / N : M;
  const int64_t rows = std::max<int64_t>(1, std::min(M, std::max(by_count, by_work)));
  return {rows, (M + rows - 1) / rows};
}

// 64-byte aligned scratch memory of the calling thread, reused across calls (no page faults per
// call). `slot` separates buffers needed at the same time. Throws std::bad_alloc; call it before
// entering a parallel region.
static constexpr int64_t kScratchSlots = 4;
template <class A>
static inline A* scratch(int slot, int64_t n) {
  struct Buf {
    A* p = nullptr;
    int64_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf bufs[kScratchSlots];
  Buf& b = bufs[slot];
  if (b.n < n) {
    std::free(b.p);
    b.p = nullptr;
    b.n = 0;
    const size_t bytes = (static_cast<size_t>(n) * sizeof(A) + 63) / 64 * 64;
    b.p = static_cast<A*>(std::aligned_alloc(64, bytes));
    if (!b.p) throw std::bad_alloc();
    b.n = n;
  }
  return b.p;
}

// Elements in a 64-byte line of A, and the row stride of per-feature buffers: n rounded up to
// whole lines plus one more line, so a whole-vector access at any j < n stays inside the row.
template <class A> static constexpr int64_t kLine = 64 / static_cast<int64_t>(sizeof(A));
template <class A> static inline int64_t padded(int64_t n) { return (n + kLine<A> - 1) / kLine<A> * kLine<A> + kLine<A>; }

}  // namespace nk::cpu::par
