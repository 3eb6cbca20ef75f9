// normkit — native benches of the row normalizations (LayerNorm, RMSNorm; forward and backward).
//
// Minimum traffic: forward reads x and writes y (2*M*N*sizeof(T)); backward reads x and dy and
// writes dx (3*M*N*sizeof(T)); weights, statistics and parameter gradients are O(M + N) and not
// counted. Compare bytes_per_second with the copy bench of the same dtype, shape and threads.
//
//   bench_norm --benchmark_filter='layer_norm_bwd/f32/4096x1024' --benchmark_min_time=0.1
#include <cstdint>
#include <string>

#include "bench_util.h"
#include "normkit/norm.h"

namespace nk::bench {
namespace {

// Inputs and outputs of one (dtype, shape), with statistics from the forward for the backward.
template <class T>
struct RowData {
  Shape s;
  Buffer<T> x, dy, y, dx;
  Buffer<float> weight, bias, mean, rstd_ln, rstd_rms, dweight, dbias;

  explicit RowData(Shape shape)
      : s(shape), x(s.M * s.N), dy(s.M * s.N), y(s.M * s.N), dx(s.M * s.N), weight(s.N), bias(s.N),
        mean(s.M), rstd_ln(s.M), rstd_rms(s.M), dweight(s.N), dbias(s.N) {
    fill_uniform(x, -2.0f, 2.0f, 1);
    fill_uniform(dy, -1.0f, 1.0f, 2);
    fill_uniform(weight, 0.5f, 1.5f, 3);
    fill_uniform(bias, -0.5f, 0.5f, 4);
    touch(y);
    touch(dx);
    layer_norm_fwd(fwd_args(false, 1e-5, mean.data(), rstd_ln.data()));
    rms_norm_fwd(fwd_args(true, 1e-6, nullptr, rstd_rms.data()));
  }

  RowNormFwdArgs fwd_args(bool rms, double eps, float* mean_out, float* rstd_out) {
    RowNormFwdArgs a{};
    a.dtype = TypeInfo<T>::dtype;
    a.M = s.M;
    a.N = s.N;
    a.x = x.data();
    a.ldx = s.N;
    a.weight = weight.data();
    a.bias = rms ? nullptr : bias.data();
    a.y = y.data();
    a.mean = mean_out;
    a.rstd = rstd_out;
    a.eps = eps;
    return a;
  }

  RowNormBwdArgs bwd_args(bool rms) {
    RowNormBwdArgs a{};
    a.dtype = TypeInfo<T>::dtype;
    a.M = s.M;
    a.N = s.N;
    a.dy = dy.data();
    a.lddy = s.N;
    a.x = x.data();
    a.ldx = s.N;
    a.mean = rms ? nullptr : mean.data();
    a.rstd = rms ? rstd_rms.data() : rstd_ln.data();
    a.weight = weight.data();
    a.dx = dx.data();
    a.dweight = dweight.data();
    a.dbias = rms ? nullptr : dbias.data();
    return a;
  }
};

struct Op {
  const char* name;
  bool rms, backward;
};
constexpr Op kOps[] = {
    {"layer_norm_fwd", false, false},
    {"layer_norm_bwd", false, true},
    {"rms_norm_fwd", true, false},
    {"rms_norm_bwd", true, true},
};
constexpr Shape kShapes[] = {{8, 64}, {4096, 1024}, {16384, 4096}};

template <class T>
void run_op(benchmark::State& state, Op op, Shape s, const std::string& isa, int threads) {
  if (!configure(state, isa, threads)) return;
  RowData<T>& d = cached<RowData<T>>(std::string("rows/") + TypeInfo<T>::name + "/" + s.name(), s);
  const int64_t elems = s.M * s.N * static_cast<int64_t>(sizeof(T));
  if (op.backward) {
    const RowNormBwdArgs a = d.bwd_args(op.rms);
    for (auto _ : state) {
      op.rms ? rms_norm_bwd(a) : layer_norm_bwd(a);
      benchmark::ClobberMemory();
    }
    set_traffic(state, 3 * elems);
  } else {
    // Inference-style forward (y only), like nk.layer_norm / nk.rms_norm without statistics.
    const RowNormFwdArgs a = d.fwd_args(op.rms, op.rms ? 1e-6 : 1e-5, nullptr, nullptr);
    for (auto _ : state) {
      op.rms ? rms_norm_fwd(a) : layer_norm_fwd(a);
      benchmark::ClobberMemory();
    }
    set_traffic(state, 2 * elems);
  }
}

template <class T>
void register_dtype() {
  for (Shape s : kShapes) {
    const std::string tag = std::string(TypeInfo<T>::name) + "/" + s.name();
    register_copy(tag, s.M * s.N * static_cast<int64_t>(sizeof(T)));
    for (const Op& op : kOps)
      for (const std::string& isa : isa_axis())
        for (int threads : thread_axis())
          add(std::string(op.name) + "/" + tag + axes_suffix(isa, threads),
              [=](benchmark::State& state) { run_op<T>(state, op, s, isa, threads); });
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
