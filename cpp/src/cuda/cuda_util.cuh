// Device helpers shared by normkit's CUDA kernels: element types, vector packs, deterministic
// reductions, launch checks. Included by .cu files only.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>

#include "normkit/types.h"

namespace nk::cuda {

// Accumulation type: float for f32/f16/bf16 data, double for f64 (as on the CPU).
template <class T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <class T> using Acc = typename AccOf<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(nk::f16 v) { return __half2float(__ushort_as_half(v.bits)); }
__device__ __forceinline__ float to_acc(nk::bf16 v) { return __bfloat162float(__ushort_as_bfloat16(v.bits)); }

// Round to the storage type, to nearest even (as the CPU kernels do).
template <class T> __device__ __forceinline__ T from_acc(Acc<T> v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <> __device__ __forceinline__ nk::f16 from_acc<nk::f16>(float v) {
  return nk::f16{__half_as_ushort(__float2half_rn(v))};
}
template <> __device__ __forceinline__ nk::bf16 from_acc<nk::bf16>(float v) {
  return nk::bf16{__bfloat16_as_ushort(__float2bfloat16_rn(v))};
}

// A NaN's own bits with the quiet bit set: what the CPU's arithmetic and conversions give for a
// NaN operand (the GPU's give a canonical NaN instead).
__device__ __forceinline__ float quiet_nan_of(float v) { return __uint_as_float(__float_as_uint(v) | 0x00400000u); }
__device__ __forceinline__ double quiet_nan_of(double v) {
  return __longlong_as_double(__double_as_longlong(v) | (1ll << 51));
}
__device__ __forceinline__ nk::f16 quiet_nan_of(nk::f16 v) {
  return nk::f16{static_cast<uint16_t>(v.bits | 0x0200u)};
}
__device__ __forceinline__ nk::bf16 quiet_nan_of(nk::bf16 v) {
  return nk::bf16{static_cast<uint16_t>(v.bits | 0x0040u)};
}

// V elements of T loaded or stored as one access of V * sizeof(T) bytes (at most 16).
template <class T, int V> struct alignas(sizeof(T) * V) Pack { T v[V]; };

// Elements per 16-byte access.
template <class T> constexpr int kVec16 = 16 / static_cast<int>(sizeof(T));

__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Sum over the `width` lanes of a group inside a warp (width a power of two <= 32): a fixed
// butterfly, so every lane gets the same, reproducible value.
template <class A> __device__ __forceinline__ A group_sum(A v, int width) {
  for (int o = width / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o, width);
  return v;
}

// Sum over the threads of one row group: threadIdx.x in [0, tpr) of row slot threadIdx.y.
// tpr <= 32: a shuffle butterfly; tpr > 32 (a multiple of 32, one row per block): warp sums are
// written to `smem` (>= tpr / 32 slots) and added in warp order. Every thread of the group gets
// the sum. Must be reached by all threads of the block.
template <class A> __device__ __forceinline__ A row_sum(A v, int tpr, A* smem) {
  if (tpr <= 32) return group_sum(v, tpr);
  v = group_sum(v, 32);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = tpr / 32;
  __syncthreads();  // smem may still be read from the previous call
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  A s = smem[0];
  for (int w = 1; w < warps; ++w) s += smem[w];
  return s;
}

// Launch check: the launch's error (bad configuration) or nullptr.
inline const char* launch_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}
inline const char* cuda_error(cudaError_t e) { return e == cudaSuccess ? nullptr : cudaGetErrorString(e); }

// Makes `dev` current for the scope and restores the previous device afterwards. Entering also
// clears the thread's last (non-sticky) error, so that launch_error() reports this call's launches
// only, not an earlier call's failure.
class DeviceScope {
 public:
  explicit DeviceScope(int dev) {
    err_ = cudaGetDevice(&prev_);
    if (err_ == cudaSuccess && prev_ != dev) err_ = cudaSetDevice(dev);
    switched_ = err_ == cudaSuccess && prev_ != dev;
    if (err_ == cudaSuccess) cudaGetLastError();
  }
  ~DeviceScope() {
    if (switched_) cudaSetDevice(prev_);
  }
  const char* error() const { return cuda_error(err_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int prev_ = 0;
  bool switched_ = false;
  cudaError_t err_;
};

// The current device's scratch pool: a stream-ordered memory pool of normkit's own that keeps its
// memory between calls (release threshold: never), so a call's scratch costs no cudaMalloc once
// the pool has grown. nullptr when it cannot be made (then the device's default pool is used).
inline cudaMemPool_t scratch_pool() {
  constexpr int kDevices = 64;
  static std::mutex mu;
  static cudaMemPool_t pools[kDevices] = {};
  static bool failed[kDevices] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kDevices) return nullptr;
  std::lock_guard<std::mutex> lock(mu);
  if (!pools[dev] && !failed[dev]) {
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = dev;
    if (cudaMemPoolCreate(&pools[dev], &props) != cudaSuccess) {
      cudaGetLastError();
      pools[dev] = nullptr;
      failed[dev] = true;
    } else {
      uint64_t keep = ~uint64_t{0};
      cudaMemPoolSetAttribute(pools[dev], cudaMemPoolAttrReleaseThreshold, &keep);
    }
  }
  return pools[dev];
}

// Stream-ordered scratch memory from scratch_pool(), freed on the same stream when the scope ends.
class Scratch {
 public:
  Scratch(int64_t bytes, cudaStream_t s) : stream_(s) {
    if (bytes <= 0) return;
    if (cudaMemPool_t pool = scratch_pool()) err_ = cudaMallocFromPoolAsync(&ptr_, static_cast<size_t>(bytes), pool, s);
    else err_ = cudaMallocAsync(&ptr_, static_cast<size_t>(bytes), s);
  }
  ~Scratch() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  template <class U> U* as() const { return static_cast<U*>(ptr_); }
  const char* error() const { return cuda_error(err_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
  cudaError_t err_ = cudaSuccess;
};

// Calls f.template operator()<T>() for the dtype.
template <class F> const char* by_dtype(DType dt, F&& f) {
  switch (dt) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
    case DType::f16: return f.template operator()<nk::f16>();
    case DType::bf16: return f.template operator()<nk::bf16>();
  }
  return "unknown dtype";
}

// An entry point's frame: `dev` current, then f.template operator()<T>() for the dtype.
template <class F> const char* on_device(int dev, DType dt, F&& f) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  return by_dtype(dt, f);
}

}  // namespace nk::cuda
