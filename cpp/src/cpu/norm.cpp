// LayerNorm / RMSNorm row kernels (contract: normkit/norm.h). Compiled once per ISA.
//
// Forward, per row: [h = x + res], LayerNorm statistics in two passes (sum, then the corrected
// two-pass sum of deviations, so rows with a large mean keep full precision), then one
// normalize pass. Only the first pass streams from memory; the others reuse the row from L1/L2.
// Backward, per row: one pass over x and dy accumulates the two row sums and the per-chunk
// dweight/dbias partials, a second pass (row in cache) writes dx.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "normkit/norm.h"
#include "parallel.h"
#include "simd/vec.h"

namespace nk::cpu::NK_ISA {
namespace {

template <class T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <class T> using Acc = typename AccOf<T>::type;
template <class T> using VecOf = decltype(loadu(static_cast<const T*>(nullptr)));

// Outputs larger than this go around the cache with non-temporal stores.
constexpr int64_t kStreamBytes = int64_t{24} << 20;

template <class T> inline void prefetch_row(const T* p, int64_t j) { __builtin_prefetch(p + j, 0, 3); }

// Weight or bias of ones / zeros when the caller gave none (scratch of the calling thread).
template <class A> const A* or_const(const void* p, A value, A* scratch, int64_t n) {
  if (p) return static_cast<const A*>(p);
  for (int64_t j = 0; j < n; ++j) scratch[j] = value;
  return scratch;
}

// Writes y[j] = f(j-vector) over a row, using non-temporal stores for the aligned body when
// `streaming`; f(j, n) returns the vector for elements [j, j + n), n <= W.
template <class T, class F> inline void write_row(T* y, int64_t N, bool streaming, F f) {
  using V = VecOf<T>;
  constexpr int64_t W = V::W;
  int64_t j = 0;
  if (streaming) {
    const auto mis = static_cast<int64_t>(reinterpret_cast<uintptr_t>(y) % (W * sizeof(T)));
    const int64_t head = mis == 0 ? 0 : std::min<int64_t>(N, (W * static_cast<int64_t>(sizeof(T)) - mis) / static_cast<int64_t>(sizeof(T)));
    if (mis % static_cast<int64_t>(sizeof(T)) == 0) {
      if (head > 0) store_tail(y, f(0, head), head);
      j = head;
      for (; j + W <= N; j += W) stream(y + j, f(j, W));  // scalar: y[j] = f(j)
    }
  }
  for (; j + W <= N; j += W) storeu(y + j, f(j, W));
  if (j < N) store_tail(y + j, f(j, N - j), N - j);
}

// Loads elements [j, j + n) of p (n <= W; lanes past n are zero).
template <class T> inline VecOf<T> load_n(const T* p, int64_t j, int64_t n) {
  return n == VecOf<T>::W ? loadu(p + j) : load_tail(p + j, n);
}

// ---------------------------------------------------------------- forward

template <bool RMS, class T>
void fwd_rows(const RowNormFwdArgs& a, const Acc<T>* w, const Acc<T>* b, int64_t r0, int64_t r1, bool streaming) {
  using A = Acc<T>;
  using V = VecOf<T>;
  constexpr int64_t W = V::W;
  const int64_t N = a.N;
  const A inv_n = A(1) / static_cast<A>(N);
  const A eps = static_cast<A>(a.eps);
  for (int64_t i = r0; i < r1; ++i) {
    const T* src = static_cast<const T*>(a.x) + i * a.ldx;
    T* yr = static_cast<T*>(a.y) + i * N;
    if (a.res) {  // h = round_T(x + res); statistics and y use the rounded h
      const T* rr = static_cast<const T*>(a.res) + i * a.ldr;
      T* hr = static_cast<T*>(a.h) + i * N;
      int64_t j = 0;
      for (; j + W <= N; j += W) storeu(hr + j, loadu(src + j) + loadu(rr + j));  // scalar: h = x + r
      if (j < N) store_tail(hr + j, load_tail(src + j, N - j) + load_tail(rr + j, N - j), N - j);
      src = hr;
    }
    // Pass 1 (from memory): sum of x (LayerNorm) or of x^2 (RMSNorm), four accumulators.
    V s0 = set1(A(0)), s1 = s0, s2 = s0, s3 = s0;
    int64_t j = 0;
    for (; j + 4 * W <= N; j += 4 * W) {  // scalar: s += x[j]  (RMS: s += x[j]^2)
      const V x0 = loadu(src + j), x1 = loadu(src + j + W), x2 = loadu(src + j + 2 * W), x3 = loadu(src + j + 3 * W);
      if constexpr (RMS) {
        s0 = fma(x0, x0, s0); s1 = fma(x1, x1, s1); s2 = fma(x2, x2, s2); s3 = fma(x3, x3, s3);
      } else {
        s0 = s0 + x0; s1 = s1 + x1; s2 = s2 + x2; s3 = s3 + x3;
      }
    }
    for (; j < N; j += W) {
      const V x0 = load_n(src, j, std::min(W, N - j));
      s0 = RMS ? fma(x0, x0, s0) : s0 + x0;
    }
    const A sum = reduce_add((s0 + s1) + (s2 + s3));
    const T* next = i + 1 < r1 ? (a.res ? nullptr : static_cast<const T*>(a.x) + (i + 1) * a.ldx) : nullptr;
    A mean_hi = 0, mean_lo = 0, rstd;
    if constexpr (RMS) {
      rstd = A(1) / std::sqrt(sum * inv_n + eps);
    } else {
      // Pass 2 (row in cache): corrected two-pass variance around the first-pass mean m0:
      // var = sum(d^2)/N - (sum(d)/N)^2 with d = x - m0; the mean is refined to m0 + sum(d)/N.
      mean_hi = sum * inv_n;
      const V m0 = set1(mean_hi);
      V d0 = set1(A(0)), d1 = d0, q0 = d0, q1 = d0;
      j = 0;
      for (; j + 2 * W <= N; j += 2 * W) {  // scalar: d = x[j] - m0; sd += d; sq += d * d
        if (next) { prefetch_row(next, j); prefetch_row(next, j + W); }
        const V e0 = loadu(src + j) - m0, e1 = loadu(src + j + W) - m0;
        d0 = d0 + e0; d1 = d1 + e1; q0 = fma(e0, e0, q0); q1 = fma(e1, e1, q1);
      }
      for (; j < N; j += W) {
        const int64_t n = std::min(W, N - j);
        const V e0 = keep_first(load_n(src, j, n) - m0, n);
        d0 = d0 + e0; q0 = fma(e0, e0, q0);
      }
      mean_lo = reduce_add(d0 + d1) * inv_n;
      A var = reduce_add(q0 + q1) * inv_n - mean_lo * mean_lo;
      var = var > A(0) ? var : A(0);
      rstd = A(1) / std::sqrt(var + eps);
    }
    if (a.mean) static_cast<A*>(a.mean)[i] = mean_hi + mean_lo;
    if (a.rstd) static_cast<A*>(a.rstd)[i] = rstd;
    // Normalize pass (row in cache).
    const V vhi = set1(mean_hi), vlo = set1(mean_lo), vr = set1(rstd);
    write_row(yr, N, streaming, [&](int64_t k, int64_t n) {
      if (RMS && next) prefetch_row(next, k);
      const V x = load_n(src, k, n);
      if constexpr (RMS) return (x * vr) * load_n(w, k, n);           // scalar: y = x * rstd * w
      else return fma(((x - vhi) - vlo) * vr, load_n(w, k, n), load_n(b, k, n));  // y = (x - mean) * rstd * w + b
    });
  }
  if (streaming) stream_fence();
}

template <bool RMS, class T> void fwd_impl(const RowNormFwdArgs& a) {
  using A = Acc<T>;
  const int64_t M = a.M, N = a.N;
  if (M <= 0) return;
  A* tmp = par::scratch<A>(2 * N);
  const A* w = or_const<A>(a.weight, A(1), tmp, N);
  const A* b = or_const<A>(a.bias, A(0), tmp + N, N);
  const bool streaming = M * N * static_cast<int64_t>(sizeof(T)) >= kStreamBytes;
  par::parallel_ranges(M, M * N, [&](int64_t r0, int64_t r1) { fwd_rows<RMS, T>(a, w, b, r0, r1, streaming); });
}

// ---------------------------------------------------------------- backward

template <bool RMS, class T>
void bwd_rows(const RowNormBwdArgs& a, const Acc<T>* w, int64_t r0, int64_t r1, Acc<T>* dwp, Acc<T>* dbp,
              bool streaming) {
  using A = Acc<T>;
  using V = VecOf<T>;
  constexpr int64_t W = V::W;
  const int64_t N = a.N;
  const A inv_n = A(1) / static_cast<A>(N);
  for (int64_t i = r0; i < r1; ++i) {
    const T* xr = static_cast<const T*>(a.x) + i * a.ldx;
    const T* dyr = static_cast<const T*>(a.dy) + i * a.lddy;
    const A rstd = static_cast<const A*>(a.rstd)[i];
    const A mean = RMS ? A(0) : static_cast<const A*>(a.mean)[i];
    const V vm = set1(mean), vr = set1(rstd);
    // Pass 1 (from memory): row sums of g = dy * w and g * xhat; chunk partials of dy * xhat, dy.
    V sg = set1(A(0)), sgx = sg;
    for (int64_t j = 0; j < N; j += W) {  // scalar: xh = (x - mean) * rstd; g = dy * w; sg += g; sgx += g * xh;
      const int64_t n = std::min(W, N - j);  //        dw[j] += dy * xh; db[j] += dy
      const V xh = (load_n(xr, j, n) - vm) * vr, dy = load_n(dyr, j, n);
      const V g = dy * load_n(w, j, n);
      if constexpr (!RMS) sg = sg + g;
      sgx = fma(g, xh, sgx);
      if (n == W) {
        storeu(dwp + j, fma(dy, xh, loadu(dwp + j)));
        if constexpr (!RMS) storeu(dbp + j, dy + loadu(dbp + j));
      } else {
        store_tail(dwp + j, fma(dy, xh, load_tail(dwp + j, n)), n);
        if constexpr (!RMS) store_tail(dbp + j, dy + load_tail(dbp + j, n), n);
      }
    }
    const V ca = set1(RMS ? A(0) : reduce_add(sg) * inv_n), cb = set1(reduce_add(sgx) * inv_n);
    // Pass 2 (row in cache): dx = (g - (mean(g) + xhat * mean(g * xhat))) * rstd
    T* dxr = static_cast<T*>(a.dx) + i * N;
    write_row(dxr, N, streaming, [&](int64_t k, int64_t n) {
      const V xh = (load_n(xr, k, n) - vm) * vr;
      const V g = load_n(dyr, k, n) * load_n(w, k, n);
      return (g - fma(xh, cb, ca)) * vr;
    });
  }
}

template <bool RMS, class T> void bwd_impl(const RowNormBwdArgs& a) {
  using A = Acc<T>;
  const int64_t M = a.M, N = a.N;
  const par::RowChunks ch = par::row_chunks(M, N);
  const int64_t nparts = RMS ? 1 : 2;
  A* tmp = par::scratch<A>(N + nparts * ch.count * N);
  const A* w = or_const<A>(a.weight, A(1), tmp, N);
  A* dw_part = tmp + N;                  // [count][N]
  A* db_part = dw_part + ch.count * N;   // [count][N] (LayerNorm)
  const bool streaming = M * N * static_cast<int64_t>(sizeof(T)) >= kStreamBytes;
  par::parallel_ranges(ch.count, M * N, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      A* dwp = dw_part + c * N;
      A* dbp = RMS ? nullptr : db_part + c * N;
      std::memset(dwp, 0, static_cast<size_t>(N) * sizeof(A));
      if (dbp) std::memset(dbp, 0, static_cast<size_t>(N) * sizeof(A));
      bwd_rows<RMS, T>(a, w, c * ch.rows, std::min(M, (c + 1) * ch.rows), dwp, dbp, streaming);
    }
    if (streaming) stream_fence();
  });
  // Combine chunk partials in chunk order (independent of the thread count).
  A* outs[2] = {static_cast<A*>(a.dweight), RMS ? nullptr : static_cast<A*>(a.dbias)};
  for (int64_t p = 0; p < nparts; ++p) {
    A* out = outs[p];
    if (!out) continue;
    const A* part = dw_part + p * ch.count * N;
    par::parallel_ranges(N, ch.count * N, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) out[j] = A(0);
      for (int64_t c = 0; c < ch.count; ++c)
        for (int64_t j = j0; j < j1; ++j) out[j] += part[c * N + j];  // scalar: out[j] = sum_c part[c][j]
    });
  }
}

template <bool RMS> void fwd(const RowNormFwdArgs& a) {
  switch (a.dtype) {
    case DType::f32: return fwd_impl<RMS, float>(a);
    case DType::f64: return fwd_impl<RMS, double>(a);
    case DType::f16: return fwd_impl<RMS, f16>(a);
    case DType::bf16: return fwd_impl<RMS, bf16>(a);
  }
}
template <bool RMS> void bwd(const RowNormBwdArgs& a) {
  switch (a.dtype) {
    case DType::f32: return bwd_impl<RMS, float>(a);
    case DType::f64: return bwd_impl<RMS, double>(a);
    case DType::f16: return bwd_impl<RMS, f16>(a);
    case DType::bf16: return bwd_impl<RMS, bf16>(a);
  }
}

}  // namespace

void layer_norm_fwd(const RowNormFwdArgs& a) { fwd<false>(a); }
void rms_norm_fwd(const RowNormFwdArgs& a) { fwd<true>(a); }
void layer_norm_bwd(const RowNormBwdArgs& a) { bwd<false>(a); }
void rms_norm_bwd(const RowNormBwdArgs& a) { bwd<true>(a); }

}  // namespace nk::cpu::NK_ISA
