// Building blocks of the channel-norm kernels (chan_norm.cpp, chan_fused.cpp), included inside
// each ISA's translation unit.
//
// Work is cut into fixed units whose boundaries depend only on the shape:
//   ncs: each (n, c) span of S contiguous values is cut into units of at most kSpan values; for
//        per-channel statistics, short spans of consecutive samples of one channel are grouped
//        into units of up to kSpan values (fewer, longer units: less per-unit overhead).
//   nsc: the rows (one row = the C channels of one (n, s)) are cut into units of RS rows; with
//        per-sample results the units never cross a sample.
// Statistics: a unit takes its mean/M2 in one read (ncs: two passes over a span that stays in
// L1/L2; nsc: chunked shifted sums merged with Chan's formula, rows_stats_k), and units are
// merged with Chan's formula in double, in unit order. So x is read from memory once for the
// statistics, results do not depend on the thread count (nor on how units are handed to
// threads), and channels with a large mean keep their precision.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernel_util.h"
#include "normkit/chan_norm.h"

namespace nk::cpu::NK_ISA {
namespace {

constexpr int64_t kSpan = 16384;      // ncs: values per unit
constexpr int64_t kShortSpan = 512;   // ncs: spans up to this long are grouped across samples
constexpr int64_t kUnitElems = 65536;  // nsc: values per unit (rows * C) at least (stays in L2)
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

// ncs: unit u covers `count` spans of `len` values, `stride` apart (one channel, consecutive
// samples), the first at `offset`.
struct Spans {
  int64_t offset, count, len, stride;
};

// The units of an (N, C, S) tensor, for results per (n, c) (per_sample) or per c.
struct Units {
  Layout layout;
  int64_t N, C, S;
  bool per_sample;
  int64_t K;    // ncs: units per (n, c) span
  int64_t SB;   // ncs: samples per unit (> 1 only when K = 1 and results are per channel)
  RowUnits ru;  // nsc
  int64_t blocks() const { return (N + SB - 1) / SB; }  // ncs: sample blocks
  int64_t count() const { return layout == Layout::ncs ? blocks() * C * K : ru.count(); }
  int64_t width() const { return layout == Layout::ncs ? 1 : C; }  // partial results per unit
  int64_t outputs() const { return per_sample ? N * C : C; }
  struct Part {
    int64_t off, len, coef;
  };
  // ncs, ungrouped (SB = 1): unit u is part u % K of the span of nc = u / K = n * C + c; its
  // offset, length, and the index n * ns + c of its coefficients (ns: per-sample stride, 0 when
  // they are per channel). One integer division when K = 1.
  Part part(int64_t u, int64_t ns) const {
    const int64_t nc = K == 1 ? u : u / K, k = u - nc * K, n = nc / C;
    return {nc * S + k * kSpan, std::min(kSpan, S - k * kSpan), n * ns + (nc - n * C)};
  }
  Spans spans(int64_t u) const {  // ncs: u = (block * C + c) * K + k
    const int64_t k = u % K, c = u / K % C, n0 = u / K / C * SB;
    return {(n0 * C + c) * S + k * kSpan, std::min(SB, N - n0), std::min(kSpan, S - k * kSpan), C * S};
  }
};
// group: short ncs spans are grouped across samples (statistics per channel only).
inline Units make_units(Layout layout, int64_t N, int64_t C, int64_t S, bool per_sample, bool group = false) {
  const int64_t K = (S + kSpan - 1) / kSpan;
  group = group && layout == Layout::ncs && !per_sample && S > 0 && S <= kShortSpan;
  const int64_t SB = group ? std::max<int64_t>(1, std::min(N, kSpan / S)) : 1;
  Units p{layout, N, C, S, per_sample, K, SB, {}};
  if (layout == Layout::nsc) p.ru = row_units(N, S, C, per_sample);
  return p;
}

// Visits the units that contribute to output o, in the fixed merge order, as
// f(unit, values before it in the output's reduction, values in it).
template <class F> inline void for_unit_partials(const Units& P, int64_t o, F&& f) {
  if (P.layout == Layout::ncs) {  // per_sample: o = n * C + c is unit block n's channel c (SB = 1)
    const int64_t b0 = P.per_sample ? o / P.C : 0, b1 = P.per_sample ? b0 + 1 : P.blocks(), c = o % P.C;
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t k = 0; k < P.K; ++k) {
        const int64_t u = (b * P.C + c) * P.K + k;
        const Spans sp = P.spans(u);
        f(u, (b - b0) * P.SB * P.S + std::min(k * kSpan, P.S), sp.count * sp.len);
      }
    return;
  }
  const int64_t g = P.per_sample ? o / P.C : 0;
  for (int64_t u = g * P.ru.per_group; u < (g + 1) * P.ru.per_group; ++u)
    f(u, P.ru.begin(u) - g * P.ru.rows, P.ru.end(u) - P.ru.begin(u));
}

// Merged statistics for outputs [o0, o1) from the unit partials um/uq (width() per unit).
inline void merge_stats(const Units& P, int64_t o0, int64_t o1, const double* um, const double* uq, double* mean,
                        double* m2) {
  std::fill(mean + o0, mean + o1, 0.0);
  std::fill(m2 + o0, m2 + o1, 0.0);
  if (P.layout == Layout::ncs) {
    for (int64_t o = o0; o < o1; ++o)
      for_unit_partials(P, o, [&](int64_t u, int64_t na, int64_t nb) {
        merge(static_cast<double>(na), static_cast<double>(nb), 1, mean + o, m2 + o, um + u, uq + u, 1);
      });
    return;
  }
  for (int64_t o = o0; o < o1;) {  // one sample (group of units) at a time, its channels as a vector
    const int64_t g = o / P.C, c0 = o % P.C, c1 = std::min(o1 - g * P.C, P.C);
    for_unit_partials(P, o, [&](int64_t u, int64_t na, int64_t nb) {
      merge(static_cast<double>(na), static_cast<double>(nb), c1 - c0, mean + o, m2 + o, um + u * P.C + c0,
            uq + u * P.C + c0, 1);
    });
    o = g * P.C + c1;
  }
}

// Sums of unit partials for outputs [o0, o1), in unit order.
inline void merge_sums(const Units& P, int64_t o0, int64_t o1, const double* u1, const double* u2, double* s1,
                       double* s2) {
  if (P.layout == Layout::nsc) {  // one sample (group of units) at a time, its channels as a vector
    for (int64_t o = o0; o < o1;) {
      const int64_t g = o / P.C, c0 = o % P.C, c1 = std::min(o1 - g * P.C, P.C), n = c1 - c0;
      std::fill(s1 + o, s1 + o + n, 0.0);
      std::fill(s2 + o, s2 + o + n, 0.0);
      for (int64_t u = g * P.ru.per_group; u < (g + 1) * P.ru.per_group; ++u) {  // one output per loop: vectorizes
        for (int64_t c = 0; c < n; ++c) s1[o + c] += u1[u * P.C + c0 + c];
        for (int64_t c = 0; c < n; ++c) s2[o + c] += u2[u * P.C + c0 + c];
      }
      o = g * P.C + c1;
    }
    return;
  }
  if (!P.per_sample && P.K == 1 && P.SB == 1) {  // ncs per channel, one unit per span: u = n * C + c
    std::fill(s1 + o0, s1 + o1, 0.0);
    std::fill(s2 + o0, s2 + o1, 0.0);
    for (int64_t n = 0; n < P.N; ++n) {  // in sample order, as below; vectorizes across channels
      for (int64_t o = o0; o < o1; ++o) s1[o] += u1[n * P.C + o];
      for (int64_t o = o0; o < o1; ++o) s2[o] += u2[n * P.C + o];
    }
    return;
  }
  for (int64_t o = o0; o < o1; ++o) {  // ncs: one partial per unit
    double t1 = 0, t2 = 0;
    for_unit_partials(P, o, [&](int64_t u, int64_t, int64_t) {
      t1 += u1[u];
      t2 += u2[u];
    });
    s1[o] = t1;
    s2[o] = t2;
  }
}

// Per-channel coefficient tables for the nsc elementwise passes: ext[i] = coef[i % C] for
// i < padded(C + W), so a vector at any phase j % C, also one that wraps from channel C-1 to
// channel 0, loads the right lanes. fill_ext writes the entries of channels [c0, c1).
template <class A> inline void fill_ext(A* ext, int64_t E, int64_t C, const A* coef, int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t i = c; i < E; i += C) ext[i] = coef ? coef[c] : A(0);
}

template <class T> struct Kern {
  using A = Acc<T>;
  using V = VecOf<T>;
  static constexpr int64_t W = V::W;

  static int64_t ext_len(int64_t C) { return par::padded<A>(C + W); }

  // ---- statistics

  // Two-pass mean and M2 of `count` runs of L contiguous values, `stride` apart.
  static void run_stats(const T* p, int64_t count, int64_t stride, int64_t L, double* mean, double* m2) {
    V acc[4] = {set1(A(0)), set1(A(0)), set1(A(0)), set1(A(0))};
    for (int64_t r = 0; r < count; ++r)  // scalar: s += x
      for_vectors<W>(L, [&](int64_t j, int64_t n, int k) { acc[k] = acc[k] + load_n(p + r * stride, j, n); });
    const int64_t total = count * L;
    const A m0 = reduce_add((acc[0] + acc[1]) + (acc[2] + acc[3])) / static_cast<A>(total);
    const V vm = set1(m0);
    V sd[4] = {set1(A(0)), set1(A(0)), set1(A(0)), set1(A(0))}, sq[4] = {sd[0], sd[0], sd[0], sd[0]};
    for (int64_t r = 0; r < count; ++r)
      for_vectors<W>(L, [&](int64_t j, int64_t n, int k) {
        V d = load_n(p + r * stride, j, n) - vm;  // scalar: d = x - m0; sd += d; sq += d * d
        if (n < W) d = keep_first(d, n);
        sd[k] = sd[k] + d;
        sq[k] = fma(d, d, sq[k]);
      });
    const double s1 = reduce_add((sd[0] + sd[1]) + (sd[2] + sd[3]));
    const double s2 = reduce_add((sq[0] + sq[1]) + (sq[2] + sq[3]));
    *mean = static_cast<double>(m0) + s1 / static_cast<double>(total);
    *m2 = std::max(0.0, s2 - s1 * s1 / static_cast<double>(total));
  }
  static void run_stats(const T* p, int64_t L, double* mean, double* m2) { run_stats(p, 1, 0, L, mean, m2); }

  static constexpr int64_t kChunkRows = 32;  // rows per shifted-sum chunk of the nsc statistics

  // Per-channel mean/M2 over rows [r0, r1) of the (K - 1) * W + n channels at x (rows `stride`
  // apart, K <= 8, 0 < n <= W: the last vector may be partial, its lanes past n zero), in one
  // pass: chunks of kChunkRows rows take sums of x - shift, in registers, and are merged in order
  // with Chan's formula as offsets from the first row (so large means stay exact). The first
  // chunk shifts by its first row, which bounds the cancellation in q - d^2 / n by the chunk's
  // row count (Samuelson's inequality); later chunks shift by the mean so far. Channels are
  // independent lanes: a channel's result does not depend on the block or lane it is in.
  template <int K>
  static void rows_stats_k(const T* x, int64_t stride, int64_t n, int64_t r0, int64_t r1, double* om, double* oq) {
    constexpr int64_t C = K * W;  // lanes of this block
    A sa[C], ma[C], qa[C];        // first row; merged mean - first row and M2 of the chunks so far
    for (int k = 0; k < K; ++k) {
      storeu(sa + k * W, load_n(x + r0 * stride, k * W, k == K - 1 ? n : W));
      storeu(ma + k * W, set1(A(0)));
      storeu(qa + k * W, set1(A(0)));
    }
    for (int64_t rb = r0; rb < r1; rb += kChunkRows) {
      const int64_t re = std::min(r1, rb + kChunkRows);
      V s[K], d[K], q[K];
      for (int k = 0; k < K; ++k) {
        s[k] = loadu(sa + k * W) + loadu(ma + k * W);  // the first chunk: the first row (ma = 0)
        d[k] = q[k] = set1(A(0));
      }
      for (int64_t r = rb == r0 ? rb + 1 : rb; r < re; ++r)  // (the first row adds zeros)
        for (int k = 0; k < K; ++k) {  // scalar: e = x[r][c] - shift[c]; d[c] += e; q[c] += e * e
          const V e = load_n(x + r * stride, k * W, k == K - 1 ? n : W) - s[k];  // 0 past n
          d[k] = d[k] + e;
          q[k] = fma(e, e, q[k]);
          if (stride > C) prefetch(x + r * stride + C, k * W);  // the next block's part of this row
        }
      // Chan's merge with the chunks so far (the first chunk: f1 = 1, f2 = 0, so ma = mb, qa = qb)
      const A nb = static_cast<A>(re - rb), na = static_cast<A>(rb - r0);
      const V inv = set1(A(1) / nb), f1 = set1(nb / (na + nb)), f2 = set1(na * nb / (na + nb));
      for (int k = 0; k < K; ++k) {
        const V mb = d[k] * inv, qb = q[k] - mb * d[k];  // the chunk's mean - shift and M2
        // scalar: delta = (shift - x[r0] + mb) - ma; ma += delta f1; qa += qb + delta^2 f2
        const V s0 = loadu(sa + k * W), m_prev = loadu(ma + k * W), delta = (s[k] - s0) + mb - m_prev;
        const V m = fma(delta, f1, m_prev), qm = loadu(qa + k * W) + (na > 0 ? fma(delta * delta, f2, qb) : qb);
        storeu(ma + k * W, m);
        storeu(qa + k * W, qm);
        if (re == r1) store_stats(s0, m, qm, om + k * W, oq + k * W, k == K - 1 ? n : W);
      }
    }
  }

  // The first n lanes of om = s + m (added in double) and oq = max(q, 0) (NaN -> 0).
  static void store_stats(V s, V m, V q, double* om, double* oq, int64_t n) {
    const VD zero = set1(0.0);
    if constexpr (std::is_same_v<A, double>) {
      store_n(om, 0, s + m, n);
      store_n(oq, 0, max(q, zero), n);
    } else {  // each float vector as two double vectors
      constexpr int64_t H = W / 2;
      VD sw[2], mw[2], qw[2];
      widen(s, sw[0], sw[1]);
      widen(m, mw[0], mw[1]);
      widen(q, qw[0], qw[1]);
      for (int h = 0; h < 2 && h * H < n; ++h) {
        store_n(om, h * H, sw[h] + mw[h], std::min(H, n - h * H));
        store_n(oq, h * H, max(qw[h], zero), std::min(H, n - h * H));
      }
    }
  }

  // f(c0, std::integral_constant<int, k>) for a run-time k in [1, K].
  template <int K, class Fn> static void with_k(int64_t k, int64_t c0, Fn& f) {
    if constexpr (K > 1)
      if (k < K) return with_k<K - 1>(k, c0, f);
    f(c0, std::integral_constant<int, K>{});
  }

  // Cuts the C channels of rows that start at x (row stride C) into blocks: whole vectors,
  // f(c0, std::integral_constant<int, K>) for [c0, c0 + K * W) with K <= MaxK, partial vectors
  // g(c0, n) for [c0, c0 + n) with n < W. Rows of whole vectors (every row then has the same
  // offset from a vector boundary) that fit in one block are one block, aligned or not: one pass
  // over the rows. Longer ones start their whole vectors at the first boundary (aligned loads;
  // NumPy's large arrays are 16-byte aligned only), and g takes the channels before it and after
  // the last whole one: each block is a pass over the rows, and a cut row costs two more.
  template <int MaxK = 8, class Fn, class Gn> static void by_blocks(const T* x, int64_t C, Fn&& f, Gn&& g) {
    const bool same_offset = C % W == 0;  // for every row
    if (same_offset && C > 0 && C <= MaxK * W) return with_k<MaxK>(C / W, 0, f);
    const int64_t h = same_offset ? std::max<int64_t>(0, head_to_vector(x, C)) : 0;
    if (h > 0) g(0, h);
    const int64_t end = h + (C - h) / W * W;
    for (int64_t c0 = h; c0 < end; c0 += MaxK * W) with_k<MaxK>(std::min<int64_t>(MaxK, (end - c0) / W), c0, f);
    if (end < C) g(end, C - end);
  }

  // Mean/M2 partials of unit u into um/uq (width() values).
  static void stats_unit(const Units& P, const T* x, int64_t u, double* um, double* uq) {
    if (P.layout == Layout::ncs) {
      const Spans sp = P.spans(u);
      run_stats(x + sp.offset, sp.count, sp.stride, sp.len, um + u, uq + u);
      return;
    }
    const int64_t C = P.C, r0 = P.ru.begin(u), r1 = P.ru.end(u);
    by_blocks(
        x, C,
        [&](int64_t c0, auto k) {
          rows_stats_k<decltype(k)::value>(x + c0, C, W, r0, r1, um + u * C + c0, uq + u * C + c0);
        },
        [&](int64_t c0, int64_t n) { rows_stats_k<1>(x + c0, C, n, r0, r1, um + u * C + c0, uq + u * C + c0); });
  }

  // ---- backward sums: s1 = sum(dy), s2 = sum(dy * (x - m) * r) per unit (width() values)

  static constexpr int kSumBlock = 8;  // vectors per channel block of the nsc sums

  // Over L contiguous values: *s1 = sum(dy), *s2 = sum(dy * (x - m) * r). Value j goes to
  // accumulator (j / W) % 4, lane j % W: a ring of 4W cells, each summed in increasing j. When x
  // and dy are equally misaligned by `off` values (float32/float64), the loads start at the
  // aligned address below the span instead (no load crosses a cache line), value j lands in cell
  // (j + off) % 4W, and the ring is rotated back at the end: the same cells with the same sums.
  // Masked lanes add +0 to some cells, which changes nothing: a cell starts at +0, so it is never
  // -0. Bitwise the same results for any alignment. (x - off is only formed, never read: every
  // lane before x is masked, and it lies in x's own aligned vector.)
  static void span_sums(const T* x, const T* dy, int64_t L, A m, A r, double* s1_out, double* s2_out) {
    constexpr bool ring = std::is_same_v<T, A>;  // load_range / ring_shift exist for float, double
    const V vm = set1(m), vr = set1(r), z = set1(A(0));
    V s1[4] = {z, z, z, z}, s2[4] = {z, z, z, z};
    int64_t off = 0;
    if constexpr (ring) {
      const int64_t hx = head_to_vector(x, W), hd = head_to_vector(dy, W);
      if (hx > 0 && hx == hd && L >= 4 * W) off = W - hx;
    }
    const T* xa = x - off;
    const T* da = dy - off;
    const int64_t end = L + off;  // the values are positions [off, end) from xa and da
    // scalar: s1 += dy; s2 += dy * (x - m) * r, for lanes [lo, hi) of the vector at position p
    const auto step = [&](int64_t p, int k, int64_t lo, int64_t hi) __attribute__((always_inline)) {
      V g, xh;
      if (lo == 0 && hi == W) {
        g = loadu(da + p);
        xh = (loadu(xa + p) - vm) * vr;
      } else if constexpr (ring) {
        g = load_range(da + p, lo, hi);
        xh = keep_range((load_range(xa + p, lo, hi) - vm) * vr, lo, hi);
      } else {  // lo == 0
        g = load_tail(da + p, hi);
        xh = keep_first((load_tail(xa + p, hi) - vm) * vr, hi);
      }
      s1[k] = s1[k] + g;
      s2[k] = fma(g, xh, s2[k]);
    };
    // The accumulator index is a constant at every call (a runtime index keeps them in memory).
    int64_t p = 0;
    if (off > 0) {  // the first group, its first vector lanes [off, W) only
      step(0, 0, off, W);
      step(W, 1, 0, W);
      step(2 * W, 2, 0, W);
      step(3 * W, 3, 0, W);
      p = 4 * W;
    }
    for (; p + 4 * W <= end; p += 4 * W) {
      step(p, 0, 0, W);
      step(p + W, 1, 0, W);
      step(p + 2 * W, 2, 0, W);
      step(p + 3 * W, 3, 0, W);
    }
    const int64_t nf = (end - p) / W, t = end - p - nf * W;  // whole vectors left (< 4), then t values
    if (nf > 0) step(p, 0, 0, W);
    if (nf > 1) step(p + W, 1, 0, W);
    if (nf > 2) step(p + 2 * W, 2, 0, W);
    if (t > 0) {
      const int64_t q = p + nf * W;
      switch (nf) {
        case 0: step(q, 0, 0, t); break;
        case 1: step(q, 1, 0, t); break;
        case 2: step(q, 2, 0, t); break;
        default: step(q, 3, 0, t); break;
      }
    }
    if constexpr (ring) {
      if (off > 0) {
        rotate4(s1, off);
        rotate4(s2, off);
      }
    }
    *s1_out = reduce_add((s1[0] + s1[1]) + (s1[2] + s1[3]));
    *s2_out = reduce_add((s2[0] + s2[1]) + (s2[2] + s2[3]));
  }
  // The ring of 4W cells in s rotated down by `off` cells (0 < off < W).
  static void rotate4(V (&s)[4], int64_t off) {
    const V s0 = s[0];
    s[0] = ring_shift(s0, s[1], off);
    s[1] = ring_shift(s[1], s[2], off);
    s[2] = ring_shift(s[2], s[3], off);
    s[3] = ring_shift(s[3], s0, off);
  }

  static void grad_sums_unit(const Units& P, const T* x, const T* dy, const A* m, const A* r, int64_t ns, int64_t u,
                             A* buf, double* u1s, double* u2s) {
    const int64_t C = P.C, S = P.S;
    if (P.layout == Layout::ncs) {
      const Units::Part q = P.part(u, ns);  // P is not grouped
      span_sums(x + q.off, dy + q.off, q.len, m[q.coef], r[q.coef], u1s + u, u2s + u);
      return;
    }
    const int64_t r0 = P.ru.begin(u), r1 = P.ru.end(u);
    A* t1s = buf;
    A* t2s = buf + par::padded<A>(C);
    // Coefficients are constant over a unit (per-sample units, or shared by all samples).
    const bool fixed = P.per_sample || ns == 0;
    const A *mm = m + (r0 / S) * ns, *rr = r + (r0 / S) * ns;
    const auto block = [&](int64_t c0, auto kc, int64_t n) {  // n: lanes of the last vector
      constexpr int K = decltype(kc)::value;
      V t1[K], t2[K], vm[K], vr[K];
      for (int k = 0; k < K; ++k) {
        t1[k] = t2[k] = set1(A(0));
        vm[k] = load_n(mm, c0 + k * W, k == K - 1 ? n : W);  // m, r: C values, unpadded
        vr[k] = load_n(rr, c0 + k * W, k == K - 1 ? n : W);
      }
      for (int64_t row = r0; row < r1; ++row)
        for (int k = 0; k < K; ++k) {  // scalar: s1[c] += dy; s2[c] += dy * (x - m[c]) * r[c]
          const int64_t j = row * C + c0 + k * W, nk = k == K - 1 ? n : W;
          const V g = load_n(dy, j, nk);  // lanes past n: g = 0 and x - m = 0
          t1[k] = t1[k] + g;
          t2[k] = fma(g, (load_n(x, j, nk) - vm[k]) * vr[k], t2[k]);
        }
      for (int k = 0; k < K; ++k) {
        store_n(t1s, c0 + k * W, t1[k], k == K - 1 ? n : W);
        store_n(t2s, c0 + k * W, t2[k], k == K - 1 ? n : W);
      }
    };
    if (fixed) {
      by_blocks<kSumBlock>(
          x, C, [&](int64_t c0, auto kc) { block(c0, kc, W); },
          [&](int64_t c0, int64_t n) { block(c0, std::integral_constant<int, 1>{}, n); });
    } else {  // coefficients change at sample boundaries inside the unit: row by row
      std::memset(buf, 0, static_cast<size_t>(2 * par::padded<A>(C)) * sizeof(A));
      for (int64_t row = r0; row < r1; ++row) {
        const A *mm = m + (row / S) * ns, *rr = r + (row / S) * ns;
        for (int64_t j = 0; j < C; j += W) {  // scalar: s1[c] += dy; s2[c] += dy * (x - m[c]) * r[c]
          const int64_t n = std::min(W, C - j);
          const V g = load_n(dy + row * C, j, n);
          V xh = (load_n(x + row * C, j, n) - load_n(mm, j, n)) * load_n(rr, j, n);  // m, r: C values, unpadded
          if (n < W) xh = keep_first(xh, n);
          storeu(t1s + j, loadu(t1s + j) + g);
          storeu(t2s + j, fma(g, xh, loadu(t2s + j)));
        }
      }
    }
    std::copy(t1s, t1s + C, u1s + u * C);  // (widened to double)
    std::copy(t2s, t2s + C, u2s + u * C);
  }

  // ---- elementwise passes: out = op(x, dy, coefficients of (n, c)), both layouts
  //
  // ncs: per span, the coefficients are scalars broadcast over the span; `coef[q]` is indexed
  // [n * ns + c]. nsc: a run of rows is one flat array whose coefficients repeat with period C;
  // they are read from ext tables (fill_ext) at the running phase j % C: `coef[q]` then points
  // at set 0 of table q, the sets of consecutive samples (ns != 0) `set_stride` apart.
  struct Coef4 {
    const A* p[4];
    int64_t ns;          // ncs: per-sample stride of the coefficient arrays (0: shared)
    int64_t set_stride;  // nsc: distance between the tables of consecutive samples (0: shared)
  };

  // ncs: values [off, off + L) of one (n, c) span, whose coefficients are coef[q][ci].
  template <class Op>
  static void apply_span(const T* x, const T* dy, T* out, int64_t off, int64_t L, int64_t ci, const Coef4& cf,
                         bool streaming, Op op) {
    V cv[4];
    for (int q = 0; q < 4; ++q) cv[q] = set1(cf.p[q] ? cf.p[q][ci] : A(0));
    const T* xs = x + off;
    const T* ds = dy ? dy + off : nullptr;
    write_row(out + off, L, streaming, [&](int64_t j, int64_t k) {
      return op(load_n(xs, j, k), ds ? load_n(ds, j, k) : cv[0], cv);
    });
  }

  template <class Op>
  static void apply_unit(const Units& P, int64_t u, const T* x, const T* dy, T* out, const Coef4& cf, bool streaming,
                         Op op) {
    const int64_t C = P.C, S = P.S;
    if (P.layout == Layout::ncs) {
      const Units::Part pt = P.part(u, cf.ns);  // P is not grouped
      apply_span(x, dy, out, pt.off, pt.len, pt.coef, cf, streaming, op);
      return;
    }
    const int64_t r0 = P.ru.begin(u), r1 = P.ru.end(u), set = (r0 / S) * cf.set_stride;
    const A* e[4] = {cf.p[0] + set, cf.p[1] + set, cf.p[2] + set, cf.p[3] ? cf.p[3] + set : cf.p[2] + set};
    if (C % W == 0 && C <= 4 * W) {  // a flat run whose C / W coefficient vectors stay in registers
      auto f = [&](int64_t, auto kc) {
        constexpr int P = decltype(kc)::value;
        if (dy)
          flat_run<P, true>(x + r0 * C, dy + r0 * C, out + r0 * C, (r1 - r0) * C, C, e, streaming, op);
        else
          flat_run<P, false>(x + r0 * C, nullptr, out + r0 * C, (r1 - r0) * C, C, e, streaming, op);
      };
      with_k<4>(C / W, 0, f);
      return;
    }
    const auto run = [&](int64_t off, int64_t L, auto phase_of, bool align) {
      const T* xs = x + off;
      const T* ds = dy ? dy + off : nullptr;
      write_row(
          out + off, L, streaming,
          [&](int64_t j, int64_t k) {
            const int64_t p = phase_of(j);
            const V cv[4] = {loadu(e[0] + p), loadu(e[1] + p), loadu(e[2] + p), loadu(e[3] + p)};
            return op(load_n(xs, j, k), ds ? load_n(ds, j, k) : cv[0], cv);
          },
          align);
    };
    if (C >= 8 * W) {  // long rows are written one by one, short ones as one flat run per unit
      // A row's coefficients load from phase 0 up, aligned; unless the stores stream, the
      // output is not aligned at the cost of misaligning those 3 or 4 coefficient loads.
      for (int64_t r = r0; r < r1; ++r) run(r * C, C, [](int64_t j) { return j; }, false);
    } else {
      int64_t phase = 0, last = 0;  // phase = j % C, advanced incrementally
      run(
          r0 * C, (r1 - r0) * C,
          [&](int64_t j) {
            phase += j - last;
            last = j;
            while (phase >= C) phase -= C;
            return phase;
          },
          true);
    }
  }

  // Elementwise pass over a flat run of L = rows * C values, C = P * W channels: past the head
  // (to the first aligned output vector), vector i of the run has coefficient phase
  // (head + i * W) % C, one of P, so the P coefficient vectors (from the ext tables) are loaded
  // once and each vector costs only its loads of x (and dy).
  template <int P, bool HasDy, class Op>
  static void flat_run(const T* x, const T* dy, T* out, int64_t L, int64_t C, const A* const (&e)[4], bool streaming,
                       Op op) {
    const int64_t hv = head_to_vector(out, L), h = std::max<int64_t>(0, hv);
    if (h > 0) {  // head: phase 0
      const V cv[4] = {loadu(e[0]), loadu(e[1]), loadu(e[2]), loadu(e[3])};
      store_tail(out, op(load_n(x, 0, h), HasDy ? load_n(dy, 0, h) : cv[0], cv), h);
    }
    V cv[P][4];
    for (int p = 0; p < P; ++p)
      for (int q = 0; q < 4; ++q) cv[p][q] = loadu(e[q] + (h + p * W) % C);
    const bool nt = streaming && hv >= 0;
    int64_t j = h;
    const auto step = [&](int p, int64_t n) {
      const V v = op(load_n(x, j, n), HasDy ? load_n(dy, j, n) : cv[p][0], cv[p]);
      if (n < W)
        store_tail(out + j, v, n);
      else if (nt)
        stream(out + j, v);
      else
        storeu(out + j, v);
      j += n;
    };
    for (; j + P * W <= L;)
      for (int p = 0; p < P; ++p) step(p, W);
    for (int p = 0; j < L; ++p) step(p, std::min<int64_t>(W, L - j));
  }

  // The elementwise ops, as types (not function pointers) so that apply_unit inlines them.
  struct AffineOp {
    V operator()(V x, V, const V* k) const { return fma(x - k[0], k[1], k[2]); }  // scalar: y = (x - m) * a + b
  };
  struct GradOp {
    V operator()(V x, V dy, const V* k) const {  // scalar: dx = k1 dy + k2 (x - m) + k3
      return fma(dy, k[1], fma(x - k[0], k[2], k[3]));
    }
  };
};

// One parallel region of at most nt threads: f(t, T) on thread t of T. Phases inside f are
// separated by sync() (an OpenMP barrier; nothing when T = 1).
template <class F> inline void region(int nt, F&& f) {
  if (nt <= 1) {
    f(0, 1);
    return;
  }
#pragma omp parallel num_threads(nt)
  f(omp_get_thread_num(), omp_get_num_threads());
}
inline void sync(int T) {
  if (T > 1) {
#pragma omp barrier
  }
}
// Part t of T of [0, n).
inline int64_t part(int64_t n, int t, int T) { return n * t / T; }

}  // namespace
}  // namespace nk::cpu::NK_ISA
