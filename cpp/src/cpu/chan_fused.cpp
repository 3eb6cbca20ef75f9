// Fused channel-norm kernels (contracts: normkit/chan_norm.h). Compiled once per ISA.
//
// BatchNorm forward/backward run in one parallel region of three phases: (1) each thread
// reduces its share of the units (chan_kern.h), (2) each thread merges the partials of its
// share of the channels, in unit order, and writes their coefficients, (3) each thread applies
// the elementwise pass to the same part of the tensor it reduced (for the forward's short ncs
// spans, grouped across samples in (1), the same share of the spans in sample order), which is
// still in its cache when the tensor is small enough. Phases are separated by barriers; no
// result depends on which thread ran what. NCHW BatchNorm (the forward in training) whose
// inputs are past the threads' L2s runs the three phases per block of channels instead, each
// thread a share of the channels and no barriers: one channel at a time past the last-level
// cache (use_by_channel), blocks that fill half an L2 inside it when they hold at least 16
// channels, else phased (channel_block).
// GroupNorm/InstanceNorm forward (channels-last) runs the same three phases per batch of samples
// small enough to stay in cache; their backward (NCHW) is fused per (n, g) block instead.
#include "chan_kern.h"

namespace nk::cpu::NK_ISA {
namespace {

template <class T> struct Fused : Kern<T> {
  using K = Kern<T>;
  using typename K::A;
  using typename K::V;
  using typename K::Coef4;

  // Threads for a region over U units of `work` elements (one when forking costs more).
  static int threads_for(int64_t U, int64_t work) {
    return work >= par::kMinParallelWork ? static_cast<int>(std::min<int64_t>(kernel_threads(), std::max<int64_t>(U, 1)))
                                         : 1;
  }

  // Coefficient tables m, a, b (and k3): ncs indexes them by channel, nsc by phase (fill_ext),
  // so both read the same E-long tables.
  static Coef4 tables(A* t, int64_t E, int q) {
    return Coef4{{t, t + E, t + 2 * E, q > 3 ? t + 3 * E : nullptr}, 0, 0};
  }
  // Tables hold coefficient i of channel c at t[i * E + c] and repeat it at every later phase
  // c + C, c + 2C, ... < E; wrap() writes those repeats for channels [c0, c1) (the loops that
  // compute the coefficients write only t[i * E + c], so they vectorize).
  static void wrap(A* t, int64_t E, int64_t C, int q, int64_t c0, int64_t c1) {
    for (int i = 0; i < q; ++i)
      for (int64_t p = C; p < E; p += C)
        for (int64_t c = c0; c < std::min(c1, E - p); ++c) t[i * E + p + c] = t[i * E + c];
  }

  // NCHW BatchNorm whose inputs (`tensors` of them) are past the last-level cache, when one
  // channel's inputs fit in twice the L2: channel by channel, each thread a share of the channels
  // (statistics or sums, coefficients, then the elementwise pass newest first), so most of the
  // second read of a channel hits L2 instead of memory. Each thread needs 4 channels at least.
  // The unit partials are merged in the same order as on the phased path: bitwise the same results.
  static bool use_by_channel(Layout layout, int64_t N, int64_t C, int64_t S, int64_t tensors, int nt) {
    const int64_t bytes = tensors * N * S * static_cast<int64_t>(sizeof(T));
    return layout == Layout::ncs && C >= 4 * nt && bytes <= 2 * l2_cache_bytes() &&
           bytes * C > last_level_cache_bytes();
  }

  // Channels per block of NCHW BatchNorm run block by block (0: phased), counting the inputs
  // read twice (`tensors`: x for the forward, x and dy for the backward). Past the last-level
  // cache: one (use_by_channel). Inside it, when the inputs do not fit in the threads' L2s: as
  // many channels as fill half an L2, so that the elementwise pass reads the block from L2, if
  // that is at least kMinBlock (smaller blocks measured slower than the phased path: 5 channels
  // at 64x256x196, backward 3-7%); else phased. A thread's last block ends at its last channel.
  static constexpr int64_t kMinBlock = 16;
  static int64_t channel_block(Layout layout, int64_t N, int64_t C, int64_t S, int64_t tensors, int nt) {
    if (use_by_channel(layout, N, C, S, tensors, nt)) return 1;
    const int64_t per = tensors * N * S * static_cast<int64_t>(sizeof(T)), l2 = l2_cache_bytes();
    if (layout != Layout::ncs || nt < 2 || per == 0 || per * C <= nt * l2 || per * C > last_level_cache_bytes())
      return 0;
    const int64_t cb = l2 / 2 / per;
    return cb >= kMinBlock ? cb : 0;
  }
  // Thread t's share of the C channels, cb at a time: reduce(n, c0, c1) for n in [0, nr) in order,
  // then coefficients(c0, c1), then apply(n, c0, c1) for n from na - 1 down (newest first: still in
  // L2). The same unit partials as the phased path, merged in the same order.
  template <class R, class Co, class Ap>
  static void channel_blocks(int64_t C, int64_t cb, int t, int T_, int64_t nr, int64_t na, R&& reduce,
                             Co&& coefficients, Ap&& apply) {
    const int64_t c1 = part(C, t + 1, T_);
    for (int64_t c = part(C, t, T_); c < c1; c += cb) {
      const int64_t ce = std::min(c1, c + cb);
      for (int64_t n = 0; n < nr; ++n) reduce(n, c, ce);
      coefficients(c, ce);
      for (int64_t n = na; n-- > 0;) apply(n, c, ce);
    }
  }

  static void bn_fwd(const BatchNormFwdArgs& a) {
    const Units P = make_units(a.layout, a.N, a.C, a.S, false, true), Pa = make_units(a.layout, a.N, a.C, a.S, false);
    const int64_t C = a.C, U = P.count(), w = P.width(), E = K::ext_len(C), elems = a.N * C * a.S;
    const double count = static_cast<double>(a.N * a.S);
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    const A* wt = static_cast<const A*>(a.weight);
    const A* bs = static_cast<const A*>(a.bias);
    const int nt = threads_for(U, elems);
    double* um = par::scratch<double>(0, (a.training ? 2 * U * w : 0) + 3 * C);
    double* uq = um + (a.training ? U * w : 0);
    double* mean = uq + (a.training ? U * w : 0);
    double* m2 = mean + C;
    double* rstd = m2 + C;
    A* tab = par::scratch<A>(2, 3 * E);
    const bool streaming = use_streaming(2, elems, sizeof(T));
    // Statistics of channels [c0, c1) from the unit partials (training), then their tables.
    const auto coefficients = [&](int64_t c0, int64_t c1) {
      if (a.training) {
        merge_stats(P, c0, c1, um, uq, mean, m2);
        for (int64_t c = c0; c < c1; ++c) rstd[c] = 1.0 / std::sqrt(m2[c] / count + a.eps);  // vectorizes
        if (a.batch_mean)
          for (int64_t c = c0; c < c1; ++c) {
            a.batch_mean[c] = mean[c];
            a.batch_var[c] = m2[c] / (count - 1);
          }
      } else {
        const A* rm = static_cast<const A*>(a.run_mean);
        const A* rv = static_cast<const A*>(a.run_var);
        for (int64_t c = c0; c < c1; ++c) {  // vectorizes
          mean[c] = static_cast<double>(rm[c]);
          rstd[c] = 1.0 / std::sqrt(static_cast<double>(rv[c]) + a.eps);
        }
      }
      // tables m, a, b and the saved statistics (one output per loop: they vectorize)
      for (int64_t c = c0; c < c1; ++c) tab[c] = static_cast<A>(mean[c]);
      for (int64_t c = c0; c < c1; ++c) tab[E + c] = static_cast<A>(rstd[c] * (wt ? static_cast<double>(wt[c]) : 1.0));
      for (int64_t c = c0; c < c1; ++c) tab[2 * E + c] = bs ? bs[c] : A(0);
      if (a.save_mean) {
        std::copy(tab + c0, tab + c1, static_cast<A*>(a.save_mean) + c0);
        for (int64_t c = c0; c < c1; ++c) static_cast<A*>(a.save_rstd)[c] = static_cast<A>(rstd[c]);
      }
      wrap(tab, E, C, 3, c0, c1);
    };
    const Coef4 cf = tables(tab, E, 3);
    const int64_t cb = a.training ? channel_block(a.layout, a.N, C, a.S, 1, nt) : 0;
    region(nt, [&](int t, int T_) {
      if (cb > 0) {  // statistics by sample block (short spans are grouped), elementwise by sample
        channel_blocks(
            C, cb, t, T_, P.blocks(), a.N,
            [&](int64_t b, int64_t c0, int64_t c1) {
              for (int64_t u = (b * C + c0) * P.K; u < (b * C + c1) * P.K; ++u) K::stats_unit(P, x, u, um, uq);
            },
            coefficients,
            [&](int64_t n, int64_t c0, int64_t c1) {
              for (int64_t u = (n * C + c1) * Pa.K; u-- > (n * C + c0) * Pa.K;)
                K::apply_unit(Pa, u, x, nullptr, y, cf, streaming, typename K::AffineOp{});
            });
      } else {
        const int64_t u0 = part(U, t, T_), u1 = part(U, t + 1, T_);
        if (a.training) {
          for (int64_t u = u0; u < u1; ++u) K::stats_unit(P, x, u, um, uq);
          sync(T_);
        }
        coefficients(part(C, t, T_), part(C, t + 1, T_));
        sync(T_);
        const int64_t v0 = part(Pa.count(), t, T_), v1 = part(Pa.count(), t + 1, T_);
        for (int64_t u = v1; u-- > v0;) K::apply_unit(Pa, u, x, nullptr, y, cf, streaming, typename K::AffineOp{});
      }
      if (streaming) stream_fence();
    });
  }

  static void bn_bwd(const BatchNormBwdArgs& a) {
    const Units P = make_units(a.layout, a.N, a.C, a.S, false);
    const int64_t C = a.C, S = a.S, U = P.count(), w = P.width(), E = K::ext_len(C), elems = a.N * C * S;
    const double count = static_cast<double>(a.N * S);
    const T* x = static_cast<const T*>(a.x);
    const T* dy = static_cast<const T*>(a.dy);
    T* dx = static_cast<T*>(a.dx);
    const A* mean = static_cast<const A*>(a.mean);
    const A* rstd = static_cast<const A*>(a.rstd);
    const A* wt = static_cast<const A*>(a.weight);
    const int nt = threads_for(U, 2 * elems);
    double* u1s = par::scratch<double>(0, 2 * U * w);
    double* u2s = u1s + U * w;
    A* bufs = par::scratch<A>(1, nt * 2 * par::padded<A>(C));
    A* tab = par::scratch<A>(2, 4 * E);
    const bool streaming = use_streaming(3, elems, sizeof(T));
    // Sums of channels [c0, c1) from the unit partials, then their coefficient tables.
    const auto coefficients = [&](int64_t c0, int64_t c1) {
      merge_sums(P, c0, c1, u1s, u2s, a.dbias, a.dweight);
      const bool batch = a.training && count > 0;  // dx = w r (dy - mean(dy) - xhat mean(dy xhat))
      // tables m, k1 = w r, k2, k3 (one table per loop: they vectorize)
      const auto wr = [&](int64_t c) { return (wt ? static_cast<double>(wt[c]) : 1.0) * static_cast<double>(rstd[c]); };
      std::copy(mean + c0, mean + c1, tab + c0);
      for (int64_t c = c0; c < c1; ++c) tab[E + c] = static_cast<A>(wr(c));
      if (batch) {
        for (int64_t c = c0; c < c1; ++c)
          tab[2 * E + c] = static_cast<A>(-wr(c) * static_cast<double>(rstd[c]) * a.dweight[c] / count);
        for (int64_t c = c0; c < c1; ++c) tab[3 * E + c] = static_cast<A>(-wr(c) * a.dbias[c] / count);
      } else {
        std::fill(tab + 2 * E + c0, tab + 2 * E + c1, A(0));
        std::fill(tab + 3 * E + c0, tab + 3 * E + c1, A(0));
      }
      wrap(tab, E, C, 4, c0, c1);
    };
    const Coef4 cf = tables(tab, E, 4);
    const int64_t cb = channel_block(a.layout, a.N, C, a.S, 2, nt);
    region(nt, [&](int t, int T_) {
      A* buf = bufs + t * 2 * par::padded<A>(C);
      if (cb > 0) {  // with one unit per (n, ch) span (unit n * C + ch), its kernels are called directly
        channel_blocks(
            C, cb, t, T_, a.N, a.N,
            [&](int64_t n, int64_t c0, int64_t c1) {
              if (P.K == 1)
                for (int64_t ch = c0, u = n * C + c0; ch < c1; ++ch, ++u)
                  K::span_sums(x + u * S, dy + u * S, S, mean[ch], rstd[ch], u1s + u, u2s + u);
              else
                for (int64_t u = (n * C + c0) * P.K; u < (n * C + c1) * P.K; ++u)
                  K::grad_sums_unit(P, x, dy, mean, rstd, 0, u, buf, u1s, u2s);
            },
            coefficients,
            [&](int64_t n, int64_t c0, int64_t c1) {
              if (P.K == 1)
                for (int64_t ch = c1; ch-- > c0;)
                  K::apply_span(x, dy, dx, (n * C + ch) * S, S, ch, cf, streaming, typename K::GradOp{});
              else
                for (int64_t u = (n * C + c1) * P.K; u-- > (n * C + c0) * P.K;)
                  K::apply_unit(P, u, x, dy, dx, cf, streaming, typename K::GradOp{});
            });
      } else {
        const int64_t u0 = part(U, t, T_), u1 = part(U, t + 1, T_);
        for (int64_t u = u0; u < u1; ++u) K::grad_sums_unit(P, x, dy, mean, rstd, 0, u, buf, u1s, u2s);
        sync(T_);
        coefficients(part(C, t, T_), part(C, t + 1, T_));
        sync(T_);
        for (int64_t u = u1; u-- > u0;) K::apply_unit(P, u, x, dy, dx, cf, streaming, typename K::GradOp{});
      }
      if (streaming) stream_fence();
    });
  }

  static void group_fwd_nsc(const GroupFwdArgs& a) {
    constexpr int64_t kBatchBytes = int64_t{8} << 20;  // samples per batch: x stays in cache between phases
    const int64_t N = a.N, C = a.C, S = a.S, G = a.G, Cg = C / G, E = K::ext_len(C);
    const int64_t per = std::max<int64_t>(1, kBatchBytes / std::max<int64_t>(C * S * int64_t{sizeof(T)}, 1));
    const int64_t nb = std::min(per, N), upn = make_units(Layout::nsc, 1, C, S, true).count();  // units per sample
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    const A* wt = static_cast<const A*>(a.weight);
    const A* bs = static_cast<const A*>(a.bias);
    const int nt = threads_for(nb * upn, N * C * S);
    double* um = par::scratch<double>(0, 2 * nb * upn * C + 2 * nb * C);
    double* uq = um + nb * upn * C;
    double* im = uq + nb * upn * C;  // per-(n, c) mean and M2 of the batch
    double* iq = im + nb * C;
    A* tab = par::scratch<A>(2, nb * 3 * E);  // per sample: tables m, a, b
    const bool streaming = use_streaming(2, N * C * S, sizeof(T));
    region(nt, [&](int t, int T_) {
      for (int64_t n0 = 0; n0 < N; n0 += per) {
        const int64_t n1 = std::min(N, n0 + per), U = (n1 - n0) * upn, off = n0 * S * C;
        const Units P = make_units(Layout::nsc, n1 - n0, C, S, true);
        for (int64_t u = part(U, t, T_); u < part(U, t + 1, T_); ++u) K::stats_unit(P, x + off, u, um, uq);
        sync(T_);
        const int64_t ng = (n1 - n0) * G, k1 = part(ng, t + 1, T_);
        for (int64_t k = part(ng, t, T_); k < k1;) {  // groups [ga, gb) of sample n at a time
          const int64_t n = k / G, ga = k % G, gb = std::min(G, ga + (k1 - k)), ca = ga * Cg, cb = gb * Cg;
          merge_stats(P, n * C + ca, n * C + cb, um, uq, im, iq);
          double* gmean = a.mean + (n0 + n) * G;
          double* gm2 = a.m2 + (n0 + n) * G;
          double* grstd = a.rstd + (n0 + n) * G;
          for (int64_t g = ga; g < gb; ++g) {
            double cnt = 0, m = 0, q = 0;
            for (int64_t o = n * C + g * Cg; o < n * C + (g + 1) * Cg; ++o) {  // Chan merges, channels in order
              const double nbv = static_cast<double>(S), d = im[o] - m, tot = cnt + nbv;
              m += d * (nbv / tot);
              q += iq[o] + d * d * (cnt * nbv / tot);
              cnt = tot;
            }
            gmean[g] = m;
            gm2[g] = q;
          }
          const double count = static_cast<double>(Cg * S);
          for (int64_t g = ga; g < gb; ++g) grstd[g] = 1.0 / std::sqrt(gm2[g] / count + a.eps);  // vectorizes
          A* tn = tab + n * 3 * E;  // this sample's tables m, a, b
          if (Cg == 1) {  // one output per loop: they vectorize
            for (int64_t c = ca; c < cb; ++c) tn[c] = static_cast<A>(gmean[c]);
            for (int64_t c = ca; c < cb; ++c)
              tn[E + c] = static_cast<A>(grstd[c] * (wt ? static_cast<double>(wt[c]) : 1.0));
          } else {
            for (int64_t c = ca; c < cb; ++c) {
              tn[c] = static_cast<A>(gmean[c / Cg]);
              tn[E + c] = static_cast<A>(grstd[c / Cg] * (wt ? static_cast<double>(wt[c]) : 1.0));
            }
          }
          if (bs) std::copy(bs + ca, bs + cb, tn + 2 * E + ca);
          else std::fill(tn + 2 * E + ca, tn + 2 * E + cb, A(0));
          wrap(tn, E, C, 3, ca, cb);
          k += gb - ga;
        }
        sync(T_);
        const Coef4 cf{{tab, tab + E, tab + 2 * E, nullptr}, 0, 3 * E};
        for (int64_t u = part(U, t + 1, T_); u-- > part(U, t, T_);)
          K::apply_unit(P, u, x + off, nullptr, y + off, cf, streaming, typename K::AffineOp{});
      }
      if (streaming) stream_fence();
    });
  }

  // Channels-last GroupNorm/InstanceNorm backward: per cache-sized batch of samples, (1) unit
  // sums of dy and dy * xhat, (2) per (n, g) their in-order merge and the dx coefficients,
  // (3) the elementwise pass, newest units first (still in cache).
  static void group_bwd_nsc(const GroupBwdArgs& a) {
    constexpr int64_t kBatchBytes = int64_t{8} << 20;
    const int64_t N = a.N, C = a.C, S = a.S, G = a.G, Cg = C / G, E = K::ext_len(C);
    const int64_t per = std::max<int64_t>(1, kBatchBytes / std::max<int64_t>(2 * C * S * int64_t{sizeof(T)}, 1));
    const int64_t nb = std::min(per, N), upn = make_units(Layout::nsc, 1, C, S, true).count();
    const T* x = static_cast<const T*>(a.x);
    const T* dy = static_cast<const T*>(a.dy);
    T* dx = static_cast<T*>(a.dx);
    const A* gm = static_cast<const A*>(a.mean);
    const A* gr = static_cast<const A*>(a.rstd);
    const A* wt = static_cast<const A*>(a.weight);
    const int nt = threads_for(nb * upn, 2 * N * C * S);
    double* u1s = par::scratch<double>(0, 2 * nb * upn * C);
    double* u2s = u1s + nb * upn * C;
    A* bufs = par::scratch<A>(1, nt * 2 * par::padded<A>(C));
    A* tab = par::scratch<A>(2, nb * 4 * E);  // per sample: tables m, k1, k2, k3
    A* mr = par::scratch<A>(3, 2 * N * C + 2 * K::W);  // per (n, c): the group's mean and rstd
    for (int64_t k = 0; k < N * G; ++k)
      for (int64_t i = k * Cg; i < (k + 1) * Cg; ++i) {
        mr[i] = gm[k];
        mr[N * C + K::W + i] = gr[k];
      }
    const double Kd = static_cast<double>(Cg * S);
    const bool streaming = use_streaming(3, N * C * S, sizeof(T));
    region(nt, [&](int t, int T_) {
      A* buf = bufs + t * 2 * par::padded<A>(C);
      for (int64_t n0 = 0; n0 < N; n0 += per) {
        const int64_t n1 = std::min(N, n0 + per), U = (n1 - n0) * upn, off = n0 * S * C;
        const Units P = make_units(Layout::nsc, n1 - n0, C, S, true);
        for (int64_t u = part(U, t, T_); u < part(U, t + 1, T_); ++u)
          K::grad_sums_unit(P, x + off, dy + off, mr + n0 * C, mr + N * C + K::W + n0 * C, C, u, buf, u1s, u2s);
        sync(T_);
        const int64_t ng = (n1 - n0) * G, k1 = part(ng, t + 1, T_);
        const bool stats = !a.affine_only && Kd > 0;
        for (int64_t k = part(ng, t, T_); k < k1;) {  // groups [ga, gb) of sample n at a time
          const int64_t n = k / G, ga = k % G, gb = std::min(G, ga + (k1 - k)), ca = ga * Cg, cb = gb * Cg;
          merge_sums(P, n * C + ca, n * C + cb, u1s, u2s, a.sdy + n0 * C, a.sdyx + n0 * C);
          A* tn = tab + n * 4 * E;  // this sample's tables m, k1, k2, k3
          for (int64_t g = ga; g < gb; ++g) {
            const int64_t c0 = g * Cg, o = (n0 + n) * C + c0;
            double sg = 0, sgx = 0;
            for (int64_t c = 0; c < Cg; ++c) {
              const double wc = wt ? static_cast<double>(wt[c0 + c]) : 1.0;
              sg += wc * a.sdy[o + c];
              sgx += wc * a.sdyx[o + c];
            }
            const double r = static_cast<double>(gr[(n0 + n) * G + g]);
            const A k2 = static_cast<A>(stats ? -r * r * sgx / Kd : 0.0);
            const A k3 = static_cast<A>(stats ? -r * sg / Kd : 0.0);
            for (int64_t c = c0; c < c0 + Cg; ++c) {  // dx = r (w dy - mean(g) - xhat mean(g xhat))
              tn[c] = gm[(n0 + n) * G + g];
              tn[E + c] = static_cast<A>(r * (wt ? static_cast<double>(wt[c]) : 1.0));
              tn[2 * E + c] = k2;
              tn[3 * E + c] = k3;
            }
          }
          wrap(tn, E, C, 4, ca, cb);
          k += gb - ga;
        }
        sync(T_);
        const Coef4 cf{{tab, tab + E, tab + 2 * E, tab + 3 * E}, 0, 4 * E};
        for (int64_t u = part(U, t + 1, T_); u-- > part(U, t, T_);)
          K::apply_unit(P, u, x + off, dy + off, dx + off, cf, streaming, typename K::GradOp{});
      }
      if (streaming) stream_fence();
    });
    sum_over_samples(a);
  }

  // dweight/dbias: the per-(n, c) sums added over samples in order.
  static void sum_over_samples(const GroupBwdArgs& a) {
    for (int64_t c = 0; c < a.C; ++c) {
      double tw = 0, tb = 0;
      for (int64_t n = 0; n < a.N; ++n) {
        tw += a.sdyx[n * a.C + c];
        tb += a.sdy[n * a.C + c];
      }
      a.dweight[c] = tw;
      a.dbias[c] = tb;
    }
  }

  static void group_bwd(const GroupBwdArgs& a) {
    const int64_t N = a.N, C = a.C, S = a.S, G = a.G, Cg = C / G, L = Cg * S;
    const T* x = static_cast<const T*>(a.x);
    const T* dy = static_cast<const T*>(a.dy);
    T* dx = static_cast<T*>(a.dx);
    const A* wt = static_cast<const A*>(a.weight);
    const bool streaming = use_streaming(3, N * C * S, sizeof(T));
    const double Kd = static_cast<double>(L);
    par::parallel_ranges(kernel_threads(), N * G, 2 * N * C * S, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t off = k * L, c00 = (k % G) * Cg;
        const A m = static_cast<const A*>(a.mean)[k], r = static_cast<const A*>(a.rstd)[k];
        double sg = 0, sgx = 0;
        for (int64_t cg = 0; cg < Cg; ++cg) {  // per channel: unit sums in unit order
          double t1 = 0, t2 = 0;
          for (int64_t j = 0; j < S; j += kSpan) {  // chan_grad_sums' units of the span, in order
            double s1, s2;
            K::span_sums(x + off + cg * S + j, dy + off + cg * S + j, std::min(kSpan, S - j), m, r, &s1, &s2);
            t1 += s1;
            t2 += s2;
          }
          const int64_t nc = (k / G) * C + c00 + cg;
          a.sdy[nc] = t1;
          a.sdyx[nc] = t2;
          const double wc = wt ? static_cast<double>(wt[c00 + cg]) : 1.0;
          sg += wc * t1;
          sgx += wc * t2;
        }
        const double rd = static_cast<double>(r);
        for (int64_t cg = 0; cg < Cg; ++cg) {  // dx = r (w dy - mean(g) - xhat mean(g xhat))
          const double wc = wt ? static_cast<double>(wt[c00 + cg]) : 1.0;
          const V k1 = set1(static_cast<A>(rd * wc));
          const V k2 = set1(static_cast<A>(a.affine_only || Kd == 0 ? 0.0 : -rd * rd * sgx / Kd));
          const V k3 = set1(static_cast<A>(a.affine_only || Kd == 0 ? 0.0 : -rd * sg / Kd));
          const V vm = set1(m);
          const T* xs = x + off + cg * S;
          const T* ds = dy + off + cg * S;
          write_row(dx + off + cg * S, S, streaming, [&](int64_t j, int64_t n) {  // scalar: dx = k1 dy + k2 (x - m) + k3
            return fma(load_n(ds, j, n), k1, fma(load_n(xs, j, n) - vm, k2, k3));
          });
        }
      }
      if (streaming) stream_fence();
    });
    sum_over_samples(a);
  }
};

}  // namespace

void batch_norm_fwd(const BatchNormFwdArgs& a) {
  by_dtype<Fused>(a, [&](auto k) { decltype(k)::bn_fwd(a); });
}
void batch_norm_bwd(const BatchNormBwdArgs& a) {
  by_dtype<Fused>(a, [&](auto k) { decltype(k)::bn_bwd(a); });
}
void group_norm_fwd_nsc(const GroupFwdArgs& a) {
  by_dtype<Fused>(a, [&](auto k) { decltype(k)::group_fwd_nsc(a); });
}
void group_norm_bwd_ncs(const GroupBwdArgs& a) {
  by_dtype<Fused>(a, [&](auto k) { decltype(k)::group_bwd(a); });
}
void group_norm_bwd_nsc(const GroupBwdArgs& a) {
  by_dtype<Fused>(a, [&](auto k) { decltype(k)::group_bwd_nsc(a); });
}

}  // namespace nk::cpu::NK_ISA
