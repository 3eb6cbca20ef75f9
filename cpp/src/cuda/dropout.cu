// CUDA dropout, forward and backward (contract: normkit/dropout.h, normkit/cuda.h).
//
// Thread k computes Philox block b = k of the element stream (rng/philox.h): the four words of
// one block decide elements (b / 16) * 64 + w * 16 + b % 16 for w = 0..3, so 16 neighbouring
// threads write 16 consecutive elements per word. The same (seed, i) -> word mapping as the CPU,
// and the same rounding (x * scale in the accumulation type; a kept NaN keeps its payload, quieted,
// as the CPU's arithmetic does): bitwise the CPU's results.
#include "cuda_util.cuh"
#include "normkit/cuda.h"
#include "rng/philox.h"

namespace nk::cuda {
namespace {

template <class T> __global__ void dropout_kernel(const DropoutArgs a, const Acc<T> scale) {
  using A = Acc<T>;
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const int64_t blocks = (a.n + rng::kPhiloxGroup - 1) / rng::kPhiloxGroup * 16;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks; b += stride) {
    uint32_t c[4] = {static_cast<uint32_t>(b), static_cast<uint32_t>(static_cast<uint64_t>(b) >> 32), 0, 0};
    if (!a.mask_in)
      rng::philox4x32_10(c[0], c[1], c[2], c[3], static_cast<uint32_t>(a.seed), static_cast<uint32_t>(a.seed >> 32));
    const int64_t base = (b / 16) * rng::kPhiloxGroup + b % 16;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int64_t i = base + w * 16;
      if (i >= a.n) break;
      const bool keep = a.mask_in ? a.mask_in[i] != 0 : c[w] >= a.threshold;
      const T xi = x[i];
      const A v = to_acc(xi);
      y[i] = !keep ? from_acc<T>(A(0)) : isnan(v) ? quiet_nan_of(xi) : from_acc<T>(v * scale);
      if (a.mask_out) a.mask_out[i] = keep;
    }
  }
}

}  // namespace

const char* dropout(const DropoutArgs& a, int dev, void* stream) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  if (a.n <= 0) return nullptr;
  return by_dtype(a.dtype, [&]<class T>() {
    const int64_t blocks = (a.n + rng::kPhiloxGroup - 1) / rng::kPhiloxGroup * 16;
    const int threads = 256;
    const int grid = static_cast<int>(min64((blocks + threads - 1) / threads, int64_t{1} << 20));
    dropout_kernel<T><<<grid, threads, 0, static_cast<cudaStream_t>(stream)>>>(a, static_cast<Acc<T>>(a.scale));
    return launch_error();
  });
}

}  // namespace nk::cuda
