// normkit — native benches of the channel-wise norm kernels (BatchNorm, GroupNorm, InstanceNorm).
//
// The Python ops call: BatchNorm training / eval forward = batch_norm_fwd (fused; bn_train /
// bn_eval here), backward = batch_norm_bwd; GroupNorm/InstanceNorm forward = group_norm_fwd_ncs
// or group_norm_fwd_nsc, backward = group_norm_bwd_ncs or group_norm_bwd_nsc; chan_stats,
// chan_affine, chan_grad_sums and chan_grad_apply are the unfused building blocks.
// Shapes are (N, C, S) in the layout named (ncs = NCHW, nsc = channels-last); 256x1024x1 is
// BatchNorm1d on (256, 1024).
//
// Minimum traffic counted: stats reads x; forward passes read x and write y; grad_sums reads x
// and dy; backward passes read x and dy and write dx. Compare bytes_per_second with the copy
// bench of the same shape and threads.
//
//   bench_chan --benchmark_filter='chan_affine/f32/nsc/256x1024x1' --benchmark_min_time=0.1
//
// x, dy and y are 64-byte aligned. NORMKIT_BENCH_MISALIGN=16 starts all three 16 bytes past a
// 64-byte boundary (where NumPy's large arrays start), NORMKIT_BENCH_MISALIGN=16,32,48 each at its
// own offset (as NumPy's arrays of a few hundred KiB may be).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_util.h"
#include "normkit/chan_norm.h"

namespace nk::bench {
namespace {

struct ChanShape {
  int64_t N, C, S;
  Layout layout;
  std::string name() const {
    return std::string(layout == Layout::ncs ? "ncs/" : "nsc/") + std::to_string(N) + "x" + std::to_string(C) + "x" +
           std::to_string(S);
  }
  int64_t elems() const { return N * C * S; }
};

constexpr int64_t kGroups = 32;

// Offset in bytes past a 64-byte boundary of buffer k (0: x, 1: dy, 2: y): NORMKIT_BENCH_MISALIGN
// is one offset for all three or a comma-separated list of three.
inline int64_t misalign(int k) {
  static const std::vector<int64_t> offsets = [] {
    std::vector<int64_t> v;
    const char* e = std::getenv("NORMKIT_BENCH_MISALIGN");
    for (const char* p = e; p && *p;) {
      char* end = nullptr;
      v.push_back(std::clamp<int64_t>(std::strtoll(p, &end, 10), 0, 63));
      if (end == p) break;
      p = *end == ',' ? end + 1 : end;
    }
    while (!v.empty() && v.size() < 3) v.push_back(v.back());
    return v.empty() ? std::vector<int64_t>(3, 0) : v;
  }();
  return offsets[static_cast<size_t>(k)];
}

template <class T>
struct ChanData {
  ChanShape s;
  Buffer<T> x, dy, y;
  Buffer<float> m, a, b, k3, k1, w;  // per (n, c) coefficients (N*C), weight/bias per channel
  std::vector<double> mean, m2, sdy, sdyx, gm, gq, gr;

  explicit ChanData(ChanShape shape)
      : s(shape), x(s.elems(), misalign(0)), dy(s.elems(), misalign(1)), y(s.elems(), misalign(2)), m(s.N * s.C), a(s.N * s.C), b(s.N * s.C),
        k3(s.N * s.C), k1(s.N * s.C), w(s.C), mean(s.N * s.C), m2(s.N * s.C), sdy(s.N * s.C), sdyx(s.N * s.C),
        gm(s.N * s.C), gq(s.N * s.C), gr(s.N * s.C) {  // per (n, g): G <= C
    fill_uniform(x, -2.0f, 2.0f, 1);
    fill_uniform(dy, -1.0f, 1.0f, 2);
    fill_uniform(m, -0.1f, 0.1f, 3);
    fill_uniform(a, 0.5f, 1.5f, 4);
    fill_uniform(b, -0.5f, 0.5f, 5);
    fill_uniform(k3, -0.5f, 0.5f, 6);
    fill_uniform(w, 0.5f, 1.5f, 7);
    touch(y);
  }
};

enum class Kernel { stats, affine, grad_sums, grad_apply, group_fwd, bn_train, bn_eval, bn_bwd, group_bwd };
struct Op {
  const char* name;
  Kernel kernel;
  int tensors;            // tensors of N*C*S elements read or written
  bool instance = false;  // group kernels with one group per channel (InstanceNorm)
};
constexpr Op kOps[] = {
    {"chan_stats", Kernel::stats, 1},         {"chan_affine", Kernel::affine, 2},
    {"chan_grad_sums", Kernel::grad_sums, 2}, {"chan_grad_apply", Kernel::grad_apply, 3},
    {"group_norm_fwd", Kernel::group_fwd, 2},     {"batch_norm_fwd_train", Kernel::bn_train, 2},
    {"batch_norm_fwd_eval", Kernel::bn_eval, 2},  {"batch_norm_bwd", Kernel::bn_bwd, 3},
    {"group_norm_bwd", Kernel::group_bwd, 3},     {"instance_norm_fwd", Kernel::group_fwd, 2, true},
    {"instance_norm_bwd", Kernel::group_bwd, 3, true},
};
const ChanShape kShapes[] = {
    {32, 64, 56 * 56, Layout::ncs}, {32, 64, 56 * 56, Layout::nsc}, {8, 256, 14 * 14, Layout::ncs},
    {8, 256, 14 * 14, Layout::nsc}, {256, 1024, 1, Layout::nsc},  {64, 256, 14 * 14, Layout::ncs}, {64, 64, 3136, Layout::ncs}, {128, 256, 196, Layout::ncs},
};

template <class T>
void run_op(benchmark::State& state, Op op, ChanShape s, const std::string& isa, int threads) {
  if (!configure(state, isa, threads)) return;
  ChanData<T>& d = cached<ChanData<T>>(std::string("chan/") + TypeInfo<T>::name + "/" + s.name(), s);
  const DType dt = TypeInfo<T>::dtype;
  const int64_t G = op.instance ? s.C : kGroups;
  switch (op.kernel) {
    case Kernel::stats: {  // BatchNorm: per channel over (n, s)
      const ChanStatsArgs a{dt, s.layout, s.N, s.C, s.S, d.x.data(), false, d.mean.data(), d.m2.data()};
      for (auto _ : state) chan_stats(a);
      break;
    }
    case Kernel::affine: {  // BatchNorm: per-channel coefficients
      const ChanAffineArgs a{dt, s.layout, s.N, s.C, s.S, d.x.data(), d.y.data(), d.m.data(), d.a.data(), d.b.data(), 0};
      for (auto _ : state) {
        chan_affine(a);
        benchmark::ClobberMemory();
      }
      break;
    }
    case Kernel::grad_sums: {
      const ChanGradSumsArgs a{dt,         s.layout,   s.N, s.C,   s.S,          d.x.data(),   d.dy.data(),
                               d.m.data(), d.a.data(), 0,   false, d.sdy.data(), d.sdyx.data()};
      for (auto _ : state) chan_grad_sums(a);
      break;
    }
    case Kernel::grad_apply: {
      const ChanGradApplyArgs a{dt,         s.layout,   s.N,        s.C,        s.S,         d.x.data(), d.dy.data(),
                                d.y.data(), d.m.data(), d.a.data(), d.b.data(), d.k3.data(), 0};
      for (auto _ : state) {
        chan_grad_apply(a);
        benchmark::ClobberMemory();
      }
      break;
    }
    case Kernel::group_fwd: {
      const GroupFwdArgs a{dt,         s.N,          s.C,         s.S,         G,       d.x.data(), d.y.data(),
                           d.w.data(), d.b.data(),   1e-5,        d.gm.data(), d.gq.data(), d.gr.data()};
      for (auto _ : state) {
        if (s.layout == Layout::ncs) group_norm_fwd_ncs(a);
        else group_norm_fwd_nsc(a);
        benchmark::ClobberMemory();
      }
      break;
    }
    case Kernel::bn_train:
    case Kernel::bn_eval: {
      const bool train = op.kernel == Kernel::bn_train;
      // eval: m and a serve as the running mean and variance; k3 and k1 receive save_mean / save_rstd
      const BatchNormFwdArgs a{dt,         s.layout,   s.N,        s.C,        s.S,   d.x.data(),  d.y.data(),
                               d.w.data(), d.b.data(), d.m.data(), d.a.data(), train, 1e-5,        d.k3.data(),
                               d.k1.data(), nullptr,   nullptr};
      for (auto _ : state) {
        batch_norm_fwd(a);
        benchmark::ClobberMemory();
      }
      break;
    }
    case Kernel::bn_bwd: {
      const BatchNormBwdArgs a{dt,         s.layout,   s.N,        s.C,  s.S,          d.x.data(),   d.dy.data(),
                               d.y.data(), d.m.data(), d.a.data(), d.w.data(), true, d.sdy.data(), d.sdyx.data()};
      for (auto _ : state) {
        batch_norm_bwd(a);
        benchmark::ClobberMemory();
      }
      break;
    }
    case Kernel::group_bwd: {
      const GroupBwdArgs a{dt,          s.N,        s.C,        s.S,        G,            d.x.data(),    d.dy.data(),
                           d.y.data(),  d.m.data(), d.a.data(), d.w.data(), false,        d.sdy.data(),  d.sdyx.data(),
                           d.mean.data(), d.m2.data()};
      for (auto _ : state) {
        if (s.layout == Layout::ncs) group_norm_bwd_ncs(a);
        else group_norm_bwd_nsc(a);
        benchmark::ClobberMemory();
      }
      break;
    }
  }
  set_traffic(state, op.tensors * s.elems() * static_cast<int64_t>(sizeof(T)));
}

template <class T>
void register_dtype() {
  for (const ChanShape& s : kShapes) {
    const std::string tag = std::string(TypeInfo<T>::name) + "/" + s.name();
    register_copy(tag, s.elems() * static_cast<int64_t>(sizeof(T)));
    for (const Op& op : kOps) {
      const bool grouped = op.kernel == Kernel::group_fwd || op.kernel == Kernel::group_bwd;
      if (grouped && (s.C % kGroups != 0 || s.S == 1)) continue;
      for (const std::string& isa : isa_axis())
        for (int threads : thread_axis())
          add(std::string(op.name) + "/" + tag + axes_suffix(isa, threads),
              [=](benchmark::State& state) { run_op<T>(state, op, s, isa, threads); });
    }
  }
}

}  // namespace
}  // namespace nk::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  nk::bench::add_context();
  nk::bench::register_dtype<float>();
  nk::bench::register_dtype<nk::bf16>();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
