// Helpers shared by the kernel files (included inside each ISA's translation unit; everything
// lives in that ISA's namespace or has internal linkage).
#pragma once
#include <cstdint>

#include "parallel.h"
#include "simd/vec.h"

namespace nk::cpu::NK_ISA {
namespace {

template <class T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <class T> using Acc = typename AccOf<T>::type;
template <class T> using VecOf = decltype(loadu(static_cast<const T*>(nullptr)));

// Non-temporal stores when everything the call touches cannot stay in the last-level cache:
// the output then goes straight to memory instead of evicting the inputs.
inline bool use_streaming(int64_t tensors, int64_t elems, int64_t elem_bytes) {
  return tensors * elems * elem_bytes > last_level_cache_bytes();
}

// Elements [j, j + n) of p, n <= W (lanes past n are zero) / stores of the first n lanes.
template <class T> inline VecOf<T> load_n(const T* p, int64_t j, int64_t n) {
  return n == VecOf<T>::W ? loadu(p + j) : load_tail(p + j, n);
}
template <class T, class V> inline void store_n(T* p, int64_t j, V v, int64_t n) {
  if (n == V::W) storeu(p + j, v); else store_tail(p + j, v, n);
}

// The value a vector takes once stored as T (identity for float/double).
template <class T, class V> inline V round_through(V v) {
  if constexpr (sizeof(T) == sizeof(typename AccOf<T>::type)) {
    return v;
  } else {
    T tmp[V::W];
    storeu(tmp, v);
    return loadu(tmp);
  }
}

// f(j, n, k) over [0, N) in whole vectors from 0 (k picks one of four accumulators: j / W % 4 in
// the groups of four, then 0 for the vectors left and 1 for the tail). A fixed partition, for
// reductions that must not depend on anything but N (the backward span sums keep their own).
template <int64_t W, class F> inline void for_vectors(int64_t N, F&& f) {
  int64_t j = 0;
  for (; j + 4 * W <= N; j += 4 * W) {
    f(j, W, 0); f(j + W, W, 1); f(j + 2 * W, W, 2); f(j + 3 * W, W, 3);
  }
  for (; j + W <= N; j += W) f(j, W, 0);
  if (j < N) f(j, N - j, 1);
}

// Elements of p before the first address aligned to a whole vector (at most N), or -1 when p is
// not even aligned to its element size (then no element of it is vector-aligned).
template <class T> inline int64_t head_to_vector(const T* p, int64_t N) {
  constexpr auto bytes = static_cast<uintptr_t>(VecOf<T>::W * sizeof(T));
  const uintptr_t mis = reinterpret_cast<uintptr_t>(p) % bytes;
  if (mis % sizeof(T) != 0) return -1;
  return mis ? std::min<int64_t>(N, static_cast<int64_t>((bytes - mis) / sizeof(T))) : 0;
}

// Writes out[j] = f(j, n) for a row: a head up to the first address aligned to a whole vector,
// aligned vectors (non-temporal when `streaming`), then the tail. Elementwise only. With
// align = false (and no streaming) the vectors start at out itself, unaligned.
template <class T, class F> inline void write_row(T* out, int64_t N, bool streaming, F&& f, bool align = true) {
  constexpr int64_t W = VecOf<T>::W;
  const int64_t head = head_to_vector(out, N);
  // short rows: a head costs more than it saves
  const bool can_align = (align || streaming) && head >= 0 && N >= 8 * W;
  int64_t j = can_align ? head : 0;
  if (j > 0) store_tail(out, f(0, j), j);
  if (streaming && can_align) {
    for (; j + W <= N; j += W) stream(out + j, f(j, W));
  } else {
    for (; j + W <= N; j += W) storeu(out + j, f(j, W));
  }
  if (j < N) store_tail(out + j, f(j, N - j), N - j);
}

// Prefetch of the next row while the current one is worked on from cache, so memory streams
// during the compute passes too. One call per vector; a line is W*sizeof(T) bytes or more.
template <class T> inline void prefetch(const T* row, int64_t j) {
  if (row) __builtin_prefetch(row + j, 0, 3);
}

// Calls f(K<T>{}) for the element type T named by a.dtype (a kernel's per-dtype dispatch).
template <template <class> class K, class Args, class F> void by_dtype(const Args& a, F f) {
  switch (a.dtype) {
    case DType::f32: return f(K<float>{});
    case DType::f64: return f(K<double>{});
    case DType::f16: return f(K<f16>{});
    case DType::bf16: return f(K<bf16>{});
  }
}

}  // namespace
}  // namespace nk::cpu::NK_ISA
