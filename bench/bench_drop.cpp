// normkit — native benches of dropout and local response normalization.
//
// dropout: the forward (Philox words, keep decision, scaled write; seed given, no mask written)
// and the backward from a stored mask (reads the mask instead of generating it); each Python
// call is one such kernel. lrn_fwd / lrn_bwd: local_response_norm_forward (writes y and scale)
// and its backward, size 5 (AlexNet), both layouts. Shapes: the 16384x4096 for dropout,
// 32x64x56x56 for LRN.
//
// Minimum traffic counted: dropout reads x and writes y (the mask read of the backward adds one
// byte per element); lrn_fwd reads x and writes y and scale; lrn_bwd reads dy, x, y and scale
// and writes dx. Compare bytes_per_second with the copy bench of the same shape and threads.
//
//   bench_drop --benchmark_filter='lrn_fwd/f32/ncs' --benchmark_min_time=0.1
#include <cstdint>
#include <string>
#include <vector>

#include "bench_util.h"
#include "normkit/chan_norm.h"
#include "normkit/dropout.h"
#include "normkit/lrn.h"

namespace nk::bench {
namespace {

template <class T>
struct DropData {
  int64_t n;
  Buffer<T> x, y;
  Buffer<uint8_t> mask;
  explicit DropData(int64_t count) : n(count), x(count), y(count), mask(count) {
    fill_uniform(x, -2.0f, 2.0f, 1);
    touch(y);
    for (int64_t i = 0; i < n; ++i) mask.data()[i] = static_cast<uint8_t>((i * 2654435761u >> 7) & 1);
  }
};

template <class T>
void run_dropout(benchmark::State& state, int64_t n, bool from_mask, const std::string& isa, int threads) {
  if (!configure(state, isa, threads)) return;
  DropData<T>& d = cached<DropData<T>>(std::string("drop/") + TypeInfo<T>::name + "/" + std::to_string(n), n);
  const DropoutArgs a{TypeInfo<T>::dtype, n, d.x.data(), d.y.data(), from_mask ? d.mask.data() : nullptr, nullptr,
                      1234, 1u << 31, 2.0};
  for (auto _ : state) {
    dropout(a);
    benchmark::ClobberMemory();
  }
  set_traffic(state, 2 * n * static_cast<int64_t>(sizeof(T)) + (from_mask ? n : 0));
}

struct LrnShape {
  int64_t N, C, S;
  Layout layout;
  std::string name() const {
    return std::string(layout == Layout::ncs ? "ncs/" : "nsc/") + std::to_string(N) + "x" + std::to_string(C) + "x" +
           std::to_string(S);
  }
  int64_t elems() const { return N * C * S; }
};

template <class T>
struct LrnData {
  Buffer<T> x, y, dy, dx;
  Buffer<float> scale;
  explicit LrnData(LrnShape s) : x(s.elems()), y(s.elems()), dy(s.elems()), dx(s.elems()), scale(s.elems()) {
    fill_uniform(x, -2.0f, 2.0f, 1);
    fill_uniform(dy, -1.0f, 1.0f, 2);
    touch(dx);
    // y and scale as the forward leaves them
    lrn_fwd(LrnFwdArgs{TypeInfo<T>::dtype, s.layout, s.N, s.C, s.S, x.data(), y.data(), scale.data(), 5, 1e-4, 0.75,
                       1.0});
  }
};

template <class T>
void run_lrn(benchmark::State& state, LrnShape s, bool backward, const std::string& isa, int threads) {
  if (!configure(state, isa, threads)) return;
  LrnData<T>& d = cached<LrnData<T>>(std::string("lrn/") + TypeInfo<T>::name + "/" + s.name(), s);
  const DType dt = TypeInfo<T>::dtype;
  const int64_t e = s.elems(), tb = static_cast<int64_t>(sizeof(T));
  if (backward) {
    const LrnBwdArgs a{dt, s.layout, s.N, s.C, s.S, d.dy.data(), d.x.data(), d.y.data(), d.scale.data(), d.dx.data(),
                       5, 1e-4, 0.75, 1.0};
    for (auto _ : state) {
      lrn_bwd(a);
      benchmark::ClobberMemory();
    }
    set_traffic(state, 4 * e * tb + e * 4);
  } else {
    const LrnFwdArgs a{dt, s.layout, s.N, s.C, s.S, d.x.data(), d.dx.data(), d.scale.data(), 5, 1e-4, 0.75, 1.0};
    for (auto _ : state) {
      lrn_fwd(a);
      benchmark::ClobberMemory();
    }
    set_traffic(state, 2 * e * tb + e * 4);
  }
}

template <class T>
void register_dtype() {
  const int64_t n = int64_t{16384} * 4096;
  const std::string dtag = std::string(TypeInfo<T>::name) + "/16384x4096";
  register_copy(dtag, n * static_cast<int64_t>(sizeof(T)));
  for (const std::string& isa : isa_axis())
    for (int threads : thread_axis())
      for (bool from_mask : {false, true})
        add(std::string(from_mask ? "dropout_mask/" : "dropout_seed/") + dtag + axes_suffix(isa, threads),
            [=](benchmark::State& state) { run_dropout<T>(state, n, from_mask, isa, threads); });
  for (Layout layout : {Layout::ncs, Layout::nsc}) {
    const LrnShape s{32, 64, 56 * 56, layout};
    const std::string tag = std::string(TypeInfo<T>::name) + "/" + s.name();
    register_copy(tag, s.elems() * static_cast<int64_t>(sizeof(T)));
    for (const std::string& isa : isa_axis())
      for (int threads : thread_axis())
        for (bool backward : {false, true})
          add(std::string(backward ? "lrn_bwd/" : "lrn_fwd/") + tag + axes_suffix(isa, threads),
              [=](benchmark::State& state) { run_lrn<T>(state, s, backward, isa, threads); });
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
