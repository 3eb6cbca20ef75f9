// normkit — native benches of the channel-wise norm kernels (BatchNorm, GroupNorm, InstanceNorm).
//
// Each Python op is one or two of these kernels plus O(C) coefficient math:
//   BatchNorm training forward = chan_stats + chan_affine; eval forward = chan_affine;
//   backward = chan_grad_sums + chan_grad_apply; GroupNorm/InstanceNorm NCHW forward =
//   group_norm_fwd_ncs (fused). Shapes are (N, C, S) in the layout named (ncs = NCHW,
//   nsc = channels-last); 256x1024x1 is BatchNorm1d on (256, 1024).
//
// Minimum traffic counted: stats reads x; affine reads x, writes y; grad_sums reads x and dy;
// grad_apply reads x and dy, writes dx; group_fwd reads x, writes y. Compare bytes_per_second
// with the copy bench of the same shape and threads.
//
//   bench_chan --benchmark_filter='chan_affine/f32/nsc/256x1024x1' --benchmark_min_time=0.1
#include <cstdint>
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

template <class T>
struct ChanData {
  ChanShape s;
  Buffer<T> x, dy, y;
  Buffer<float> m, a, b, k3, w;  // per (n, c) coefficients (N*C), weight/bias per channel
  std::vector<double> mean, m2, sdy, sdyx, gm, gq, gr;

  explicit ChanData(ChanShape shape)
      : s(shape), x(s.elems()), dy(s.elems()), y(s.elems()), m(s.N * s.C), a(s.N * s.C), b(s.N * s.C),
        k3(s.N * s.C), w(s.C), mean(s.N * s.C), m2(s.N * s.C), sdy(s.N * s.C), sdyx(s.N * s.C),
        gm(s.N * kGroups), gq(s.N * kGroups), gr(s.N * kGroups) {
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

enum class Kernel { stats, affine, grad_sums, grad_apply, group_fwd };
struct Op {
  const char* name;
  Kernel kernel;
  int tensors;  // tensors of N*C*S elements read or written
};
constexpr Op kOps[] = {
    {"chan_stats", Kernel::stats, 1},         {"chan_affine", Kernel::affine, 2},
    {"chan_grad_sums", Kernel::grad_sums, 2}, {"chan_grad_apply", Kernel::grad_apply, 3},
    {"group_norm_fwd_ncs", Kernel::group_fwd, 2},
};
const ChanShape kShapes[] = {
    {32, 64, 56 * 56, Layout::ncs}, {32, 64, 56 * 56, Layout::nsc}, {8, 256, 14 * 14, Layout::ncs},
    {8, 256, 14 * 14, Layout::nsc}, {256, 1024, 1, Layout::nsc},
};

template <class T>
void run_op(benchmark::State& state, Op op, ChanShape s, const std::string& isa, int threads) {
  if (!configure(state, isa, threads)) return;
  ChanData<T>& d = cached<ChanData<T>>(std::string("chan/") + TypeInfo<T>::name + "/" + s.name(), s);
  const DType dt = TypeInfo<T>::dtype;
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
      const GroupFwdArgs a{dt,         s.N,          s.C,         s.S,         kGroups, d.x.data(), d.y.data(),
                           d.w.data(), d.b.data(),   1e-5,        d.gm.data(), d.gq.data(), d.gr.data()};
      for (auto _ : state) {
        group_norm_fwd_ncs(a);
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
      if (op.kernel == Kernel::group_fwd && (s.layout != Layout::ncs || s.C % kGroups != 0)) continue;
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
