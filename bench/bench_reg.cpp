// normkit — native benches of the regularizer and feature-scaling kernels.
//
// Each Python op is one or two of these kernels: l1/l2_penalty = reg_row_sum (M = 1);
// add_l1/l2_grad, l1_prox, weight_decay = reg_apply; max_norm = reg_row_sum (or col_stats for
// short slices) + reg_scale; standardize / minmax_scale / the scalers = col_stats + chan_affine.
//
// Minimum traffic counted: row_sum reads w; apply add_* reads w and grad, writes grad;
// soft_threshold / scale read and write w; reg_scale reads and writes every rescaled row (all
// rows here: scale 0.5); col_stats reads x. Compare bytes_per_second with the copy bench of the
// same shape and threads.
//
//   bench_reg --benchmark_filter='reg_row_sum/f32' --benchmark_min_time=0.1
#include <cstdint>
#include <string>
#include <vector>

#include "bench_util.h"
#include "normkit/regularize.h"

namespace nk::bench {
namespace {

template <class T>
struct RegData {
  Shape s;
  Buffer<T> x, g;
  std::vector<double> out, scale, mean, m2, mn, mx;
  explicit RegData(Shape shape)
      : s(shape), x(s.M * s.N), g(s.M * s.N), out(s.M), scale(s.M, 1.0), mean(s.N), m2(s.N), mn(s.N), mx(s.N) {
    fill_uniform(x, -2.0f, 2.0f, 1);
    fill_uniform(g, -1.0f, 1.0f, 2);
  }
};

enum class Kernel { row_sum, add_scaled, soft_threshold, scale_rows, col_stats };
struct Op {
  const char* name;
  Kernel kernel;
  int tensors;  // tensors of M*N elements read or written
};
constexpr Op kOps[] = {
    {"reg_row_sum", Kernel::row_sum, 1},         {"reg_apply_add_scaled", Kernel::add_scaled, 3},
    {"reg_apply_soft_threshold", Kernel::soft_threshold, 2}, {"reg_scale", Kernel::scale_rows, 2},
    {"col_stats", Kernel::col_stats, 1},
};
// (M, N): rows x contiguous values. row_sum sums each row (M = 1: a penalty); col_stats reduces
// the M rows per column.
const Shape kShapes[] = {{1, int64_t{1} << 22}, {4096, 1024}, {65536, 64}};

template <class T>
void run_op(benchmark::State& state, Op op, Shape s, const std::string& isa, int threads) {
  if (!configure(state, isa, threads)) return;
  RegData<T>& d = cached<RegData<T>>(std::string("reg/") + TypeInfo<T>::name + "/" + s.name(), s);
  const DType dt = TypeInfo<T>::dtype;
  switch (op.kernel) {
    case Kernel::row_sum: {
      const RegRowSumArgs a{dt, RegNorm::l2, s.M, s.N, s.N, d.x.data(), d.out.data()};
      for (auto _ : state) reg_row_sum(a);
      break;
    }
    case Kernel::add_scaled:
    case Kernel::soft_threshold: {
      const bool add = op.kernel == Kernel::add_scaled;
      const RegApplyArgs a{dt, add ? RegOp::add_scaled : RegOp::soft_threshold, s.M * s.N, d.x.data(),
                           add ? static_cast<void*>(d.g.data()) : static_cast<void*>(d.x.data()), add ? 1e-6 : 1e-7};
      for (auto _ : state) {
        reg_apply(a);
        benchmark::ClobberMemory();
      }
      break;
    }
    case Kernel::scale_rows: {  // every row rescaled by 1 - 2^-20 (values stay in range)
      std::vector<double> sc(static_cast<size_t>(s.M), 1.0 - 1.0 / (1 << 20));
      const RegScaleArgs a{dt, 1, s.M, s.N, d.x.data(), sc.data()};
      for (auto _ : state) {
        reg_scale(a);
        benchmark::ClobberMemory();
      }
      break;
    }
    case Kernel::col_stats: {
      const ColStatsArgs a{dt, s.M, s.N, s.N, d.x.data(), d.mean.data(), d.m2.data(), d.mn.data(), d.mx.data()};
      for (auto _ : state) col_stats(a);
      break;
    }
  }
  set_traffic(state, op.tensors * s.M * s.N * static_cast<int64_t>(sizeof(T)));
}

template <class T>
void register_dtype() {
  for (const Shape& s : kShapes) {
    const std::string tag = std::string(TypeInfo<T>::name) + "/" + s.name();
    register_copy(tag, s.M * s.N * static_cast<int64_t>(sizeof(T)));
    for (const Op& op : kOps) {
      if ((op.kernel == Kernel::col_stats || op.kernel == Kernel::scale_rows) && s.M == 1) continue;
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
