// CUDA local response normalization, forward and backward (contracts: normkit/lrn.h,
// normkit/cuda.h). One thread per element; its channel window is summed directly, in double.
#include "cuda_util.cuh"
#include "normkit/cuda.h"

namespace nk::cuda {
namespace {

constexpr int kThreads = 256;

struct Index {
  int64_t n, c, s;
};

__device__ __forceinline__ Index index_of(Layout layout, int64_t i, int64_t C, int64_t S) {
  if (layout == Layout::ncs) return {i / (C * S), (i / S) % C, i % S};
  return {i / (C * S), i % C, (i / C) % S};
}

__device__ __forceinline__ int64_t at(Layout layout, int64_t n, int64_t c, int64_t s, int64_t C, int64_t S) {
  return layout == Layout::ncs ? (n * C + c) * S + s : (n * S + s) * C + c;
}

template <class T> __global__ void lrn_fwd_kernel(const LrnFwdArgs a) {
  using A = Acc<T>;
  const T* x = static_cast<const T*>(a.x);
  const int64_t before = a.size / 2, after = (a.size - 1) / 2, total = a.N * a.C * a.S;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const Index p = index_of(a.layout, i, a.C, a.S);
    double sum = 0;
    for (int64_t c = max64(0, p.c - before); c <= min64(a.C - 1, p.c + after); ++c) {
      const double v = static_cast<double>(to_acc(x[at(a.layout, p.n, c, p.s, a.C, a.S)]));
      sum += v * v;
    }
    const A scale = static_cast<A>(a.k + a.alpha / static_cast<double>(a.size) * sum);
    static_cast<T*>(a.y)[i] = from_acc<T>(to_acc(x[i]) * pow(scale, static_cast<A>(-a.beta)));
    if (a.scale) static_cast<A*>(a.scale)[i] = scale;
  }
}

template <class T> __global__ void lrn_bwd_kernel(const LrnBwdArgs a) {
  using A = Acc<T>;
  const T* dy = static_cast<const T*>(a.dy);
  const T* y = static_cast<const T*>(a.y);
  const A* sc = static_cast<const A*>(a.scale);
  const int64_t before = a.size / 2, after = (a.size - 1) / 2, total = a.N * a.C * a.S;
  const double f = 2.0 * a.alpha * a.beta / static_cast<double>(a.size);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const Index p = index_of(a.layout, i, a.C, a.S);
    double sum = 0;
    for (int64_t c = max64(0, p.c - after); c <= min64(a.C - 1, p.c + before); ++c) {
      const int64_t j = at(a.layout, p.n, c, p.s, a.C, a.S);
      sum += static_cast<double>(to_acc(dy[j])) * static_cast<double>(to_acc(y[j])) / static_cast<double>(sc[j]);
    }
    const A g = to_acc(dy[i]) * pow(sc[i], static_cast<A>(-a.beta));
    const double xv = static_cast<double>(to_acc(static_cast<const T*>(a.x)[i]));
    static_cast<T*>(a.dx)[i] = from_acc<T>(static_cast<A>(static_cast<double>(g) - f * xv * sum));
  }
}

int grid_for(int64_t n) { return static_cast<int>(min64((n + kThreads - 1) / kThreads, int64_t{1} << 20)); }

}  // namespace

const char* lrn_fwd(const LrnFwdArgs& a, int dev, void* stream) {
  const int64_t total = a.N * a.C * a.S;
  return on_device(dev, a.dtype, [&]<class T>() {
    if (total > 0) lrn_fwd_kernel<T><<<grid_for(total), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
    return launch_error();
  });
}

const char* lrn_bwd(const LrnBwdArgs& a, int dev, void* stream) {
  const int64_t total = a.N * a.C * a.S;
  return on_device(dev, a.dtype, [&]<class T>() {
    if (total > 0) lrn_bwd_kernel<T><<<grid_for(total), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
    return launch_error();
  });
}

}  // namespace nk::cuda
