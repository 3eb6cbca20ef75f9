// Regularizer and feature-scaling kernels (contract: normkit/regularize.h). Compiled once per ISA.
//
// reg_row_sum: units of kUnit values (a row is cut into ceil(N / kUnit) units); a unit adds
//   blocks of kBlock values in four vector accumulators of the compute type and each block's
//   total into a double, so float32 rounding only ever spans kBlock / (4 W) additions per lane.
//   Unit totals land in a scratch array indexed by unit and are added in unit order.
// col_stats: fixed row chunks (par::row_chunks); per chunk a two-pass mean/M2 per column plus
//   min/max (column sums taken in blocks of kRowBlock rows, each block's sums added in double),
//   merged with Chan's formula in double in chunk order.
// Both are bitwise identical for any thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernel_util.h"
#include "normkit/regularize.h"

namespace nk::cpu::NK_ISA {
namespace {

constexpr int64_t kUnit = 16384;  // values per reduction unit (parallel granularity)
constexpr int64_t kBlock = 256;   // values per compute-type block inside a unit
constexpr int64_t kRowBlock = 64;  // col_stats: rows per compute-type block inside a chunk

template <class T> struct Kern {
  using A = Acc<T>;
  using V = VecOf<T>;
  static constexpr int64_t W = V::W;

  // ---- sums of |x| or x^2

  template <RegNorm kNorm> static double unit_sum(const T* p, int64_t L) {
    double total = 0;
    for (int64_t b = 0; b < L; b += kBlock) {
      const T* q = p + b;
      V acc[4] = {set1(A(0)), set1(A(0)), set1(A(0)), set1(A(0))};
      for_vectors<W>(std::min(kBlock, L - b), [&](int64_t j, int64_t n, int k) {
        const V v = load_n(q, j, n);  // lanes past n are zero
        if constexpr (kNorm == RegNorm::l1) {
          acc[k] = acc[k] + abs(v);  // scalar: s += |x|
        } else {
          acc[k] = fma(v, v, acc[k]);  // scalar: s += x * x
        }
      });
      total += static_cast<double>(reduce_add((acc[0] + acc[1]) + (acc[2] + acc[3])));
    }
    return total;
  }

  static void row_sum(const RegRowSumArgs& a) {
    const T* x = static_cast<const T*>(a.x);
    const int64_t M = a.M, N = a.N, K = (N + kUnit - 1) / kUnit, U = M * K;
    if (K == 0) {
      std::fill(a.out, a.out + M, 0.0);
      return;
    }
    double* us = par::scratch<double>(0, U);
    par::parallel_ranges(kernel_threads(), U, M * N, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t r = u / K, off = (u % K) * kUnit, L = std::min(kUnit, N - off);
        const T* p = x + r * a.ld + off;
        us[u] = a.norm == RegNorm::l1 ? unit_sum<RegNorm::l1>(p, L) : unit_sum<RegNorm::l2>(p, L);
      }
    });
    for (int64_t r = 0; r < M; ++r) {
      double t = 0;
      for (int64_t k = 0; k < K; ++k) t += us[r * K + k];
      a.out[r] = t;
    }
  }

  // ---- elementwise updates

  // y = op(x, y) elementwise. No non-temporal stores: these are in-place updates whose result
  // the caller reads next.
  template <class Op> static void elementwise(const RegApplyArgs& a, Op op) {
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    const V c = set1(static_cast<A>(a.c));
    const int64_t n = a.n, U = (n + kUnit - 1) / kUnit;
    par::parallel_ranges(kernel_threads(), U, n, [&](int64_t u0, int64_t u1) {
      const int64_t b = u0 * kUnit, L = std::min(n, u1 * kUnit) - b;
      const T* xs = x + b;
      T* ys = y + b;
      write_row(ys, L, false, [&](int64_t j, int64_t k) { return op(load_n(xs, j, k), ys, j, k, c); });
    });
  }

  static void apply(const RegApplyArgs& a) {
    switch (a.op) {
      case RegOp::add_sign:
        return elementwise(a, [](V x, const T* y, int64_t j, int64_t k, V c) {
          return fma(sign(x), c, load_n(y, j, k));  // scalar: y += c * sign(x)
        });
      case RegOp::add_scaled:
        return elementwise(a, [](V x, const T* y, int64_t j, int64_t k, V c) {
          return fma(x, c, load_n(y, j, k));  // scalar: y += c * x
        });
      case RegOp::soft_threshold:
        return elementwise(a, [](V x, const T*, int64_t, int64_t, V c) {
          return x - min(max(x, set1(A(0)) - c), c);  // scalar: y = x - clamp(x, -c, c)
        });
      case RegOp::scale:
        return elementwise(a, [](V x, const T*, int64_t, int64_t, V c) {
          return x * c;  // scalar: y = c * x
        });
    }
  }

  // ---- max-norm rescale of slices

  static void scale(const RegScaleArgs& a) {
    T* w = static_cast<T*>(a.w);
    const int64_t K = a.K, B = a.B;
    // Rows (a, k) of B values; rows with scale 1 are skipped (left bitwise untouched).
    par::parallel_ranges(kernel_threads(), a.A * K, a.A * K * B, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const double s = a.scale[r % K];
        if (s == 1.0) continue;
        const V vs = set1(static_cast<A>(s));
        T* row = w + r * B;
        write_row(row, B, false, [&](int64_t j, int64_t n) { return load_n(row, j, n) * vs; });  // scalar: w *= s
      }
    });
  }

  // ---- column statistics

  // Two-pass mean/M2 and min/max per column over rows [r0, r1) of x (row stride ld). Column
  // accumulators of the compute type are flushed into double every kRowBlock rows, so float32
  // rounding never spans more than kRowBlock additions. buf: 5 padded rows of A; dbuf: 3 of double.
  static void chunk_stats(const T* x, int64_t ld, int64_t N, int64_t r0, int64_t r1, A* buf, double* dbuf, int64_t P,
                          double* om, double* oq, double* omin, double* omax) {
    A *sum = buf, *mn = buf + P, *mx = buf + 2 * P, *sd = buf + 3 * P, *sq = buf + 4 * P;
    double *dsum = dbuf, *dsd = dbuf + P, *dsq = dbuf + 2 * P;
    const A inf = std::numeric_limits<A>::infinity();
    std::fill(mn, mn + P, inf);
    std::fill(mx, mx + P, -inf);
    std::fill(dbuf, dbuf + 3 * P, 0.0);
    for (int64_t b = r0; b < r1; b += kRowBlock) {
      std::fill(sum, sum + P, A(0));
      for (int64_t r = b; r < std::min(r1, b + kRowBlock); ++r)
        for (int64_t j = 0; j < N; j += W) {  // scalar: sum[c] += x; mn[c] = min(x, mn[c]); mx[c] = max(x, mx[c])
          const V v = load_n(x + r * ld, j, std::min(W, N - j));
          storeu(sum + j, loadu(sum + j) + v);
          storeu(mn + j, min(v, loadu(mn + j)));
          storeu(mx + j, max(v, loadu(mx + j)));
        }
      for (int64_t c = 0; c < N; ++c) dsum[c] += static_cast<double>(sum[c]);
    }
    const double inv_cnt = 1.0 / static_cast<double>(r1 - r0);
    for (int64_t c = 0; c < N; ++c) sum[c] = static_cast<A>(dsum[c] * inv_cnt);  // now the first-pass mean
    for (int64_t b = r0; b < r1; b += kRowBlock) {
      std::fill(sd, sd + 2 * P, A(0));
      for (int64_t r = b; r < std::min(r1, b + kRowBlock); ++r)
        for (int64_t j = 0; j < N; j += W) {  // scalar: d = x - mean[c]; sd[c] += d; sq[c] += d * d
          const int64_t n = std::min(W, N - j);
          V d = load_n(x + r * ld, j, n) - loadu(sum + j);
          if (n < W) d = keep_first(d, n);
          storeu(sd + j, loadu(sd + j) + d);
          storeu(sq + j, fma(d, d, loadu(sq + j)));
        }
      for (int64_t c = 0; c < N; ++c) {
        dsd[c] += static_cast<double>(sd[c]);
        dsq[c] += static_cast<double>(sq[c]);
      }
    }
    for (int64_t c = 0; c < N; ++c) {
      om[c] = static_cast<double>(sum[c]) + dsd[c] * inv_cnt;
      const double q = dsq[c] - dsd[c] * dsd[c] * inv_cnt;
      oq[c] = q < 0 ? 0.0 : q;  // keeps NaN
      omin[c] = static_cast<double>(mn[c]);
      omax[c] = static_cast<double>(mx[c]);
    }
  }

  static void col_stats(const ColStatsArgs& a) {
    const int64_t M = a.M, N = a.N, nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    const par::RowChunks rc = par::row_chunks(M, N);
    const int64_t U = rc.count, P = par::padded<A>(N);
    double* part = par::scratch<double>(0, 4 * U * N);  // [mean | m2 | min | max][U][N]
    A* bufs = par::scratch<A>(1, nt * 5 * P);
    double* dbufs = par::scratch<double>(2, nt * 3 * P);
    par::parallel_ranges(nt, U, M * N, [&](int64_t u0, int64_t u1) {
      A* buf = bufs + omp_get_thread_num() * 5 * P;
      double* dbuf = dbufs + omp_get_thread_num() * 3 * P;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t r0 = u * rc.rows, r1 = std::min(M, r0 + rc.rows), o = u * N;
        chunk_stats(x, a.ld, N, r0, r1, buf, dbuf, P, part + o, part + U * N + o, part + 2 * U * N + o,
                    part + 3 * U * N + o);
      }
    });
    const double *pm = part, *pq = part + U * N, *pmin = part + 2 * U * N, *pmax = part + 3 * U * N;
    std::copy(pm, pm + N, a.mean);
    std::copy(pq, pq + N, a.m2);
    std::copy(pmin, pmin + N, a.min);
    std::copy(pmax, pmax + N, a.max);
    for (int64_t u = 1; u < U; ++u) {
      const double na = static_cast<double>(u * rc.rows), nb = static_cast<double>(std::min(M, (u + 1) * rc.rows)) - na;
      const double f1 = nb / (na + nb), f2 = na * nb / (na + nb);
      const int64_t o = u * N;
      for (int64_t c = 0; c < N; ++c) {  // scalar: Chan merge; d = mb - ma; ma += d nb/n; qa += qb + d^2 na nb/n
        const double d = pm[o + c] - a.mean[c];
        a.mean[c] += d * f1;
        a.m2[c] += pq[o + c] + d * d * f2;
        a.min[c] = pmin[o + c] < a.min[c] ? pmin[o + c] : a.min[c];
        a.max[c] = pmax[o + c] > a.max[c] ? pmax[o + c] : a.max[c];
      }
    }
  }
};

}  // namespace

void reg_row_sum(const RegRowSumArgs& a) {
  by_dtype<Kern>(a, [&](auto k) { decltype(k)::row_sum(a); });
}
void reg_apply(const RegApplyArgs& a) {
  by_dtype<Kern>(a, [&](auto k) { decltype(k)::apply(a); });
}
void reg_scale(const RegScaleArgs& a) {
  by_dtype<Kern>(a, [&](auto k) { decltype(k)::scale(a); });
}
void col_stats(const ColStatsArgs& a) {
  by_dtype<Kern>(a, [&](auto k) { decltype(k)::col_stats(a); });
}

}  // namespace nk::cpu::NK_ISA
