// normkit — native benches of the augmentation kernels (normkit/augment.h).
//
// Minimum traffic counted: random_crop reads and writes the output's bytes (a 7/8 x 7/8 window
// with 4 pixels of padding); random_flip, gaussian_noise and pca_lighting read x and write y.
// Compare bytes_per_second with the copy bench of the same shape and threads; gaussian_noise is
// compute-bound (Philox + Box-Muller per element) and also reports items_per_second (normals/s).
//
//   bench_aug --benchmark_filter='gaussian_noise/f32' --benchmark_min_time=0.1
#include <cstdint>
#include <string>

#include "bench_util.h"
#include "normkit/augment.h"

namespace nk::bench {
namespace {

struct Images {
  int64_t N, C, H, W;
  int64_t size() const { return N * C * H * W; }
  std::string name() const {
    return std::to_string(N) + "x" + std::to_string(C) + "x" + std::to_string(H) + "x" + std::to_string(W);
  }
  ImageGeom geom(bool nhwc) const { return nhwc ? ImageGeom{N, 1, H, W, C} : ImageGeom{N, C, H, W, 1}; }
};
const Images kShapes[] = {{64, 3, 64, 64}, {256, 3, 224, 224}};
constexpr int64_t kPad = 4;

template <class T>
struct AugData {
  Buffer<T> x, y;
  explicit AugData(int64_t n) : x(n), y(n) {
    fill_uniform(x, 0.0f, 1.0f, 1);
    touch(y);
  }
};

enum class Op { crop, flip, noise, lighting };
struct OpInfo {
  const char* name;
  Op op;
  bool layouts;  // also benched channels-last
};
constexpr OpInfo kOps[] = {{"random_crop", Op::crop, true},
                           {"random_flip", Op::flip, true},
                           {"gaussian_noise", Op::noise, false},
                           {"pca_lighting", Op::lighting, true}};
const double kEigvals[3] = {0.2175, 0.0188, 0.0045};
const double kEigvecs[9] = {-0.5675, 0.7192, 0.4009, -0.5808, -0.0045, -0.8140, -0.5836, -0.6948, 0.4203};

template <class T>
void run_op(benchmark::State& state, OpInfo op, Images s, bool nhwc, const std::string& isa, int threads) {
  if (!configure(state, isa, threads)) return;
  AugData<T>& d = cached<AugData<T>>(std::string("aug/") + TypeInfo<T>::name + "/" + s.name(), s.size());
  const DType dt = TypeInfo<T>::dtype;
  const ImageGeom g = s.geom(nhwc);
  int64_t bytes = 2 * s.size() * static_cast<int64_t>(sizeof(T));
  uint64_t seed = 1;
  switch (op.op) {
    case Op::crop: {
      const int64_t h = s.H * 7 / 8, w = s.W * 7 / 8;
      for (auto _ : state) {
        random_crop(CropArgs{dt, g, h, w, kPad, kPad, seed++, d.x.data(), d.y.data()});
        benchmark::ClobberMemory();
      }
      bytes = 2 * s.N * s.C * h * w * static_cast<int64_t>(sizeof(T));
      break;
    }
    case Op::flip:
      for (auto _ : state) {
        random_flip(FlipArgs{dt, g, seed++, uint64_t{1} << 31, d.x.data(), d.y.data()});
        benchmark::ClobberMemory();
      }
      break;
    case Op::noise:
      for (auto _ : state) {
        gaussian_noise(NoiseArgs{dt, s.size(), seed++, 0.1, d.x.data(), d.y.data()});
        benchmark::ClobberMemory();
      }
      state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * s.size());
      break;
    case Op::lighting:
      for (auto _ : state) {
        pca_lighting(LightingArgs{dt, g, seed++, 0.1, kEigvals, kEigvecs, d.x.data(), d.y.data()});
        benchmark::ClobberMemory();
      }
      break;
  }
  set_traffic(state, bytes);
}

template <class T>
void register_dtype() {
  for (const Images& s : kShapes) {
    const std::string tag = std::string(TypeInfo<T>::name) + "/" + s.name();
    register_copy(tag, s.size() * static_cast<int64_t>(sizeof(T)));
    for (const OpInfo& op : kOps)
      for (bool nhwc : {false, true}) {
        if (nhwc && !op.layouts) continue;
        for (const std::string& isa : isa_axis())
          for (int threads : thread_axis())
            add(std::string(op.name) + "/" + tag + (nhwc ? "/nhwc" : "/nchw") + axes_suffix(isa, threads),
                [=](benchmark::State& state) { run_op<T>(state, op, s, nhwc, isa, threads); });
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
