// Channel-norm kernels (contract: normkit/chan_norm.h). Compiled once per ISA; the units,
// statistics and elementwise building blocks are in chan_kern.h.
#include "chan_kern.h"

namespace nk::cpu::NK_ISA {
namespace {

template <class T> struct Chan : Kern<T> {
  using K = Kern<T>;
  using typename K::A;
  using typename K::V;
  using typename K::Coef4;

  static void stats(const ChanStatsArgs& a) {
    const Units P = make_units(a.layout, a.N, a.C, a.S, a.per_sample, true);
    const int64_t U = P.count(), w = P.width(), nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    double* um = par::scratch<double>(0, 2 * U * w);
    double* uq = um + U * w;
    par::parallel_ranges(nt, U, a.N * a.C * a.S, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) K::stats_unit(P, x, u, um, uq);
    });
    par::parallel_ranges(nt, P.outputs(), U * w / kMergeCost, [&](int64_t o0, int64_t o1) {
      merge_stats(P, o0, o1, um, uq, a.mean, a.m2);
    });
  }

  // out = op(x, dy, coefficients) with coefficients per (n, c) (ns = C) or per c (ns = 0).
  template <class Op>
  static void elementwise(const void* x_, const void* dy_, void* out_, Layout layout, int64_t N, int64_t C, int64_t S,
                          const A* const (&coef)[4], int64_t ns, int64_t tensors, Op op) {
    const T* x = static_cast<const T*>(x_);
    const T* dy = static_cast<const T*>(dy_);
    T* out = static_cast<T*>(out_);
    const int64_t nt = kernel_threads();
    const bool streaming = use_streaming(tensors, N * C * S, sizeof(T));
    const Units P = make_units(layout, N, C, S, ns != 0);
    Coef4 cf{{coef[0], coef[1], coef[2], coef[3]}, ns, 0};
    if (layout == Layout::nsc) {  // tables [sample][q][E]
      const int64_t sets = ns ? N : 1, E = K::ext_len(C);
      A* ext = par::scratch<A>(2, 4 * sets * E);
      for (int64_t s = 0; s < sets; ++s)
        for (int q = 0; q < 4; ++q) fill_ext(ext + (s * 4 + q) * E, E, C, coef[q] ? coef[q] + s * ns : nullptr, 0, C);
      cf = Coef4{{ext, ext + E, ext + 2 * E, ext + 3 * E}, 0, ns ? 4 * E : 0};
    }
    par::parallel_ranges(nt, P.count(), N * C * S, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) K::apply_unit(P, u, x, dy, out, cf, streaming, op);
      if (streaming) stream_fence();
    });
  }

  static void affine(const ChanAffineArgs& a) {
    const A* const c[4] = {static_cast<const A*>(a.m), static_cast<const A*>(a.a), static_cast<const A*>(a.b), nullptr};
    elementwise(a.x, nullptr, a.y, a.layout, a.N, a.C, a.S, c, a.coef_nstride, 2, typename K::AffineOp{});
  }

  static void grad_apply(const ChanGradApplyArgs& a) {
    const A* const c[4] = {static_cast<const A*>(a.m), static_cast<const A*>(a.k1), static_cast<const A*>(a.k2),
                           static_cast<const A*>(a.k3)};
    elementwise(a.x, a.dy, a.dx, a.layout, a.N, a.C, a.S, c, a.coef_nstride, 3, typename K::GradOp{});
  }

  static void grad_sums(const ChanGradSumsArgs& a) {
    const Units P = make_units(a.layout, a.N, a.C, a.S, a.per_sample);
    const int64_t U = P.count(), w = P.width(), nt = kernel_threads();
    const T* x = static_cast<const T*>(a.x);
    const T* dy = static_cast<const T*>(a.dy);
    double* u1s = par::scratch<double>(0, 2 * U * w);
    double* u2s = u1s + U * w;
    A* bufs = par::scratch<A>(1, nt * 2 * par::padded<A>(a.C));
    par::parallel_ranges(nt, U, 2 * a.N * a.C * a.S, [&](int64_t u0, int64_t u1) {
      A* buf = bufs + omp_get_thread_num() * 2 * par::padded<A>(a.C);
      for (int64_t u = u0; u < u1; ++u)
        K::grad_sums_unit(P, x, dy, static_cast<const A*>(a.m), static_cast<const A*>(a.r), a.coef_nstride, u, buf,
                          u1s, u2s);
    });
    par::parallel_ranges(nt, P.outputs(), U * w / kMergeCost, [&](int64_t o0, int64_t o1) {
      merge_sums(P, o0, o1, u1s, u2s, a.sdy, a.sdyx);
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
      K::run_stats(p + k * kSpan, len, &mb, &qb);
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
    // Short groups go in batches of up to 16 that stay in L1: their statistics first (independent
    // reductions that overlap, where one group's latency chain would stall), then their outputs.
    const int64_t batch = std::clamp<int64_t>(8192 / std::max<int64_t>(L, 1), 1, 16);
    par::parallel_ranges(nt, a.N * G, a.N * a.C * S, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        if ((k - k0) % batch == 0) {
          const int64_t ke = std::min(k1, k + batch);
          for (int64_t i = k; i < ke; ++i) block_stats(x + i * L, L, a.mean + i, a.m2 + i);
          for (int64_t i = k; i < ke; ++i) a.rstd[i] = 1.0 / std::sqrt(a.m2[i] / static_cast<double>(L) + a.eps);
        }
        const T* xb = x + k * L;
        const double rstd = a.rstd[k];
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

};

}  // namespace

void chan_stats(const ChanStatsArgs& a) {
  by_dtype<Chan>(a, [&](auto k) { decltype(k)::stats(a); });
}
void group_norm_fwd_ncs(const GroupFwdArgs& a) {
  by_dtype<Chan>(a, [&](auto k) { decltype(k)::group_fwd(a); });
}
void chan_affine(const ChanAffineArgs& a) {
  by_dtype<Chan>(a, [&](auto k) { decltype(k)::affine(a); });
}
void chan_grad_sums(const ChanGradSumsArgs& a) {
  by_dtype<Chan>(a, [&](auto k) { decltype(k)::grad_sums(a); });
}
void chan_grad_apply(const ChanGradApplyArgs& a) {
  by_dtype<Chan>(a, [&](auto k) { decltype(k)::grad_apply(a); });
}

}  // namespace nk::cpu::NK_ISA
