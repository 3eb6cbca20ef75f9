// Channel-norm kernels (contract: normkit/chan_norm.h). Compiled once per ISA.
//
// ncs: each (n, c) span of S contiguous values is cut into units of at most kSpan values.
// nsc: the rows (one row = the C channels of one (n, s)) are cut into units of RS rows; with
//      per-sample results the units never cross a sample.
// Statistics: a unit takes a two-pass mean/M2 over itself (it stays in L1/L2 between the
// passes), and units are merged with Chan's formula in double, in unit order. So x is read
// from memory once for the statistics, results do not depend on the thread count, and channels
// with a large mean keep their precision.
#include <cmath>
#include <algorithm>
#include <type_traits>
#include <cstring>

#include "kernel_util.h"
#include "normkit/chan_norm.h"

namespace nk::cpu::NK_ISA {
namespace {

constexpr int64_t kSpan = 16384;      // ncs: values per unit
constexpr int64_t kUnitElems = 32768;  // nsc: values per unit (rows * C) at least (stays in L2)
constexpr int64_t kMaxRowUnits = 64;  // nsc: units per row group at most
constexpr int64_t kMergeCost = 16;    // merging a unit's values is this much cheaper than computing them

// Chan's merge of unit statistics (nb values, means mb, M2 qb) into running (na values, ma, qa),
// for `count` outputs at once: every output of a merge step has the same counts, so the two
// weights are computed once and the loop over outputs vectorizes.
inline void merge(double na, double nb, int64_t count, double* ma, double* qa, const double* mb, const double* qb,
                  int64_t stride_b) {
  if (nb == 0) return;
  const double f1 = nb / (na + nb), f2 = na * nb / (na + nb);
  for (int64_t o = 0; o < count; ++o) {  // scalar: d = mb - ma; ma += d nb/n; qa += qb + d^2 na nb/n
    const double d = mb[o * stride_b] - ma[o];
    ma[o] += d * f1;
    qa[o] += qb[o * stride_b] + d * d * f2;
  }
}

struct RowUnits {
  int64_t groups, rows, per_group, rows_per_unit;  // rows per group; units per group
  int64_t count() const { return groups * per_group; }
  int64_t begin(int64_t u) const { return (u / per_group) * rows + (u % per_group) * rows_per_unit; }
  int64_t end(int64_t u) const { return (u / per_group) * rows + std::min(rows, (u % per_group + 1) * rows_per_unit); }
};
inline RowUnits row_units(int64_t N, int64_t S, int64_t C, bool per_sample) {
  const int64_t groups = per_sample ? N : 1, rows = per_sample ? S : N * S;
  const int64_t by_size = (kUnitElems + C - 1) / C, by_count = (rows + kMaxRowUnits - 1) / kMaxRowUnits;
  const int64_t rpu = std::max<int64_t>(1, std::min(rows, std::max(by_size, by_count)));
  return {groups, rows, rows > 0 ? (rows + rpu - 1) / rpu : 0, rpu};
}

template <class T> struct Kern {
  using A = Acc<T>;
  using V = VecOf<T>;
  static constexpr int64_t W = V::W;

  // ---- statistics

  // Two-pass mean and M2 of L contiguous values.
  static void run_stats(const T* p, int64_t L, double* mean, double* m2) {
    V acc[4] = {set1(A(0)), set1(A(0)), set1(A(0)), set1(A(0))};
    for_vectors<W>(L, [&](int64_t j, int64_t n, int k) { acc[k] = acc[k] + load_n(p, j, n); });  // scalar: s += x
    const A m0 = reduce_add((acc[0] + acc[1]) + (acc[2] + acc[3])) / static_cast<A>(L);
    const V vm = set1(m0);
    V sd[4] = {set1(A(0)), set1(A(0)), set1(A(0)), set1(A(0))}, sq[4] = {sd[0], sd[0], sd[0], sd[0]};
    for_vectors<W>(L, [&](int64_t j, int64_t n, int k) {
      V d = load_n(p, j, n) - vm;  // scalar: d = x - m0; sd += d; sq += d * d
      if (n < W) d = keep_first(d, n);
      sd[k] = sd[k] + d;
      sq[k] = fma(d, d, sq[k]);
    });
    const double s1 = reduce_add((sd[0] + sd[1]) + (sd[2] + sd[3]));
    const double s2 = reduce_add((sq[0] + sq[1]) + (sq[2] + sq[3]));
    *mean = static_cast<double>(m0) + s1 / static_cast<double>(L);
    *m2 = std::max(0.0, s2 - s1 * s1 / static_cast<double>(L));
  }

  // Per-channel two-pass mean/M2 over rows [r0, r1) of C values; buf holds 3 padded rows of A.
  static void rows_stats(const T* x, int64_t C, int64_t r0, int64_t r1, A* buf, int64_t P, double* om, double* oq) {
    A *sum = buf, *sd = buf + P, *sq = buf + 2 * P;
    std::memset(buf, 0, static_cast<size_t>(3 * P) * sizeof(A));
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < C; j += W)  // scalar: sum[c] += x[r][c]
        storeu(sum + j, loadu(sum + j) + load_n(x + r * C, j, std::min(W, C - j)));
    const A inv = A(1) / static_cast<A>(r1 - r0);
    for (int64_t j = 0; j < C; j += W) storeu(sum + j, loadu(sum + j) * set1(inv));  // now the first-pass mean
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < C; j += W) {  // scalar: d = x[r][c] - mean[c]; sd[c] += d; sq[c] += d * d
        const int64_t n = std::min(W, C - j);
        V d = load_n(x + r * C, j, n) - loadu(sum + j);
        if (n < W) d = keep_first(d, n);
        storeu(sd + j, loadu(sd + j) + d);
        storeu(sq + j, fma(d, d, loadu(sq + j)));
      }
    const double inv_cnt = 1.0 / static_cast<double>(r1 - r0);
    for (int64_t c = 0; c < C; ++c) {
      const double d = static_cast<double>(sd[c]);
      om[c] = static_cast<double>(sum[c]) + d * inv_cnt;
      oq[c] = std::max(0.0, static_cast<double>(sq[c]) - d * d * inv_cnt);
    }
  }

  // rows_stats for C = K * W (K <= 8): the per-channel accumulators live in registers. Same
  // operations in the same order as rows_stats, so the results are bitwise the same.
  template <int K>
  static void rows_stats_k(const T* x, int64_t stride, int64_t r0, int64_t r1, double* om, double* oq) {
    constexpr int64_t C = K * W;  // channels of this block; rows are `stride` apart
    V s[K], d[K], q[K];
    for (int k = 0; k < K; ++k) s[k] = d[k] = q[k] = set1(A(0));
    for (int64_t r = r0; r < r1; ++r)
      for (int k = 0; k < K; ++k) s[k] = s[k] + loadu(x + r * stride + k * W);  // scalar: sum[c] += x[r][c]
    const V inv = set1(A(1) / static_cast<A>(r1 - r0));
    for (int k = 0; k < K; ++k) s[k] = s[k] * inv;
    for (int64_t r = r0; r < r1; ++r)
      for (int k = 0; k < K; ++k) {  // scalar: e = x[r][c] - mean[c]; d[c] += e; q[c] += e * e
        const V e = loadu(x + r * stride + k * W) - s[k];
        d[k] = d[k] + e;
        q[k] = fma(e, e, q[k]);
      }
    A ms[C], ds[C], qs[C];
    for (int k = 0; k < K; ++k) {
      storeu(ms + k * W, s[k]);
      storeu(ds + k * W, d[k]);
      storeu(qs + k * W, q[k]);
    }
    const double inv_cnt = 1.0 / static_cast<double>(r1 - r0);
    for (int64_t c = 0; c < C; ++c) {
      const double dc = static_cast<double>(ds[c]);
      om[c] = static_cast<double>(ms[c]) + dc * inv_cnt;
      oq[c] = std::max(0.0, static_cast<double>(qs[c]) - dc * dc * inv_cnt);
    }
  }

  // When C is whole vectors, calls f(c0, std::integral_constant<int, K>) for channel blocks
  // [c0, c0 + K * W) of at most 8 vectors covering [0, C), and returns true; false otherwise.
  template <class Fn> static bool by_blocks(int64_t C, Fn&& f) {
    if (C % W != 0 || C == 0) return false;
    for (int64_t c0 = 0; c0 < C; c0 += 8 * W) {
      switch (std::min<int64_t>(8, (C - c0) / W)) {
        case 1: f(c0, std::integral_constant<int, 1>{}); break;
        case 2: f(c0, std::integral_constant<int, 2>{}); break;
        case 3: f(c0, std::integral_constant<int, 3>{}); break;
        case 4: f(c0, std::integral_constant<int, 4>{}); break;
        case 5: f(c0, std::integral_constant<int, 5>{}); break;
        case 6: f(c0, std::integral_constant<int, 6>{}); break;
        case 7: f(c0, std::integral_constant<int, 7>{}); break;
        default: f(c0, std::integral_constant<int, 8>{}); break;
      }
    }
    return true;
  }

  static void stats(const ChanStatsArgs& a) {
    const int64_t N = a.N, C = a.C, S = a.S, nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    const int64_t nout = a.per_sample ? N * C : C;
    if (a.layout == Layout::ncs) {
      const int64_t K = (S + kSpan - 1) / kSpan, U = N * C * K;
      double* um = par::scratch<double>(0, 2 * U);
      double* uq = um + U;
      par::parallel_ranges(nt, U, N * C * S, [&](int64_t u0, int64_t u1) {
        for (int64_t u = u0; u < u1; ++u) {
          const int64_t nc = u / K, k = u % K;
          run_stats(x + nc * S + k * kSpan, std::min(kSpan, S - k * kSpan), um + u, uq + u);
        }
      });
      // Merge in (n, k) order; outputs are (n, c) (per_sample) or c.
      std::fill(a.mean, a.mean + nout, 0.0);
      std::fill(a.m2, a.m2 + nout, 0.0);
      const int64_t samples = a.per_sample ? 1 : N;
      for (int64_t s = 0; s < samples; ++s)
        for (int64_t k = 0; k < K; ++k) {
          const double na = static_cast<double>(s * S + std::min(k * kSpan, S));
          const double nb = static_cast<double>(std::min(kSpan, S - k * kSpan));
          merge(na, nb, nout, a.mean, a.m2, um + s * C * K + k, uq + s * C * K + k, K);
        }
      return;
    }
    const RowUnits ru = row_units(N, S, C, a.per_sample);
    const int64_t U = ru.count(), P = par::padded<A>(C);
    double* um = par::scratch<double>(0, 2 * U * C);
    double* uq = um + U * C;
    A* bufs = par::scratch<A>(1, nt * 3 * P);
    par::parallel_ranges(nt, U, N * C * S, [&](int64_t u0, int64_t u1) {
      A* buf = bufs + omp_get_thread_num() * 3 * P;
      for (int64_t u = u0; u < u1; ++u) {
        const bool done = by_blocks(C, [&](int64_t c0, auto k) {
          rows_stats_k<decltype(k)::value>(x + c0, C, ru.begin(u), ru.end(u), um + u * C + c0, uq + u * C + c0);
        });
        if (!done) rows_stats(x, C, ru.begin(u), ru.end(u), buf, P, um + u * C, uq + u * C);
      }
    });
    par::parallel_ranges(nt, ru.groups, U * C / kMergeCost, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        std::fill(a.mean + g * C, a.mean + (g + 1) * C, 0.0);
        std::fill(a.m2 + g * C, a.m2 + (g + 1) * C, 0.0);
        for (int64_t u = g * ru.per_group; u < (g + 1) * ru.per_group; ++u)
          merge(static_cast<double>(ru.begin(u) - g * ru.rows), static_cast<double>(ru.end(u) - ru.begin(u)), C,
                a.mean + g * C, a.m2 + g * C, um + u * C, uq + u * C, 1);
      }
    });
  }

  // ---- elementwise passes: out = op(x, dy, coefficients of (n, c)), both layouts
  //
  // ncs: per span, the coefficients are scalars broadcast over the span.
  // nsc: a run of rows is one flat array whose coefficients repeat with period C; they are read
  // from a table of C + W values (ext[i] = coef[i % C]) at the running phase j % C, so any
  // vector, also one that wraps from channel C-1 to channel 0, loads the right lanes.

  struct Coef4 {
    const A* p[4];
  };

  template <class Op>
  static void elementwise(const void* x_, const void* dy_, void* out_, Layout layout, int64_t N, int64_t C, int64_t S,
                          Coef4 coef, int64_t ns, int64_t tensors, Op op) {
    const T* x = static_cast<const T*>(x_);
    const T* dy = static_cast<const T*>(dy_);
    T* out = static_cast<T*>(out_);
    const int64_t nt = kernel_threads();
    const bool streaming = use_streaming(tensors, N * C * S, sizeof(T));
    if (layout == Layout::ncs) {
      const int64_t K = (S + kSpan - 1) / kSpan, U = N * C * K;
      par::parallel_ranges(nt, U, N * C * S, [&](int64_t u0, int64_t u1) {
        for (int64_t u = u0; u < u1; ++u) {
          const int64_t nc = u / K, off = nc * S + (u % K) * kSpan;
          const int64_t L = std::min(kSpan, S - (u % K) * kSpan), i = (nc / C) * ns + nc % C;
          V cv[4];
          for (int q = 0; q < 4; ++q) cv[q] = set1(coef.p[q] ? coef.p[q][i] : A(0));
          const T* xs = x + off;
          const T* ds = dy ? dy + off : nullptr;
          write_row(out + off, L, streaming, [&](int64_t j, int64_t k) {
            return op(load_n(xs, j, k), ds ? load_n(ds, j, k) : cv[0], cv);
          });
        }
        if (streaming) stream_fence();
      });
      return;
    }
    const int64_t sets = ns ? N : 1, E = par::padded<A>(C + W);
    A* ext = par::scratch<A>(2, 4 * sets * E);
    for (int64_t s = 0; s < sets; ++s)
      for (int q = 0; q < 4; ++q) {
        A* dst = ext + (s * 4 + q) * E;
        const A* src = coef.p[q] ? coef.p[q] + s * ns : nullptr;
        for (int64_t i = 0, c = 0; i < E; ++i, c = c + 1 == C ? 0 : c + 1) dst[i] = src ? src[c] : A(0);
      }
    const RowUnits ru = row_units(N, S, C, ns != 0);
    // Long rows (C >= 8 vectors) are written one by one, short ones as one flat run per unit.
    const bool by_row = C >= 8 * W;
    par::parallel_ranges(nt, ru.count(), N * C * S, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t r0 = ru.begin(u), r1 = ru.end(u);
        const A* e = ext + (ns ? (r0 / S) * 4 * E : 0);
        const auto run = [&](int64_t off, int64_t L, auto phase_of) {
          const T* xs = x + off;
          const T* ds = dy ? dy + off : nullptr;
          write_row(out + off, L, streaming, [&](int64_t j, int64_t k) {
            const int64_t p = phase_of(j);
            const V cv[4] = {loadu(e + p), loadu(e + E + p), loadu(e + 2 * E + p), loadu(e + 3 * E + p)};
            return op(load_n(xs, j, k), ds ? load_n(ds, j, k) : cv[0], cv);
          });
        };
        if (by_row) {
          for (int64_t r = r0; r < r1; ++r) run(r * C, C, [](int64_t j) { return j; });
        } else {
          int64_t phase = 0, last = 0;  // phase = j % C, advanced incrementally
          run(r0 * C, (r1 - r0) * C, [&](int64_t j) {
            phase += j - last;
            last = j;
            while (phase >= C) phase -= C;
            return phase;
          });
        }
      }
      if (streaming) stream_fence();
    });
  }

  static void affine(const ChanAffineArgs& a) {
    const Coef4 c{{static_cast<const A*>(a.m), static_cast<const A*>(a.a), static_cast<const A*>(a.b), nullptr}};
    elementwise(a.x, nullptr, a.y, a.layout, a.N, a.C, a.S, c, a.coef_nstride, 2, [](V x, V, const V* k) {
      return fma(x - k[0], k[1], k[2]);  // scalar: y = (x - m) * a + b
    });
  }

  static void grad_apply(const ChanGradApplyArgs& a) {
    const Coef4 c{{static_cast<const A*>(a.m), static_cast<const A*>(a.k1), static_cast<const A*>(a.k2),
                   static_cast<const A*>(a.k3)}};
    elementwise(a.x, a.dy, a.dx, a.layout, a.N, a.C, a.S, c, a.coef_nstride, 3, [](V x, V dy, const V* k) {
      return fma(dy, k[1], fma(x - k[0], k[2], k[3]));  // scalar: dx = k1 dy + k2 (x - m) + k3
    });
  }

  // ---- fused GroupNorm / InstanceNorm forward (ncs)

  // Mean and M2 of L contiguous values: two-pass units of kSpan merged in order.
  static void block_stats(const T* p, int64_t L, double* mean, double* m2) {
    double n = 0;
    *mean = 0;
    *m2 = 0;
    for (int64_t k = 0; k * kSpan < L; ++k) {
      double mb, qb;
      const int64_t len = std::min(kSpan, L - k * kSpan);
      run_stats(p + k * kSpan, len, &mb, &qb);
      merge(n, static_cast<double>(len), 1, mean, m2, &mb, &qb, 1);
      n += static_cast<double>(len);
    }
  }

  static void group_fwd(const GroupFwdArgs& a) {
    const int64_t G = a.G, Cg = a.C / G, S = a.S, L = Cg * S, nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    const A* w = static_cast<const A*>(a.weight);
    const A* b = static_cast<const A*>(a.bias);
    const bool streaming = use_streaming(2, a.N * a.C * S, sizeof(T));
    par::parallel_ranges(nt, a.N * G, a.N * a.C * S, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        const T* xb = x + k * L;
        block_stats(xb, L, a.mean + k, a.m2 + k);
        const double rstd = 1.0 / std::sqrt(a.m2[k] / static_cast<double>(L) + a.eps);
        a.rstd[k] = rstd;
        const V vm = set1(static_cast<A>(a.mean[k]));
        for (int64_t cg = 0; cg < Cg; ++cg) {  // scalar: y = (x - mean) * (rstd * w[c]) + b[c]
          const int64_t c = (k % G) * Cg + cg;
          const V va = set1(static_cast<A>(rstd * (w ? static_cast<double>(w[c]) : 1.0)));
          const V vb = set1(b ? b[c] : A(0));
          const T* xs = xb + cg * S;
          write_row(y + k * L + cg * S, S, streaming,
                    [&](int64_t j, int64_t n) { return fma(load_n(xs, j, n) - vm, va, vb); });
        }
      }
      if (streaming) stream_fence();
    });
  }

  // ---- backward sums

  static void grad_sums(const ChanGradSumsArgs& a) {
    const int64_t N = a.N, C = a.C, S = a.S, ns = a.coef_nstride, nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    const T* dy = static_cast<const T*>(a.dy);
    const A* m = static_cast<const A*>(a.m);
    const A* r = static_cast<const A*>(a.r);
    const int64_t nout = a.per_sample ? N * C : C;
    if (a.layout == Layout::ncs) {
      const int64_t K = (S + kSpan - 1) / kSpan, U = N * C * K;
      double* u1s = par::scratch<double>(0, 2 * U);
      double* u2s = u1s + U;
      par::parallel_ranges(nt, U, 2 * N * C * S, [&](int64_t u0, int64_t u1) {
        for (int64_t u = u0; u < u1; ++u) {
          const int64_t nc = u / K, off = nc * S + (u % K) * kSpan, L = std::min(kSpan, S - (u % K) * kSpan);
          const int64_t i = (nc / C) * ns + nc % C;
          const V vm = set1(m[i]), vr = set1(r[i]);
          V s1[4] = {set1(A(0)), set1(A(0)), set1(A(0)), set1(A(0))}, s2[4] = {s1[0], s1[0], s1[0], s1[0]};
          for_vectors<W>(L, [&](int64_t j, int64_t n, int k) {  // scalar: s1 += dy; s2 += dy * (x - m) * r
            V xh = (load_n(x + off, j, n) - vm) * vr;
            if (n < W) xh = keep_first(xh, n);
            const V g = load_n(dy + off, j, n);
            s1[k] = s1[k] + g;
            s2[k] = fma(g, xh, s2[k]);
          });
          u1s[u] = reduce_add((s1[0] + s1[1]) + (s1[2] + s1[3]));
          u2s[u] = reduce_add((s2[0] + s2[1]) + (s2[2] + s2[3]));
        }
      });
      par::parallel_ranges(nt, nout, U / kMergeCost, [&](int64_t o0, int64_t o1) {
        for (int64_t o = o0; o < o1; ++o) {
          double t1 = 0, t2 = 0;
          for (int64_t s = 0; s < (a.per_sample ? 1 : N); ++s) {
            const int64_t nc = a.per_sample ? o : s * C + o;
            for (int64_t k = 0; k < K; ++k) {
              t1 += u1s[nc * K + k];
              t2 += u2s[nc * K + k];
            }
          }
          a.sdy[o] = t1;
          a.sdyx[o] = t2;
        }
      });
      return;
    }
    const RowUnits ru = row_units(N, S, C, a.per_sample);
    const int64_t U = ru.count(), P = par::padded<A>(C);
    double* u1s = par::scratch<double>(0, 2 * U * C);
    double* u2s = u1s + U * C;
    A* bufs = par::scratch<A>(1, nt * 2 * P);
    par::parallel_ranges(nt, U, 2 * N * C * S, [&](int64_t u0, int64_t u1) {
      A* s1 = bufs + omp_get_thread_num() * 2 * P;
      A* s2 = s1 + P;
      for (int64_t u = u0; u < u1; ++u) {
        // Coefficients are constant over a unit (per-sample units, or shared by all samples).
        const bool fixed = a.per_sample || ns == 0;
        const bool done = fixed && by_blocks(C, [&](int64_t c0, auto kc) {
          constexpr int K = decltype(kc)::value;
          const A *mm = m + (ru.begin(u) / S) * ns + c0, *rr = r + (ru.begin(u) / S) * ns + c0;
          V t1[K], t2[K], vm[K], vr[K];
          for (int k = 0; k < K; ++k) {
            t1[k] = t2[k] = set1(A(0));
            vm[k] = loadu(mm + k * W);
            vr[k] = loadu(rr + k * W);
          }
          for (int64_t row = ru.begin(u); row < ru.end(u); ++row)
            for (int k = 0; k < K; ++k) {  // scalar: s1[c] += dy; s2[c] += dy * (x - m[c]) * r[c]
              const V g = loadu(dy + row * C + c0 + k * W);
              t1[k] = t1[k] + g;
              t2[k] = fma(g, (loadu(x + row * C + c0 + k * W) - vm[k]) * vr[k], t2[k]);
            }
          for (int k = 0; k < K; ++k) {
            storeu(s1 + c0 + k * W, t1[k]);
            storeu(s2 + c0 + k * W, t2[k]);
          }
        });
        if (!done) std::memset(s1, 0, static_cast<size_t>(2 * P) * sizeof(A));
        for (int64_t row = ru.begin(u); !done && row < ru.end(u); ++row) {
          const A *mm = m + (row / S) * ns, *rr = r + (row / S) * ns;
          for (int64_t j = 0; j < C; j += W) {  // scalar: s1[c] += dy; s2[c] += dy * (x - m[c]) * r[c]
            const int64_t n = std::min(W, C - j);
            const V g = load_n(dy + row * C, j, n);
            V xh = (load_n(x + row * C, j, n) - loadu(mm + j)) * loadu(rr + j);
            if (n < W) xh = keep_first(xh, n);
            storeu(s1 + j, loadu(s1 + j) + g);
            storeu(s2 + j, fma(g, xh, loadu(s2 + j)));
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          u1s[u * C + c] = s1[c];
          u2s[u * C + c] = s2[c];
        }
      }
    });
    par::parallel_ranges(nt, ru.groups, U * C / kMergeCost, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g)
        for (int64_t c = 0; c < C; ++c) {
          double t1 = 0, t2 = 0;
          for (int64_t u = g * ru.per_group; u < (g + 1) * ru.per_group; ++u) {
            t1 += u1s[u * C + c];
            t2 += u2s[u * C + c];
          }
          a.sdy[g * C + c] = t1;
          a.sdyx[g * C + c] = t2;
        }
    });
  }
};

}  // namespace

void chan_stats(const ChanStatsArgs& a) {
  by_dtype<Kern>(a, [&](auto k) { decltype(k)::stats(a); });
}
void group_norm_fwd_ncs(const GroupFwdArgs& a) {
  by_dtype<Kern>(a, [&](auto k) { decltype(k)::group_fwd(a); });
}
void chan_affine(const ChanAffineArgs& a) {
  by_dtype<Kern>(a, [&](auto k) { decltype(k)::affine(a); });
}
void chan_grad_sums(const ChanGradSumsArgs& a) {
  by_dtype<Kern>(a, [&](auto k) { decltype(k)::grad_sums(a); });
}
void chan_grad_apply(const ChanGradApplyArgs& a) {
  by_dtype<Kern>(a, [&](auto k) { decltype(k)::grad_apply(a); });
}

}  // namespace nk::cpu::NK_ISA
