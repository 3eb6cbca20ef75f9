// LayerNorm / RMSNorm row kernels (contract: normkit/norm.h). Compiled once per ISA.
//
// Forward, per row: one pass streams x from memory, accumulates the first statistic and keeps
// the row, converted to the accumulation type, in an aligned per-thread buffer; LayerNorm then
// takes the corrected two-pass variance over that buffer (rows with a large mean keep full
// precision); the last pass normalizes from the buffer into y.
// Backward, per row: one pass over x and dy accumulates the two row sums and the per-chunk
// dweight/dbias partials and keeps xhat and g = dy * w in buffers; a second pass writes dx.
//
// Reductions always run over the row from element 0 in whole vectors, so their rounding never
// depends on buffer alignment or thread count. Only the elementwise output passes peel a head
// to store y / dx on aligned addresses (non-temporal stores for outputs larger than the cache).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernel_util.h"
#include "normkit/norm.h"

namespace nk::cpu::NK_ISA {
namespace {

// Copies an optional per-feature parameter into a padded aligned buffer (value when absent),
// zeros in the padding so whole-vector loads past N stay finite.
template <class A> const A* param(const void* p, A value, A* buf, int64_t N) {
  const A* src = static_cast<const A*>(p);
  for (int64_t j = 0; j < N; ++j) buf[j] = src ? src[j] : value;
  for (int64_t j = N; j < par::padded<A>(N); ++j) buf[j] = A(0);
  return buf;
}

// ---------------------------------------------------------------- forward

template <bool RMS, class T>
void fwd_rows(const RowNormFwdArgs& a, const Acc<T>* w, const Acc<T>* b, Acc<T>* rb, int64_t r0, int64_t r1,
              bool streaming) {
  using A = Acc<T>;
  using V = VecOf<T>;
  constexpr int64_t W = V::W;
  const int64_t N = a.N;
  const A inv_n = A(1) / static_cast<A>(N);
  const A eps = static_cast<A>(a.eps);
  for (int64_t i = r0; i < r1; ++i) {
    // Pass 1 (from memory): row -> rb (as A), sum of x (LayerNorm) or of x^2 (RMSNorm).
    V acc[4] = {set1(A(0)), set1(A(0)), set1(A(0)), set1(A(0))};
    const T* xr = static_cast<const T*>(a.x) + i * a.ldx;
    const auto first = [&](int64_t j, V v, int k) {
      storeu(rb + j, v);
      acc[k] = RMS ? fma(v, v, acc[k]) : acc[k] + v;  // scalar: s += x (RMS: s += x * x)
    };
    if (a.res) {  // h = round_T(x + res) is stored; statistics and y use the rounded h
      const T* rr = static_cast<const T*>(a.res) + i * a.ldr;
      T* hr = static_cast<T*>(a.h) + i * N;
      for_vectors<W>(N, [&](int64_t j, int64_t n, int k) {
        const V h = load_n(xr, j, n) + load_n(rr, j, n);  // scalar: h = x + r
        store_n(hr, j, h, n);
        first(j, round_through<T>(h), k);
      });
    } else {
      for_vectors<W>(N, [&](int64_t j, int64_t n, int k) { first(j, load_n(xr, j, n), k); });
    }
    const A sum = reduce_add((acc[0] + acc[1]) + (acc[2] + acc[3]));
    const T* next = streaming && i + 1 < r1 && !a.res ? xr + a.ldx : nullptr;  // from memory: fetch ahead
    A mean_hi = 0, mean_lo = 0, rstd;
    if constexpr (RMS) {
      rstd = A(1) / std::sqrt(sum * inv_n + eps);
    } else {
      // Pass 2 (buffer): corrected two-pass variance around the first-pass mean m0:
      // var = sum(d^2)/N - (sum(d)/N)^2 with d = x - m0; the mean is refined to m0 + sum(d)/N.
      mean_hi = sum * inv_n;
      const V m0 = set1(mean_hi);
      V sd[4] = {set1(A(0)), set1(A(0)), set1(A(0)), set1(A(0))}, sq[4] = {sd[0], sd[0], sd[0], sd[0]};
      for_vectors<W>(N, [&](int64_t j, int64_t n, int k) {
        prefetch(next, j);
        V d = loadu(rb + j) - m0;  // scalar: d = x - m0; sd += d; sq += d * d
        if (n < W) d = keep_first(d, n);
        sd[k] = sd[k] + d;
        sq[k] = fma(d, d, sq[k]);
      });
      mean_lo = reduce_add((sd[0] + sd[1]) + (sd[2] + sd[3])) * inv_n;
      A var = reduce_add((sq[0] + sq[1]) + (sq[2] + sq[3])) * inv_n - mean_lo * mean_lo;
      var = var > A(0) ? var : A(0);
      rstd = A(1) / std::sqrt(var + eps);
    }
    if (a.mean) static_cast<A*>(a.mean)[i] = mean_hi + mean_lo;
    if (a.rstd) static_cast<A*>(a.rstd)[i] = rstd;
    // Last pass (buffer -> y).
    const V vhi = set1(mean_hi), vlo = set1(mean_lo), vr = set1(rstd);
    write_row(static_cast<T*>(a.y) + i * N, N, streaming, [&](int64_t j, int64_t) {
      if (RMS) prefetch(next, j);
      const V x = loadu(rb + j);
      if constexpr (RMS) return (x * vr) * loadu(w + j);                        // scalar: y = x * rstd * w
      else return fma(((x - vhi) - vlo) * vr, loadu(w + j), loadu(b + j));  // y = (x - mean) * rstd * w + b
    });
  }
  if (streaming) stream_fence();
}

template <bool RMS, class T> void fwd_impl(const RowNormFwdArgs& a) {
  using A = Acc<T>;
  const int64_t M = a.M, N = a.N, P = par::padded<A>(N);
  if (M <= 0) return;
  const int nt = kernel_threads();
  A* tmp = par::scratch<A>(0, 2 * P);
  const A* w = param<A>(a.weight, A(1), tmp, N);
  const A* b = param<A>(a.bias, A(0), tmp + P, N);
  A* rows = par::scratch<A>(1, nt * P);
  const bool streaming = use_streaming(a.res ? 4 : 2, M * N, sizeof(T));  // x[, res, h], y
  par::parallel_ranges(nt, M, M * N, [&](int64_t r0, int64_t r1) {
    fwd_rows<RMS, T>(a, w, b, rows + omp_get_thread_num() * P, r0, r1, streaming);
  });
}

// ---------------------------------------------------------------- backward

template <bool RMS, class T>
void bwd_rows(const RowNormBwdArgs& a, const Acc<T>* w, Acc<T>* xb, Acc<T>* gb, int64_t r0, int64_t r1, Acc<T>* dwp,
              Acc<T>* dbp, bool streaming) {
  using A = Acc<T>;
  using V = VecOf<T>;
  constexpr int64_t W = V::W;
  const int64_t N = a.N;
  const A inv_n = A(1) / static_cast<A>(N);
  for (int64_t i = r0; i < r1; ++i) {
    const T* xr = static_cast<const T*>(a.x) + i * a.ldx;
    const T* dyr = static_cast<const T*>(a.dy) + i * a.lddy;
    const A rstd = static_cast<const A*>(a.rstd)[i];
    const V vm = set1(RMS ? A(0) : static_cast<const A*>(a.mean)[i]), vr = set1(rstd);
    // Pass 1 (from memory): row sums of g = dy * w and g * xhat; chunk partials of dy * xhat
    // and dy; xhat and g kept in buffers. Lanes past n have dy = 0 and add nothing.
    V sg[4] = {set1(A(0)), set1(A(0)), set1(A(0)), set1(A(0))}, sgx[4] = {sg[0], sg[0], sg[0], sg[0]};
    for_vectors<W>(N, [&](int64_t j, int64_t n, int k) {
      V xh = (load_n(xr, j, n) - vm) * vr;  // scalar: xh = (x - mean) * rstd
      if (n < W) xh = keep_first(xh, n);     // (padding lanes stay 0 even if mean * rstd overflows)
      const V dy = load_n(dyr, j, n);
      const V g = dy * loadu(w + j);                                       // g = dy * w
      storeu(xb + j, xh);
      storeu(gb + j, g);
      if constexpr (!RMS) sg[k] = sg[k] + g;  // sg += g
      sgx[k] = fma(g, xh, sgx[k]);             // sgx += g * xh
      storeu(dwp + j, fma(dy, xh, loadu(dwp + j)));       // dw[j] += dy * xh
      if constexpr (!RMS) storeu(dbp + j, dy + loadu(dbp + j));  // db[j] += dy
    });
    const V ca = set1(RMS ? A(0) : reduce_add((sg[0] + sg[1]) + (sg[2] + sg[3])) * inv_n);
    const V cb = set1(reduce_add((sgx[0] + sgx[1]) + (sgx[2] + sgx[3])) * inv_n);
    // Pass 2 (buffers -> dx): dx = (g - (mean(g) + xhat * mean(g * xhat))) * rstd
    const bool more = streaming && i + 1 < r1;  // data comes from memory: fetch the next row now
    write_row(static_cast<T*>(a.dx) + i * N, N, streaming, [&](int64_t j, int64_t) {
      if (more) {
        prefetch(xr + a.ldx, j);
        prefetch(dyr + a.lddy, j);
      }
      return (loadu(gb + j) - fma(loadu(xb + j), cb, ca)) * vr;
    });
  }
}

template <bool RMS, class T> void bwd_impl(const RowNormBwdArgs& a) {
  using A = Acc<T>;
  const int64_t M = a.M, N = a.N, P = par::padded<A>(N);
  const par::RowChunks ch = par::row_chunks(M, N);
  const int64_t nparts = RMS ? 1 : 2;
  const int nt = kernel_threads();
  const A* w = param<A>(a.weight, A(1), par::scratch<A>(0, P), N);
  A* dw_part = par::scratch<A>(1, nparts * ch.count * P);  // [nparts][count][P]
  A* rows = par::scratch<A>(2, 2 * nt * P);               // per thread: xhat, g
  const bool streaming = use_streaming(3, M * N, sizeof(T));  // x, dy, dx
  par::parallel_ranges(nt, ch.count, M * N, [&](int64_t c0, int64_t c1) {
    A* xb = rows + 2 * omp_get_thread_num() * P;
    for (int64_t c = c0; c < c1; ++c) {
      A* dwp = dw_part + c * P;
      A* dbp = RMS ? nullptr : dw_part + (ch.count + c) * P;
      std::memset(dwp, 0, static_cast<size_t>(P) * sizeof(A));
      if (dbp) std::memset(dbp, 0, static_cast<size_t>(P) * sizeof(A));
      bwd_rows<RMS, T>(a, w, xb, xb + P, c * ch.rows, std::min(M, (c + 1) * ch.rows), dwp, dbp, streaming);
    }
    if (streaming) stream_fence();
  });
  // Combine chunk partials in chunk order (independent of the thread count).
  A* outs[2] = {static_cast<A*>(a.dweight), RMS ? nullptr : static_cast<A*>(a.dbias)};
  for (int64_t p = 0; p < nparts; ++p) {
    A* out = outs[p];
    if (!out) continue;
    const A* part = dw_part + p * ch.count * P;
    par::parallel_ranges(nt, N, ch.count * N, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) out[j] = A(0);
      for (int64_t c = 0; c < ch.count; ++c)
        for (int64_t j = j0; j < j1; ++j) out[j] += part[c * P + j];  // scalar: out[j] = sum_c part[c][j]
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
