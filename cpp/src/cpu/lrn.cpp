// Local response normalization kernels (contract: normkit/lrn.h). Compiled once per ISA.
//
// One pass per direction. ncs: a unit is (n, a block of kSpanBlock spatial positions) walked
// along the channels, the terms of the channels in the window (x^2 forward, dy*y/scale
// backward) kept in a ring of rows, so every element is read from memory once and the block's
// rows stay in L1. nsc: a unit is one row of C channels, its terms in a zero-padded buffer.
// Windows of up to kDirectMax channels (AlexNet's is 5) are summed directly from the terms, in
// channel order, in the accumulation type: nothing is subtracted, so nothing cancels and a NaN
// stays inside the windows that hold it. Larger windows keep a running sum in double (add the
// entering channel, subtract the leaving one; a window that turned inf/NaN is re-summed
// directly). Elementwise otherwise, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernel_util.h"
#include "normkit/lrn.h"

namespace nk::cpu::NK_ISA {
namespace {

constexpr int64_t kSpanBlock = 256;    // ncs: spatial positions per unit (a multiple of every W)
constexpr int64_t kDirectMax = 16;     // windows up to this size are summed directly
// ncs, direct windows: spatial positions per unit at most (long contiguous runs stream well);
// S is cut into equal blocks of a multiple of 16 (every W) positions.
constexpr int64_t kDirectBlock = 4096;
inline int64_t direct_block(int64_t S) {
  const int64_t blocks = std::max<int64_t>(1, (S + kDirectBlock - 1) / kDirectBlock);
  return ((S + blocks - 1) / blocks + 15) / 16 * 16;
}

// scale^(-beta) with exact fast paths for the common betas.
enum class PowKind { three_quarters, half, one, zero, general };
inline PowKind pow_kind(double beta) {
  if (beta == 0.75) return PowKind::three_quarters;
  if (beta == 0.5) return PowKind::half;
  if (beta == 1.0) return PowKind::one;
  if (beta == 0.0) return PowKind::zero;
  return PowKind::general;
}

template <class T> struct Kern {
  using A = Acc<T>;
  using V = VecOf<T>;
  static constexpr int64_t W = V::W;

  // v's W lanes as doubles at p[0, W) / W doubles at p as lanes of V (rounded to A).
  static void to_d(V v, double* p) {
    if constexpr (std::is_same_v<A, double>) {
      storeu(p, v);
    } else {
      VD lo, hi;
      widen(v, lo, hi);
      storeu(p, lo);
      storeu(p + W / 2, hi);
    }
  }
  static V from_d(const double* p) {
    if constexpr (std::is_same_v<A, double>) return loadu(p);
    else return narrow(loadu(p), loadu(p + W / 2));
  }

  // s^-beta from r = 1/sqrt(s).
  static V pow_from_r(V s, V r, PowKind kind, A beta) {
    switch (kind) {
      case PowKind::three_quarters: return r * vsqrt(r);  // scalar: s^-0.75 = r * sqrt(r)
      case PowKind::half: return r;
      case PowKind::one: return r * r;
      case PowKind::zero: return set1(A(1));
      default: {
        alignas(64) A t[W];
        storeu(t, s);
        for (int64_t i = 0; i < W; ++i) t[i] = std::pow(t[i], -beta);
        return loadu(t);
      }
    }
  }
  static V pow_neg(V s, PowKind kind, A beta) { return pow_from_r(s, rsqrt(s), kind, beta); }
  // The forward's scale at [j, j + m): lanes past m read as 1 (never divided by zero).
  static V load_scale(const A* p, int64_t j, int64_t m) {
    const V s = load_n(p, j, m);
    return m < W ? s + (set1(A(1)) - keep_first(set1(A(1)), m)) : s;
  }

  // ---- ncs: running window sums along the channels, lanes along s

  // Walks the channels of unit (n, s0, L): terms of channel c' are written by term(c', row) into
  // a ring row (doubles); at channel c the running sum covers channels [c - lo, c + hi] and
  // out(c, sum) consumes it.
  template <class Term, class Out>
  static void ncs_walk(int64_t C, int64_t lo, int64_t hi, int64_t R, double* ring, double* sum, int64_t L,
                       Term&& term, Out&& out) {
    const auto row = [&](int64_t c) { return ring + (c % R) * kSpanBlock; };
    std::fill(sum, sum + kSpanBlock, 0.0);
    const auto enter = [&](int64_t c) {
      double* r = row(c);
      term(c, r);
      for (int64_t j = 0; j < L; ++j) sum[j] += r[j];  // scalar: sum += term(c)
    };
    for (int64_t c = 0; c < std::min(hi, C); ++c) enter(c);
    for (int64_t c = 0; c < C; ++c) {
      if (c + hi < C) enter(c + hi);
      if (c - lo - 1 >= 0) {
        const double* r = row(c - lo - 1);
        bool nonfinite = false;
        for (int64_t j = 0; j < L; ++j) {  // scalar: sum -= term(c - lo - 1)
          sum[j] -= r[j];
          nonfinite |= (sum[j] - sum[j]) != 0.0;
        }
        // inf/NaN cannot be subtracted out again: those positions take the window's direct sum,
        // so a NaN stays inside the windows that hold it.
        for (int64_t j = 0; nonfinite && j < L; ++j)
          if (!std::isfinite(sum[j])) {
            double t = 0;
            for (int64_t q = std::max<int64_t>(0, c - lo); q <= std::min(C - 1, c + hi); ++q) t += row(q)[j];
            sum[j] = t;
          }
      }
      out(c);
    }
  }

  // ---- ncs, windows of at most kDirectMax channels: a ring of `size` rows of terms (A)

  // Walks the channels of a unit: enter(e, row) writes channel e's terms into its ring row when
  // e joins a window; out(c, rows, count) gets the ring rows of c's window [c - lo, c + hi]
  // (channel order).
  template <class Enter, class Out>
  static void direct_walk(int64_t C, int64_t size, int64_t lo, int64_t hi, int64_t B, A* ring, Enter&& enter,
                          Out&& out) {
    const auto row = [&](int64_t c) { return ring + (c % size) * B; };
    for (int64_t c = 0; c < std::min(hi, C); ++c) enter(c, row(c));
    const A* rows[kDirectMax];
    for (int64_t c = 0; c < C; ++c) {
      if (c + hi < C) enter(c + hi, row(c + hi));
      int64_t count = 0;
      for (int64_t q = std::max<int64_t>(0, c - lo); q <= std::min(C - 1, c + hi); ++q) rows[count++] = row(q);
      out(c, rows, count);
    }
  }
  static V window_sum(const A* const* rows, int64_t count, int64_t j) {
    V s = loadu(rows[0] + j);
    for (int64_t q = 1; q < count; ++q) s = s + loadu(rows[q] + j);  // scalar: s = sum of the window's terms
    return s;
  }

  static void fwd_ncs_direct(const LrnFwdArgs& a) {
    const int64_t N = a.N, C = a.C, S = a.S, size = a.size, B = direct_block(S), blocks = (S + B - 1) / B;
    const int64_t nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    A* sc = static_cast<A*>(a.scale);
    const V vc = set1(static_cast<A>(a.alpha / static_cast<double>(size))), vk = set1(static_cast<A>(a.k));
    const PowKind kind = pow_kind(a.beta);
    const A beta = static_cast<A>(a.beta);
    A* bufs = par::scratch<A>(0, nt * size * B);
    par::parallel_ranges(nt, N * blocks, N * C * S, [&](int64_t u0, int64_t u1) {
      A* ring = bufs + omp_get_thread_num() * size * B;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t n = u / blocks, s0 = (u % blocks) * B, L = std::min(B, S - s0);
        const int64_t base = n * C * S + s0;
        direct_walk(C, size, size / 2, (size - 1) / 2, B, ring,
                    [&](int64_t e, A* r) {
                      for (int64_t j = 0; j < L; j += W) {  // scalar: r = x^2
                        const V v = load_n(x + base + e * S, j, std::min(W, L - j));
                        storeu(r + j, v * v);
                      }
                    },
                    [&](int64_t c, const A* const* rows, int64_t count) {
                      const int64_t off = base + c * S;
                      for (int64_t j = 0; j < L; j += W) {  // scalar: scale = k + alpha/size * sum; y = x * scale^-beta
                        const int64_t m = std::min(W, L - j);
                        const V s = fma(window_sum(rows, count, j), vc, vk);
                        if (sc) store_n(sc + off, j, s, m);
                        store_n(y + off, j, load_n(x + off, j, m) * pow_neg(s, kind, beta), m);
                      }
                    });
      }
    });
  }

  // Backward: ring rows hold t = dy * y / scale (window terms) and g = dy * scale^-beta of each
  // channel, both from r = 1/sqrt(scale); dx = g - x * 2 alpha beta / size * sum(t).
  static void bwd_ncs_direct(const LrnBwdArgs& a) {
    const int64_t N = a.N, C = a.C, S = a.S, size = a.size, B = direct_block(S), blocks = (S + B - 1) / B;
    const int64_t nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    const T* y = static_cast<const T*>(a.y);
    const T* dy = static_cast<const T*>(a.dy);
    const A* sc = static_cast<const A*>(a.scale);
    T* dx = static_cast<T*>(a.dx);
    const V vc = set1(static_cast<A>(2.0 * a.alpha * a.beta / static_cast<double>(size)));
    const PowKind kind = pow_kind(a.beta);
    const A beta = static_cast<A>(a.beta);
    A* bufs = par::scratch<A>(0, nt * 2 * size * B);
    par::parallel_ranges(nt, N * blocks, 3 * N * C * S, [&](int64_t u0, int64_t u1) {
      A* ring = bufs + omp_get_thread_num() * 2 * size * B;
      A* gring = ring + size * B;  // g of channel c at the same row as its t
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t n = u / blocks, s0 = (u % blocks) * B, L = std::min(B, S - s0);
        const int64_t base = n * C * S + s0;
        // dx at c gathers the terms of the channels whose window holds c: [c - after, c + before].
        direct_walk(C, size, (size - 1) / 2, size / 2, B, ring,
                    [&](int64_t e, A* r) {
                      const int64_t off = base + e * S;
                      A* g = gring + (r - ring);
                      for (int64_t j = 0; j < L; j += W) {  // scalar: t = dy * y / scale; g = dy * scale^-beta
                        const int64_t m = std::min(W, L - j);
                        const V s = load_scale(sc + off, j, m);
                        const V rs = rsqrt(s), d = load_n(dy + off, j, m);
                        storeu(r + j, d * load_n(y + off, j, m) * (rs * rs));
                        storeu(g + j, d * pow_from_r(s, rs, kind, beta));
                      }
                    },
                    [&](int64_t c, const A* const* rows, int64_t count) {
                      const int64_t off = base + c * S;
                      const A* g = gring + (c % size) * B;
                      for (int64_t j = 0; j < L; j += W) {  // scalar: dx = g - x * coef * sum(t)
                        const int64_t m = std::min(W, L - j);
                        const V t = window_sum(rows, count, j) * vc;
                        store_n(dx + off, j, loadu(g + j) - load_n(x + off, j, m) * t, m);
                      }
                    });
      }
    });
  }

  static void fwd_ncs(const LrnFwdArgs& a) {
    const int64_t N = a.N, C = a.C, S = a.S, size = a.size, before = size / 2, after = (size - 1) / 2;
    const int64_t R = std::min(size, C) + 1, blocks = (S + kSpanBlock - 1) / kSpanBlock, nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    A* sc = static_cast<A*>(a.scale);
    const double coef = a.alpha / static_cast<double>(size);
    const PowKind kind = pow_kind(a.beta);
    const A beta = static_cast<A>(a.beta);
    const int64_t per = (R + 2) * kSpanBlock;
    double* bufs = par::scratch<double>(0, nt * per);
    par::parallel_ranges(nt, N * blocks, N * C * S, [&](int64_t u0, int64_t u1) {
      double* ring = bufs + omp_get_thread_num() * per;
      double* sum = ring + R * kSpanBlock;
      double* sd = sum + kSpanBlock;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t n = u / blocks, s0 = (u % blocks) * kSpanBlock, L = std::min(kSpanBlock, S - s0);
        const int64_t base = n * C * S + s0;
        ncs_walk(C, before, after, R, ring, sum, L,
                 [&](int64_t c, double* r) {
                   for (int64_t j = 0; j < L; j += W) to_d(load_n(x + base + c * S, j, std::min(W, L - j)), r + j);
                   for (int64_t j = 0; j < L; ++j) r[j] *= r[j];  // scalar: r = x^2 (double)
                 },
                 [&](int64_t c) {
                   for (int64_t j = 0; j < L; ++j) sd[j] = a.k + coef * sum[j];  // scalar: scale
                   const int64_t off = base + c * S;
                   for (int64_t j = 0; j < L; j += W) {  // scalar: y = x * scale^-beta
                     const int64_t m = std::min(W, L - j);
                     const V s = from_d(sd + j);
                     if (sc) store_n(sc + off, j, s, m);
                     store_n(y + off, j, load_n(x + off, j, m) * pow_neg(s, kind, beta), m);
                   }
                 });
      }
    });
  }

  static void bwd_ncs(const LrnBwdArgs& a) {
    const int64_t N = a.N, C = a.C, S = a.S, size = a.size, before = size / 2, after = (size - 1) / 2;
    const int64_t R = std::min(size, C) + 1, blocks = (S + kSpanBlock - 1) / kSpanBlock, nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    const T* y = static_cast<const T*>(a.y);
    const T* dy = static_cast<const T*>(a.dy);
    const A* sc = static_cast<const A*>(a.scale);
    T* dx = static_cast<T*>(a.dx);
    const double coef = 2.0 * a.alpha * a.beta / static_cast<double>(size);
    const PowKind kind = pow_kind(a.beta);
    const A beta = static_cast<A>(a.beta);
    const int64_t per = (R + 2) * kSpanBlock;
    double* bufs = par::scratch<double>(0, nt * per);
    par::parallel_ranges(nt, N * blocks, 3 * N * C * S, [&](int64_t u0, int64_t u1) {
      double* ring = bufs + omp_get_thread_num() * per;
      double* sum = ring + R * kSpanBlock;
      double* sd = sum + kSpanBlock;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t n = u / blocks, s0 = (u % blocks) * kSpanBlock, L = std::min(kSpanBlock, S - s0);
        const int64_t base = n * C * S + s0;
        // dx at c gathers the terms of the channels whose window holds c: [c - after, c + before].
        ncs_walk(C, after, before, R, ring, sum, L,
                 [&](int64_t c, double* r) {
                   const int64_t off = base + c * S;
                   for (int64_t j = 0; j < L; j += W) {  // scalar: r = dy * y / scale (double)
                     const int64_t m = std::min(W, L - j);
                     const V s = load_scale(sc + off, j, m);
                     to_d(load_n(dy + off, j, m) * load_n(y + off, j, m) / s, r + j);
                   }
                 },
                 [&](int64_t c) {
                   for (int64_t j = 0; j < L; ++j) sd[j] = coef * sum[j];
                   const int64_t off = base + c * S;
                   for (int64_t j = 0; j < L; j += W) {  // scalar: dx = dy * scale^-beta - x * coef * sum
                     const int64_t m = std::min(W, L - j);
                     const V s = load_scale(sc + off, j, m);
                     const V g = load_n(dy + off, j, m) * pow_neg(s, kind, beta);
                     store_n(dx + off, j, g - load_n(x + off, j, m) * from_d(sd + j), m);
                   }
                 });
      }
    });
  }

  // ---- nsc, windows of at most kDirectMax channels: terms in a zero-padded row of A, each
  // window summed from `size` shifted vector loads

  // Fills p[pre + c] = term(c, m) for the row's C channels, zeros elsewhere in [0, C + size + W).
  template <class F> static void padded_terms(A* p, int64_t C, int64_t size, int64_t pre, F&& term) {
    std::fill(p, p + pre, A(0));
    for (int64_t c = 0; c < C; c += W) {
      const int64_t m = std::min(W, C - c);
      V v = term(c, m);
      if (m < W) v = keep_first(v, m);
      storeu(p + pre + c, v);
    }
    const int64_t filled = pre + (C + W - 1) / W * W;
    std::fill(p + filled, p + std::max(filled, C + size + W), A(0));
  }
  static V shifted_sum(const A* p, int64_t size, int64_t c) {
    V s = loadu(p + c);
    for (int64_t d = 1; d < size; ++d) s = s + loadu(p + c + d);  // scalar: s = sum of p[c .. c + size)
    return s;
  }

  static void fwd_nsc_direct(const LrnFwdArgs& a) {
    const int64_t C = a.C, rows = a.N * a.S, size = a.size, nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    A* sc = static_cast<A*>(a.scale);
    const V vc = set1(static_cast<A>(a.alpha / static_cast<double>(size))), vk = set1(static_cast<A>(a.k));
    const PowKind kind = pow_kind(a.beta);
    const A beta = static_cast<A>(a.beta);
    const int64_t per = par::padded<A>(C + size + 2 * W);
    A* bufs = par::scratch<A>(0, nt * per);
    par::parallel_ranges(nt, rows, rows * C, [&](int64_t r0, int64_t r1) {
      A* p = bufs + omp_get_thread_num() * per;
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = x + r * C;
        padded_terms(p, C, size, size / 2, [&](int64_t c, int64_t m) {  // scalar: x^2
          const V v = load_n(xr, c, m);
          return v * v;
        });
        for (int64_t c = 0; c < C; c += W) {  // scalar: scale = k + alpha/size * sum; y = x * scale^-beta
          const int64_t m = std::min(W, C - c);
          const V s = fma(shifted_sum(p, size, c), vc, vk);
          if (sc) store_n(sc + r * C, c, s, m);
          store_n(y + r * C, c, load_n(xr, c, m) * pow_neg(s, kind, beta), m);
        }
      }
    });
  }

  static void bwd_nsc_direct(const LrnBwdArgs& a) {
    const int64_t C = a.C, rows = a.N * a.S, size = a.size, nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    const T* y = static_cast<const T*>(a.y);
    const T* dy = static_cast<const T*>(a.dy);
    const A* sc = static_cast<const A*>(a.scale);
    T* dx = static_cast<T*>(a.dx);
    const V vc = set1(static_cast<A>(2.0 * a.alpha * a.beta / static_cast<double>(size)));
    const PowKind kind = pow_kind(a.beta);
    const A beta = static_cast<A>(a.beta);
    const int64_t per = par::padded<A>(C + size + 2 * W) + par::padded<A>(C + W);
    A* bufs = par::scratch<A>(0, nt * per);
    par::parallel_ranges(nt, rows, 3 * rows * C, [&](int64_t r0, int64_t r1) {
      A* p = bufs + omp_get_thread_num() * per;
      A* g = p + par::padded<A>(C + size + 2 * W);
      for (int64_t r = r0; r < r1; ++r) {
        padded_terms(p, C, size, (size - 1) / 2, [&](int64_t c, int64_t m) {  // scalar: t = dy * y / scale; g = dy * scale^-beta
          const V s = load_scale(sc + r * C, c, m);
          const V rs = rsqrt(s), d = load_n(dy + r * C, c, m);
          storeu(g + c, d * pow_from_r(s, rs, kind, beta));
          return d * load_n(y + r * C, c, m) * (rs * rs);
        });
        for (int64_t c = 0; c < C; c += W) {  // scalar: dx = g - x * coef * sum(t)
          const int64_t m = std::min(W, C - c);
          store_n(dx + r * C, c, loadu(g + c) - load_n(x + r * C, c, m) * (shifted_sum(p, size, c) * vc), m);
        }
      }
    });
  }

  // ---- nsc: one row of C channels at a time

  // win[c] = sum of p[c .. c + size) for c in [0, C); p is zero-padded.
  static void window_sums(const double* p, int64_t C, int64_t size, double* win) {
    if (size <= kDirectMax) {
      std::fill(win, win + C, 0.0);
      for (int64_t d = 0; d < size; ++d)
        for (int64_t c = 0; c < C; ++c) win[c] += p[c + d];  // scalar: win[c] += p[c + d]
      return;
    }
    double s = 0;
    for (int64_t d = 0; d < size; ++d) s += p[d];
    win[0] = s;
    for (int64_t c = 1; c < C; ++c) {  // scalar: running sum along the row
      s += p[c + size - 1] - p[c - 1];
      if (!std::isfinite(s)) {  // inf/NaN cannot be subtracted out: direct sum of the window
        s = 0;
        for (int64_t d = 0; d < size; ++d) s += p[c + d];
      }
      win[c] = s;
    }
  }

  // Per-thread row buffers: padded terms (C + size + 2W) and window sums (C + W).
  static int64_t row_buf(int64_t C, int64_t size) { return 2 * C + size + 4 * W; }

  // Fills p[pre + c] = value(c) (doubles) for c in [0, C), zero elsewhere in [0, C + size + W).
  template <class F> static void padded_row(double* p, int64_t C, int64_t size, int64_t pre, F&& value) {
    std::fill(p, p + pre, 0.0);
    for (int64_t c = 0; c < C; c += W) to_d(value(c, std::min(W, C - c)), p + pre + c);
    const int64_t filled = pre + (C + W - 1) / W * W;
    std::fill(p + filled, p + std::max(filled, C + size + W), 0.0);
  }

  static void fwd_nsc(const LrnFwdArgs& a) {
    const int64_t C = a.C, rows = a.N * a.S, size = a.size, before = size / 2, nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    A* sc = static_cast<A*>(a.scale);
    const double coef = a.alpha / static_cast<double>(size);
    const PowKind kind = pow_kind(a.beta);
    const A beta = static_cast<A>(a.beta);
    const int64_t per = row_buf(C, size);
    double* bufs = par::scratch<double>(0, nt * per);
    par::parallel_ranges(nt, rows, rows * C, [&](int64_t r0, int64_t r1) {
      double* p = bufs + omp_get_thread_num() * per;
      double* win = p + C + size + 2 * W;
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = x + r * C;
        padded_row(p, C, size, before, [&](int64_t c, int64_t m) { return load_n(xr, c, m); });
        for (int64_t c = before; c < before + C; ++c) p[c] *= p[c];  // scalar: x^2 (double)
        window_sums(p, C, size, win);
        for (int64_t c = 0; c < C; ++c) win[c] = a.k + coef * win[c];  // scalar: scale
        for (int64_t c = 0; c < C; c += W) {  // scalar: y = x * scale^-beta
          const int64_t m = std::min(W, C - c);
          const V s = from_d(win + c);
          if (sc) store_n(sc + r * C, c, s, m);
          store_n(y + r * C, c, load_n(xr, c, m) * pow_neg(s, kind, beta), m);
        }
      }
    });
  }

  static void bwd_nsc(const LrnBwdArgs& a) {
    const int64_t C = a.C, rows = a.N * a.S, size = a.size, after = (size - 1) / 2, nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    const T* y = static_cast<const T*>(a.y);
    const T* dy = static_cast<const T*>(a.dy);
    const A* sc = static_cast<const A*>(a.scale);
    T* dx = static_cast<T*>(a.dx);
    const double coef = 2.0 * a.alpha * a.beta / static_cast<double>(size);
    const PowKind kind = pow_kind(a.beta);
    const A beta = static_cast<A>(a.beta);
    const int64_t per = row_buf(C, size);
    double* bufs = par::scratch<double>(0, nt * per);
    const auto scale_at = [&](int64_t r, int64_t c, int64_t m) { return load_scale(sc + r * C, c, m); };
    par::parallel_ranges(nt, rows, 3 * rows * C, [&](int64_t r0, int64_t r1) {
      double* p = bufs + omp_get_thread_num() * per;
      double* win = p + C + size + 2 * W;
      for (int64_t r = r0; r < r1; ++r) {
        padded_row(p, C, size, after, [&](int64_t c, int64_t m) {  // scalar: t = dy * y / scale
          return load_n(dy + r * C, c, m) * load_n(y + r * C, c, m) / scale_at(r, c, m);
        });
        window_sums(p, C, size, win);
        for (int64_t c = 0; c < C; ++c) win[c] *= coef;
        for (int64_t c = 0; c < C; c += W) {  // scalar: dx = dy * scale^-beta - x * coef * sum
          const int64_t m = std::min(W, C - c);
          const V g = load_n(dy + r * C, c, m) * pow_neg(scale_at(r, c, m), kind, beta);
          store_n(dx + r * C, c, g - load_n(x + r * C, c, m) * from_d(win + c), m);
        }
      }
    });
  }
};

}  // namespace

void lrn_fwd(const LrnFwdArgs& a) {
  by_dtype<Kern>(a, [&](auto k) {
    using K = decltype(k);
    if (a.layout == Layout::ncs) a.size <= kDirectMax ? K::fwd_ncs_direct(a) : K::fwd_ncs(a);
    else a.size <= kDirectMax ? K::fwd_nsc_direct(a) : K::fwd_nsc(a);
  });
}
void lrn_bwd(const LrnBwdArgs& a) {
  by_dtype<Kern>(a, [&](auto k) {
    using K = decltype(k);
    if (a.layout == Layout::ncs) a.size <= kDirectMax ? K::bwd_ncs_direct(a) : K::bwd_ncs(a);
    else a.size <= kDirectMax ? K::bwd_nsc_direct(a) : K::bwd_nsc(a);
  });
}

}  // namespace nk::cpu::NK_ISA
