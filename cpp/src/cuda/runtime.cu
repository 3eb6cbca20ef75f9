// CUDA runtime queries and normkit-owned device memory (contract: normkit/cuda.h).
#include <cstdio>

#include "cuda_util.cuh"
#include "normkit/cuda.h"

namespace nk::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

const char* device_name(int dev) {
  static thread_local char buf[320];
  cudaDeviceProp p{};
  const cudaError_t e = cudaGetDeviceProperties(&p, dev);
  if (e != cudaSuccess) return cudaGetErrorString(e);
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d)", p.name, p.major, p.minor);
  return buf;
}

const char* malloc_device(int dev, int64_t bytes, void** ptr) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  return cuda_error(cudaMalloc(ptr, static_cast<size_t>(bytes > 0 ? bytes : 1)));
}

const char* free_device(int dev, void* ptr) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  return cuda_error(cudaFree(ptr));
}

namespace {
template <class S, class D> __global__ void convert_kernel(int64_t n, const S* src, D* dst) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = from_acc<D>(static_cast<Acc<D>>(to_acc(src[i])));
}
}  // namespace

const char* convert(DType src_dtype, DType dst_dtype, int64_t n, const void* src, void* dst, int dev, void* stream) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  if (n <= 0) return nullptr;
  const int grid = static_cast<int>(min64((n + 255) / 256, int64_t{1} << 20));
  return by_dtype(src_dtype, [&]<class S>() {
    return by_dtype(dst_dtype, [&]<class D>() {
      convert_kernel<S, D><<<grid, 256, 0, static_cast<cudaStream_t>(stream)>>>(n, static_cast<const S*>(src),
                                                                               static_cast<D*>(dst));
      return launch_error();
    });
  });
}

const char* scratch_alloc(int dev, int64_t bytes, void* stream, void** ptr) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  *ptr = nullptr;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const size_t n = static_cast<size_t>(bytes > 0 ? bytes : 1);
  if (cudaMemPool_t pool = scratch_pool()) return cuda_error(cudaMallocFromPoolAsync(ptr, n, pool, s));
  return cuda_error(cudaMallocAsync(ptr, n, s));
}

const char* scratch_free(int dev, void* ptr, void* stream) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  return cuda_error(cudaFreeAsync(ptr, static_cast<cudaStream_t>(stream)));
}

const char* copy_to_host(int dev, const void* src, int64_t bytes, void* dst, void* stream) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (const char* e = cuda_error(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost, s)))
    return e;
  return cuda_error(cudaStreamSynchronize(s));
}

const char* stream_synchronize(int dev, void* stream) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  return cuda_error(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

}  // namespace nk::cuda
