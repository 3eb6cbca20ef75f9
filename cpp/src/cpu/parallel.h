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
#include <vector>

namespace nk::cpu {
int kernel_threads();  // runtime.cpp: threads a kernel may use (>= 1)
}

namespace nk::cpu::par {

// Below this many elements of work a kernel runs on the calling thread (fork/join costs more).
static constexpr int64_t kMinParallelWork = int64_t{1} << 15;

// Calls f(begin, end) on contiguous, disjoint ranges covering [0, n).
template <class F>
static inline void parallel_ranges(int64_t n, int64_t work, F&& f) {
  const int nt = (work >= kMinParallelWork && n > 1) ? static_cast<int>(std::min<int64_t>(kernel_threads(), n)) : 1;
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

// Scratch memory reused across calls of the calling thread (avoids page faults per call).
template <class A>
static inline A* scratch(int64_t n) {
  thread_local std::vector<A> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

}  // namespace nk::cpu::par
