// CUDA regularizers: elementwise updates, row sums of |x| or x^2, max-norm rescaling
// (contracts: normkit/regularize.h, normkit/cuda.h).
//
// Row sums are deterministic: a row is cut into units of kUnit values; block (unit, row) sums its
// unit in double (each thread a fixed stride of values, then a fixed shared-memory tree), and
// the unit totals of a row are added in unit order by a second kernel.
#include <cmath>

#include "cuda_util.cuh"
#include "normkit/cuda.h"

namespace nk::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kUnit = 16384;  // values per unit of a row sum

int grid_for(int64_t n) { return static_cast<int>(min64((n + kThreads - 1) / kThreads, int64_t{1} << 20)); }

template <class T> __global__ void apply_kernel(const RegApplyArgs a) {
  using A = Acc<T>;
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const A c = static_cast<A>(a.c);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < a.n; i += stride) {
    const A v = to_acc(x[i]);
    A r;
    switch (a.op) {
      case RegOp::add_sign: {
        const A s = v > A(0) ? A(1) : v < A(0) ? A(-1) : v == A(0) ? A(0) : v;  // NaN stays NaN
        r = to_acc(y[i]) + c * s;
        break;
      }
      case RegOp::add_scaled: r = to_acc(y[i]) + c * v; break;
      case RegOp::soft_threshold: {
        const A t = v - fmin(fmax(v, -c), c);
        r = t == A(0) ? A(0) : t;  // exact +0 inside the threshold
        break;
      }
      default: r = c * v; break;
    }
    y[i] = from_acc<T>(r);
  }
}

// Block b: unit b % units of row b / units (grid-stride over all units of all rows).
template <class T>
__global__ void row_sum_kernel(const RegRowSumArgs a, const int64_t units, double* partial) {
  __shared__ double s[kThreads];
  const T* x = static_cast<const T*>(a.x);
  for (int64_t blk = blockIdx.x; blk < a.M * units; blk += gridDim.x) {
    const int64_t r = blk / units, u = blk % units;
    const int64_t j0 = u * kUnit, j1 = min64(a.N, j0 + kUnit);
    double t = 0.0;
    for (int64_t j = j0 + threadIdx.x; j < j1; j += kThreads) {
      const double v = static_cast<double>(to_acc(x[r * a.ld + j]));
      t += a.norm == RegNorm::l1 ? fabs(v) : v * v;
    }
    s[threadIdx.x] = t;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
      if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
      __syncthreads();
    }
    if (threadIdx.x == 0) partial[blk] = s[0];
    __syncthreads();  // s is reused by the next unit
  }
}

// out[r] = partial[r * units + 0] + ... in unit order.
__global__ void row_total_kernel(const double* partial, int64_t M, int64_t units, double* out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < M; r += stride) {
    double t = 0.0;
    for (int64_t u = 0; u < units; ++u) t += partial[r * units + u];
    out[r] = t;
  }
}

// scale[k] = max_value / ||slice k|| where that norm exceeds max_value, else 1; the slice's sum
// of squares is sum over a of sq[a * K + k], in order of a.
__global__ void slice_scale_kernel(const double* sq, int64_t A, int64_t K, double max_value, double* scale) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < K; k += stride) {
    double t = 0.0;
    for (int64_t a = 0; a < A; ++a) t += sq[a * K + k];
    const double norm = sqrt(t);
    scale[k] = norm > max_value ? max_value / norm : 1.0;
  }
}

template <class T> __global__ void scale_kernel(const RegScaleArgs a) {
  using A = Acc<T>;
  T* w = static_cast<T*>(a.w);
  const int64_t n = a.A * a.K * a.B, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double s = a.scale[(i / a.B) % a.K];
    if (s != 1.0) w[i] = from_acc<T>(to_acc(w[i]) * static_cast<A>(s));
  }
}

}  // namespace

const char* reg_apply(const RegApplyArgs& a, int dev, void* stream) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  if (a.n <= 0) return nullptr;
  return by_dtype(a.dtype, [&]<class T>() {
    apply_kernel<T><<<grid_for(a.n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
    return launch_error();
  });
}

const char* reg_row_sum(const RegRowSumArgs& a, int dev, void* stream) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  if (a.M <= 0) return nullptr;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t units = a.N > 0 ? (a.N + kUnit - 1) / kUnit : 1;
  Scratch partial(a.M * units * static_cast<int64_t>(sizeof(double)), s);
  if (partial.error()) return partial.error();
  const char* e = by_dtype(a.dtype, [&]<class T>() {
    row_sum_kernel<T><<<static_cast<int>(min64(a.M * units, int64_t{1} << 20)), kThreads, 0, s>>>(a, units,
                                                                                               partial.as<double>());
    return launch_error();
  });
  if (e) return e;
  row_total_kernel<<<grid_for(a.M), kThreads, 0, s>>>(partial.as<double>(), a.M, units, a.out);
  return launch_error();
}

const char* max_norm(DType dtype, int64_t A, int64_t K, int64_t B, void* w, double max_value, int dev, void* stream) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  if (A * K * B <= 0) return nullptr;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  Scratch sq((A * K + K) * static_cast<int64_t>(sizeof(double)), s);
  if (sq.error()) return sq.error();
  double* rows = sq.as<double>();
  double* scale = rows + A * K;
  if (const char* e = reg_row_sum(RegRowSumArgs{dtype, RegNorm::l2, A * K, B, B, w, rows}, dev, stream)) return e;
  slice_scale_kernel<<<grid_for(K), kThreads, 0, s>>>(rows, A, K, max_value, scale);
  if (const char* e = launch_error()) return e;
  return by_dtype(dtype, [&]<class T>() {
    scale_kernel<T><<<grid_for(A * K * B), kThreads, 0, s>>>(RegScaleArgs{dtype, A, K, B, w, scale});
    return launch_error();
  });
}

}  // namespace nk::cuda
